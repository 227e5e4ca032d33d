"""Checkpoints: everything needed to continue a run exactly, written atomically, loaded safely.

A checkpoint holds the model and optimizer states, the epochs completed, every random state the run
draws from (torch's global generator and the batch-shuffling one), the last value of each logged
scalar, the TensorBoard run name, and the configs that fix the model's shape and the data. Loading
uses `torch.load(weights_only=True)`, which refuses any file that would run pickled code.
"""

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from src.errors import UserError


class CheckpointError(UserError):
    """A checkpoint that is missing, unsafe, damaged, or from a different experiment."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` via a temporary file, so a crash mid-write keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)  # atomic on POSIX: readers see the old file or the new one
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved at `path`, loaded without executing any pickled code."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; check the path, or start without resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"refusing to load {path}: it holds objects that only pickle code can rebuild "
            f"({first_line[:160]}); only tensors and plain values are loaded"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path} ({error}); it is damaged") from None


def capture_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    epoch: int,
    identity: dict[str, str],
    run_name: str,
    metrics: dict[str, float],
    history: dict[str, list[tuple[int, float]]],
) -> dict[str, Any]:
    """The checkpoint's content after `epoch` completed epochs."""
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()},
        "identity": identity,
        "run_name": run_name,
        "metrics": dict(metrics),
        "history": {tag: [list(point) for point in points] for tag, points in history.items()},
    }


def restore_state(
    state: dict[str, Any],
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    identity: dict[str, str],
) -> None:
    """Put model, optimizer and random generators back as they were; refuse another experiment's state."""
    for key, expected in identity.items():
        saved = state["identity"].get(key)
        if saved != expected:
            raise CheckpointError(
                f"{path} was made with another {key} config ({saved!r}, this run has {expected!r}); "
                "resume with the run's own settings, or start a new run directory"
            )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    shuffle.set_state(state["rng"]["shuffle"])
