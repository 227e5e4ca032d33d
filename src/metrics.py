"""What a run measures, by name: the TensorBoard tags that are also metrics.json's keys (a contract).

Every producer and reader of a metric uses these names; none spells the string itself.
"""

from enum import Enum

LOSS, ACCURACY = "loss", "accuracy"  # what is measured on a split
ACCURACY_PER_CLASS = "accuracy_per_class"  # the accuracy on each true class
TRAIN, VAL, TEST = "train", "val", "test"  # the splits it is measured on


def tag(split: str, measure: str) -> str:
    """The tag of `measure` on `split`: `val/loss`, `test/accuracy`, ..."""
    return f"{split}/{measure}"


TRAIN_LOSS = tag(TRAIN, LOSS)
VAL_LOSS, VAL_ACCURACY = tag(VAL, LOSS), tag(VAL, ACCURACY)
TEST_LOSS, TEST_ACCURACY = tag(TEST, LOSS), tag(TEST, ACCURACY)
SCALARS = (TRAIN_LOSS, VAL_LOSS, VAL_ACCURACY, TEST_LOSS, TEST_ACCURACY)
# The scores of predicted probabilities (src/scores.py), on the validation split each epoch and the test
# split at the end: `val/roc_auc`, `test/log_loss`, ... (two classes: BINARY_SCORES; more: MULTICLASS_SCORES).
BINARY_SCORES = ("roc_auc", "average_precision", "precision", "recall", "f1", "log_loss", "brier", "ece")
MULTICLASS_SCORES = ("f1_macro", "roc_auc_ovr", "log_loss")
SCORED = tuple(
    tag(split, score) for split in (VAL, TEST) for score in dict.fromkeys(BINARY_SCORES + MULTICLASS_SCORES)
)
OBJECTIVES = SCALARS + SCORED  # what objective.metric may name
TRAIN_LR = tag(TRAIN, "lr")  # the learning rate each epoch trained with; logged only under a schedule
# metrics.json holds it as {class name: accuracy}; TensorBoard as one scalar per class (`per_class_tag`).
TEST_ACCURACY_PER_CLASS = tag(TEST, ACCURACY_PER_CLASS)
# src.evaluate's counts of each true class's predictions: {true name: {predicted name: count}}.
TEST_PREDICTIONS_PER_CLASS = tag(TEST, "predictions_per_class")


def per_class_tag(measure_tag: str, class_name: str) -> str:
    """The TensorBoard tag of one class's share of a measure: `test/accuracy_per_class/T-shirt`."""
    return f"{measure_tag}/{class_name}"


def tagged(split: str, measures: dict[str, float]) -> dict[str, float]:
    """`{"loss": 0.3}` measured on `split` as `{"<split>/loss": 0.3}`."""
    return {tag(split, measure): value for measure, value in measures.items()}


class Direction(str, Enum):
    """Whether a smaller or a larger value of the objective metric is better."""

    minimize = "minimize"
    maximize = "maximize"
