"""The training loop. It knows tensors, a model, a head and an optimizer; nothing about datasets or files.

`train_epochs` yields one `EpochResult` per epoch, so the caller's `for` loop decides what happens
between epochs (log, checkpoint, stop) and reads top to bottom.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from src.data import ClassificationData, Split
from src.errors import TrainingDiverged
from src.losses import Head
from src.metrics import ACCURACY, LOSS, TRAIN_LOSS, VAL, tagged
from src.stacked_step import StackedForward, StackedOptimizer, stacked_forward, stacked_parameters, write_back

EXPLODED = 1e6  # how many times its starting value a final loss may be before the run counts as diverged


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured, by tag; `epoch` counts from 0 and is the TensorBoard step."""

    epoch: int
    metrics: dict[str, float]

    @property
    def completed(self) -> int:
        """Epochs completed once this one is."""
        return self.epoch + 1


def train_epochs(
    model: nn.Module,
    head: Head,
    optimizer: torch.optim.Optimizer,
    data: ClassificationData,
    epochs: int,
    batch_size: int | None,
    shuffle: torch.Generator,
    start_epoch: int = 0,
) -> Iterator[EpochResult]:
    """Train from `start_epoch` up to `epochs`, yielding train/loss (and val/* when there is a validation
    split) after each epoch.

    Raises TrainingDiverged when the loss stops being finite, or when it ends EXPLODED times above
    the loss the run started from (a loss of 1e29 is a diverged run, even if it is a number).
    """
    # Labels in the form the loss compares against (floats for BCE), converted once for all epochs.
    assert data.train.labels is not None, "training needs labels"
    train = Split(data.train.inputs, head.prepare_targets(data.train.labels))
    starting_loss = evaluate(model, head, data.train)[LOSS] if start_epoch < epochs else 0.0
    for epoch in range(start_epoch, epochs):
        model.train()
        train_loss = train_one_epoch(model, head, optimizer, train, batch_size, shuffle)
        diverged = divergence(train_loss, starting_loss, epoch, epochs)
        if diverged is not None:
            raise diverged
        metrics = {TRAIN_LOSS: train_loss}
        if data.val is not None:
            metrics |= tagged(VAL, evaluate(model, head, data.val))
        yield EpochResult(epoch, metrics)


def divergence(loss: float, starting_loss: float, epoch: int, epochs: int) -> TrainingDiverged | None:
    """Why epoch `epoch`'s loss means the run diverged: not finite, or (at the last epoch) EXPLODED times
    above where it started; None while it trains."""
    if not math.isfinite(loss):
        return TrainingDiverged(
            f"training diverged: {TRAIN_LOSS} became {loss} at epoch {epoch}; "
            "lower optimizer.lr or use loss.reduction=mean"
        )
    if epoch == epochs - 1 and loss > EXPLODED * max(starting_loss, 1.0):
        return TrainingDiverged(
            f"training diverged: {TRAIN_LOSS} grew from {starting_loss:.4g} to {loss:.4g} by epoch {epoch}; "
            "lower optimizer.lr"
        )
    return None


def train_one_epoch(
    model: nn.Module,
    head: Head,
    optimizer: torch.optim.Optimizer,
    split: Split,
    batch_size: int | None,
    shuffle: torch.Generator,
) -> float:
    """One pass over `split`, whose labels are already the head's targets; returns the epoch's loss as
    the head's reduction defines it over the whole split.

    Full batch (batch_size null) is the tutorial's step: the loss is computed before the update.
    """
    size, targets = len(split), split.labels
    assert targets is not None, "training needs labels"
    if batch_size is None or batch_size >= size:
        batches = iter([(split.inputs, targets)])
    else:
        order = torch.randperm(size, generator=shuffle).to(split.inputs.device)
        # Gathered batch by batch, just before use, while it is still in cache (measured faster
        # than shuffling the whole split at once).
        batches = ((split.inputs[index], targets[index]) for index in order.split(batch_size))

    losses, sizes = [], []
    for inputs, batch_targets in batches:
        losses.append(_step(model, head, optimizer, inputs, batch_targets))
        sizes.append(len(batch_targets))
    if len(losses) == 1:
        return losses[0].item()
    stacked = torch.stack(losses)
    if head.reduction == "mean":  # weigh each batch's mean by its size: the last one may be short
        return (stacked * torch.tensor(sizes, device=stacked.device)).sum().item() / size
    return stacked.sum().item()  # one host sync per epoch, not per step


def _step(
    model: nn.Module, head: Head, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor
) -> Tensor:
    # Every optimizer accepts a closure; LBFGS needs one because it re-evaluates the loss.
    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = head.loss(model(inputs), targets)
        loss.backward()
        return loss

    loss: Tensor = optimizer.step(closure)  # type: ignore[arg-type, assignment]  # torch says -> float
    return loss.detach()


@torch.no_grad()
def evaluate(model: nn.Module, head: Head, split: Split) -> dict[str, float]:
    """Loss and accuracy on a labelled split, in one batch."""
    assert split.labels is not None, "evaluation needs labels"
    model.eval()
    logits = model(split.inputs)
    loss = head.loss(logits, head.prepare_targets(split.labels))
    accuracy = (head.predict(logits) == split.labels).float().mean()
    return {LOSS: loss.item(), ACCURACY: accuracy.item()}


@torch.no_grad()
def predict(model: nn.Module, head: Head, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class probabilities (N, classes) and predicted classes (N,) for `inputs`."""
    model.eval()
    logits = model(inputs)
    return head.probabilities(logits), head.predict(logits)


# --- a stack of models --------------------------------------------------------------------------------
# The jobs of a sweep that differ only in optimizer settings and seed can share every step: their
# parameters are stacked (src/stacked_step.py) and trained together, each member with its own
# hyperparameters. Each member keeps its own data split, initial weights and batch order, exactly as it
# would have alone, so its numbers equal its solo run's up to float re-association. Members of one seed
# share their split and batch order: they form a cohort, whose batches are gathered once for all.


@dataclass
class Stack:
    """The members trained together, each with its own solo optimizer (hyperparameters, and the state
    of a resumed run). After every epoch, each member's model, optimizer state and shuffling generator
    hold what its solo run's would, so the caller can checkpoint or test it as a solo run."""

    models: list[nn.Module]
    datas: list[ClassificationData]
    shuffles: list[torch.Generator]
    optimizers: list[torch.optim.Optimizer]


class _Cohort:
    """Members that share a split and a batch order (the same seed): one gather per batch for all."""

    def __init__(self, stack: Stack, members: list[int], head: Head) -> None:
        self.members = members
        data = stack.datas[members[0]]
        assert data.train.labels is not None, "training needs labels"
        self.train = Split(data.train.inputs, head.prepare_targets(data.train.labels))
        self.data = data
        self.models = [stack.models[m] for m in members]
        self.optimizers = [stack.optimizers[m] for m in members]
        self.shuffles = [stack.shuffles[m] for m in members]
        self.params = stacked_parameters(self.models)
        self.optimizer = StackedOptimizer(self.params, self.optimizers)

    def epoch(self, forward: StackedForward, head: Head, batch_size: int | None) -> Tensor:
        """One epoch of every member, on the batches `train_one_epoch` would draw; their losses (members,)."""
        size, inputs, targets = len(self.train), self.train.inputs, self.train.labels
        assert targets is not None
        if batch_size is None or batch_size >= size:
            batches = iter([(inputs, targets)])
        else:  # one draw serves all: the members' generators are in the same state, and stay so
            order = torch.randperm(size, generator=self.shuffles[0]).to(inputs.device)
            for shuffle in self.shuffles[1:]:
                shuffle.set_state(self.shuffles[0].get_state())
            batches = ((inputs[index], targets[index]) for index in order.split(batch_size))
        losses, sizes = [], []
        for batch_inputs, batch_targets in batches:
            self.optimizer.zero_grad()
            member_losses = head.member_losses(forward(self.params, batch_inputs), batch_targets)
            member_losses.sum().backward()  # each member's gradient is its own loss's
            self.optimizer.step()
            losses.append(member_losses.detach())
            sizes.append(len(batch_targets))
        stacked = torch.stack(losses)  # (batches, members)
        if len(losses) == 1:
            return stacked[0]
        if head.reduction == "mean":  # weigh each batch's mean by its size: the last one may be short
            return (stacked * torch.tensor(sizes, device=stacked.device).unsqueeze(1)).sum(0) / size
        return stacked.sum(0)

    @torch.no_grad()
    def evaluate(self, forward: StackedForward, head: Head, split: Split) -> list[dict[str, float]]:
        """`evaluate` of every member on `split`, in one batch."""
        assert split.labels is not None, "evaluation needs labels"
        logits = forward(self.params, split.inputs)
        losses = head.member_losses(logits, head.prepare_targets(split.labels))
        members, count, outputs = logits.shape
        correct = head.predict(logits.reshape(members * count, outputs)).view(members, count) == split.labels
        accuracies = correct.float().mean(1)
        return [{LOSS: loss, ACCURACY: accuracy}
                for loss, accuracy in zip(losses.tolist(), accuracies.tolist(), strict=True)]  # fmt: skip

    def hand_back(self) -> None:
        """Each member's weights and optimizer state into its own model and optimizer."""
        write_back(self.params, self.models)
        for row, (optimizer, model) in enumerate(zip(self.optimizers, self.models, strict=True)):
            self.optimizer.export(row, optimizer, model)

    def drop(self, leaving: set[int]) -> None:
        """Members (stack indices) leave: their rows go, the others train on unchanged."""
        rows = [row for row, member in enumerate(self.members) if member not in leaving]
        index = torch.tensor(rows, device=next(iter(self.params.values())).device)
        for name in list(self.params):
            self.params[name] = self.params[name].detach()[index].requires_grad_()
        self.optimizer.keep(rows)
        for attribute in ("members", "models", "optimizers", "shuffles"):
            setattr(self, attribute, [getattr(self, attribute)[row] for row in rows])


def train_stacked_epochs(
    stack: Stack, head: Head, epochs: int, batch_size: int | None, start_epoch: int = 0
) -> Iterator[list[EpochResult | TrainingDiverged | None]]:
    """`train_epochs` for a stack: after each epoch, one entry per member: its EpochResult, or the
    TrainingDiverged that ends it (it then leaves the stack; the others carry on), or None once gone."""
    count = len(stack.models)
    by_batches: dict[tuple[int, bytes], list[int]] = {}
    for member, (data, shuffle) in enumerate(zip(stack.datas, stack.shuffles, strict=True)):
        by_batches.setdefault((id(data), shuffle.get_state().numpy().tobytes()), []).append(member)
    cohorts = [_Cohort(stack, members, head) for members in by_batches.values()]
    forward = stacked_forward(stack.models[0])
    starting = [0.0] * count
    for cohort in cohorts:
        for member, measured in zip(
            cohort.members, cohort.evaluate(forward, head, cohort.data.train), strict=True
        ):
            starting[member] = measured[LOSS]
    for epoch in range(start_epoch, epochs):
        results: list[EpochResult | TrainingDiverged | None] = [None] * count
        for cohort in cohorts:
            for model in cohort.models:
                model.train()
            losses = cohort.epoch(forward, head, batch_size).tolist()
            val = cohort.data.val
            validation = cohort.evaluate(forward, head, val) if val is not None else None
            cohort.hand_back()
            leaving = set()
            for row, member in enumerate(cohort.members):
                diverged = divergence(losses[row], starting[member], epoch, epochs)
                if diverged is not None:
                    results[member] = diverged
                    leaving.add(member)  # out of the stack: its parameters no longer step
                    continue
                metrics = {TRAIN_LOSS: losses[row]}
                if validation is not None:
                    metrics |= tagged(VAL, validation[row])
                results[member] = EpochResult(epoch, metrics)
            if leaving:
                cohort.drop(leaving)
        cohorts = [cohort for cohort in cohorts if cohort.members]
        yield results
        if not cohorts:
            return
