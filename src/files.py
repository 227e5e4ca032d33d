"""Writing a run's files so that a reader, or a crash, never sees half of one."""

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from src.errors import OutputError


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename: readers see the old file or the new
    one, a crash mid-write leaves the old one, and no temporary file outlives a failure."""
    # The pid keeps two processes writing the same file from sharing one temporary name.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") as file:
            file.write(data)
        os.replace(temporary, path)  # atomic on POSIX
    except OSError as error:
        raise output_error(error, path) from None
    finally:
        temporary.unlink(missing_ok=True)


def remove_unused(folder: Path, leftover: Callable[[Path], bool]) -> None:
    """Remove `folder` if every file in it is a `leftover` of a command that was refused (and them with
    it); a folder holding anything else, or that cannot be removed, stays as it is."""
    try:
        entries = list(folder.iterdir())
        if all(entry.is_file() and leftover(entry) for entry in entries):
            for entry in entries:
                entry.unlink()
            folder.rmdir()
    except OSError:
        pass  # not ours to clean after all: it stays


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    write_atomically(path, (json.dumps(payload, indent=2) + "\n").encode())


def output_error(error: OSError, path: Path | str | None = None) -> OutputError:
    """The one line for a file of the run that cannot be written, and what to do about it."""
    where = path or error.filename or "the run's files"
    return OutputError(f"cannot write {where}: {error.strerror or error}; {_advice(error)}")


def _advice(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "free some disk space, then resume the run"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable, or choose another with hydra.run.dir=DIR"
    return "check the folder, then resume the run"
