"""The training loop. It knows tensors, a model, a loss and an optimizer; nothing about datasets or files."""

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from src.data import ClassificationData, Split
from src.errors import TrainingDiverged

LogScalar = Callable[[str, float, int], None]


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: ClassificationData,
    epochs: int,
    batch_size: int | None,
    shuffle: torch.Generator,
    log: LogScalar,
    start_epoch: int = 0,
    after_epoch: Callable[[int], bool] | None = None,
) -> int:
    """Train from `start_epoch` up to `epochs`, logging train/loss (and val/* if there is a validation
    split) each epoch. `after_epoch(completed)` runs after each epoch; it returns True to stop there.

    Returns the number of epochs completed; raises TrainingDiverged when the loss stops being finite.
    """
    # Labels in the form the loss compares against (floats for BCE), converted once for all epochs.
    train = Split(data.train.inputs, loss_fn.prepare_targets(data.train.labels))
    for epoch in range(start_epoch, epochs):
        model.train()
        train_loss = train_one_epoch(model, loss_fn, optimizer, train, batch_size, shuffle)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged: train/loss became {train_loss} at epoch {epoch}; "
                "lower optimizer.lr or use loss.reduction=mean"
            )
        log("train/loss", train_loss, epoch)
        if data.val is not None:
            for name, value in evaluate(model, loss_fn, data.val).items():
                log(f"val/{name}", value, epoch)
        if after_epoch is not None and after_epoch(epoch + 1):
            return epoch + 1
    return epochs


def train_one_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: Split,
    batch_size: int | None,
    shuffle: torch.Generator,
) -> float:
    """One pass over `split`, whose labels are already the loss's targets; returns the epoch's loss as
    the loss's reduction defines it over the whole split.

    Full batch (batch_size null) is the tutorial's step: the loss is computed before the update.
    """
    size, targets = len(split), split.labels
    if batch_size is None or batch_size >= size:
        batches = iter([(split.inputs, targets)])
    else:
        order = torch.randperm(size, generator=shuffle).to(split.inputs.device)
        # Gathered batch by batch, just before use, while it is still in cache (measured faster
        # than shuffling the whole split at once).
        batches = ((split.inputs[index], targets[index]) for index in order.split(batch_size))

    losses, sizes = [], []
    for inputs, batch_targets in batches:
        losses.append(_step(model, loss_fn, optimizer, inputs, batch_targets))
        sizes.append(len(batch_targets))
    if len(losses) == 1:
        return losses[0].item()
    losses = torch.stack(losses)
    if loss_fn.reduction == "mean":  # weigh each batch's mean by its size: the last one may be short
        return (losses * torch.tensor(sizes, device=losses.device)).sum().item() / size
    return losses.sum().item()  # one host sync per epoch, not per step


def _step(
    model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, labels: Tensor
) -> Tensor:
    # Every optimizer accepts a closure; LBFGS needs one because it re-evaluates the loss.
    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        return loss

    return optimizer.step(closure).detach()


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, split: Split) -> dict[str, float]:
    """Loss and accuracy on a labelled split, in one batch."""
    model.eval()
    logits = model(split.inputs)
    loss = loss_fn(logits, split.labels)
    accuracy = (loss_fn.predict(logits) == split.labels).float().mean()
    return {"loss": loss.item(), "accuracy": accuracy.item()}


@torch.no_grad()
def predict_probabilities(model: nn.Module, loss_fn: nn.Module, inputs: Tensor) -> Tensor:
    """Probability of the positive class for each input."""
    model.eval()
    return loss_fn.positive_probability(model(inputs))
