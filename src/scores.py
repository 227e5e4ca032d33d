"""What a classifier is judged by beyond loss and accuracy, from its predicted probabilities: ranking
(ROC-AUC, average precision), errors on the positive class (precision, recall, F1 at 0.5), and whether
the probabilities mean what they say (log-loss, Brier score, expected calibration error).

Computed on tensors in float64, with the definitions scikit-learn uses (tests/test_scores.py compares
them), so a run needs no extra dependency.
"""

import torch
from torch import Tensor

from src.metrics import BINARY_SCORES, MULTICLASS_SCORES

CALIBRATION_BINS = 15  # equal-width bins of the positive class's probability, for ECE and the diagram
BINARY, MULTICLASS = BINARY_SCORES, MULTICLASS_SCORES  # their names, kept in src/metrics.py


def scores(probabilities: Tensor, labels: Tensor) -> dict[str, float]:
    """The scores of (N, classes) probabilities against (N,) class indices: BINARY's on two classes
    (class 1 positive), MULTICLASS's on more."""
    p, y = probabilities.double().cpu(), labels.long().cpu()
    if p.shape[1] == 2:
        positive, truth = p[:, 1], (y == 1).double()
        predicted = (positive >= 0.5).double()
        precision, recall, f1 = precision_recall_f1(predicted, truth)
        return {
            "roc_auc": roc_auc(positive, truth),
            "average_precision": average_precision(positive, truth),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "log_loss": log_loss(p, y),
            "brier": float(((positive - truth) ** 2).mean()),
            "ece": expected_calibration_error(positive, truth),
        }
    predicted_class = p.argmax(dim=1)
    classes = range(p.shape[1])
    per_class = [precision_recall_f1((predicted_class == k).double(), (y == k).double())[2] for k in classes]
    aucs = [roc_auc(p[:, k], (y == k).double()) for k in classes]
    return {
        "f1_macro": sum(per_class) / len(per_class),
        "roc_auc_ovr": sum(aucs) / len(aucs),
        "log_loss": log_loss(p, y),
    }


def precision_recall_f1(predicted: Tensor, truth: Tensor) -> tuple[float, float, float]:
    """Of the positive class (0 where undefined, as scikit-learn's zero_division=0)."""
    hits = float((predicted * truth).sum())
    said, actual = float(predicted.sum()), float(truth.sum())
    precision = hits / said if said else 0.0
    recall = hits / actual if actual else 0.0
    f1 = 2 * hits / (said + actual) if said + actual else 0.0
    return precision, recall, f1


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks, ties sharing their average rank."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values)
    _, inverse, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, dim=0).to(values.dtype)  # the last rank of each run of equal values
    ranks[order] = (ends - (counts.to(values.dtype) - 1) / 2)[inverse]
    return ranks


def roc_auc(score: Tensor, truth: Tensor) -> float:
    """The probability that a positive example scores above a negative one (ties count half): the
    Mann-Whitney statistic, equal to the area under the ROC curve. NaN with one class only."""
    positives = float(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = float(average_ranks(score)[truth == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def average_precision(score: Tensor, truth: Tensor) -> float:
    """Sum over the distinct thresholds, highest first, of the precision there times the recall gained."""
    positives = float(truth.sum())
    if positives == 0:
        return float("nan")
    order = torch.argsort(score, descending=True, stable=True)
    ordered_score, ordered_truth = score[order], truth[order]
    last_of_threshold = torch.ones(len(score), dtype=torch.bool)
    last_of_threshold[:-1] = ordered_score[1:] != ordered_score[:-1]
    true_positives = torch.cumsum(ordered_truth, dim=0)[last_of_threshold]
    said = (torch.nonzero(last_of_threshold).flatten() + 1).double()
    precision, recall = true_positives / said, true_positives / positives
    previous = torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])
    return float(((recall - previous) * precision).sum())


def log_loss(probabilities: Tensor, labels: Tensor) -> float:
    """Mean negative log-probability of the true class, rows normalized to sum to 1 and clipped to
    float64's epsilon (as scikit-learn's log_loss)."""
    eps = torch.finfo(torch.float64).eps
    p = probabilities / probabilities.sum(dim=1, keepdim=True)
    true = p.gather(1, labels.view(-1, 1)).flatten().clamp(eps, 1 - eps)
    return float(-true.log().mean())


def calibration_bins(positive: Tensor, truth: Tensor) -> list[tuple[float, float, int]]:
    """(mean predicted probability, observed frequency, count) of each non-empty bin."""
    index = (positive * CALIBRATION_BINS).long().clamp(max=CALIBRATION_BINS - 1)
    bins = []
    for b in range(CALIBRATION_BINS):
        inside = index == b
        count = int(inside.sum())
        if count:
            bins.append((float(positive[inside].mean()), float(truth[inside].mean()), count))
    return bins


def expected_calibration_error(positive: Tensor, truth: Tensor) -> float:
    """The count-weighted mean gap between predicted probability and observed frequency, over bins."""
    total = len(positive)
    return sum(count / total * abs(predicted - observed) for predicted, observed, count in
               calibration_bins(positive, truth))  # fmt: skip
