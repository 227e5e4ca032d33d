"""Output heads: how a model's logits become a loss, probabilities and predicted classes.

A head knows how many classes the data has; it sizes the model's output layer, puts labels (class
indices) in the form its loss compares against, computes the loss, and turns logits into per-class
probabilities and predictions. `Head` declares that contract; the trainer, the builder and the pictures
rely on nothing else. Both heads use PyTorch's fused, numerically stable losses on logits; sigmoid and
softmax only report probabilities.

`ce` is softmax regression: one logit per class. `bce` on two classes is the tutorial's head: one
logit, sigmoid, the second class positive. `bce` on K > 2 classes is one-vs-rest: K logits, each a
sigmoid "is it this class?" trained against one-hot targets, predicting the class whose logit is largest.

Reductions are over examples for every head: `mean` divides the summed loss by the number of examples.
For one-vs-rest that is the sum of the K binary losses per example, averaged over examples, not
PyTorch's mean over all N*K terms, which would divide the gradient (and so the learning rate) by K.
"""

from enum import Enum
from typing import Protocol

import torch
from torch import Tensor, nn

from src.errors import ConfigError


class Reduction(str, Enum):
    """How a loss combines its examples: `sum` (the tutorial) or `mean`."""

    sum = "sum"
    mean = "mean"


class Head(Protocol):
    """What the rest of the project may ask of a loss head."""

    reduction: str
    num_classes: int

    @property
    def num_outputs(self) -> int:
        """How many logits the model must produce."""
        ...

    def prepare_targets(self, labels: Tensor) -> Tensor:
        """Class indices (N,) in the form `loss` compares against; done once per run."""
        ...

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss of logits (N, outputs) against prepared targets (or plain class indices)."""
        ...

    def member_losses(self, logits: Tensor, targets: Tensor) -> Tensor:
        """`loss` of each member of a stack (src/stacked_step.py): logits (members, N, outputs) against
        prepared targets shared by all (N, ...) or each member's own (members, N, ...); (members,)."""
        ...

    def probabilities(self, logits: Tensor) -> Tensor:
        """Per-class probabilities (N, classes)."""
        ...

    def predict(self, logits: Tensor) -> Tensor:
        """The predicted class index of each example (N,)."""
        ...


def _checked(reduction: Reduction | str, num_classes: int, loss: str) -> str:
    """The reduction's name; a ConfigError in one line for what cannot train."""
    if num_classes < 2:
        raise ConfigError(f"loss={loss} needs at least two classes, the data has {num_classes}")
    try:
        return Reduction(reduction).value
    except ValueError:
        raise ConfigError(
            f"loss.reduction must be sum or mean for loss={loss} (one number to train on), got {reduction}"
        ) from None


class BinaryCrossEntropy:
    """BCE on sigmoid outputs: one logit for two classes (label 1 positive), one per class beyond."""

    def __init__(self, reduction: Reduction | str, num_classes: int = 2) -> None:
        self.reduction = _checked(reduction, num_classes, "bce")
        self.num_classes = num_classes
        # Summed, then divided by the number of examples for `mean` (see the module's docstring).
        self._loss = nn.BCEWithLogitsLoss(reduction=self.reduction if num_classes == 2 else "sum")

    @property
    def num_outputs(self) -> int:
        return 1 if self.num_classes == 2 else self.num_classes

    def prepare_targets(self, labels: Tensor) -> Tensor:
        if self.num_classes == 2:
            return labels.float()  # BCE compares against probabilities
        return nn.functional.one_hot(labels, self.num_classes).float()  # one-vs-rest: (N, K)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.num_classes == 2:
            return self._loss(logits.squeeze(1), targets.to(logits.dtype))  # no copy once prepared
        if targets.ndim == 1:  # plain class indices
            targets = self.prepare_targets(targets)
        total = self._loss(logits, targets.to(logits.dtype))
        return total / len(logits) if self.reduction == "mean" else total

    def member_losses(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.num_classes == 2:
            logits = logits.squeeze(2)
        each = nn.functional.binary_cross_entropy_with_logits(
            logits, targets.to(logits.dtype).expand_as(logits), reduction="none"
        )
        total = each.flatten(1).sum(1)
        return total / logits.shape[1] if self.reduction == "mean" else total

    def probabilities(self, logits: Tensor) -> Tensor:
        """(N, 2) for a pair; for one-vs-rest each class's own sigmoid, which need not sum to one."""
        if self.num_classes == 2:
            positive = torch.sigmoid(logits.squeeze(1))
            return torch.stack([1 - positive, positive], dim=1)
        return torch.sigmoid(logits)

    def predict(self, logits: Tensor) -> Tensor:
        if self.num_classes == 2:
            return (logits.squeeze(1) > 0).long()
        return logits.argmax(dim=1)


class CrossEntropy:
    """Cross-entropy over one logit per class (softmax regression for a linear model)."""

    def __init__(self, reduction: Reduction | str, num_classes: int = 2) -> None:
        self.reduction = _checked(reduction, num_classes, "ce")
        self.num_classes = num_classes
        self._loss = nn.CrossEntropyLoss(reduction=self.reduction)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def prepare_targets(self, labels: Tensor) -> Tensor:
        return labels  # class indices, as they are

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self._loss(logits, targets)

    def member_losses(self, logits: Tensor, targets: Tensor) -> Tensor:
        members, count, classes = logits.shape
        each = nn.functional.cross_entropy(
            logits.reshape(members * count, classes), targets.expand(members, count).reshape(-1),
            reduction="none",
        ).view(members, count)  # fmt: skip
        return each.mean(1) if self.reduction == "mean" else each.sum(1)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)
