"""The training loop on tensors: the tutorial's numbers, mini-batches, validation, divergence."""

import pytest
import torch

from src.data import ClassificationData, Split, load_toy
from src.errors import TrainingDiverged
from src.losses import BinaryCrossEntropy, CrossEntropy
from src.models import MLP, LogisticRegression
from src.trainer import evaluate, train_epochs
from tests.helpers import tutorial_run


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def toy() -> ClassificationData:
    return load_toy([1.0, 2.0, 3.0], [0, 0, 1], [4.0])


def collect(results) -> dict[str, list[tuple[int, float]]]:
    """The curves of every metric the epochs yielded, as {tag: [(epoch, value), ...]}."""
    logged = {}
    for result in results:
        for tag, value in result.metrics.items():
            logged.setdefault(tag, []).append((result.epoch, value))
    return logged


def fit_toy(seed, loss=None, optimizer=torch.optim.SGD, lr=0.01, epochs=1000, batch_size=None):
    loss = loss or BinaryCrossEntropy("sum")
    data = toy()
    torch.manual_seed(seed)
    model = LogisticRegression(1, loss.num_outputs)
    optimizer = optimizer(model.parameters(), lr=lr)
    return model, collect(train_epochs(model, loss, optimizer, data, epochs, batch_size, generator(seed)))


@pytest.mark.parametrize("seed", [0, 7])
def test_seed_parity_with_the_tutorials_plain_loop(seed):
    model, logged = fit_toy(seed)
    losses, w, b = tutorial_run(seed)
    steps, values = zip(*logged["train/loss"], strict=True)
    assert list(steps) == list(range(1000))
    assert values == pytest.approx(losses, abs=1e-5)
    assert model.linear.weight.item() == pytest.approx(w, abs=1e-5)
    assert model.linear.bias.item() == pytest.approx(b, abs=1e-5)


def test_lbfgs_trains_through_its_closure():
    _, logged = fit_toy(0, optimizer=torch.optim.LBFGS, lr=1.0, epochs=5)
    losses = [value for _, value in logged["train/loss"]]
    assert losses[-1] < 0.05 * losses[0]  # a quasi-Newton step does in 5 epochs what SGD does in 1000+


def test_softmax_regression_learns_the_toy_set():
    model, logged = fit_toy(0, loss=CrossEntropy("sum"), lr=0.1, epochs=500)
    assert logged["train/loss"][-1][1] < 0.5 * logged["train/loss"][0][1]
    assert model(torch.tensor([[4.0]])).argmax().item() == 1


def make_blobs(count=200, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    inputs = torch.randn(count, 5, generator=generator) + 2.0 * labels.unsqueeze(1).float()
    return Split(inputs, labels)


def test_mini_batch_epoch_loss_covers_the_whole_split():
    split = make_blobs()
    for reduction in ("sum", "mean"):
        torch.manual_seed(0)
        model, loss = LogisticRegression(5, 1), BinaryCrossEntropy(reduction)
        before = evaluate(model, loss, split)["loss"]
        # lr=0 leaves the model unchanged: the epoch's loss must equal the full-split loss.
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        data = ClassificationData(split, None, None, ("a", "b"))
        (epoch,) = train_epochs(model, loss, optimizer, data, 1, 32, torch.Generator().manual_seed(0))
        assert epoch.metrics["train/loss"] == pytest.approx(before, rel=1e-5)


def test_validation_metrics_are_logged_each_epoch_and_learning_happens():
    data = ClassificationData(make_blobs(seed=0), make_blobs(seed=1), None, ("a", "b"))
    torch.manual_seed(0)
    model, loss = MLP(5, 1, hidden_size=8), BinaryCrossEntropy("mean")
    logged = collect(train_epochs(model, loss, torch.optim.Adam(model.parameters(), lr=0.05), data, 15, 32,
                                  generator(0)))  # fmt: skip
    assert [step for step, _ in logged["val/accuracy"]] == list(range(15))
    assert logged["val/accuracy"][-1][1] > 0.9
    assert logged["val/loss"][-1][1] < logged["val/loss"][0][1]


def test_shuffling_is_seeded():
    split = make_blobs()

    def losses(seed):
        torch.manual_seed(0)
        model, loss = LogisticRegression(5, 1), BinaryCrossEntropy("mean")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        shuffle = torch.Generator().manual_seed(seed)
        data = ClassificationData(split, None, None, ("a", "b"))
        epochs = train_epochs(model, loss, optimizer, data, 3, 16, shuffle)
        return [epoch.metrics["train/loss"] for epoch in epochs]

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


def test_divergence_stops_at_that_epoch_after_yielding_the_earlier_ones():
    torch.manual_seed(2)
    model, loss = LogisticRegression(1, 1), BinaryCrossEntropy("sum")
    epochs = train_epochs(
        model, loss, torch.optim.SGD(model.parameters(), lr=1e38), toy(), 100, None, generator(0)
    )
    assert [next(epochs).epoch, next(epochs).epoch] == [0, 1]
    with pytest.raises(TrainingDiverged, match="train/loss became nan at epoch 2; lower optimizer.lr"):
        next(epochs)


def test_epochs_resume_from_the_start_epoch_and_the_caller_can_stop_between_them():
    torch.manual_seed(0)
    model, loss = LogisticRegression(1, 1), BinaryCrossEntropy("sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    results = train_epochs(model, loss, optimizer, toy(), 10, None, generator(0), start_epoch=7)
    assert [(r.epoch, r.completed) for r in results] == [(7, 8), (8, 9), (9, 10)]


def test_ce_on_two_logits_at_lr_trains_their_difference_like_bce_at_twice_lr():
    # Why experiment=bce_vs_ce compares BCE at lr with CE at lr/2: the logit difference that decides a
    # pair gets twice CE's step, so the two runs trace the same decision function when started equal.
    torch.manual_seed(0)
    inputs, labels = torch.randn(40, 5), torch.randint(0, 2, (40,))
    data = ClassificationData(Split(inputs, labels), None, None, ("0", "1"))
    two, one = LogisticRegression(5, 2), LogisticRegression(5, 1)
    with torch.no_grad():
        one.linear.weight.copy_(two.linear.weight[1:] - two.linear.weight[:1])
        one.linear.bias.copy_(two.linear.bias[1:] - two.linear.bias[:1])
    for model, head, lr in ((two, CrossEntropy("mean"), 0.05), (one, BinaryCrossEntropy("mean"), 0.1)):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in train_epochs(model, head, optimizer, data, 30, 8, generator(1)):
            pass
    difference = two.linear.weight[1] - two.linear.weight[0]
    assert torch.allclose(difference, one.linear.weight[0], atol=1e-5)
    assert torch.allclose(two.linear.bias[1] - two.linear.bias[0], one.linear.bias[0], atol=1e-5)
