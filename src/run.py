"""One run, whatever trains it: what Hydra tells it (RunContext), its preparation (check, build, claim,
resume or refuse) and its policy (RunPolicy): everything that happens to it after an epoch and at its end.

Every run trains in a stack (src/stack.py), a run alone in a stack of one, so each rule of a run lives
here once: record the epoch, step the schedule and log `train/lr`, count patience and keep the best
weights, report to an Optuna trial and stop when it is pruned, checkpoint when due or stopped, and
finish (test the kept weights, draw, write metrics.json).
"""

import logging
import os
import shlex
import signal
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from src.checkpoint import CheckpointError, RunState, misfit
from src.config import validate
from src.console import config_tree, summary
from src.data import ClassificationData
from src.device import cores_share
from src.errors import ConfigError, OutputError, TrainingDiverged
from src.files import write_atomically, write_json_atomically
from src.interrupt import Interrupted, StopSignals
from src.metrics import BINARY_SCORES, MULTICLASS_SCORES, SCORED, TEST_ACCURACY_PER_CLASS, TRAIN_LR
from src.mlflow_sink import MLflowSink, preload, require_mlflow
from src.outputs import RunRecorder, Sink, TensorBoardSink, hyperparameters, override_key, run_name
from src.report import (
    COEFFICIENTS_FILE,
    PREDICTIONS_FILE,
    accuracy_per_class,
    coefficients_report,
    confusion_counts,
    keyed_predictions,
    parameters,
    per_class_scalars,
    predictions_table,
    run_pictures,
    test_metrics,
    test_predictions,
)
from src.rundir import exclusive, job_status, refuse_to_replace
from src.stopping import EarlyStopping, build_early_stopping
from src.sweep import FailedRun, job_line, sweep_overrides, varying_keys
from src.trainer import EpochResult
from src.trial import PRUNED, TRIAL_ENV, EpochReporter, PrunedRun, epoch_reporter

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
    env_set: dict[str, str] = field(default_factory=dict)  # hydra.job.env_set: the job's environment

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
            env_set=unresolved(hydra_cfg.job.env_set),
        )

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"


def unresolved(env_set: DictConfig | None) -> dict[str, str]:
    """`hydra.job.env_set` as written: a value may interpolate what only Hydra's run_job sets
    (`${hydra:runtime.output_dir}`), which a launcher reads before it."""
    written = OmegaConf.to_container(env_set, resolve=False) if env_set is not None else {}
    assert isinstance(written, dict)
    return {str(key): str(value) for key, value in written.items()}


@dataclass
class Start:
    """Where the epochs begin: from scratch, or after a checkpoint's epochs with its curves."""

    run_name: str
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    best: RunState | None = None  # early stopping: the best epoch so far


Outcome = dict[str, Any] | TrainingDiverged  # metrics.json's content, or why the run diverged


@dataclass
class RunPolicy:
    """A run accepted and ready for its first epoch, and what it does after each one."""

    cfg: DictConfig
    context: RunContext
    parts: Components
    optimizer: Any  # src.optimizers.OwnOptimizer, or torch's (a schedule's, or LBFGS and the like)
    shuffle: torch.Generator  # its own generator of batch orders: model init stays the tutorial's
    start: Start
    scheduler: Scheduler | None = None  # None: a constant learning rate
    stopping: EarlyStopping | None = None  # None: no early stopping
    torch_rng: torch.Tensor = field(default_factory=torch.get_rng_state)  # the global generator's, as
    # it stands once the run is built: nothing in training draws from it, so a checkpoint saves this
    best: RunState | None = None  # early stopping: the best epoch's state, saved as checkpoints/best.pt
    reporter: EpochReporter | None = None  # inside an Optuna trial: the objective goes to it each epoch
    recorder: RunRecorder | None = None  # once `open`

    def __post_init__(self) -> None:
        # Read once: what every epoch consults, as plain values (a config's attribute costs ~10 µs).
        self.identity = identity(self.cfg, self.parts.data)
        self.objective_metric: str = self.cfg.objective.metric
        self.epochs: int = self.cfg.trainer.epochs
        self.checkpoint_every: int = self.cfg.trainer.checkpoint_every

    @property
    def first_epoch(self) -> int:
        """Where its epochs begin: its checkpoint's, or the end for a run early stopping ended."""
        ended = self.stopping is not None and self.stopping.exhausted
        return self.epochs if ended else self.start.epoch

    def open(self, held: ExitStack) -> RunRecorder:
        """Start recording (events, history), until `held` closes."""
        params = hyperparameters(self.cfg, self.context.choices, self.context.overrides)
        config_yaml = OmegaConf.to_yaml(self.cfg, resolve=True)
        run_dir, name, epoch = self.context.run_dir, self.start.run_name, self.start.epoch
        sinks: list[Sink] = []  # the logger group's choices
        if self.cfg.logger.tensorboard:
            sinks.append(TensorBoardSink(run_dir / name, config_yaml, params, epoch))
        if self.cfg.logger.mlflow:
            sweep_dir = run_dir.parent if self.context.in_sweep else None
            sinks.append(MLflowSink(self.cfg.logger, run_dir, name, config_yaml, params, epoch, sweep_dir))
        self.recorder = held.enter_context(
            RunRecorder(
                run_dir, name, config_yaml, params, epoch, self.start.metrics, self.start.history, sinks=sinks
            )  # fmt: skip
        )
        return self.recorder

    def after_epoch(self, result: EpochResult, signalled: bool) -> str | None:
        """Record the epoch, step the schedule, count patience, report to the trial, and checkpoint when
        due, out of patience, pruned or `signalled`. Returns why the run ends here (PRUNED, or
        "out of patience"), or None while it trains on."""
        assert self.recorder is not None
        metrics = result.metrics
        if self.scheduler is not None:  # log the rate this epoch trained with, then set the next one's
            metrics = metrics | {TRAIN_LR: self.optimizer.param_groups[0]["lr"]}
            step_scheduler(self.scheduler, metrics[self.objective_metric])
        self.recorder.record_epoch(result.epoch, metrics)
        if self.stopping is not None and self.stopping.update(result.epoch, metrics[self.objective_metric]):
            self.best = self.capture(result.completed, best=None).detached()
        out_of_patience = self.stopping is not None and self.stopping.exhausted
        objective = metrics.get(self.objective_metric)
        pruned = (
            self.reporter is not None
            and objective is not None
            and self.reporter.should_prune(result.completed, objective)
        )
        due = result.completed % self.checkpoint_every == 0 or result.completed == self.epochs
        if signalled or out_of_patience or pruned or due:
            self.save_checkpoint(result.completed)
        if pruned:
            return PRUNED
        return "out of patience" if out_of_patience else None

    def capture(self, completed: int, best: RunState | None) -> RunState:
        """The run's state after `completed` epochs, as its checkpoint holds it."""
        assert self.recorder is not None
        return RunState.capture(completed, self.parts.model, self.optimizer, self.shuffle, self.identity,
                                self.start.run_name, self.recorder.final, self.recorder.history,
                                self.scheduler, self.stopping, best, torch_rng=self.torch_rng)  # fmt: skip

    def save_checkpoint(self, completed: int) -> None:
        """checkpoints/last.pt (and best.pt under early stopping)."""
        assert self.recorder is not None
        self.recorder.flush()  # the events and the checkpoint tell the same story
        self.capture(completed, self.best).save(self.context.checkpoint_path)
        if self.best is not None:
            self.best.save(self.context.best_path)

    def diverged(self, error: TrainingDiverged) -> TrainingDiverged:
        """metrics.json of a run whose loss diverged (the run's files stay as they are)."""
        assert self.recorder is not None
        self.recorder.finish("failed", reason=str(error))
        return error

    def interrupted(self, stop: StopSignals, completed: int) -> None:
        """metrics.json of a run a signal stopped after `completed` epochs (its checkpoint saved)."""
        assert self.recorder is not None
        self.recorder.finish("interrupted", reason=f"stopped by {stop.signal_name} after epoch {completed}")

    def pruned(self) -> dict[str, Any]:
        """Optuna's pruner stopped this trial: its files and curve stay as they are."""
        assert self.recorder is not None
        return self.recorder.finish(PRUNED, reason=f"pruned by Optuna after epoch {self.recorder.epochs}")

    def finish(self) -> dict[str, Any]:
        """Test (the weights early stopping kept, when it is on), predict, draw, and write metrics.json
        as completed; returns its content and the learned parameters, when there are few."""
        assert self.recorder is not None
        recorder, model, head, data = self.recorder, self.parts.model, self.parts.head, self.parts.data
        epochs = self.cfg.trainer.epochs
        extra: dict[str, Any] = {}
        if self.stopping is not None and self.best is not None:
            extra = early_stopping_outcome(self.cfg, self.stopping, recorder.epochs < epochs)
            if extra["test_weights"] == "best":  # report, test and draw the weights early stopping kept
                model.load_state_dict(self.best.model)
                recorder.final.update(self.best.metrics)  # metrics.json: the best epoch's train/, val/
            log.info(
                f"test metrics of the {extra['test_weights']} epoch's weights (best: epoch "
                f"{self.stopping.best_epoch}, checkpoints/best.pt; last: checkpoints/last.pt)"
            )
        tested = test_predictions(model, head, data)  # made once, read by every report below
        recorder.record(recorder.epochs, test_metrics(model, head, tested))
        counts = confusion_counts(tested, data.num_classes)
        if counts is not None:
            per_class = extra[TEST_ACCURACY_PER_CLASS] = accuracy_per_class(counts, data.class_names)
            recorder.record_sinks_only(recorder.epochs, per_class_scalars(per_class))
        if tested is not None and tested.split.labels is None:
            extra["predictions"] = keyed_predictions(tested.split.inputs, tested.probabilities)
        coefficients, no_statistics = coefficients_report(self.cfg, model, head, data)
        if no_statistics is not None:
            log.info(f"{COEFFICIENTS_FILE} has weights but no standard errors: {no_statistics}")
        for name, table in ((PREDICTIONS_FILE, predictions_table(tested, data.class_names)),
                            (COEFFICIENTS_FILE, coefficients)):  # fmt: skip
            if table is not None:
                write_atomically(self.context.run_dir / name, table)
        pictures = run_pictures(model, head, data, recorder.history, tested, counts, self.start.run_name)
        for picture_name, image in pictures.items():
            recorder.picture(picture_name, image, epochs)
        return recorder.finish("completed", **extra) | {"parameters": parameters(model)}


STOPPING_WORKER_S = 30.0


def prepare_run(
    cfg: DictConfig,
    context: RunContext,
    held: ExitStack,
    shared_data: Callable[[], ClassificationData] | None = None,
) -> RunPolicy:
    """What comes before a run's epochs, for a run alone and for each member of a stack: check, build,
    claim the run directory (until `held` closes), then resume or refuse. Writes nothing.
    `shared_data`: the data, when runs share it (called once the config is checked)."""
    validate(cfg)
    if cfg.logger.mlflow:
        require_mlflow()
        preload(cfg.logger)
    if cfg.trainer.deterministic:  # torch imports its compiler's settings for this call: only when asked
        torch.use_deterministic_algorithms(True)
    data = shared_data() if shared_data is not None else None
    parts = build_components(cfg, data, cores_share=context.cores_share)
    check_objective(cfg, parts.data)
    optimizer = build_optimizer(cfg, parts.model)
    scheduler = build_scheduler(cfg, optimizer)
    stopping = build_early_stopping(cfg, parts.data)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    # One process per run directory; a resumed sweep's job gives a stopping worker of the killed sweep
    # the time to checkpoint its epoch and end.
    wait_s = STOPPING_WORKER_S if context.in_sweep and cfg.resume else 0.0
    held.enter_context(exclusive(context.run_dir, wait_s))
    start = resume_or_refuse(cfg, context, parts, optimizer, shuffle, scheduler, stopping)
    reporter = epoch_reporter(context.env_set.get(TRIAL_ENV) or os.environ.get(TRIAL_ENV))
    return RunPolicy(cfg, context, parts, optimizer, shuffle, start, scheduler, stopping, best=start.best,
                     reporter=reporter)  # fmt: skip


def check_objective(cfg: DictConfig, data: ClassificationData) -> None:
    """The objective must be a metric this run measures."""
    metric = cfg.objective.metric
    if metric.startswith("val/") and data.val is None:
        raise ConfigError(
            f"objective.metric={metric} needs a validation split, which this dataset "
            "does not have; use objective.metric=train/loss"
        )
    measured = BINARY_SCORES if data.num_classes == 2 else MULTICLASS_SCORES
    if metric in SCORED and metric.split("/", 1)[1] not in measured:
        instead = ", ".join(f"val/{score}" for score in measured)
        raise ConfigError(
            f"objective.metric={metric} is not measured on {data.num_classes} classes; use one of {instead}"
        )


def resume_or_refuse(
    cfg: DictConfig,
    context: RunContext,
    parts: Components,
    optimizer: Any,
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
    state.check_identity(identity(cfg, parts.data), resume_from)
    if state.epoch > cfg.trainer.epochs:
        raise CheckpointError(
            f"{resume_from} is at epoch {state.epoch}, past trainer.epochs={cfg.trainer.epochs}; resume with "
            f"trainer.epochs above {state.epoch} to train on, or evaluate it with python -m src.evaluate "
            f"ckpt_path={resume_from}"
        )
    try:
        changes = state.restore(parts.model, optimizer, shuffle, scheduler, stopping)
    except (RuntimeError, KeyError, ValueError, TypeError) as error:  # torch's load_state_dict: damaged
        raise misfit(
            resume_from, error, "resume from a run's own checkpoints/last.pt, or start a new run directory"
        ) from None
    for change in changes + trainer_changes(resume_from, cfg):
        log.info(f"{change} (the command line wins)")
    log.info(f"resuming from {resume_from} after epoch {state.epoch}")
    # Its own checkpoint continues the same TensorBoard run; another's starts a run of this name.
    own = resume_from == context.checkpoint_path
    name = state.run_name if own else run_name(context.overrides, context.swept)
    return Start(name, state.epoch, state.metrics, state.history, state.best)


def trainer_changes(checkpoint: Path, cfg: DictConfig) -> list[str]:
    """`trainer.<key>: old -> new` for each training setting that differs from the run's own config
    (`.hydra/config.yaml` beside its checkpoints), said like the optimizer's changes."""
    saved_file = checkpoint.parent.parent / ".hydra" / "config.yaml"
    try:
        saved = OmegaConf.select(OmegaConf.load(saved_file), "trainer")
    except Exception:  # no record, or one that cannot be read: nothing to compare with
        return []
    if not isinstance(saved, DictConfig):
        return []
    changes = []
    for key, value in cfg.trainer.items():
        before = saved.get(key, value)
        if before != value:
            changes.append(f"trainer.{key}: {before} -> {value}")
    return changes


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


def clear_job(run_dir: Path) -> None:
    """A sweep job about to run again from the start: its earlier curves go, so TensorBoard shows one."""
    for events in run_dir.rglob("events.out.tfevents.*"):
        events.unlink()


def early_stopping_outcome(cfg: DictConfig, stopping: EarlyStopping, stopped_early: bool) -> dict[str, Any]:
    """What metrics.json says about early stopping: the best epoch (from 0), whether the run stopped
    before trainer.epochs, and which weights the test metrics are of."""
    tested = "last" if cfg.trainer.test_weights == "last" else "best"
    return {"best_epoch": stopping.best_epoch, "stopped_early": stopped_early, "test_weights": tested}


def interruption(stop: StopSignals, completed: int, context: RunContext) -> Interrupted:
    """What stopping says: the signal, where, and the command that continues."""
    message = (
        f"stopped by {stop.signal_name} after epoch {completed}; resume with:\n  {resume_command(context)}"
    )
    return Interrupted(message, stop.signal_number or signal.SIGTERM)


def resume_command(context: RunContext) -> str:
    """The command that continues this run (or this run's sweep) where it stopped: its overrides and
    Hydra's (the launcher, the sweeper's settings), with the folder it writes to."""
    if context.in_sweep:
        sweep_dir = context.run_dir.parent
        words = ["python", "-m", "src.train", "-m", *sweep_overrides(sweep_dir),
                 *hydra_overrides(context.hydra_config), f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    else:
        kept = [o for o in context.overrides if override_key(o) not in ("resume", "ckpt_path")]
        words = ["python", "-m", "src.train", *kept, *hydra_overrides(context.hydra_config),
                 f"hydra.run.dir={context.run_dir}"]  # fmt: skip
    return " ".join(shlex.quote(word) for word in [*words, "resume=true"])


def hydra_overrides(hydra_config: DictConfig | None) -> list[str]:
    """The command line's `hydra` overrides in a run's Hydra settings (.hydra/hydra.yaml), less the
    folder (given again) and what a sweeper adds to each job (an Optuna trial's environment)."""
    if hydra_config is None:
        return []
    given = OmegaConf.select(hydra_config, "hydra.overrides.hydra", default=None) or []
    dropped = ("hydra.run.dir", "hydra.sweep.dir", "hydra.mode", f"hydra.job.env_set.{TRIAL_ENV}")
    return [str(o) for o in given if override_key(str(o)) not in dropped]


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


def record_failure(cfg: DictConfig, context: RunContext, reason: str) -> None:
    """metrics.json (and .hydra/) for a run that failed before it could record anything itself."""
    path = context.run_dir / "metrics.json"
    if context.run_dir.is_dir() and not path.exists():
        try:
            write_run_record(cfg, context)
            write_json_atomically(path, {"status": "failed", "reason": reason, "epochs": 0})
        except OutputError as error:  # the disk that failed the run may fail this too: say so, once
            if str(error) != reason:  # not the line that says why the run failed, again
                log.warning(f"(the failure could not be recorded: {error})")


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


def announce_job(cfg: DictConfig, context: RunContext, outcome: dict[str, Any]) -> None:
    """A sweep job's one line: its number, what varies, its objective and status (the sweep prints
    the table)."""
    if context.in_sweep:
        varying = varying_keys(context.run_dir.parent)
        number = HydraConfig.get().job.num
        log.info(job_line(number, context.overrides, varying, outcome, cfg.objective.metric))
