"""Stop cleanly on Ctrl-C, `kill`, or a cluster's preemption notice.

SIGINT, SIGTERM and SIGUSR2 (what SLURM sends before preempting or timing out a job) only raise a flag;
the trainer finishes the epoch it is in, the run writes its checkpoint and metrics, and then exits with
128 + the signal number. A second Ctrl-C stops at once. Under submitit, the handler it had installed for
SIGUSR2 runs after the checkpoint, so submitit requeues the job as usual.
"""

import signal
import threading
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
