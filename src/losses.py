"""Losses on logits, each paired with the model head it needs and the probabilities it implies.

`bce` is the tutorial's loss: one logit, sigmoid. `ce` is softmax regression: one logit per class.
Both use PyTorch's fused, numerically stable forms; sigmoid and softmax only report probabilities.
"""

import torch
from torch import Tensor, nn

from src.config import Reduction
from src.errors import ConfigError


class BinaryCrossEntropy(nn.Module):
    """BCE on a single logit per example; the positive class is label 1."""

    def __init__(self, reduction: Reduction | str = "sum") -> None:
        super().__init__()
        self.reduction = Reduction(reduction).value
        self.loss = nn.BCEWithLogitsLoss(reduction=self.reduction)

    @staticmethod
    def num_outputs(num_classes: int) -> int:
        if num_classes != 2:
            raise ConfigError(f"loss=bce needs two classes, the data has {num_classes}; use loss=ce")
        return 1

    @staticmethod
    def prepare_targets(labels: Tensor) -> Tensor:
        return labels.float()  # BCE compares against probabilities

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return self.loss(logits.squeeze(1), labels.to(logits.dtype))  # no copy once prepared

    @staticmethod
    def positive_probability(logits: Tensor) -> Tensor:
        return torch.sigmoid(logits.squeeze(1))

    @staticmethod
    def predict(logits: Tensor) -> Tensor:
        return (logits.squeeze(1) > 0).long()


class CrossEntropy(nn.Module):
    """Cross-entropy over one logit per class (softmax regression for a linear model)."""

    def __init__(self, reduction: Reduction | str = "sum") -> None:
        super().__init__()
        self.reduction = Reduction(reduction).value
        self.loss = nn.CrossEntropyLoss(reduction=self.reduction)

    @staticmethod
    def num_outputs(num_classes: int) -> int:
        return num_classes

    @staticmethod
    def prepare_targets(labels: Tensor) -> Tensor:
        return labels  # class indices, as they are

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return self.loss(logits, labels)

    @staticmethod
    def positive_probability(logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)[:, 1]

    @staticmethod
    def predict(logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)
