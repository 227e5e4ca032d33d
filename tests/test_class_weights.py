"""Class weights (loss.pos_weight, loss.class_weight; src/losses.py): each example's loss times its
class's weight, the same for a run alone and for each member of a stack, and every bad value one line."""

import numpy as np
import pytest
import torch

from src.build import build_components
from src.errors import ConfigError
from src.losses import BinaryCrossEntropy, CrossEntropy
from src.stack import stack_key
from tests.helpers import command, compose_config, read_metrics, train_here
from tests.test_stack import assert_same_numbers, stacked


def batch(classes: int, outputs: int, count: int = 12):
    generator = torch.Generator().manual_seed(classes)
    logits = torch.randn(count, outputs, generator=generator, dtype=torch.float64)
    labels = torch.arange(count) % classes
    return logits, labels


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pos_weight_is_the_hand_computed_weighted_bce_and_torchs_own(reduction):
    logits, labels = batch(2, 1)
    head = BinaryCrossEntropy(reduction, pos_weight=3.0)
    y, p = labels.double(), torch.sigmoid(logits[:, 0])
    by_hand = -(3.0 * y * torch.log(p) + (1 - y) * torch.log(1 - p))
    expected = by_hand.sum() if reduction == "sum" else by_hand.sum() / len(y)
    got = head.loss(logits, head.prepare_targets(labels))
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    torchs = torch.nn.BCEWithLogitsLoss(
        reduction=reduction, pos_weight=torch.tensor(3.0, dtype=torch.float64)
    )
    assert got.item() == pytest.approx(torchs(logits[:, 0], y).item(), rel=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_class_weights_multiply_each_examples_loss_by_its_class_weight(reduction):
    weights = [0.5, 2.0, 4.0]
    logits, labels = batch(3, 3)
    w = torch.tensor(weights, dtype=torch.float64)[labels]
    ce = -torch.log_softmax(logits, dim=1).gather(1, labels[:, None])[:, 0]
    one_hot = torch.nn.functional.one_hot(labels, 3).double()
    p = torch.sigmoid(logits)
    ovr = -(one_hot * torch.log(p) + (1 - one_hot) * torch.log(1 - p)).sum(1)  # K binary losses each
    for head, each in ((CrossEntropy(reduction, 3, class_weight=weights), ce),
                       (BinaryCrossEntropy(reduction, 3, class_weight=weights), ovr)):  # fmt: skip
        total = (w * each).sum()
        expected = total if reduction == "sum" else total / len(labels)  # by examples, not by weights
        assert head.loss(logits, head.prepare_targets(labels)).item() == pytest.approx(
            expected.item(), rel=1e-12
        )


@pytest.mark.parametrize(
    ("head", "classes"), [(BinaryCrossEntropy, 2), (BinaryCrossEntropy, 3), (CrossEntropy, 3)]
)
def test_each_member_of_a_stack_weighs_its_loss_with_its_own_class_weights(head, classes):
    settings = [[1.0] * classes, [float(c + 1) for c in range(classes)], [0.25] * classes]
    heads = [head("mean", classes, class_weight=weights) for weights in settings]
    logits = torch.randn(3, 20, heads[0].num_outputs, generator=torch.Generator().manual_seed(0))
    targets = heads[0].prepare_targets(torch.arange(20) % classes)
    stacked_weights = torch.stack([h.class_weights for h in heads])
    got = heads[0].member_losses(logits, targets, stacked_weights)
    expected = [h.loss(member, targets).item() for h, member in zip(heads, logits, strict=True)]
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_balanced_weights_are_scikit_learns(tmp_path):
    class_weight = pytest.importorskip("sklearn.utils.class_weight")
    rows = ["x,y"] + [f"{i},{'abc'[min(i % 7, 2)]}" for i in range(70)]  # a: 10, b: 10, c: 50
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    for loss in ("bce", "ce"):
        cfg = compose_config("dataset=csv", f"dataset.path={path}", "dataset.target=y", f"loss={loss}",
                             "loss.class_weight=balanced")  # fmt: skip
        parts = build_components(cfg)
        labels = parts.data.train.labels.numpy()
        expected = class_weight.compute_class_weight("balanced", classes=np.arange(3), y=labels)
        assert parts.head.class_weights.tolist() == pytest.approx(expected.tolist(), rel=1e-12)
        assert len(set(parts.head.class_weights.tolist())) == 3  # imbalanced: three weights


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.pos_weight=-1"], "loss.pos_weight must be positive, got -1"),
        (["loss=ce", "loss.pos_weight=3"], "loss.pos_weight weighs the positive class of BCE on two classes, "
                                           "not loss=ce on 2; use loss.class_weight=[...]"),
        (["loss.class_weight=[1,2,3]"], "loss.class_weight has 3 weights, but the data has 2 classes"),
        (["loss.class_weight=[1,-2]"], "loss.class_weight must be positive weights, got [1, -2]"),
        (["loss.class_weight=balance"], "loss.class_weight must be balanced or a list of one weight per"),
        (["loss.pos_weight=2", "loss.class_weight=[1,2]"], "loss.pos_weight and loss.class_weight both"),
    ],
)  # fmt: skip
def test_every_bad_weight_is_one_line_before_training(overrides, message):
    with pytest.raises(ConfigError) as refused:
        build_components(compose_config(*overrides))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_runs_that_differ_in_pos_weight_stack_and_each_equals_its_solo_run(tmp_path, fake_pair):
    common = [*fake_pair, "optimizer.lr=0.01", "trainer.batch_size=32"]
    variants = [["loss.pos_weight=1"], ["loss.pos_weight=3"]]
    outcomes = stacked(tmp_path, common, variants)  # asserts one stack key
    for number, variant in enumerate(variants):
        solo = tmp_path / f"solo{number}"
        alone = train_here(solo, *common, *variant)
        assert_same_numbers(tmp_path / "stack" / str(number), solo)
        for key in ("train/loss", "val/loss", "test/loss", "test/accuracy", "test/roc_auc"):
            assert outcomes[number][key] == pytest.approx(alone[key], rel=1e-5), key
    assert outcomes[1]["train/loss"] != pytest.approx(outcomes[0]["train/loss"], rel=1e-3)  # it weighs
    assert stack_key(compose_config("loss.pos_weight=3")) != stack_key(compose_config("loss=ce"))


@pytest.mark.slow  # a real process: run by CI's make test-slow
def test_a_vectorized_sweep_over_pos_weight_gives_the_solo_runs_final_metrics(tmp_path, fake_pair):
    sweep_dir = tmp_path / "sweep"
    process = command("-m", "hydra/launcher=vectorized", *fake_pair, "loss.pos_weight=1,3",
                      f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert process.returncode == 0, process.stderr
    for number, weight in enumerate((1, 3)):
        alone = train_here(tmp_path / f"solo{weight}", *fake_pair, f"loss.pos_weight={weight}")
        swept = read_metrics(sweep_dir / str(number))
        for key in ("train/loss", "val/loss", "test/loss", "test/accuracy"):
            assert swept[key] == pytest.approx(alone[key], rel=1e-5), key
