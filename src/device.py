"""Where a run computes: `device=cpu|cuda|mps|auto` as a torch.device, and how many CPU threads it uses."""

import logging
import os
from enum import Enum
from typing import Any

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


def thread_count(setting: str, share: int | None = None) -> int:
    """The CPU threads a run uses: `trainer.threads`, where `auto` is one, and never more than the
    run's `share` of the cores when it runs beside others (a parallel launcher's job).

    The models here are too small for a second thread to pay, and a thread that competes with another
    busy process for a core slows an epoch many times over; so one thread, unless asked otherwise
    (a wide MLP at a large batch is where more pay: see BENCHMARKS.md).
    """
    wanted = 1 if setting == "auto" else int(setting)
    if share is not None and wanted > share:
        log.info(f"trainer.threads={setting}: using {share}, this job's share of the cores")
        return share
    return wanted


def cores_share(launcher: Any) -> int | None:
    """A job's share of this machine's cores under a parallel launcher's settings: cores / jobs at once
    (joblib's n_jobs), or the cores SLURM gives it (cpus_per_task); None for one job at a time."""
    target = str(launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if "Joblib" in target:
        jobs = int(launcher.get("n_jobs") or -1)
        return max(1, cores // (cores if jobs < 1 else jobs))
    if "Slurm" in target or "LocalLauncher" in target:  # submitit: what each task was given
        return max(1, int(launcher.get("cpus_per_task") or 1))
    return None
