"""The training loop. It knows tensors, a model, a head and an optimizer; nothing about datasets or files.

Every run trains as a stack (a run alone is a stack of one): `train_stacked_epochs` yields, after each
epoch, one `EpochResult` per member, so the caller's `for` loop decides what happens between epochs
(record, checkpoint, stop: src/run.py's RunPolicy) and reads top to bottom. `train_epochs` is the same
epochs for one model, for code that holds one.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from src.data import ClassificationData, Split
from src.errors import TrainingDiverged
from src.losses import Head
from src.metrics import ACCURACY, LOSS, TRAIN_LOSS, VAL, tagged
from src.optimizers import optimizer_kind
from src.scores import scores
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
    optimizer: Any,
    data: ClassificationData,
    epochs: int,
    batch_size: int | None,
    shuffle: torch.Generator,
    start_epoch: int = 0,
) -> Iterator[EpochResult]:
    """The epochs of one model alone, a stack of one (`train_stacked_epochs`): from `start_epoch` up to
    `epochs`, yielding train/loss (and val/* when there is a validation split) after each epoch.

    Raises TrainingDiverged when the loss stops being finite, or when it ends EXPLODED times above
    the loss the run started from (a loss of 1e29 is a diverged run, even if it is a number).
    """
    stack = Stack([model], [data], [shuffle], [optimizer], class_weights=[head.class_weights])
    for (result,) in train_stacked_epochs(stack, head, epochs, batch_size, start_epoch):
        if isinstance(result, TrainingDiverged):
            raise result
        assert result is not None
        yield result


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
# Every run trains as a stack: a run alone is a stack of one. The jobs of a sweep that differ only in
# optimizer settings, class weights and seed can share every step: their parameters are stacked
# (src/stacked_step.py) and trained together, each member with its own hyperparameters and class
# weights. Each member keeps its own data split, initial weights and batch order, exactly as it would
# have alone, so its numbers equal its solo run's up to float re-association. Members of one seed
# share their split and batch order (a cohort): each batch is gathered once per cohort, and cohorts of
# equal size step together, as one batched matrix product per layer. An optimizer the project does not
# step itself (LBFGS, or one a user names by `_target_`) steps its own model through torch.optim, in a
# stack of one.


@dataclass
class Stack:
    """The members trained together, each with its own optimizer (hyperparameters, and the state of a
    resumed run). After every epoch, each member's model, optimizer state and shuffling generator hold
    what its solo run's would, so the caller can checkpoint or test it as a solo run."""

    models: list[nn.Module]
    datas: list[ClassificationData]
    shuffles: list[torch.Generator]
    optimizers: list[Any]  # each epoch trains with their learning rates as they are
    left: set[int] = field(default_factory=set)  # members the caller took out (early stopping, pruning)
    class_weights: list[Tensor | None] | None = None  # each member's loss's (its head's); None: unweighted


class TorchStep:
    """One model stepped by its own torch.optim optimizer, in the stack's shapes: the parameters are the
    model's, the logits (1, N, outputs)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.params: dict[str, Tensor] = dict(model.named_parameters())

    def forward(self, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        return self.model(inputs).unsqueeze(0)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        # LBFGS re-evaluates the loss through the closure; every torch optimizer accepts one.
        return self.optimizer.step(closure)  # type: ignore[arg-type, return-value]  # torch says float

    def set_lrs(self, lrs: list[float]) -> None:
        pass  # its optimizer's own rate is the one it steps with


class _Block:
    """Cohorts of equal size, stepped as one: members in cohort order, `per_cohort` in each."""

    def __init__(self, stack: Stack, cohorts: list[list[int]], head: Head) -> None:
        self.members = [member for cohort in cohorts for member in cohort]
        self.per_cohort = len(cohorts[0])
        self.datas = [stack.datas[cohort[0]] for cohort in cohorts]
        self.trains = [Split(d.train.inputs, head.prepare_targets(d.train.labels)) for d in self.datas]  # type: ignore[arg-type]
        self.shuffles = [[stack.shuffles[member] for member in cohort] for cohort in cohorts]
        self.models = [stack.models[member] for member in self.members]
        self.optimizers = [stack.optimizers[member] for member in self.members]
        self.stepper: StackedOptimizer | TorchStep
        self.forward: StackedForward
        if optimizer_kind(self.optimizers[0]) is None:
            assert len(self.members) == 1, "an optimizer the project does not step trains alone"
            self.stepper = TorchStep(self.models[0], self.optimizers[0])
            self.params, self.forward = self.stepper.params, self.stepper.forward
        else:
            self.params = stacked_parameters(self.models)
            self.stepper = StackedOptimizer(self.params, self.optimizers)
            self.forward = stacked_forward(self.models[0])
        self.active = [True] * len(self.members)  # a member that diverged stays in the tensors, unused
        self.class_weights = member_class_weights(stack, self.members, head, self.datas[0].train.inputs)

    def _joined(self, splits: list[Split], index: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Inputs for the forward ((N, features) for one cohort, (cohorts, N, features) for more) and
        each member's targets (shared, or (members, N, ...)); of the examples `index` picks in each
        cohort's split, or all of them."""
        if index is None and len(splits) == 1:
            return splits[0].inputs, splits[0].labels  # type: ignore[return-value]
        if index is None:
            index = [torch.arange(len(split), device=split.inputs.device) for split in splits]
        targets = [split.labels[picked] for split, picked in zip(splits, index, strict=True)]  # type: ignore[index]
        if len(splits) == 1:
            return splits[0].inputs[index[0]], targets[0]
        first = splits[0].inputs
        inputs = torch.empty(
            (len(splits), len(index[0]), *first.shape[1:]), dtype=first.dtype, device=first.device
        )
        for cohort, (split, picked) in enumerate(zip(splits, index, strict=True)):
            torch.index_select(split.inputs, 0, picked, out=inputs[cohort])  # gathered in place, no copy
        joined = torch.stack(targets)
        per_member = joined.unsqueeze(1).expand(len(splits), self.per_cohort, *joined.shape[1:])
        return inputs, per_member.flatten(0, 1)

    def epoch(self, head: Head, batch_size: int | None) -> Tensor:
        """One epoch of every member, on batches drawn from each cohort's generator (full batch: the
        tutorial's step, the loss computed before the update); their losses (members,), each as the
        head's reduction defines it over the whole split."""
        self.stepper.set_lrs([optimizer.param_groups[0]["lr"] for optimizer in self.optimizers])
        for model in self.models:
            model.train()
        size = len(self.trains[0])
        if batch_size is None or batch_size >= size:
            batches = iter([self._joined(self.trains)])
        else:  # one draw per cohort: its members' generators are in the same state, and stay so
            orders = []
            for shuffles in self.shuffles:
                orders.append(torch.randperm(size, generator=shuffles[0]).to(self.trains[0].inputs.device))
                for shuffle in shuffles[1:]:
                    shuffle.set_state(shuffles[0].get_state())
            # Gathered batch by batch, just before use, while it is still in cache (measured faster
            # than shuffling the whole split at once).
            batches = (
                self._joined(self.trains, [order[start : start + batch_size] for order in orders])
                for start in range(0, size, batch_size)
            )
        losses, sizes = [], []
        for batch_inputs, batch_targets in batches:

            def closure(inputs: Tensor = batch_inputs, targets: Tensor = batch_targets) -> Tensor:
                self.stepper.zero_grad()
                logits = self.forward(self.params, inputs)
                member_losses = head.member_losses(logits, targets, self.class_weights)
                member_losses.sum().backward()  # each member's gradient is its own loss's
                return member_losses.detach()

            losses.append(self.stepper.step(closure))
            sizes.append(batch_inputs.shape[-2])
        stacked = torch.stack(losses)  # (batches, members)
        if len(losses) == 1:
            return stacked[0]
        if head.reduction == "mean":  # weigh each batch's mean by its size: the last one may be short
            return (stacked * torch.tensor(sizes, device=stacked.device).unsqueeze(1)).sum(0) / size
        return stacked.sum(0)  # one host sync per epoch, not per step

    @torch.no_grad()
    def evaluate(self, head: Head, splits: list[Split], with_scores: bool = False) -> list[dict[str, float]]:
        """`evaluate` of every member on its cohort's split, in one batch; `with_scores`: and the scores
        of its predicted probabilities (src/scores.py), as the test split gets at the end."""
        for model in self.models:
            model.eval()
        inputs, labels = self._joined(splits)
        logits = self.forward(self.params, inputs)
        losses = head.member_losses(logits, head.prepare_targets(labels), self.class_weights)
        members, count, outputs = logits.shape
        flat = logits.reshape(members * count, outputs)
        correct = head.predict(flat).view(members, count) == labels
        accuracies = correct.float().mean(1)
        measured = [{LOSS: loss, ACCURACY: accuracy}
                    for loss, accuracy in zip(losses.tolist(), accuracies.tolist(), strict=True)]  # fmt: skip
        if with_scores:
            probabilities = head.probabilities(flat).view(members, count, -1)
            each = labels.expand(members, count)  # shared by the members, or their own
            for row, metrics in enumerate(measured):
                metrics |= scores(probabilities[row], each[row])
        return measured

    def hand_back(self) -> None:
        """Each active member's weights and optimizer state into its own model and optimizer."""
        rows = [row for row, active in enumerate(self.active) if active]
        if isinstance(self.stepper, TorchStep):
            return  # it trained the model's own parameters with the model's own optimizer
        write_back(self.params, self.models, rows)
        for row in rows:
            self.stepper.export(row, self.optimizers[row], self.models[row])


def member_class_weights(stack: Stack, members: list[int], head: Head, like: Tensor) -> Tensor | None:
    """The class weights of `members` (members, classes), on the device and in the dtype of `like`;
    None when none of them weighs its loss (a member that does not: all ones)."""
    given = [None if stack.class_weights is None else stack.class_weights[member] for member in members]
    if all(weights is None for weights in given):
        return None
    ones = torch.ones(head.num_classes, dtype=torch.float64)
    return torch.stack([ones if weights is None else weights for weights in given]).to(like)


def train_stacked_epochs(
    stack: Stack, head: Head, epochs: int, batch_size: int | None, start_epoch: int = 0
) -> Iterator[list[EpochResult | TrainingDiverged | None]]:
    """The epochs of every run: after each epoch, one entry per member: its EpochResult, or the
    TrainingDiverged that ends it (it then leaves the stack; the others carry on), or None once gone."""
    count = len(stack.models)
    cohorts: dict[tuple[int, bytes], list[int]] = {}
    for member, (data, shuffle) in enumerate(zip(stack.datas, stack.shuffles, strict=True)):
        cohorts.setdefault((id(data), shuffle.get_state().numpy().tobytes()), []).append(member)
    by_size: dict[int, list[list[int]]] = {}
    for cohort in cohorts.values():
        by_size.setdefault(len(cohort), []).append(cohort)
    blocks = [_Block(stack, same_size, head) for same_size in by_size.values()]
    starting = [0.0] * count
    if start_epoch < epochs:
        for block in blocks:
            measured = block.evaluate(head, [d.train for d in block.datas])
            for member, metrics in zip(block.members, measured, strict=True):
                starting[member] = metrics[LOSS]
    for epoch in range(start_epoch, epochs):
        results: list[EpochResult | TrainingDiverged | None] = [None] * count
        for block in blocks:
            for row, member in enumerate(block.members):
                block.active[row] = block.active[row] and member not in stack.left
            if not any(block.active):
                continue
            losses = block.epoch(head, batch_size).tolist()
            vals = [data.val for data in block.datas]
            validation = block.evaluate(head, vals, with_scores=True) if vals[0] is not None else None  # type: ignore[arg-type]
            for row, member in enumerate(block.members):
                if not block.active[row]:
                    continue
                diverged = divergence(losses[row], starting[member], epoch, epochs)
                if diverged is not None:  # out of the stack: its row trains on, unread and unsaved
                    results[member] = diverged
                    block.active[row] = False
                    continue
                metrics = {TRAIN_LOSS: losses[row]}
                if validation is not None:
                    metrics |= tagged(VAL, validation[row])
                results[member] = EpochResult(epoch, metrics)
            block.hand_back()
        yield results
        if all(not active or member in stack.left for block in blocks
               for active, member in zip(block.active, block.members, strict=True)):  # fmt: skip
            return
