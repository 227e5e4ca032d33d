"""`train(cfg, context)` in this process, from composed configs: what a run computes and writes."""

import pytest

from src.errors import ConfigError, DataError, TrainingDiverged
from src.scores import BINARY
from tests.helpers import event_dir, read_metrics, read_scalars, train_here, tutorial_run, write_fake_dataset


def test_the_default_run_reproduces_the_tutorial(tmp_path):
    result = train_here(tmp_path)
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs"] == 1000
    assert metrics["predictions"]["4.0"] == pytest.approx(0.88, abs=0.01)
    losses, w, b = tutorial_run(seed=2)  # the default seed
    scalars = read_scalars(tmp_path)
    assert [step for step, _ in scalars["train/loss"]] == list(range(1000))
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(losses, abs=1e-5)
    assert metrics["train/loss"] == pytest.approx(losses[-1], abs=1e-5)
    assert result["parameters"]["w"] == pytest.approx([w], abs=1e-5)
    assert result["parameters"]["b"] == pytest.approx([b], abs=1e-5)
    assert event_dir(tmp_path) == tmp_path / "defaults"  # TensorBoard's run name: no overrides
    assert (tmp_path / "config_tree.txt").read_text().startswith("config\n├── dataset (toy)\n")


def test_tensorboard_run_name_tells_the_settings(tmp_path):
    train_here(tmp_path, "loss=ce", "optimizer.lr=0.05", "trainer.epochs=3")
    assert event_dir(tmp_path) == tmp_path / "loss=ce,optimizer.lr=0.05,trainer.epochs=3"


@pytest.mark.parametrize(
    "overrides,expected_w",
    [
        (["loss=ce"], 2),
        (["optimizer=lbfgs", "trainer.epochs=5"], 1),
        (["optimizer=adam", "trainer.epochs=5"], 1),
        (["optimizer=adamw", "trainer.epochs=5"], 1),
        (["model=mlp", "trainer.epochs=5"], 0),
    ],
)
def test_each_option_runs_and_logs(tmp_path, overrides, expected_w):
    result = train_here(tmp_path, *overrides)
    assert result["status"] == "completed" and 0 <= result["predictions"]["4.0"] <= 1
    assert set(read_scalars(tmp_path)) == {"train/loss"}
    assert len(result["parameters"].get("w", [])) == expected_w


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_pair_on_generated_files_logs_validation_and_test(tmp_path, layout):
    folder = tmp_path / "data" / ("MNIST/raw" if layout == "torchvision" else "")
    write_fake_dataset(folder, gz=layout == "flat")
    run_dir = tmp_path / "run"
    train_here(run_dir, "dataset=mnist_binary", f"dataset.root={tmp_path / 'data'}", "trainer.epochs=5")
    scalars = read_scalars(run_dir)
    per_class = {"test/accuracy_per_class/3", "test/accuracy_per_class/8"}
    assert set(scalars) == {
        "train/loss",
        "val/loss",
        "val/accuracy",
        "test/loss",
        "test/accuracy",
        *per_class,
        *(f"{split}/{name}" for split in ("val", "test") for name in BINARY),  # scores of its probabilities
    }
    assert [step for step, _ in scalars["val/accuracy"]] == list(range(5))
    metrics = read_metrics(run_dir)
    assert metrics["test/accuracy"] == scalars["test/accuracy"][-1][1] == 1.0  # the bands are easy
    assert metrics["test/accuracy_per_class"] == {"3": 1.0, "8": 1.0}
    assert "predictions" not in metrics


def test_divergence_fails_the_run_and_keeps_what_was_logged(tmp_path):
    with pytest.raises(TrainingDiverged, match="train/loss became nan at epoch 2"):
        train_here(tmp_path, "optimizer.lr=1e38")
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "failed" and "diverged" in metrics["reason"] and metrics["epochs"] == 2
    assert [step for step, _ in read_scalars(tmp_path)["train/loss"]] == [0, 1]


@pytest.mark.parametrize(
    "overrides,error,message",
    [
        (["dataset=mnist_binary", "dataset.root=/nonexistent"], DataError, "mnist data not found"),
        (["objective.metric=val/loss"], ConfigError, "needs a validation split"),
        (["device=cuda"], ConfigError, "device=cuda is not available"),
    ],
)
def test_a_run_that_cannot_start_writes_nothing(tmp_path, overrides, error, message):
    import torch

    if "device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(error, match=message):
        train_here(tmp_path / "run", *overrides)
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("*"))


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, fake_pair):
    args = [*fake_pair, "trainer.deterministic=true"]
    results = {
        name: train_here(tmp_path / name, *args, f"seed={seed}")
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    }
    assert results["a"] == results["b"]
    assert results["a"]["val/loss"] != results["c"]["val/loss"]
