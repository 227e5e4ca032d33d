"""A run directory's guard: one process at a time, and no earlier run replaced without a word.

A run directory holds a run once it has a checkpoint, or a metrics.json of at least one epoch. A
command aimed at such a directory must say `resume=true` (or point `ckpt_path=` elsewhere); otherwise
it is refused before it writes anything, so a typo in a command can never cost a finished run.
"""

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from src.errors import ConfigError


def read_run_metrics(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's metrics.json; None when there is none; raises ValueError when unreadable."""
    try:
        text = (run_dir / "metrics.json").read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValueError(str(error)) from error
    metrics = json.loads(text)
    if not isinstance(metrics, dict):
        raise ValueError("metrics.json holds no object")
    return metrics


def job_status(run_dir: Path) -> str | None:
    """The status in a run directory's metrics.json, if it has a readable one."""
    try:
        metrics = read_run_metrics(run_dir)
    except ValueError:
        return None
    return None if metrics is None else metrics.get("status")


def previous_run(run_dir: Path) -> str | None:
    """A short description of the run `run_dir` already holds, or None when it holds none."""
    try:
        metrics = read_run_metrics(run_dir) or {}
    except ValueError:
        return "a run (its metrics.json is unreadable)"
    if metrics.get("epochs", 0) > 0:
        return f"a run {metrics.get('status', 'of unknown status')} after {metrics['epochs']} epochs"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "the checkpoint of an unfinished run"
    return None  # nothing, or a run refused before it trained: nothing to lose


def refuse_to_replace(run_dir: Path) -> None:
    """Refuse to start over in a directory that holds a run."""
    held = previous_run(run_dir)
    if held is not None:
        raise ConfigError(
            f"{run_dir} already holds {held}; add resume=true to continue it, or choose a new folder "
            "with hydra.run.dir=DIR (or leave it out for a fresh one)"
        )


@contextmanager
def exclusive(run_dir: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `run_dir` for this process: a second process aimed at it is refused, before it writes.
    `wait_s`: how long to wait for the holder to let go first (a resumed sweep's job waits for a worker
    of the killed sweep that is stopping: src/interrupt.py's end_with_parent_process).

    The lock is on the directory itself (flock), so it creates no file and dies with its process.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(run_dir, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"another process is running in {run_dir}; wait for it to finish, or choose another "
                    "folder with hydra.run.dir=DIR"
                ) from None
            time.sleep(0.2)
        yield
    finally:
        os.close(handle)  # releases the lock
