"""One policy for every entry point: a user's mistake is one line and an exit code, never a traceback.

An error the user can fix (UserError) prints `error: <what and how>` and exits with its code. An
unexpected one (a bug) is one line too, naming the log that holds its traceback. Inside a sweep, a
failing job is recorded as failed and returned as a FailedRun, so the other jobs still run; only a stop
the user asked for (Ctrl-C, kill) ends the sweep.
"""

import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from src.errors import find_user_error
from src.sweep import FailedRun

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def run_guarded(
    task: Callable[[], Result],
    in_sweep: bool = False,
    log_file: Path | None = None,
    record_failure: Callable[[str, bool], None] | None = None,
) -> Result | FailedRun:
    """`task()`, or for an error: one line, the failure recorded, and a FailedRun (in a sweep) or exit.
    `record_failure(reason, refused)`: refused, when the error is the user's to fix (a UserError)."""
    try:
        return task()
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None and log_file is None and not in_sweep:
            raise  # nowhere else to keep the traceback
        if user_error is None:
            log.debug("the traceback of the error below", exc_info=error)  # only into the run's log
            root: BaseException = error
            while root.__cause__ is not None:  # past the wrappers (hydra's instantiate) to what went wrong
                root = root.__cause__
            reason = " ".join(f"{type(root).__name__}: {root}".split())  # one line
            where = f" (a bug: the traceback is in {log_file})" if log_file else ""
        else:
            reason, where = str(user_error), ""
        if record_failure is not None:
            record_failure(reason, user_error is not None)
        stops_sweep = getattr(user_error, "stops_sweep", False)
        # In a sweep the job's own line says it failed and why; this one goes to its log only.
        log.log(logging.DEBUG if in_sweep and not stops_sweep else logging.ERROR, f"error: {reason}{where}")
        if in_sweep and not stops_sweep:
            return FailedRun(reason)  # the other jobs still run; the summary lists this one as failed
        exit_with(user_error.exit_code if user_error is not None else 1, user_error or error)


class CommandEnded(SystemExit):
    """The command ends with exit status `code`, its reason already said in one line. A process exits
    with it; a caller in Python (src.api) raises `error`, what ended it, instead."""

    def __init__(self, code: int, error: BaseException | None = None) -> None:
        super().__init__(code)
        self.error = error


def exit_with(code: int, error: BaseException | None = None) -> NoReturn:
    logging.shutdown()  # flush the run's log before leaving
    raise CommandEnded(code, error)


class RunLogFile(logging.FileHandler):
    """The run's train.log (conf/hydra/job_logging/run_log.yaml). A file that cannot be written (a full
    disk) says so in one line and is left alone, instead of logging's traceback under every line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self.failed = True
        print(f"warning: cannot write {self.baseFilename} ({error.strerror or error}); the rest of this "
              "run's log goes to the terminal only", file=sys.stderr)  # fmt: skip
        with contextlib.suppress(OSError):  # a buffer that cannot be flushed: given up either way
            self.close()


class HeldRunLog:
    """Holds the lines meant for the run's log file until the run is accepted.

    A command refused in a directory that holds an earlier run must not touch that run's train.log;
    one that starts (or fails in a fresh directory) gets every line, the held ones first.
    """

    def __init__(self) -> None:
        import logging.handlers

        root = logging.getLogger()
        self._files = [handler for handler in root.handlers if isinstance(handler, logging.FileHandler)]
        self._held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
        for handler in self._files:
            root.removeHandler(handler)
        root.addHandler(self._held)

    def release(self, keep: bool = True) -> None:
        """Write the held lines to the log files and log there from now on (keep=False: drop them)."""
        root = logging.getLogger()
        if self._held not in root.handlers:
            return
        root.removeHandler(self._held)
        for handler in self._files:
            if keep:
                for record in self._held.buffer:
                    if record.levelno >= handler.level:
                        handler.handle(record)
                root.addHandler(handler)
        self._held.buffer.clear()
