"""Entry point: `python -m src.train [overrides]`, or `-m` for a sweep. See conf/config.yaml.

`train` reads as a table of contents: check the config, build data, head, model and optimizer, restore
a checkpoint if asked, then one `for` over the epochs (record, checkpoint when due, stop when asked),
then test, draw and report.
"""

import logging
import os
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.build import build_components, build_optimizer, identity
from src.checkpoint import RunState
from src.cli import run_guarded
from src.config import register_configs, validate
from src.console import EpochProgress, config_tree, summary
from src.errors import ConfigError
from src.files import write_atomically, write_json_atomically
from src.interrupt import Interrupted, StopSignals
from src.metrics import TEST_ACCURACY_PER_CLASS
from src.outputs import RunRecorder, hyperparameters, run_name
from src.report import (
    accuracy_per_class,
    confusion_counts,
    parameters,
    per_class_scalars,
    predictions,
    run_pictures,
    test_metrics,
)
from src.sweep import FailedRun
from src.trainer import train_epochs

register_configs()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What Hydra tells a run about itself: where it writes, what the command line changed."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    in_sweep: bool = False

    @classmethod
    def from_hydra(cls) -> "RunContext":
        hydra_cfg = HydraConfig.get()
        return cls(
            run_dir=Path(hydra_cfg.runtime.output_dir),
            overrides=list(hydra_cfg.overrides.task),
            choices={key: str(value) for key, value in hydra_cfg.runtime.choices.items()},
            in_sweep=hydra_cfg.mode == RunMode.MULTIRUN,
        )

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"


def train(cfg: DictConfig, context: RunContext) -> dict[str, Any]:
    """Run one experiment described by `cfg`, writing into `context.run_dir`; returns metrics.json's
    content (and the learned parameters, when there are few)."""
    validate(cfg)
    torch.use_deterministic_algorithms(cfg.trainer.deterministic)
    parts = build_components(cfg)
    model, head, data = parts.model, parts.head, parts.data
    if cfg.objective.metric.startswith("val/") and data.val is None:
        raise ConfigError(
            f"objective.metric={cfg.objective.metric} needs a validation split, which this dataset "
            "does not have; use objective.metric=train/loss"
        )
    optimizer = build_optimizer(cfg, model)
    shuffle = torch.Generator().manual_seed(cfg.seed)  # its own generator: model init stays the tutorial's

    run_identity, name = identity(cfg), run_name(context.overrides)
    start: tuple[int, dict[str, float], dict[str, list[tuple[int, float]]]] = (
        0,
        {},
        {},
    )  # done, last, curves
    resume_from = resume_path(cfg, context.checkpoint_path)
    if resume_from is not None:
        state = RunState.load(resume_from)
        state.check_identity(run_identity, resume_from)
        for change in state.restore(model, optimizer, shuffle):
            log.info(f"{change} (the command line wins)")
        log.info(f"resuming from {resume_from} after epoch {state.epoch}")
        start = state.epoch, state.metrics, state.history
        if resume_from == context.checkpoint_path:
            name = state.run_name  # one TensorBoard run
    write_run_files(cfg, context)

    epochs, checkpoint_every = cfg.trainer.epochs, cfg.trainer.checkpoint_every
    recorder = RunRecorder(context.run_dir, name, OmegaConf.to_yaml(cfg, resolve=True),
                           hyperparameters(cfg, context.choices, context.overrides), *start)  # fmt: skip

    def save_checkpoint(completed: int) -> None:
        recorder.flush()  # the events and the checkpoint tell the same story
        state = RunState.capture(completed, model, optimizer, shuffle, run_identity, name,
                                 recorder.final, recorder.history)  # fmt: skip
        state.save(context.checkpoint_path)

    with recorder, StopSignals() as stop, EpochProgress(epochs, start[0], cfg.trainer.progress) as progress:
        for result in train_epochs(
            model, head, optimizer, data, epochs, cfg.trainer.batch_size, shuffle, start[0]
        ):
            recorder.record_epoch(result.epoch, result.metrics)
            progress.advance(result.metrics)
            stopping = stop.requested  # read once: a signal arriving now must not skip the save
            if stopping or result.completed % checkpoint_every == 0 or result.completed == epochs:
                save_checkpoint(result.completed)
            if stopping:
                recorder.finish("interrupted")
                stop.hand_over()  # under submitit: requeue the job, which resumes from the checkpoint
                assert stop.signal_number is not None
                raise Interrupted(
                    f"stopped by {signal.Signals(stop.signal_number).name} after epoch {result.completed}; "
                    f"resume with:\n  {resume_command(context)}",
                    stop.signal_number,
                )

        recorder.record(epochs, test_metrics(model, head, data))
        extra: dict[str, Any] = {}
        counts = confusion_counts(model, head, data)
        if counts is not None:
            extra[TEST_ACCURACY_PER_CLASS] = accuracy_per_class(counts, data.class_names)
            recorder.record_tensorboard_only(epochs, per_class_scalars(extra[TEST_ACCURACY_PER_CLASS]))
        if data.test is not None and data.test.labels is None:
            extra["predictions"] = predictions(model, head, data.test.inputs)
        for picture_name, image in run_pictures(model, head, data, recorder.history, counts).items():
            recorder.picture(picture_name, image, epochs)
        return recorder.finish("completed", **extra) | {"parameters": parameters(model)}


def write_run_files(cfg: DictConfig, context: RunContext) -> None:
    """The resolved config as a tree, saved beside the run (and printed, for a single run)."""
    tree = config_tree(cfg, context.choices)
    write_atomically(context.run_dir / "config_tree.txt", (tree + "\n").encode())
    if not context.in_sweep:  # a sweep's jobs differ only in their overrides, which Hydra prints
        log.info(tree)


def resume_path(cfg: DictConfig, checkpoint_path: Path) -> Path | None:
    """The checkpoint to continue from: `ckpt_path`, this run's own with `resume=true`, or, in a job
    that SLURM requeued after preemption, this run's own if it exists."""
    if cfg.ckpt_path is not None:
        return Path(cfg.ckpt_path)
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if cfg.resume or (requeued and checkpoint_path.is_file()):
        return checkpoint_path
    return None


def resume_command(context: RunContext) -> str:
    """The command that continues this run where it stopped."""
    kept = [o for o in context.overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "ckpt_path")]
    words = ["python", "-m", "src.train", *kept, f"hydra.run.dir={context.run_dir}", "resume=true"]
    return " ".join(shlex.quote(word) for word in words)


def record_failure(run_dir: Path, reason: str) -> None:
    """metrics.json for a run that failed before it could record anything itself."""
    path = run_dir / "metrics.json"
    if run_dir.is_dir() and not path.exists():
        write_json_atomically(path, {"status": "failed", "reason": reason, "epochs": 0})


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | FailedRun:
    """Train once; return the objective metric for sweepers (a FailedRun when a sweep's job fails)."""
    context = RunContext.from_hydra()
    started = time.perf_counter()
    outcome = run_guarded(
        lambda: train(cfg, context),
        in_sweep=context.in_sweep,
        log_file=context.run_dir / f"{HydraConfig.get().job.name}.log",
        record_failure=lambda reason: record_failure(context.run_dir, reason),
    )
    if isinstance(outcome, FailedRun):
        return outcome
    log.info(summary(outcome, context.run_dir, time.perf_counter() - started))
    return outcome[cfg.objective.metric]


if __name__ == "__main__":
    main()
