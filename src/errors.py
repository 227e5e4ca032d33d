"""The errors a user can cause and fix. The entry point turns each into one line and an exit code."""

import errno


class UserError(Exception):
    """Something the user can fix; its message says what and how."""

    exit_code = 2


class ConfigError(UserError):
    """An option that is out of range or does not fit with another."""


class DataError(UserError):
    """Data that is missing, truncated or malformed."""


class OutputError(UserError):
    """A run's files cannot be written (a full disk, a read-only folder)."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""

    exit_code = 1


# A write that failed for want of space or permission: the user's to fix wherever in the run it happens
# (an event file, a picture, a checkpoint), not a bug.
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def find_user_error(error: BaseException | None) -> UserError | None:
    """The UserError behind `error`, if any (hydra's instantiate wraps what a target raises)."""
    while error is not None and not isinstance(error, UserError):
        if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
            from src.files import output_error  # files raises these errors: imported when needed

            return output_error(error)
        error = error.__cause__
    return error
