"""Config-driven classification experiments: logistic regression and friends, from the toy set to MNIST."""

import os
import signal
import sys


def _stopped_while_starting(signal_number: int, frame: object) -> None:
    print("error: stopped by Ctrl-C while starting, before anything was written", file=sys.stderr)
    os._exit(130)


# `python -m src.train` (or src.evaluate) spends its first seconds importing torch, where a Ctrl-C would
# print torch's import traceback: until the command's own handling begins (src.train.main puts Python's
# default handler back), it is one line. Only for these commands: an import from a notebook or a test
# keeps its own Ctrl-C.
_argv = list(getattr(sys, "orig_argv", []))
if "-m" in _argv and _argv[_argv.index("-m") + 1 :][:1] in (["src.train"], ["src.evaluate"]):
    signal.signal(signal.SIGINT, _stopped_while_starting)
