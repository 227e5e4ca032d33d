"""A stack of runs: the jobs of a sweep that can share every step, trained as one.

`hydra/launcher=vectorized` (hydra_plugins/logreg_lab/vectorized_launcher.py) groups a sweep's jobs by
everything but their optimizer settings (lr, momentum, weight_decay, betas, nesterov) and seed, and
hands each group here. Each member is checked, built, restored and recorded by the same functions that
`src.train.train` uses for one run, so its directory holds what a solo run's holds (metrics.json,
TensorBoard run, checkpoint, pictures); only the epochs are shared (trainer.train_stacked_epochs).
Between epochs each member does what `run_epochs` does for a run: it logs and steps its own learning-rate
schedule (on its own optimizer, whose lr the stack reads before the next epoch), counts its own
patience, and leaves the stack, tested and recorded, when its patience runs out.
"""

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.build import (
    Components,
    Scheduler,
    build_data,
    identity,
    step_scheduler,
)
from src.checkpoint import RunState
from src.cli import run_guarded
from src.data import ClassificationData
from src.device import resolve_device
from src.errors import TrainingDiverged
from src.interrupt import StopSignals
from src.losses import Head
from src.metrics import TRAIN_LR
from src.outputs import RunRecorder
from src.stopping import EarlyStopping
from src.sweep import FailedRun
from src.train import (
    RunContext,
    Start,
    early_stopping_outcome,
    finish_recording,
    interruption,
    open_recorder,
    prepare_run,
    record_failure,
    write_run_files,
)
from src.trainer import Stack, train_stacked_epochs

log = logging.getLogger(__name__)
# What members of one stack may set differently: each lives in the member's optimizer parameter group.
MEMBER_KEYS = ("lr", "momentum", "weight_decay", "betas", "nesterov")
Outcome = dict[str, Any] | FailedRun


def stack_key(cfg: DictConfig) -> str | None:
    """What jobs must share to train as one stack, or None for a job that trains alone: LBFGS, whose
    line search re-evaluates one loss (the members' would couple), and one started from a checkpoint.
    A learning-rate schedule or early stopping stacks: each member follows its own (train_members)."""
    if cfg.optimizer._target_ == "torch.optim.LBFGS" or cfg.ckpt_path is not None:
        return None
    shared = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(shared, dict)
    shared.pop("seed")
    for key in MEMBER_KEYS:
        shared["optimizer"].pop(key, None)
    return OmegaConf.to_yaml(OmegaConf.create(shared))


@dataclass
class Member:
    """One job of a stack: what its solo run would hold."""

    cfg: DictConfig
    context: RunContext
    parts: Components
    optimizer: torch.optim.Optimizer  # its solo optimizer: never stepped; its hyperparameters and state
    shuffle: torch.Generator
    torch_rng: torch.Tensor  # the global generator's state its solo run would have
    start: Start
    scheduler: Scheduler | None = None  # on its own optimizer, whose lr the stack reads each epoch
    stopping: EarlyStopping | None = None
    best: RunState | None = None  # early stopping: its best epoch's state
    recorder: RunRecorder | None = None

    @property
    def first_epoch(self) -> int:
        """Where its epochs begin: its checkpoint's, or the end for a run early stopping ended."""
        ended = self.stopping is not None and self.stopping.exhausted
        return self.cfg.trainer.epochs if ended else self.start.epoch


def train_stack(jobs: list[tuple[DictConfig, RunContext]]) -> list[Outcome]:
    """Train the jobs (one stack key) together; one outcome per job, as `train` would return it."""
    outcomes: list[Outcome | None] = [None] * len(jobs)
    datasets: dict[tuple[str, int], ClassificationData] = {}  # members of one seed share one split
    with ExitStack() as held:
        members: dict[int, list[tuple[int, Member]]] = {}  # by the epoch they start from
        for index, (cfg, context) in enumerate(jobs):
            prepared = run_guarded(
                lambda: prepare(cfg, context, datasets, held),  # noqa: B023 (called at once)
                in_sweep=True,
                record_failure=lambda reason: record_failure(cfg, context, reason),  # noqa: B023
            )
            if isinstance(prepared, FailedRun):
                outcomes[index] = prepared
            else:
                members.setdefault(prepared.first_epoch, []).append((index, prepared))
        for group in members.values():
            for index, outcome in zip(
                (i for i, _ in group), train_members([m for _, m in group], held), strict=True
            ):
                outcomes[index] = outcome
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def prepare(
    cfg: DictConfig, context: RunContext, datasets: dict[tuple[str, int], ClassificationData], held: ExitStack
) -> Member:
    """One member, prepared as `train` prepares a run (src.train.prepare_run); members of one dataset
    and seed share its data."""
    key = (OmegaConf.to_yaml(cfg.dataset, resolve=True), int(cfg.seed))

    def shared_data() -> ClassificationData:
        if key not in datasets:
            datasets[key] = build_data(cfg, resolve_device(cfg.device))
        return datasets[key]

    run = prepare_run(cfg, context, held, shared_data)
    write_run_files(cfg, context)
    return Member(cfg, context, run.parts, run.optimizer, run.shuffle, torch.get_rng_state(), run.start,
                  run.scheduler, run.stopping, run.start.best)  # fmt: skip


def train_members(members: list[Member], held: ExitStack) -> list[Outcome]:
    """The shared epochs of members that start from the same epoch; each recorded as its own run, and
    each following its own schedule and patience: one that runs out of patience leaves the stack."""
    first = members[0].cfg.trainer
    head, epochs, every = members[0].parts.head, first.epochs, first.checkpoint_every
    stack = Stack([m.parts.model for m in members], [m.parts.data for m in members],
                  [m.shuffle for m in members], [m.optimizer for m in members])  # fmt: skip
    for member in members:
        member.recorder = held.enter_context(open_recorder(member.cfg, member.context, member.start))
    outcomes: list[Outcome | None] = [None] * len(members)
    stop = held.enter_context(StopSignals())
    for results in train_stacked_epochs(stack, head, epochs, first.batch_size, members[0].first_epoch):
        signalled = stop.requested  # read once: a signal arriving now must not skip the saves
        for position, (member, result) in enumerate(zip(members, results, strict=True)):
            assert member.recorder is not None
            if isinstance(result, TrainingDiverged):
                outcomes[position] = FailedRun(str(result))
                member.recorder.finish("failed", reason=str(result))
            elif result is not None:
                out_of_patience = member_epoch(member, result.epoch, result.metrics)
                due = result.completed % every == 0 or result.completed == epochs
                if signalled or due or out_of_patience:
                    save_member(member, result.completed)
                if out_of_patience:  # finished: it leaves the stack, the others carry on
                    stack.left.add(position)
                    outcomes[position] = finish_member(member, head, epochs)
        if signalled:
            completed = next(
                (r.completed for r in results if r is not None and not isinstance(r, TrainingDiverged)),
                members[0].first_epoch,
            )
            for position, member in enumerate(members):
                if outcomes[position] is None and member.recorder is not None:
                    member.recorder.finish(
                        "interrupted", reason=f"stopped by {stop.signal_name} after epoch {completed}"
                    )
            raise interruption(stop, completed, members[0].context)
    for position, member in enumerate(members):
        if outcomes[position] is None:
            outcomes[position] = finish_member(member, head, epochs)
    return outcomes  # type: ignore[return-value]


def member_epoch(member: Member, epoch: int, metrics: dict[str, float]) -> bool:
    """What run_epochs does after an epoch, for one member: log its lr and step its schedule (the stack
    reads the new lr), record, count its patience; True when its patience has run out."""
    assert member.recorder is not None
    objective = member.cfg.objective.metric
    if member.scheduler is not None:
        metrics = metrics | {TRAIN_LR: member.optimizer.param_groups[0]["lr"]}
        step_scheduler(member.scheduler, metrics[objective])
    member.recorder.record_epoch(epoch, metrics)
    if member.stopping is None:
        return False
    if member.stopping.update(epoch, metrics[objective]):
        member.best = capture(member, epoch + 1, best=None).detached()
    return member.stopping.exhausted


def finish_member(member: Member, head: Head, epochs: int) -> Outcome:
    """Test, draw and report a member as run_epochs does, with the weights early stopping kept."""
    assert member.recorder is not None
    parts, extra = member.parts, {}
    if member.stopping is not None and member.best is not None:
        extra = early_stopping_outcome(member.cfg, member.stopping, member.recorder.epochs < epochs)
        if extra["test_weights"] == "best":
            parts.model.load_state_dict(member.best.model)
            member.recorder.final.update(member.best.metrics)
    return finish_recording(member.recorder, parts.model, head, parts.data, epochs, member.start.run_name,
                            extra)  # fmt: skip


def capture(member: Member, completed: int, best: RunState | None) -> RunState:
    """The member's state as its solo run would capture it (the stack handed back its weights, its
    optimizer's state and its generator after the epoch)."""
    assert member.recorder is not None
    recorder, model, name = member.recorder, member.parts.model, member.start.run_name
    return RunState.capture(completed, model, member.optimizer, member.shuffle, identity(member.cfg), name,
                            recorder.final, recorder.history, member.scheduler, member.stopping, best,
                            torch_rng=member.torch_rng)  # fmt: skip


def save_member(member: Member, completed: int) -> None:
    """The member's checkpoint (and best.pt), as its solo run would write them."""
    assert member.recorder is not None
    member.recorder.flush()  # the events and the checkpoint tell the same story
    capture(member, completed, member.best).save(member.context.checkpoint_path)
    if member.best is not None:
        member.best.save(member.context.best_path)
