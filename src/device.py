"""Where a run computes: `device=cpu|cuda|mps|auto` as a torch.device, and how many CPU threads it uses."""

import logging
from enum import Enum

import torch

from src.errors import ConfigError

log = logging.getLogger(__name__)


class DeviceType(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"
    auto = "auto"


def resolve_device(kind: DeviceType | str) -> torch.device:
    """The device to train on; `auto` prefers CUDA, then Apple's MPS, then the CPU."""
    kind = DeviceType(kind).value
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if kind == "auto":
        picked = "cuda" if cuda else "mps" if mps else "cpu"
        log.info(f"device=auto: using {picked}")
        return torch.device(picked)
    if (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        raise ConfigError(f"device={kind} is not available on this machine; use device=cpu or device=auto")
    return torch.device(kind)


def thread_count(setting: str) -> int:
    """The CPU threads a run uses: `trainer.threads`, where `auto` is one.

    The models here are too small for a second thread to pay, and a thread that competes with another
    busy process for a core slows an epoch many times over; so one thread, unless asked otherwise
    (a wide MLP at a large batch is where more pay: see BENCHMARKS.md).
    """
    return 1 if setting == "auto" else int(setting)
