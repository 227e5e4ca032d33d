import pytest
import torch

from src.errors import ConfigError
from src.losses import BinaryCrossEntropy, CrossEntropy, Head
from src.models import MLP, LogisticRegression


def test_both_heads_keep_the_declared_contract():
    for head in (BinaryCrossEntropy("sum"), CrossEntropy("mean")):
        assert all(callable(getattr(head, name)) for name in Head.__dict__ if not name.startswith("_")
                   and callable(Head.__dict__[name]))  # fmt: skip
        assert head.reduction in ("sum", "mean")


def test_bce_pairs_with_one_logit_and_ce_with_one_per_class():
    assert BinaryCrossEntropy("sum").num_outputs == 1
    assert CrossEntropy("sum").num_outputs == 2
    assert BinaryCrossEntropy("sum", num_classes=10).num_outputs == 10  # one-vs-rest
    assert CrossEntropy("sum", num_classes=10).num_outputs == 10


def test_a_head_refuses_one_class_and_a_reduction_that_is_not_one_number():
    with pytest.raises(ConfigError, match="loss=bce needs at least two classes, the data has 1"):
        BinaryCrossEntropy("sum", num_classes=1)
    with pytest.raises(ConfigError, match="loss.reduction must be sum or mean for loss=bce"):
        BinaryCrossEntropy("none", num_classes=10)


def test_one_vs_rest_is_one_binary_loss_per_class_against_one_hot_targets():
    logits, labels = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]]), torch.tensor([2, 1])
    one_hot = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    head = BinaryCrossEntropy("sum", num_classes=3)
    assert torch.equal(head.prepare_targets(labels), one_hot)
    per_class = sum(
        torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits[:, k]), one_hot[:, k], reduction="sum")
        for k in range(3)
    )
    assert head.loss(logits, head.prepare_targets(labels)).item() == pytest.approx(per_class.item(), rel=1e-5)
    # mean: per example (the K binary losses summed), not over the N*K terms.
    mean = BinaryCrossEntropy("mean", num_classes=3).loss(logits, labels)  # plain indices work too
    assert mean.item() == pytest.approx(per_class.item() / 2, rel=1e-5)
    assert torch.allclose(head.probabilities(logits), torch.sigmoid(logits))  # each class its own sigmoid
    assert head.predict(logits).tolist() == [0, 1]  # the largest logit, whether or not above zero


def test_models_map_features_to_logits():
    inputs = torch.randn(5, 784)
    assert LogisticRegression(784, 1)(inputs).shape == (5, 1)
    assert MLP(784, 2, hidden_size=16)(inputs).shape == (5, 2)


def test_bce_on_logits_equals_the_tutorials_bce_on_sigmoid():
    logits, labels = torch.tensor([[-2.0], [0.5], [3.0]]), torch.tensor([0, 0, 1])
    tutorial = torch.nn.BCELoss(reduction="sum")(torch.sigmoid(logits), labels.float().unsqueeze(1))
    assert BinaryCrossEntropy("sum").loss(logits, labels).item() == pytest.approx(tutorial.item(), rel=1e-6)


def test_ce_with_two_logits_is_bce_on_their_difference():
    logits, labels = torch.tensor([[0.3, -1.2], [2.0, 0.1]]), torch.tensor([1, 0])
    difference = (logits[:, 1] - logits[:, 0]).unsqueeze(1)
    bce, ce = BinaryCrossEntropy("mean"), CrossEntropy("mean")
    assert ce.loss(logits, labels).item() == pytest.approx(bce.loss(difference, labels).item(), rel=1e-6)
    assert torch.allclose(ce.probabilities(logits), bce.probabilities(difference))


def test_probabilities_are_per_class_and_sum_to_one():
    for head, logits in (
        (BinaryCrossEntropy("sum"), torch.randn(4, 1)),
        (CrossEntropy("sum", num_classes=3), torch.randn(4, 3)),
    ):
        probabilities = head.probabilities(logits)
        assert probabilities.shape == (4, logits.shape[1] if logits.shape[1] > 1 else 2)
        assert torch.allclose(probabilities.sum(dim=1), torch.ones(4))
        assert torch.equal(probabilities.argmax(dim=1), head.predict(logits))


@pytest.mark.parametrize(
    "head,logits",
    [
        (BinaryCrossEntropy("sum"), torch.tensor([[200.0], [-200.0]])),
        (CrossEntropy("sum"), torch.tensor([[-100.0, 100.0], [100.0, -100.0]])),
    ],
)
def test_losses_stay_finite_for_extreme_logits(head, logits):
    labels = torch.tensor([0, 1])  # confidently wrong on both, by a margin of 200
    value = head.loss(logits, head.prepare_targets(labels))
    # Each example costs about 200; sigmoid + BCELoss would clamp its log and report 100.
    assert value.item() == pytest.approx(400.0, rel=1e-3)


def test_predictions_follow_the_positive_class():
    assert BinaryCrossEntropy("sum").predict(torch.tensor([[-0.1], [0.2]])).tolist() == [0, 1]
    assert CrossEntropy("sum").predict(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).tolist() == [0, 1]
