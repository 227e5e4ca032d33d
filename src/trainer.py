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
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged: {TRAIN_LOSS} became {train_loss} at epoch {epoch}; "
                "lower optimizer.lr or use loss.reduction=mean"
            )
        if epoch == epochs - 1 and train_loss > EXPLODED * max(starting_loss, 1.0):
            raise TrainingDiverged(
                f"training diverged: {TRAIN_LOSS} grew from {starting_loss:.4g} to {train_loss:.4g} by "
                f"epoch {epoch}; lower optimizer.lr"
            )
        metrics = {TRAIN_LOSS: train_loss}
        if data.val is not None:
            metrics |= tagged(VAL, evaluate(model, head, data.val))
        yield EpochResult(epoch, metrics)


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
