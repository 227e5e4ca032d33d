"""The one epoch loop: a stack of runs trained together, a run alone being a stack of one.

`train_runs` is where every run trains, under every launcher: `src.train.train` hands it one run, and
`hydra/launcher=vectorized` (hydra_plugins/logreg_lab/vectorized_launcher.py) the jobs of a sweep that
differ only in optimizer settings (lr, momentum, weight_decay, betas, nesterov), the loss's class
weights (pos_weight, class_weight) and `seed`. The epochs
are shared (src.trainer.train_stacked_epochs); after each, every member's own policy (src.run.RunPolicy)
records it, steps its schedule, counts its patience, reports to its trial and checkpoints. A member
that runs out of patience or is pruned leaves the stack; a signal stops every member with a checkpoint.
"""

import logging
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.build import build_data
from src.cli import run_guarded
from src.console import EpochProgress
from src.data import ClassificationData
from src.device import resolve_device
from src.errors import TrainingDiverged
from src.interrupt import StopSignals
from src.optimizers import OWN_STEPS, optimizer_kind
from src.run import (
    PRUNED,
    Outcome,
    RunContext,
    RunPolicy,
    interruption,
    prepare_run,
    record_failure,
    write_run_files,
)
from src.sweep import FailedRun
from src.trainer import Stack, train_stacked_epochs
from src.trial import TRIAL_ENV

log = logging.getLogger(__name__)
# What members of one stack may set differently, by group: the optimizer's settings, each in the
# member's optimizer parameter group, and the loss's class weights, each in the member's own head.
MEMBER_KEYS = {
    "optimizer": ("lr", "momentum", "weight_decay", "betas", "nesterov"),
    "loss": ("pos_weight", "class_weight"),
}


def train_runs(runs: list[RunPolicy], held: ExitStack) -> list[Outcome]:
    """The shared epochs of runs that start from the same epoch, then each one's finish; one outcome per
    run (metrics.json's content, or the TrainingDiverged that ended it)."""
    first = runs[0]
    head, epochs, batch_size = first.parts.head, first.epochs, first.cfg.trainer.batch_size
    stack = Stack([run.parts.model for run in runs], [run.parts.data for run in runs],
                  [run.shuffle for run in runs], [run.optimizer for run in runs],
                  class_weights=[run.parts.head.class_weights for run in runs])  # fmt: skip
    for run in runs:
        run.open(held)
    outcomes: list[Outcome | None] = [None] * len(runs)
    stop = held.enter_context(StopSignals())
    progress = held.enter_context(  # a bar for a run alone (drawn only on a terminal)
        EpochProgress(epochs, first.start.epoch, len(runs) == 1 and first.cfg.trainer.progress)
    )
    for results in train_stacked_epochs(stack, head, epochs, batch_size, first.first_epoch):
        signalled = stop.requested  # read once: a signal arriving now must not skip the saves
        for position, (run, result) in enumerate(zip(runs, results, strict=True)):
            if isinstance(result, TrainingDiverged):
                outcomes[position] = run.diverged(result)
            elif result is not None:
                ending = run.after_epoch(result, signalled)
                progress.advance(result.metrics)
                if ending is not None:  # it leaves the stack, the others carry on
                    stack.left.add(position)
                    outcomes[position] = run.pruned() if ending == PRUNED else run.finish()
        if signalled and any(outcome is None for outcome in outcomes):
            completed = next((r.completed for r in results if r is not None
                              and not isinstance(r, TrainingDiverged)), first.first_epoch)  # fmt: skip
            for run, outcome in zip(runs, outcomes, strict=True):
                if outcome is None:
                    run.interrupted(stop, completed)
            stop.hand_over()  # under submitit: requeue the job, which resumes from the checkpoint
            raise interruption(stop, completed, first.context)
    return [run.finish() if outcome is None else outcome for run, outcome in zip(runs, outcomes, strict=True)]


# --- the vectorized launcher's stacks ---------------------------------------------------------------


def stack_key(cfg: DictConfig, env_set: dict[str, str] | None = None) -> str | None:
    """What jobs must share to train as one stack, or None for a job that trains alone: one whose
    optimizer the project does not step (LBFGS, whose line search re-evaluates one loss: the members'
    would couple), and one started from a checkpoint. A learning-rate schedule, early stopping and an
    Optuna trial stack: each member follows its own. Members share their environment (`env_set`,
    but for the trial each names); a job whose environment interpolates trains alone."""
    if cfg.optimizer._target_ not in OWN_STEPS or cfg.ckpt_path is not None:
        return None
    if any("${" in value for value in (env_set or {}).values()):
        return None  # an environment of its own (its folder, say), which only Hydra's run_job sets
    shared: Any = OmegaConf.to_container(cfg, resolve=True)
    shared.pop("seed")
    for group, keys in MEMBER_KEYS.items():
        for key in keys:
            shared[group].pop(key, None)
    shared["env_set"] = shared_env(env_set or {})
    return OmegaConf.to_yaml(OmegaConf.create(shared))


def shared_env(env_set: dict[str, str]) -> dict[str, str]:
    """What a stack's members share of `hydra.job.env_set`: all of it but the Optuna trial each names,
    which its own run reads (src.run.prepare_run)."""
    return {key: value for key, value in env_set.items() if key != TRIAL_ENV}


def train_stack(jobs: list[tuple[DictConfig, RunContext]]) -> list[Outcome | FailedRun]:
    """Train the jobs (one stack key) together; one outcome per job, as `train` would return it in a
    sweep (a FailedRun for a job that could not start or diverged)."""
    outcomes: list[Outcome | FailedRun | None] = [None] * len(jobs)
    datasets: dict[tuple[str, int], ClassificationData] = {}  # members of one seed share one split
    with ExitStack() as held:
        runs: dict[int, list[tuple[int, RunPolicy]]] = {}  # by the epoch they start from
        for index, (cfg, context) in enumerate(jobs):

            def prepare(cfg: DictConfig = cfg, context: RunContext = context) -> RunPolicy:
                run = prepare_run(cfg, context, held, shared_data(cfg, datasets))
                write_run_files(cfg, context)
                return run

            def failed(
                reason: str, refused: bool, cfg: DictConfig = cfg, context: RunContext = context
            ) -> None:  # a job's row in the summary, refused or not
                record_failure(cfg, context, reason)

            prepared = run_guarded(prepare, in_sweep=True, record_failure=failed)
            if isinstance(prepared, FailedRun):
                outcomes[index] = prepared
            else:
                runs.setdefault(prepared.first_epoch, []).append((index, prepared))
        for group in runs.values():
            assert all(optimizer_kind(run.optimizer) is not None for _, run in group)
            trained = train_runs([run for _, run in group], held)
            for (index, _), outcome in zip(group, trained, strict=True):
                diverged = isinstance(outcome, TrainingDiverged)
                outcomes[index] = FailedRun(str(outcome)) if diverged else outcome
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def shared_data(
    cfg: DictConfig, datasets: dict[tuple[str, int], ClassificationData]
) -> Callable[[], ClassificationData]:
    """The data of `cfg`, built once for every member of one dataset and seed."""
    key = (OmegaConf.to_yaml(cfg.dataset, resolve=True), int(cfg.seed))

    def data() -> ClassificationData:
        if key not in datasets:
            datasets[key] = build_data(cfg, resolve_device(cfg.device))
        return datasets[key]

    return data
