"""Entry point: `python -m src.train [overrides]`, or `-m` for a sweep. See conf/config.yaml.

Reads as a table of contents: check the config, build data, loss, model and optimizer, train, test,
write the results.
"""

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.checkpoint import capture_state, load_checkpoint, restore_state, save_checkpoint
from src.config import register_configs, validate
from src.console import EpochProgress, config_tree, summary
from src.errors import ConfigError, UserError
from src.experiment import build_experiment, identity
from src.interrupt import Interrupted, StopSignals
from src.outputs import HyperParameters, RunRecorder, hyperparameters, run_name, write_json_atomically
from src.pictures import run_pictures
from src.sweep import FailedRun
from src.trainer import evaluate, fit, predict_probabilities
from src.trial import PRUNED, PrunedRun, epoch_reporter

register_configs()


def train(cfg: DictConfig, run_dir: Path, name: str, params: HyperParameters) -> dict[str, Any]:
    """Run one experiment described by `cfg`, writing into `run_dir`; returns metrics.json's content."""
    validate(cfg)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True)
    experiment = build_experiment(cfg)
    model, loss_fn, data = experiment.model, experiment.loss_fn, experiment.data
    if cfg.objective.metric.startswith("val/") and data.val is None:
        raise ConfigError(
            f"objective.metric={cfg.objective.metric} needs a validation split, which this dataset "
            "does not have; use objective.metric=train/loss"
        )
    optimizer = instantiate(cfg.optimizer, _convert_="all")(model.parameters())
    shuffle = torch.Generator().manual_seed(cfg.seed)  # its own generator: model init stays the tutorial's

    checkpoint_path, run_identity = run_dir / "checkpoints" / "last.pt", identity(cfg)
    resume_from = resume_path(cfg, checkpoint_path)
    state = {"epoch": 0, "metrics": {}, "history": {}, "run_name": name}
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        restore_state(state, resume_from, model, optimizer, shuffle, run_identity)
        print(f"resuming from {resume_from} after epoch {state['epoch']}")
    name = state["run_name"] if resume_from == checkpoint_path else name  # one TensorBoard run

    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    epochs_wanted, checkpoint_every = cfg.trainer.epochs, cfg.trainer.checkpoint_every
    history = {tag: [tuple(point) for point in points] for tag, points in state["history"].items()}
    recorder = RunRecorder(run_dir, name, config_yaml, params, state["epoch"], state["metrics"], history)
    progress = EpochProgress(epochs_wanted, state["epoch"], enabled=cfg.trainer.progress)
    reporter, pruned = epoch_reporter(), []  # inside an Optuna trial: report each epoch, stop if pruned
    with recorder, StopSignals() as stop, progress:

        def log(tag: str, value: float, step: int) -> None:
            recorder.scalar(tag, value, step)
            progress.observe(tag, value)

        def save(epoch: int) -> None:
            recorder.flush()
            snapshot = (epoch, run_identity, name, recorder.final, recorder.history)
            save_checkpoint(checkpoint_path, capture_state(model, optimizer, shuffle, *snapshot))

        def after_epoch(epoch: int) -> bool:
            progress.advance()
            stopping = stop.requested  # read once: a signal arriving now must not skip the save
            value = recorder.final.get(cfg.objective.metric)
            if reporter and not stopping and value is not None and reporter.should_prune(epoch, value):
                pruned.append(epoch)
                save(epoch)
                return True
            if stopping or epoch % checkpoint_every == 0 or epoch == epochs_wanted:
                save(epoch)
            return stopping

        epochs = fit(model, loss_fn, optimizer, data, epochs_wanted, cfg.trainer.batch_size, shuffle,
                     log=log, start_epoch=state["epoch"], after_epoch=after_epoch)  # fmt: skip
        if stop.requested:
            recorder.finish("interrupted")
            stop.hand_over()  # under submitit: requeue the job, which resumes from the checkpoint
            signal_name = signal.Signals(stop.signal_number).name
            raise Interrupted(f"stopped by {signal_name} after epoch {epochs}", stop.signal_number)
        if pruned:
            return recorder.finish(PRUNED, f"pruned by Optuna after epoch {epochs}")
        extra = {}
        if data.test is not None and data.test.labels is not None:
            for metric, value in evaluate(model, loss_fn, data.test).items():
                recorder.scalar(f"test/{metric}", value, epochs_wanted)
        elif data.test is not None:
            extra["predictions"] = predictions(model, loss_fn, data.test.inputs)
        for picture_name, image in run_pictures(model, loss_fn, data, recorder.history).items():
            recorder.picture(picture_name, image, epochs_wanted)
        return recorder.finish("completed", **extra) | {"parameters": parameters(model)}


def resume_path(cfg: DictConfig, checkpoint_path: Path) -> Path | None:
    """The checkpoint to continue from: `ckpt_path`, this run's own with `resume=true`, or, in a job
    that SLURM requeued after preemption, this run's own if it exists."""
    if cfg.ckpt_path is not None:
        return Path(cfg.ckpt_path)
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if cfg.resume or (requeued and checkpoint_path.is_file()):
        return checkpoint_path
    return None


def predictions(model: nn.Module, loss_fn: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """Positive-class probability per unlabeled input, keyed by the input (`{"4.0": 0.88}`)."""
    probabilities = predict_probabilities(model, loss_fn, inputs).tolist()
    keys = [str(row[0]) if len(row) == 1 else str(i) for i, row in enumerate(inputs.tolist())]
    return dict(zip(keys, probabilities, strict=True))


def parameters(model: nn.Module) -> dict[str, list]:
    """The model's weights as lists, when there are few enough to print (the toy set's w and b)."""
    if sum(p.numel() for p in model.parameters()) > 8:
        return {}
    short = {"weight": "w", "bias": "b"}  # the tutorial's names
    return {short.get(name.rsplit(".", 1)[-1], name): p.detach().cpu().flatten().tolist()
            for name, p in model.named_parameters()}  # fmt: skip


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | FailedRun:
    """Train once; return the objective metric for sweepers (a FailedRun when a sweep's job fails)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    choices = dict(hydra_cfg.runtime.choices)
    tree = config_tree(cfg, choices)
    (run_dir / "config_tree.txt").write_text(tree + "\n")
    if not in_sweep:  # a sweep's jobs differ only in their overrides, which Hydra prints
        print(tree)
    started = time.perf_counter()
    try:
        params = hyperparameters(cfg, choices, overrides)
        metrics = train(cfg, run_dir, run_name(overrides), params)
    except Interrupted as error:  # stops a sweep too: the user asked to stop
        print(f"{error}; resume with:\n  {resume_command(overrides, run_dir)}", file=sys.stderr)
        sys.exit(error.exit_code)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None and not in_sweep:
            raise  # a bug: show the traceback
        reason = str(user_error or f"{type(error).__name__}: {error}")
        if not (run_dir / "metrics.json").exists():  # failed before training started
            write_json_atomically(
                run_dir / "metrics.json", {"status": "failed", "reason": reason, "epochs": 0}
            )
        print(f"error: {reason}", file=sys.stderr)
        if in_sweep:
            return FailedRun(reason)  # the other jobs still run; the summary lists this one as failed
        sys.exit(user_error.exit_code)
    if metrics["status"] == PRUNED:
        print(f"{metrics['reason']}: {cfg.objective.metric}={metrics.get(cfg.objective.metric)}")
        return PrunedRun(metrics["epochs"], metrics.get(cfg.objective.metric, float("nan")))
    print(summary(metrics, run_dir, time.perf_counter() - started))
    return metrics[cfg.objective.metric]


def resume_command(overrides: list[str], run_dir: Path) -> str:
    """The command that continues this run where it stopped."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "ckpt_path")]
    words = ["python", "-m", "src.train", *kept, f"hydra.run.dir={run_dir}", "resume=true"]
    return " ".join(shlex.quote(word) for word in words)


def find_user_error(error: BaseException | None) -> UserError | None:
    """The UserError behind `error`, if any (hydra's instantiate wraps what a target raises)."""
    while error is not None and not isinstance(error, UserError):
        error = error.__cause__
    return error


if __name__ == "__main__":
    main()
