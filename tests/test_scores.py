"""src/scores.py against scikit-learn's own metrics on the same predictions (scikit-learn is a test
dependency only), and the calibration error counted by hand."""

import pytest
import torch

from src.scores import BINARY, CALIBRATION_BINS, MULTICLASS, expected_calibration_error, scores

metrics = pytest.importorskip("sklearn.metrics")


def binary_case(seed, ties):
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(300, generator=generator) < 0.3).long()
    positive = (torch.rand(300, generator=generator) * 0.6 + 0.4 * labels).clamp(0, 1)
    if ties:
        positive = (positive * 10).round() / 10  # many equal scores
    return torch.stack([1 - positive, positive], dim=1), labels


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_binary_scores_equal_scikit_learns(seed, ties):
    probabilities, labels = binary_case(seed, ties)
    got = scores(probabilities, labels)
    assert tuple(got) == BINARY
    y, p = labels.numpy(), probabilities[:, 1].double().numpy()
    predicted = (p >= 0.5).astype(int)
    expected = {
        "roc_auc": metrics.roc_auc_score(y, p),
        "average_precision": metrics.average_precision_score(y, p),
        "precision": metrics.precision_score(y, predicted, zero_division=0),
        "recall": metrics.recall_score(y, predicted, zero_division=0),
        "f1": metrics.f1_score(y, predicted, zero_division=0),
        "log_loss": metrics.log_loss(y, probabilities.double().numpy(), labels=[0, 1]),
        "brier": metrics.brier_score_loss(y, p),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-4), name


def test_multiclass_scores_equal_scikit_learns():
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (400,), generator=generator)
    logits = torch.randn(400, 4, generator=generator) + 1.5 * torch.nn.functional.one_hot(labels, 4)
    probabilities = logits.softmax(dim=1)
    got = scores(probabilities, labels)
    assert tuple(got) == MULTICLASS
    y, p = labels.numpy(), probabilities.double().numpy()
    assert got["f1_macro"] == pytest.approx(metrics.f1_score(y, p.argmax(1), average="macro"), abs=1e-4)
    assert got["roc_auc_ovr"] == pytest.approx(metrics.roc_auc_score(y, p, multi_class="ovr"), abs=1e-4)
    assert got["log_loss"] == pytest.approx(metrics.log_loss(y, p), abs=1e-4)


def test_the_calibration_error_is_the_weighted_gap_per_bin_counted_by_hand():
    positive = torch.tensor([0.05, 0.05, 0.95, 0.95, 0.5, 0.52], dtype=torch.float64)
    truth = torch.tensor([0, 1, 1, 1, 0, 0], dtype=torch.float64)
    # bins of width 1/15: {0.05, 0.05} -> observed 0.5; {0.95, 0.95} -> 1.0; {0.5, 0.52} -> 0.0
    by_hand = (2 * abs(0.05 - 0.5) + 2 * abs(0.95 - 1.0) + 2 * abs(0.51 - 0.0)) / 6
    assert CALIBRATION_BINS == 15
    assert expected_calibration_error(positive, truth) == pytest.approx(by_hand)
