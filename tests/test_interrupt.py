import os
import signal

import pytest

from src.interrupt import StopSignals


def test_a_signal_becomes_a_request_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_ctrl_c_stops_at_once():
    with StopSignals(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def test_preemption_is_handed_to_the_handler_that_was_there_before():
    # submitit installs a SIGUSR2 handler that requeues the job; it must still run, after our checkpoint.
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: calls.append(number))
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert calls == []  # not yet: the run first finishes its epoch and saves
            stop.hand_over()
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
