"""Entry point: `python -m src.train [overrides]`, or `-m` for a sweep. See conf/config.yaml.

`train` reads as a table of contents: check the config, build data, head, model and optimizer, restore
a checkpoint if asked, then one `for` over the epochs (record, checkpoint when due, stop when asked),
then test, draw and report.
"""

import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.build import (
    Components,
    Scheduler,
    build_components,
    build_optimizer,
    build_scheduler,
    identity,
    step_scheduler,
)
from src.checkpoint import RunState
from src.cli import HeldRunLog, run_guarded
from src.config import register_configs, validate
from src.console import EpochProgress, config_tree, summary
from src.data import ClassificationData
from src.device import cores_share
from src.errors import ConfigError, OutputError
from src.files import write_atomically, write_json_atomically
from src.interrupt import Interrupted, StopSignals
from src.losses import Head
from src.metrics import TEST_ACCURACY_PER_CLASS, TRAIN_LR
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
from src.rundir import exclusive, job_status, previous_run, read_run_metrics, refuse_to_replace
from src.stopping import EarlyStopping, build_early_stopping
from src.sweep import FailedRun, job_line, sweep_overrides, varying_keys
from src.trainer import train_epochs
from src.trial import PRUNED, PrunedRun, epoch_reporter

register_configs()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What Hydra tells a run about itself: where it writes, what the command line changed."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    in_sweep: bool = False
    hydra_config: DictConfig | None = None  # Hydra's own settings, saved beside the run
    log_file: Path | None = None
    swept: set[str] | None = None  # in a sweep: the keys it varies, which name the job in TensorBoard
    cores_share: int | None = None  # under a parallel launcher: the cores each job may use

    @classmethod
    def from_hydra(cls) -> "RunContext":
        """The running job's, from Hydra's global state."""
        hydra_cfg = HydraConfig.get()
        saved = HydraConfig.instance().cfg
        assert isinstance(saved, DictConfig)
        return cls.from_settings(hydra_cfg, Path(hydra_cfg.runtime.output_dir), saved)

    @classmethod
    def from_settings(cls, hydra_cfg: DictConfig, run_dir: Path, saved: DictConfig) -> "RunContext":
        """A job's, from its `hydra` settings (a launcher may need it before Hydra runs the job); `saved`
        is what .hydra/hydra.yaml holds."""
        in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
        return cls(
            run_dir=run_dir,
            overrides=list(hydra_cfg.overrides.task),
            choices={key: str(value) for key, value in hydra_cfg.runtime.choices.items()},
            in_sweep=in_sweep,
            hydra_config=saved,
            log_file=run_dir / f"{hydra_cfg.job.name}.log",
            swept=set(varying_keys(Path(hydra_cfg.sweep.dir))) if in_sweep else None,
            cores_share=cores_share(hydra_cfg.launcher) if in_sweep else None,
        )

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"


@dataclass
class Start:
    """Where the epochs begin: from scratch, or after a checkpoint's epochs with its curves."""

    run_name: str
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    best: RunState | None = None  # early stopping: the best epoch so far


def train(cfg: DictConfig, context: RunContext, on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run one experiment described by `cfg`, writing into `context.run_dir`; returns metrics.json's
    content (and the learned parameters, when there are few).

    Nothing is written before every check has passed; then `on_start()` is called.
    """
    with ExitStack() as held:
        run = prepare_run(cfg, context, held)
        if on_start is not None:
            on_start()
        write_run_files(cfg, context)
        return run_epochs(cfg, context, run.parts, run.optimizer, run.shuffle, run.start, run.scheduler,
                          run.stopping)  # fmt: skip


@dataclass
class Prepared:
    """A run accepted and ready for its first epoch."""

    parts: Components
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler | None  # None: a constant learning rate
    stopping: EarlyStopping | None  # None: no early stopping
    shuffle: torch.Generator  # its own generator of batch orders: model init stays the tutorial's
    start: Start


def prepare_run(
    cfg: DictConfig,
    context: RunContext,
    held: ExitStack,
    shared_data: Callable[[], ClassificationData] | None = None,
) -> Prepared:
    """What comes before a run's epochs, for a run alone and for each member of a stack: check, build,
    claim the run directory (until `held` closes), then resume or refuse. Writes nothing.
    `shared_data`: the data, when runs share it (called once the config is checked)."""
    validate(cfg)
    torch.use_deterministic_algorithms(cfg.trainer.deterministic)
    data = shared_data() if shared_data is not None else None
    parts = build_components(cfg, data, cores_share=context.cores_share)
    check_objective(cfg, parts.data)
    optimizer = build_optimizer(cfg, parts.model)
    scheduler = build_scheduler(cfg, optimizer)
    stopping = build_early_stopping(cfg, parts.data)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    held.enter_context(exclusive(context.run_dir))  # one process per run directory
    start = resume_or_refuse(cfg, context, parts, optimizer, shuffle, scheduler, stopping)
    return Prepared(parts, optimizer, scheduler, stopping, shuffle, start)


def check_objective(cfg: DictConfig, data: ClassificationData) -> None:
    """The objective must be a metric this run measures."""
    if cfg.objective.metric.startswith("val/") and data.val is None:
        raise ConfigError(
            f"objective.metric={cfg.objective.metric} needs a validation split, which this dataset "
            "does not have; use objective.metric=train/loss"
        )


def resume_or_refuse(
    cfg: DictConfig,
    context: RunContext,
    parts: Components,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    scheduler: Scheduler | None = None,
    stopping: EarlyStopping | None = None,
) -> Start:
    """Restore the checkpoint the command asks for; without one, refuse to replace an earlier run."""
    resume_from = resume_path(cfg, context)
    if resume_from is None:
        if context.in_sweep and cfg.resume:  # a resumed sweep runs this job again, from the start
            clear_job(context.run_dir)
        else:
            refuse_to_replace(context.run_dir)
        return Start(run_name(context.overrides, context.swept))
    state = RunState.load(resume_from)
    state.check_identity(identity(cfg), resume_from)
    for change in state.restore(parts.model, optimizer, shuffle, scheduler, stopping):
        log.info(f"{change} (the command line wins)")
    log.info(f"resuming from {resume_from} after epoch {state.epoch}")
    # Its own checkpoint continues the same TensorBoard run; another's starts a run of this name.
    own = resume_from == context.checkpoint_path
    name = state.run_name if own else run_name(context.overrides, context.swept)
    return Start(name, state.epoch, state.metrics, state.history, state.best)


def run_epochs(
    cfg: DictConfig,
    context: RunContext,
    parts: Components,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    start: Start,
    scheduler: Scheduler | None = None,
    stopping: EarlyStopping | None = None,
) -> dict[str, Any]:
    """The epochs (record, step the schedule, checkpoint when due, stop when asked or out of patience),
    then test, draw and report."""
    model, head, data = parts.model, parts.head, parts.data
    epochs, checkpoint_every, run_identity = cfg.trainer.epochs, cfg.trainer.checkpoint_every, identity(cfg)
    recorder = open_recorder(cfg, context, start)

    best = start.best  # early stopping: the best epoch's state, saved beside last.pt as best.pt

    def capture(completed: int, best: RunState | None) -> RunState:
        return RunState.capture(completed, model, optimizer, shuffle, run_identity, start.run_name,
                                recorder.final, recorder.history, scheduler, stopping, best)  # fmt: skip

    def save_checkpoint(completed: int) -> None:
        recorder.flush()  # the events and the checkpoint tell the same story
        capture(completed, best).save(context.checkpoint_path)
        if best is not None:
            best.save(context.best_path)

    reporter = epoch_reporter()  # inside an Optuna trial: the objective goes to it each epoch
    first = epochs if stopping is not None and stopping.exhausted else start.epoch  # it stopped already
    results = train_epochs(model, head, optimizer, data, epochs, cfg.trainer.batch_size, shuffle, first)
    with (
        recorder,
        StopSignals() as stop,
        EpochProgress(epochs, start.epoch, cfg.trainer.progress) as progress,
    ):
        for result in results:
            metrics = result.metrics
            if scheduler is not None:  # log the rate this epoch trained with, then set the next one's
                metrics = metrics | {TRAIN_LR: optimizer.param_groups[0]["lr"]}
                step_scheduler(scheduler, metrics[cfg.objective.metric])
            recorder.record_epoch(result.epoch, metrics)
            progress.advance(metrics)
            if stopping is not None and stopping.update(result.epoch, metrics[cfg.objective.metric]):
                best = capture(result.completed, best=None).detached()
            out_of_patience = stopping is not None and stopping.exhausted
            objective = metrics.get(cfg.objective.metric)
            pruned = (
                reporter is not None
                and objective is not None
                and reporter.should_prune(result.completed, objective)
            )
            signalled = stop.requested  # read once: a signal arriving now must not skip the save
            due = result.completed % checkpoint_every == 0 or result.completed == epochs
            if signalled or out_of_patience or pruned or due:
                save_checkpoint(result.completed)
            if pruned:  # Optuna's pruner stopped this trial: its files and curve stay as they are
                return recorder.finish(PRUNED, reason=f"pruned by Optuna after epoch {result.completed}")
            if out_of_patience:  # finished: a signal now has nothing left to interrupt
                break
            if signalled:
                stop_recording(recorder, stop, result.completed)
                raise interruption(stop, result.completed, context)

        extra: dict[str, Any] = {}
        if stopping is not None and best is not None:
            extra = early_stopping_outcome(cfg, stopping, recorder.epochs < epochs)
            if extra["test_weights"] == "best":  # report, test and draw the weights early stopping kept
                model.load_state_dict(best.model)
                recorder.final.update(best.metrics)  # metrics.json: the best epoch's train/ and val/ values
            log.info(f"test metrics of the {extra['test_weights']} epoch's weights (best: epoch "
                     f"{stopping.best_epoch}, checkpoints/best.pt; last: checkpoints/last.pt)")  # fmt: skip
        return finish_recording(recorder, model, head, data, epochs, start.run_name, extra)


def open_recorder(cfg: DictConfig, context: RunContext, start: Start) -> RunRecorder:
    """The recorder of a run that begins at `start`."""
    params = hyperparameters(cfg, context.choices, context.overrides)
    return RunRecorder(context.run_dir, start.run_name, OmegaConf.to_yaml(cfg, resolve=True), params,
                       start.epoch, start.metrics, start.history)  # fmt: skip


def stop_recording(recorder: RunRecorder, stop: StopSignals, completed: int) -> None:
    """A run stopped by a signal after `completed` epochs (its checkpoint already saved)."""
    recorder.finish("interrupted", reason=f"stopped by {stop.signal_name} after epoch {completed}")
    stop.hand_over()  # under submitit: requeue the job, which resumes from the checkpoint


def interruption(stop: StopSignals, completed: int, context: RunContext) -> Interrupted:
    """What stopping says: the signal, where, and the command that continues."""
    message = (
        f"stopped by {stop.signal_name} after epoch {completed}; resume with:\n  {resume_command(context)}"
    )
    return Interrupted(message, stop.signal_number or signal.SIGTERM)


def finish_recording(
    recorder: RunRecorder,
    model: torch.nn.Module,
    head: Head,
    data: ClassificationData,
    epochs: int,
    name: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Test, predict, draw, and write metrics.json as completed (with `extra`); returns its content and
    the weights."""
    extra = dict(extra or {})
    recorder.record(recorder.epochs, test_metrics(model, head, data))
    counts = confusion_counts(model, head, data)
    if counts is not None:
        extra[TEST_ACCURACY_PER_CLASS] = accuracy_per_class(counts, data.class_names)
        recorder.record_tensorboard_only(recorder.epochs, per_class_scalars(extra[TEST_ACCURACY_PER_CLASS]))
    if data.test is not None and data.test.labels is None:
        extra["predictions"] = predictions(model, head, data.test.inputs)
    for picture_name, image in run_pictures(model, head, data, recorder.history, counts, name).items():
        recorder.picture(picture_name, image, epochs)
    return recorder.finish("completed", **extra) | {"parameters": parameters(model)}


def early_stopping_outcome(cfg: DictConfig, stopping: EarlyStopping, stopped_early: bool) -> dict[str, Any]:
    """What metrics.json says about early stopping: the best epoch (from 0), whether the run stopped
    before trainer.epochs, and which weights the test metrics are of."""
    tested = "last" if cfg.trainer.test_weights == "last" else "best"
    return {"best_epoch": stopping.best_epoch, "stopped_early": stopped_early, "test_weights": tested}


def write_run_files(cfg: DictConfig, context: RunContext) -> None:
    """The run's config as Hydra would save it (.hydra/), and as a tree (printed, for a single run)."""
    write_run_record(cfg, context)
    tree = config_tree(cfg, context.choices)
    write_atomically(context.run_dir / "config_tree.txt", (tree + "\n").encode())
    if not context.in_sweep:  # a sweep's jobs differ only in their overrides, which Hydra prints
        log.info(tree)


def write_run_record(cfg: DictConfig, context: RunContext) -> None:
    """.hydra/config.yaml, overrides.yaml and hydra.yaml: written here, once the command is accepted,
    rather than by Hydra before it (conf/config.yaml sets hydra.output_subdir to null)."""
    folder = context.run_dir / ".hydra"
    write_atomically(folder / "config.yaml", OmegaConf.to_yaml(cfg).encode())
    write_atomically(
        folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(context.overrides)).encode()
    )
    if context.hydra_config is not None:
        write_atomically(folder / "hydra.yaml", OmegaConf.to_yaml(context.hydra_config).encode())


def resume_path(cfg: DictConfig, context: RunContext) -> Path | None:
    """The checkpoint to continue from: `ckpt_path`, or this run's own with `resume=true` or in a job
    that SLURM requeued after preemption.

    A resumed sweep continues each job that has a checkpoint and starts the others afresh, failed ones
    included (a finished job never gets here: `main` keeps it as it is).
    """
    own = context.checkpoint_path
    if cfg.ckpt_path is not None:
        return Path(cfg.ckpt_path)
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if context.in_sweep and (cfg.resume or requeued):
        return own if own.is_file() and job_status(context.run_dir) != "failed" else None
    if cfg.resume or (requeued and own.is_file()):
        return own
    return None


def resume_command(context: RunContext) -> str:
    """The command that continues this run (or this run's sweep) where it stopped."""
    if context.in_sweep:
        sweep_dir = context.run_dir.parent
        words = [
            "python",
            "-m",
            "src.train",
            "-m",
            *sweep_overrides(sweep_dir),
            f"hydra.sweep.dir={sweep_dir}",
        ]
    else:
        kept = [
            o for o in context.overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "ckpt_path")
        ]
        words = ["python", "-m", "src.train", *kept, f"hydra.run.dir={context.run_dir}"]
    return " ".join(shlex.quote(word) for word in [*words, "resume=true"])


def record_failure(cfg: DictConfig, context: RunContext, reason: str) -> None:
    """metrics.json (and .hydra/) for a run that failed before it could record anything itself."""
    path = context.run_dir / "metrics.json"
    if context.run_dir.is_dir() and not path.exists():
        try:
            write_run_record(cfg, context)
            write_json_atomically(path, {"status": "failed", "reason": reason, "epochs": 0})
        except OutputError as error:  # the disk that failed the run may fail this too: say so, once
            log.warning(f"(the failure could not be recorded: {error})")


# An absolute path, so that the `logreg-lab` console script finds conf/ as `python -m src.train` does.
@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="config"
)
def main(cfg: DictConfig) -> float | FailedRun | PrunedRun:
    """Train once; return the objective metric for sweepers (a FailedRun when a sweep's job fails)."""
    context = RunContext.from_hydra()
    started = time.perf_counter()
    if context.in_sweep:
        end_with_parent_process()
        if cfg.resume and job_status(context.run_dir) == "completed":  # a finished job is kept as it is
            kept = read_run_metrics(context.run_dir) or {}
            announce_job(cfg, context, {**kept, "status": "kept"})
            return kept[cfg.objective.metric]
    return conclude(cfg, context, run_command(cfg, context), time.perf_counter() - started)


def conclude(
    cfg: DictConfig, context: RunContext, outcome: dict[str, Any] | FailedRun, seconds: float
) -> float | FailedRun | PrunedRun:
    """What a finished job says (one line in a sweep, the summary alone) and returns to the sweeper."""
    if isinstance(outcome, FailedRun):
        announce_job(cfg, context, {"status": "failed", "reason": outcome.reason})
        return outcome
    if outcome["status"] == PRUNED:  # the sweeper records a pruned trial, not a failed one
        announce_job(cfg, context, outcome)
        return PrunedRun(outcome["epochs"], outcome.get(cfg.objective.metric, float("nan")))
    if context.in_sweep:  # one line per job; the sweep prints its table and one TensorBoard command
        announce_job(cfg, context, outcome)
    else:
        log.info(summary(outcome, context.run_dir, seconds))
    return outcome[cfg.objective.metric]


def run_command(cfg: DictConfig, context: RunContext) -> dict[str, Any] | FailedRun:
    """`train` under the entry point's policy (src/cli.py): a refusal writes nothing into a directory
    that holds an earlier run; a failure in a new one is recorded there, with its log."""
    fresh = previous_run(context.run_dir) is None
    run_log = HeldRunLog()  # nothing reaches a run directory before the command is accepted
    accepted = False

    def start() -> None:
        nonlocal accepted
        accepted = True
        run_log.release()

    def fail(reason: str) -> None:
        if accepted or fresh:  # an earlier run's files stay as they were
            run_log.release()
            record_failure(cfg, context, reason)
        else:
            run_log.release(keep=False)

    return run_guarded(
        lambda: train(cfg, context, on_start=start),
        in_sweep=context.in_sweep,
        log_file=context.log_file if fresh else None,
        record_failure=fail,
    )


def announce_job(cfg: DictConfig, context: RunContext, outcome: dict[str, Any]) -> None:
    """A sweep job's one line: its number, what varies, its objective and status (the sweep prints
    the table)."""
    if context.in_sweep:
        varying = varying_keys(context.run_dir.parent)
        number = HydraConfig.get().job.num
        log.info(job_line(number, context.overrides, varying, outcome, cfg.objective.metric))


def clear_job(run_dir: Path) -> None:
    """A sweep job about to run again from the start: its earlier curves go, so TensorBoard shows one."""
    for events in run_dir.rglob("events.out.tfevents.*"):
        events.unlink()


def end_with_parent_process() -> None:
    """A job in a worker process (joblib's) stops, with a checkpoint, when the sweep's process dies,
    rather than training on unseen (Linux: the kernel sends SIGTERM when the parent goes)."""
    import ctypes
    import multiprocessing

    if multiprocessing.current_process().name == "MainProcess" or not sys.platform.startswith("linux"):
        return
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG
    ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGTERM)


if __name__ == "__main__":
    main()
