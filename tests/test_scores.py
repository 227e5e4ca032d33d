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


def test_each_epoch_scores_the_validation_split_as_the_test_split_is_scored(tmp_path, fake_pair):
    import json

    import torch

    from src.build import build_components
    from src.scores import scores as scores_of
    from src.trainer import predict
    from tests.helpers import compose_with_choices, read_scalars, train_here

    run = tmp_path / "run"
    train_here(run, *fake_pair)
    metrics = json.loads((run / "metrics.json").read_text())
    scalars = read_scalars(run)
    for name in BINARY:
        assert [step for step, _ in scalars[f"val/{name}"]] == [0, 1, 2]  # every epoch
        assert metrics[f"val/{name}"] == pytest.approx(scalars[f"val/{name}"][-1][1], rel=1e-6)
    # The last epoch's values are those of the trained model's probabilities on the validation split.
    cfg, _ = compose_with_choices(*fake_pair)
    parts = build_components(cfg)
    parts.model.load_state_dict(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"])
    probabilities, _ = predict(parts.model, parts.head, parts.data.val.inputs)
    expected = scores_of(probabilities, parts.data.val.labels)
    assert {name: metrics[f"val/{name}"] for name in BINARY} == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_a_score_can_be_the_objective_where_it_is_measured():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from src.config import ObjectiveConfig
    from src.errors import ConfigError
    from src.run import check_objective

    ObjectiveConfig("val/roc_auc", "maximize").check()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="objective.metric must be one of"):
        ObjectiveConfig("val/auc", "maximize").check()  # type: ignore[arg-type]
    cfg = OmegaConf.create({"objective": {"metric": "val/roc_auc"}})
    check_objective(cfg, SimpleNamespace(num_classes=2, val=object()))  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"not measured on 10 classes; use one of val/f1_macro, val/roc_auc_ovr"
    ):
        check_objective(cfg, SimpleNamespace(num_classes=10, val=object()))  # type: ignore[arg-type]
