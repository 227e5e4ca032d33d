"""Stop cleanly on Ctrl-C, `kill`, or a cluster's preemption notice.

SIGINT, SIGTERM and SIGUSR2 (what SLURM sends before preempting or timing out a job) only raise a flag;
the trainer finishes the epoch it is in, the run writes its checkpoint and metrics, and then exits with
128 + the signal number. A second Ctrl-C stops at once. Under submitit, the handler it had installed for
SIGUSR2 runs after the checkpoint, so submitit requeues the job as usual.
"""

import functools
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from src.errors import UserError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class Interrupted(UserError):
    """The run stopped on a signal after saving its state. The user asked: a sweep stops too."""

    stops_sweep = True

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StopSignals:
    """Context manager that turns stop signals into `requested`, restoring the old handlers on exit."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number is not None else ""

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.signal_number == signal.SIGINT and signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: the user wants out now
        self.signal_number = signal_number

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def hand_over(self) -> None:
        """Let the handler that was there before (submitit's requeue) act on the signal we caught."""
        previous = self._previous.get(self.signal_number) if self.signal_number is not None else None
        if callable(previous) and self.signal_number == signal.SIGUSR2:
            previous(self.signal_number, None)


_app_process: int | None = None  # the process that started the command (mark_app_process)


def mark_app_process() -> None:
    """Called by the command itself: jobs that run in this process are not workers."""
    global _app_process
    _app_process = os.getpid()


def end_with_parent_process() -> None:
    """A job in a worker process (joblib's, submitit's local ones) stops, with a checkpoint, when the
    process that started it dies (a sweep killed with SIGKILL), rather than training on unseen and
    holding its job folder: the worker sends itself SIGTERM, which the run handles as any stop, and
    again every few seconds, which ends the worker once no run handles it (between jobs, or once the
    job has checkpointed and written its files).

    A thread watches the parent rather than the kernel's parent-death signal, which fires when the
    *thread* that started the worker ends (loky starts workers from threads of its own)."""
    if os.getpid() != _app_process:  # the basic and vectorized launchers run jobs in the app's process
        watch_parent(os.getppid())


@functools.cache  # one watcher per worker process, however many jobs it runs
def watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        while True:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5.0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
