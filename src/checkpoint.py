"""Checkpoints: everything needed to continue a run exactly, written atomically, loaded safely.

`RunState` is what a checkpoint holds: the model and optimizer states, the epochs completed, every
random state the run draws from (torch's global generator and the batch-shuffling one), the last value
and the history of each logged scalar, the TensorBoard run name, and the identity of the experiment
(the configs that fix the model's shape and the data, and the optimizer's and scheduler's classes);
under a schedule, the scheduler's state; under early stopping, its counter and the best epoch's state.
Loading uses `torch.load(weights_only=True)`, which refuses any file that would run pickled code.
"""

import copy
import io
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from src.errors import UserError
from src.files import write_atomically

Curve = list[tuple[int, float]]


def misfit(path: Path, error: Exception, advice: str) -> "CheckpointError":
    """A checkpoint whose tensors do not fit the run it claims to be of (damaged, or edited), as the
    one line that says so: torch's reason, then `advice`."""
    said = " ".join(str(error).split())
    return CheckpointError(f"{path} does not fit this run ({said[:300]}); {advice}")


class CheckpointError(UserError):
    """A checkpoint that is missing, unsafe, damaged, or from a different experiment."""


@dataclass
class RunState:
    """A run after `epoch` completed epochs. Saved as a plain dict of tensors and values."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor
    shuffle_rng: torch.Tensor
    identity: dict[str, str]
    run_name: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, Curve] = field(default_factory=dict)
    scheduler: dict[str, Any] | None = None  # the learning-rate schedule's state, if there is one
    stopping: dict[str, Any] | None = None  # early stopping's counter and best value, if it is on
    best: "RunState | None" = None  # early stopping: the best epoch's state (checkpoints/best.pt)

    @classmethod
    def capture(
        cls,
        epoch: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        shuffle: torch.Generator,
        identity: dict[str, str],
        run_name: str,
        metrics: dict[str, float],
        history: dict[str, Curve],
        scheduler: Any = None,
        stopping: Any = None,
        best: "RunState | None" = None,
        torch_rng: torch.Tensor | None = None,
    ) -> "RunState":
        """The state of a live run; copies what the run will go on changing (the model's and
        optimizer's tensors are only copied by `detached`). `torch_rng`: the global generator's state as
        the run would have it, when it is not the process's own (a member of a stack)."""
        return cls(
            epoch=epoch,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            torch_rng=torch.get_rng_state() if torch_rng is None else torch_rng,
            shuffle_rng=shuffle.get_state(),
            identity=dict(identity),
            run_name=run_name,
            metrics=dict(metrics),
            history={tag: list(points) for tag, points in history.items()},
            scheduler=None if scheduler is None else scheduler.state_dict(),
            stopping=None if stopping is None else stopping.state_dict(),
            best=best,
        )

    def detached(self) -> "RunState":
        """A copy that the run's further training leaves as it is (to keep the best epoch's state)."""
        return copy.deepcopy(self)

    def save(self, path: Path) -> None:
        """Write to `path` via a temporary file, so a crash mid-write keeps the previous checkpoint."""
        buffer = io.BytesIO()
        torch.save(self._to_dict(), buffer)
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "RunState":
        """The state saved at `path`, loaded without executing any pickled code."""
        return cls._from_dict(_load_safely(path), path)

    @classmethod
    def _from_dict(cls, raw: dict[str, Any], path: Path) -> "RunState":
        try:
            return cls(
                epoch=int(raw["epoch"]),
                model=raw["model"],
                optimizer=raw["optimizer"],
                torch_rng=raw["rng"]["torch"],
                shuffle_rng=raw["rng"]["shuffle"],
                identity=raw["identity"],
                run_name=raw["run_name"],
                metrics=raw.get("metrics", {}),
                history={
                    tag: [(int(s), float(v)) for s, v in points] for tag, points in raw["history"].items()
                },
                scheduler=raw.get("scheduler"),
                stopping=raw.get("stopping"),
                best=None if raw.get("best") is None else cls._from_dict(raw["best"], path),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path} is not a checkpoint of this project (it lacks {error}); resume from a run's "
                "checkpoints/last.pt"
            ) from None

    def check_identity(self, identity: dict[str, str], path: Path) -> None:
        """Refuse a checkpoint of another experiment, naming what differs."""
        for key, expected in identity.items():
            saved = self.identity.get(key)
            if saved is not None and saved != expected:
                raise CheckpointError(
                    f"{path} was made with another {key} config ({describe_difference(saved, expected)}); "
                    "resume with the run's own settings, or start a new run directory"
                )

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        shuffle: torch.Generator,
        scheduler: Any = None,
        stopping: Any = None,
    ) -> list[str]:
        """Put model, optimizer, random generators, and the schedule and early stopping if any, back as
        they were.

        The optimizer's hyperparameters (lr, momentum, ...) are the ones the command asks for, not the
        saved ones: the command line wins. Under a schedule, though, the learning rate is the schedule's:
        it continues from the checkpoint, and a different base rate is refused. Returns one
        `optimizer.<key>: old -> new` line per change.
        """
        asked = [
            {key: value for key, value in group.items() if key != "params"}
            for group in optimizer.param_groups
        ]
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        scheduled = scheduler is not None and self.scheduler is not None
        changes = []
        for group, wanted in zip(optimizer.param_groups, asked, strict=True):
            for key, value in wanted.items():
                if scheduled and key in ("lr", "initial_lr"):  # the schedule's to set
                    if key == "initial_lr" and group.get(key) != value:
                        raise CheckpointError(
                            f"a schedule continues from its checkpoint's base rate, so optimizer.lr cannot "
                            f"change on resume ({_plain(group.get(key))} -> {_plain(value)}); start a new run"
                        )
                    continue
                if key in group and group[key] != value:
                    changes.append(f"optimizer.{key}: {_plain(group[key])} -> {_plain(value)}")
                group[key] = value
        if scheduled:
            scheduler.load_state_dict(self.scheduler)
        if stopping is not None and self.stopping is not None:
            stopping.load_state_dict(self.stopping)
        torch.set_rng_state(self.torch_rng)
        shuffle.set_state(self.shuffle_rng)
        return list(dict.fromkeys(changes))

    def _to_dict(self) -> dict[str, Any]:
        raw = {
            "epoch": self.epoch,
            "model": self.model,
            "optimizer": self.optimizer,
            "rng": {"torch": self.torch_rng, "shuffle": self.shuffle_rng},
            "identity": self.identity,
            "run_name": self.run_name,
            "metrics": self.metrics,
            "history": {tag: [list(point) for point in points] for tag, points in self.history.items()},
        }
        # Only what a run has: a run with neither writes the same checkpoint as before these existed.
        best = None if self.best is None else self.best._to_dict()
        optional = {"scheduler": self.scheduler, "stopping": self.stopping, "best": best}
        return raw | {key: value for key, value in optional.items() if value is not None}


def describe_difference(saved: str, expected: str) -> str:
    """`key: old -> new` for each line of two YAML texts that differs, or both texts if none lines up."""
    import yaml

    try:
        old, new = yaml.safe_load(saved), yaml.safe_load(expected)
    except yaml.YAMLError:
        old, new = saved, expected
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [key for key in dict.fromkeys([*old, *new]) if old.get(key) != new.get(key)]
        return ", ".join(f"{key}: {_plain(old.get(key))} -> {_plain(new.get(key))}" for key in keys)
    return f"{_plain(old)} -> {_plain(new)}"


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_plain(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _load_safely(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; check the path, or start without resume")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
        if unsafe is None:  # not a pickle that asks for code: bytes that are no checkpoint at all
            raise CheckpointError(
                f"cannot read checkpoint {path}: it is not a PyTorch file, or damaged"
            ) from None
        raise CheckpointError(
            f"refusing to load {path}: it would run code ({unsafe.group(1)}) to rebuild its objects; "
            "only tensors and plain values are loaded"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path} ({first_line}); it is damaged") from None
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{path} is not a checkpoint of this project; resume from a run's checkpoints/last.pt"
        )
    return raw
