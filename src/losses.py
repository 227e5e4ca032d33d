"""Output heads: how a model's logits become a loss, probabilities and predicted classes.

A head sizes the model's output layer, puts labels in the form its loss compares against, computes the
loss, and turns logits into per-class probabilities and predictions. `Head` declares that contract;
the trainer, the builder and the pictures rely on nothing else. Both heads use PyTorch's fused,
numerically stable losses on logits; sigmoid and softmax only report probabilities.

`bce` is the tutorial's head: one logit, sigmoid. `ce` is softmax regression: one logit per class.
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

    def num_outputs(self, num_classes: int) -> int:
        """How many logits the model must produce for `num_classes` classes."""
        ...

    def prepare_targets(self, labels: Tensor) -> Tensor:
        """Class indices (N,) in the form `loss` compares against; done once per run."""
        ...

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss of logits (N, outputs) against prepared targets (or plain class indices)."""
        ...

    def probabilities(self, logits: Tensor) -> Tensor:
        """Per-class probabilities (N, classes)."""
        ...

    def predict(self, logits: Tensor) -> Tensor:
        """The predicted class index of each example (N,)."""
        ...


class BinaryCrossEntropy:
    """BCE on a single logit per example; the positive class is label 1."""

    def __init__(self, reduction: Reduction | str) -> None:
        self.reduction = Reduction(reduction).value
        self._loss = nn.BCEWithLogitsLoss(reduction=self.reduction)

    def num_outputs(self, num_classes: int) -> int:
        if num_classes != 2:
            raise ConfigError(f"loss=bce needs two classes, the data has {num_classes}; use loss=ce")
        return 1

    def prepare_targets(self, labels: Tensor) -> Tensor:
        return labels.float()  # BCE compares against probabilities

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self._loss(logits.squeeze(1), targets.to(logits.dtype))  # no copy once prepared

    def probabilities(self, logits: Tensor) -> Tensor:
        positive = torch.sigmoid(logits.squeeze(1))
        return torch.stack([1 - positive, positive], dim=1)

    def predict(self, logits: Tensor) -> Tensor:
        return (logits.squeeze(1) > 0).long()


class CrossEntropy:
    """Cross-entropy over one logit per class (softmax regression for a linear model)."""

    def __init__(self, reduction: Reduction | str) -> None:
        self.reduction = Reduction(reduction).value
        self._loss = nn.CrossEntropyLoss(reduction=self.reduction)

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def prepare_targets(self, labels: Tensor) -> Tensor:
        return labels  # class indices, as they are

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self._loss(logits, targets)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)
