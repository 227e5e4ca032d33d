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

Class weights (`loss.class_weight`: a list, or `balanced`; `loss.pos_weight` for BCE on two classes)
multiply each example's loss by the weight of its class, and `mean` still divides by the number of
examples (as BCEWithLogitsLoss's `pos_weight` does; CrossEntropyLoss's `weight` would divide by the sum
of the weights instead, which changes with every mini-batch). With hard 0/1 targets, `pos_weight` p is
the class weights [1, p]. Members of a stack may each have their own (`member_losses`).
"""

from collections.abc import Sequence
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
    class_weights: Tensor | None  # (classes,) float64 on the host: each class's examples' weight; None: 1

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

    def member_losses(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        """`loss` of each member of a stack (src/stacked_step.py): logits (members, N, outputs) against
        prepared targets shared by all (N, ...) or each member's own (members, N, ...), each member with
        its own `class_weights` (members, classes) or none; (members,)."""
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


WeightSetting = str | float | Sequence[float] | None


def class_weights(
    loss: str,
    num_classes: int,
    pos_weight: float | None,
    class_weight: WeightSetting,
    class_counts: Sequence[int] | None = None,
) -> Tensor | None:
    """Each class's weight (classes,) from `loss.pos_weight` or `loss.class_weight` (a list, or
    `balanced`: n_samples / (n_classes * count_c) over the training rows' `class_counts`, as
    scikit-learn defines it); None when neither is set. A ConfigError in one line for what cannot be."""
    if pos_weight is not None and class_weight is not None:
        raise ConfigError(
            "loss.pos_weight and loss.class_weight both weight the classes; give one (pos_weight=p is "
            "class_weight=[1,p])"
        )
    if pos_weight is not None:
        if loss != "bce" or num_classes != 2:
            raise ConfigError(
                f"loss.pos_weight weighs the positive class of BCE on two classes, not loss={loss} on "
                f"{num_classes}; use loss.class_weight=[...] (one weight per class)"
            )
        if not pos_weight > 0:
            raise ConfigError(f"loss.pos_weight must be positive, got {pos_weight}")
        return torch.tensor([1.0, float(pos_weight)], dtype=torch.float64)
    if class_weight is None:
        return None
    if class_weight == "balanced":
        counts = torch.tensor(list(class_counts or []), dtype=torch.float64)
        if len(counts) != num_classes or not bool((counts > 0).all()):
            raise ConfigError(
                "loss.class_weight=balanced needs every class among the training rows, and "
                f"{(counts == 0).sum().item() if len(counts) == num_classes else 'some'} have none; "
                "give the weights as a list"
            )
        return counts.sum() / (num_classes * counts)
    if isinstance(class_weight, str) or not isinstance(class_weight, Sequence):
        raise ConfigError(
            f"loss.class_weight must be balanced or a list of one weight per class, got {class_weight}"
        )
    if len(class_weight) != num_classes:
        raise ConfigError(
            f"loss.class_weight has {len(class_weight)} weights, but the data has {num_classes} classes; "
            "give one per class, in class order"
        )
    weights = torch.tensor([float(w) for w in class_weight], dtype=torch.float64)
    if not bool((weights > 0).all()):
        raise ConfigError(f"loss.class_weight must be positive weights, got {list(class_weight)}")
    return weights


def example_weights(class_weights: Tensor, targets: Tensor, one_hot: bool = False) -> Tensor:
    """Each example's weight, its class's, per member: class_weights (members, classes) and targets as
    prepared, shared (N, ...) or each member's (members, N, ...): class indices or 0/1 labels, or
    `one_hot` rows (one-vs-rest); (members, N)."""
    members = len(class_weights)
    if one_hot:
        return (targets.to(class_weights.dtype) * class_weights.unsqueeze(1)).sum(-1).expand(members, -1)
    return class_weights.gather(1, targets.long().expand(members, targets.shape[-1]))


class _Settings:
    """What both heads are built from, as the loss group's config gives it: the reduction, the number
    of classes and each class's weight (`class_counts`: the training rows' classes, for `balanced`)."""

    option: str  # the loss group's option: bce or ce

    def __init__(
        self,
        reduction: Reduction | str,
        num_classes: int = 2,
        pos_weight: float | None = None,
        class_weight: WeightSetting = None,
        class_counts: Sequence[int] | None = None,
    ) -> None:
        self.reduction = _checked(reduction, num_classes, self.option)
        self.num_classes = num_classes
        self.class_weights = class_weights(self.option, num_classes, pos_weight, class_weight, class_counts)
        self._loss = self._criterion()

    def _criterion(self) -> nn.Module:
        raise NotImplementedError


class BinaryCrossEntropy(_Settings):
    """BCE on sigmoid outputs: one logit for two classes (label 1 positive), one per class beyond."""

    option = "bce"

    def _criterion(self) -> nn.Module:
        # Summed, then divided by the number of examples for `mean` (see the module's docstring).
        return nn.BCEWithLogitsLoss(reduction=self.reduction if self.num_classes == 2 else "sum")

    @property
    def num_outputs(self) -> int:
        return 1 if self.num_classes == 2 else self.num_classes

    def prepare_targets(self, labels: Tensor) -> Tensor:
        if self.num_classes == 2:
            return labels.float()  # BCE compares against probabilities
        return nn.functional.one_hot(labels, self.num_classes).float()  # one-vs-rest: (N, K)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.num_classes > 2 and targets.ndim == 1:  # plain class indices
            targets = self.prepare_targets(targets)
        if self.class_weights is not None:  # the stack's path, for a stack of one
            return self.member_losses(logits.unsqueeze(0), targets, self.class_weights.unsqueeze(0))[0]
        if self.num_classes == 2:
            return self._loss(logits.squeeze(1), targets.to(logits.dtype))  # no copy once prepared
        total = self._loss(logits, targets.to(logits.dtype))
        return total / len(logits) if self.reduction == "mean" else total

    def member_losses(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        if self.num_classes == 2:
            logits = logits.squeeze(2)
        each = nn.functional.binary_cross_entropy_with_logits(
            logits, targets.to(logits.dtype).expand_as(logits), reduction="none"
        )
        if class_weights is None:
            total = each.flatten(1).sum(1)
        else:  # each example's losses (one, or K for one-vs-rest) times its class's weight
            weights = example_weights(class_weights.to(logits), targets, one_hot=self.num_classes > 2)
            total = (each.view(*weights.shape, -1).sum(2) * weights).sum(1)
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


class CrossEntropy(_Settings):
    """Cross-entropy over one logit per class (softmax regression for a linear model)."""

    option = "ce"

    def _criterion(self) -> nn.Module:
        return nn.CrossEntropyLoss(reduction=self.reduction)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def prepare_targets(self, labels: Tensor) -> Tensor:
        return labels  # class indices, as they are

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.class_weights is not None:  # the stack's path, for a stack of one
            return self.member_losses(logits.unsqueeze(0), targets, self.class_weights.unsqueeze(0))[0]
        return self._loss(logits, targets)

    def member_losses(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        members, count, classes = logits.shape
        each = nn.functional.cross_entropy(
            logits.reshape(members * count, classes), targets.expand(members, count).reshape(-1),
            reduction="none",
        ).view(members, count)  # fmt: skip
        if class_weights is not None:
            each = each * example_weights(class_weights.to(logits), targets)
        return each.mean(1) if self.reduction == "mean" else each.sum(1)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)
