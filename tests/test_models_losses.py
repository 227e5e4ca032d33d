import pytest
import torch

from src.errors import ConfigError
from src.losses import BinaryCrossEntropy, CrossEntropy
from src.models import MLP, LogisticRegression


def test_bce_pairs_with_one_logit_and_ce_with_one_per_class():
    assert BinaryCrossEntropy.num_outputs(2) == 1
    assert CrossEntropy.num_outputs(2) == 2
    with pytest.raises(ConfigError, match="loss=ce"):
        BinaryCrossEntropy.num_outputs(3)


def test_models_map_features_to_logits():
    inputs = torch.randn(5, 784)
    assert LogisticRegression(784, 1)(inputs).shape == (5, 1)
    assert MLP(784, 2, hidden_size=16)(inputs).shape == (5, 2)


def test_bce_on_logits_equals_the_tutorials_bce_on_sigmoid():
    logits, labels = torch.tensor([[-2.0], [0.5], [3.0]]), torch.tensor([0, 0, 1])
    tutorial = torch.nn.BCELoss(reduction="sum")(torch.sigmoid(logits), labels.float().unsqueeze(1))
    assert BinaryCrossEntropy("sum")(logits, labels).item() == pytest.approx(tutorial.item(), rel=1e-6)


def test_ce_with_two_logits_is_bce_on_their_difference():
    logits, labels = torch.tensor([[0.3, -1.2], [2.0, 0.1]]), torch.tensor([1, 0])
    difference = (logits[:, 1] - logits[:, 0]).unsqueeze(1)
    ce = CrossEntropy("mean")(logits, labels)
    assert ce.item() == pytest.approx(BinaryCrossEntropy("mean")(difference, labels).item(), rel=1e-6)
    assert torch.allclose(
        CrossEntropy.positive_probability(logits), BinaryCrossEntropy.positive_probability(difference)
    )


@pytest.mark.parametrize(
    "loss,logits",
    [
        (BinaryCrossEntropy("sum"), torch.tensor([[200.0], [-200.0]])),
        (CrossEntropy("sum"), torch.tensor([[-100.0, 100.0], [100.0, -100.0]])),
    ],
)
def test_losses_stay_finite_for_extreme_logits(loss, logits):
    labels = torch.tensor([0, 1])  # confidently wrong on both, by a margin of 200
    value = loss(logits, labels)
    # Each example costs about 200; sigmoid + BCELoss would clamp its log and report 100.
    assert value.item() == pytest.approx(400.0, rel=1e-3)


def test_predictions_follow_the_positive_class():
    assert BinaryCrossEntropy.predict(torch.tensor([[-0.1], [0.2]])).tolist() == [0, 1]
    assert CrossEntropy.predict(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).tolist() == [0, 1]
