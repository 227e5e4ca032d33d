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
# The jobs of a sweep that differ only in optimizer settings and seed can share every step: their models
# are stacked (torch.func.vmap over one template) and trained together, each in its own optimizer
# parameter group. Each member keeps its own data split, initial weights and batch order, exactly as it
# would have alone, so its numbers equal its solo run's up to float re-association.


@dataclass
class Stack:
    """The members trained together; `optimizer` holds one parameter group per member, in order."""

    models: list[nn.Module]
    datas: list[ClassificationData]
    shuffles: list[torch.Generator]
    optimizer: torch.optim.Optimizer


def train_stacked_epochs(
    stack: Stack, head: Head, epochs: int, batch_size: int | None, start_epoch: int = 0
) -> Iterator[list[EpochResult | TrainingDiverged | None]]:
    """`train_epochs` for a stack: after each epoch, one entry per member: its EpochResult, or the
    TrainingDiverged that ends it (it then leaves the stack; the others carry on), or None once gone."""
    count = len(stack.models)
    active = list(range(count))
    for data in stack.datas:
        assert data.train.labels is not None, "training needs labels"
    # Members of one seed share one split: each distinct split is prepared (and held) once.
    distinct = list({id(data): data for data in stack.datas}.values())
    which = [next(i for i, data in enumerate(distinct) if data is member) for member in stack.datas]
    trains = [Split(data.train.inputs, head.prepare_targets(data.train.labels)) for data in distinct]  # type: ignore[arg-type]
    starting = [
        evaluate(model, head, data.train)[LOSS] for model, data in zip(stack.models, stack.datas, strict=True)
    ]
    groups = list(stack.optimizer.param_groups)
    for epoch in range(start_epoch, epochs):
        members = [stack.models[m] for m in active]
        for model in members:
            model.train()
        splits, shuffles = [which[m] for m in active], [stack.shuffles[m] for m in active]
        losses = _stacked_epoch(members, head, stack.optimizer, trains, splits, batch_size, shuffles).tolist()
        validation = _stacked_evaluate(members, head, [stack.datas[m].val for m in active])
        results: list[EpochResult | TrainingDiverged | None] = [None] * count
        for position, member in enumerate(list(active)):
            loss = losses[position]
            diverged = divergence(loss, starting[member], epoch, epochs)
            if diverged is None:
                metrics = {TRAIN_LOSS: loss}
                if validation is not None:
                    metrics |= tagged(VAL, validation[position])
                results[member] = EpochResult(epoch, metrics)
                continue
            results[member] = diverged
            active.remove(member)  # out of the stack: its parameters no longer step
            stack.optimizer.param_groups.remove(groups[member])
        yield results
        if not active:
            return


def _stack_parameters(models: list[nn.Module]) -> dict[str, Tensor]:
    """The members' parameters stacked along a new first dimension (differentiable: gradients reach
    each member's own tensors)."""
    named = [dict(model.named_parameters()) for model in models]
    return {name: torch.stack([parameters[name] for parameters in named]) for name in named[0]}


def _stacked_logits(models: list[nn.Module], inputs: Tensor, shared: bool) -> Tensor:
    """Every member's logits: (members, N, outputs). `shared`: one input batch (N, features) for all."""
    template = models[0]
    forward = torch.func.vmap(lambda params, x: torch.func.functional_call(template, params, (x,)),
                              in_dims=(0, None if shared else 0))  # fmt: skip
    return forward(_stack_parameters(models), inputs)


def _stacked_epoch(
    models: list[nn.Module],
    head: Head,
    optimizer: torch.optim.Optimizer,
    trains: list[Split],
    which: list[int],
    batch_size: int | None,
    shuffles: list[torch.Generator],
) -> Tensor:
    """One epoch of every member on its own batches (as `train_one_epoch` draws them) of its split,
    `trains[which[member]]`; returns each member's epoch loss (members,)."""
    size = len(trains[0])
    shared = len(trains) == 1  # one split for all: batches index it directly
    inputs = trains[0].inputs if shared else torch.stack([train.inputs for train in trains])
    targets = trains[0].labels if shared else torch.stack([train.labels for train in trains])  # type: ignore[misc]
    assert targets is not None
    split_of = torch.tensor(which, device=inputs.device)
    batches: Iterator[tuple[Tensor, Tensor, bool]]  # inputs, targets, and whether every member shares them
    if batch_size is None or batch_size >= size:
        batches = iter([(inputs, targets, True) if shared else (inputs[split_of], targets[split_of], False)])
    else:
        orders = torch.stack([torch.randperm(size, generator=shuffle) for shuffle in shuffles]).to(
            inputs.device
        )
        # One seed: every member draws the same batches, so one copy of each serves them all.
        one_order = shared and bool((orders == orders[0]).all())
        rows = split_of.unsqueeze(1)

        def gather(start: int) -> tuple[Tensor, Tensor, bool]:  # just before use, as train_one_epoch does
            index = orders[:, start : start + batch_size]  # (members, batch): each member's own examples
            if one_order:
                return inputs[index[0]], targets[index[0]], True
            if shared:
                return inputs[index], targets[index], False
            return inputs[rows, index], targets[rows, index], False

        batches = (gather(start) for start in range(0, size, batch_size))
    losses, sizes = [], []
    for batch_inputs, batch_targets, common in batches:
        optimizer.zero_grad()
        logits = _stacked_logits(models, batch_inputs, shared=common)
        member_losses = torch.func.vmap(head.loss, in_dims=(0, None if common else 0))(logits, batch_targets)
        member_losses.sum().backward()  # each member's gradient is its own loss's
        optimizer.step()
        losses.append(member_losses.detach())
        sizes.append(batch_targets.shape[0] if common else batch_targets.shape[1])
    stacked = torch.stack(losses)  # (batches, members)
    if len(losses) == 1:
        return stacked[0]
    if head.reduction == "mean":  # weigh each batch's mean by its size: the last one may be short
        return (stacked * torch.tensor(sizes, device=stacked.device).unsqueeze(1)).sum(0) / size
    return stacked.sum(0)


@torch.no_grad()
def _stacked_evaluate(
    models: list[nn.Module], head: Head, splits: list[Split | None]
) -> list[dict[str, float]] | None:
    """Loss and accuracy of every member on its own labelled split (None when there is none); the
    members of one split are evaluated together, on one copy of it."""
    if splits[0] is None:
        return None
    for model in models:
        model.eval()

    def loss(member_logits: Tensor, labels: Tensor) -> Tensor:
        return head.loss(member_logits, head.prepare_targets(labels))

    def accuracy(member_logits: Tensor, labels: Tensor) -> Tensor:
        return (head.predict(member_logits) == labels).float().mean()

    results: list[dict[str, float]] = [{} for _ in models]
    groups: dict[int, list[int]] = {}
    for position, split in enumerate(splits):
        groups.setdefault(id(split), []).append(position)
    for positions in groups.values():
        split = splits[positions[0]]
        assert split is not None and split.labels is not None
        logits = _stacked_logits([models[p] for p in positions], split.inputs, shared=True)
        losses = torch.func.vmap(loss, in_dims=(0, None))(logits, split.labels).tolist()
        accuracies = torch.func.vmap(accuracy, in_dims=(0, None))(logits, split.labels).tolist()
        for position, value, share in zip(positions, losses, accuracies, strict=True):
            results[position] = {LOSS: value, ACCURACY: share}
    return results
