"""Early stopping: it stops where the validation curve says, keeps the best epoch's weights and tests
them, resumes to the same epoch, and is refused where there is nothing to validate on."""

import pytest
import torch

from src.errors import ConfigError
from src.evaluate import evaluate_checkpoint
from src.stopping import EarlyStopping
from tests.helpers import read_metrics, read_scalars, stop_by_hand, train_here, write_overfitting_dataset

PATIENCE = 3


@pytest.fixture
def overfitting(tmp_path):
    folder = write_overfitting_dataset(tmp_path / "noise")
    return ["dataset=mnist_binary", f"dataset.root={folder}", "dataset.val_fraction=0.3", "trainer.epochs=15"]


def test_it_stops_at_the_expected_epoch_and_tests_the_best_weights(tmp_path, overfitting):
    free = train_here(tmp_path / "free", *overfitting)  # the same run without patience, all 15 epochs
    curve = read_scalars(tmp_path / "free")["val/loss"]
    best, stop = stop_by_hand([value for _, value in curve], PATIENCE)
    assert stop < 14 and free["epochs"] == 15  # the problem really does stop early

    run_dir = tmp_path / "early"
    metrics = train_here(run_dir, *overfitting, f"trainer.patience={PATIENCE}")
    assert (metrics["epochs"], metrics["best_epoch"], metrics["stopped_early"]) == (stop + 1, best, True)
    assert metrics["test_weights"] == "best" and read_metrics(run_dir)["best_epoch"] == best
    assert read_scalars(run_dir)["val/loss"] == curve[: stop + 1]  # the same epochs, then no more
    # metrics.json reports the weights kept: the best epoch's val/loss (what a sweep ranks), its test.
    assert metrics["val/loss"] == pytest.approx(curve[best][1], rel=1e-6)
    # best.pt holds the best epoch; the reported test metrics are its weights'; last.pt is the last epoch.
    saved = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert saved["epoch"] == best + 1
    tested = evaluate_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert (tested["test/loss"], tested["test/accuracy"]) == (metrics["test/loss"], metrics["test/accuracy"])
    assert evaluate_checkpoint(run_dir / "checkpoints" / "last.pt")["epochs"] == stop + 1
    # Resuming a run that has stopped trains no further: its patience has run out.
    assert train_here(run_dir, *overfitting, f"trainer.patience={PATIENCE}", "resume=true") == metrics

    last = train_here(
        tmp_path / "last", *overfitting, f"trainer.patience={PATIENCE}", "trainer.test_weights=last"
    )
    assert last["test_weights"] == "last" and last["epochs"] == stop + 1
    assert (
        last["test/loss"] == evaluate_checkpoint(tmp_path / "last" / "checkpoints" / "last.pt")["test/loss"]
    )
    assert last["test/loss"] != metrics["test/loss"]
    assert last["val/loss"] == pytest.approx(curve[stop][1], rel=1e-6)


def test_a_run_interrupted_in_its_patience_window_stops_at_the_same_epoch(tmp_path, overfitting):
    never = tmp_path / "never"
    uninterrupted = train_here(never, *overfitting, f"trainer.patience={PATIENCE}")
    best = uninterrupted["best_epoch"]
    stopped = tmp_path / "stopped"
    first = [o for o in overfitting if not o.startswith("trainer.epochs")]
    part = train_here(stopped, *first, f"trainer.epochs={best + 2}", f"trainer.patience={PATIENCE}")
    assert part["stopped_early"] is False  # one epoch into its patience window
    resumed = train_here(stopped, *overfitting, f"trainer.patience={PATIENCE}", "resume=true")
    assert resumed == uninterrupted
    assert read_scalars(stopped) == read_scalars(never)
    kept = [torch.load(d / "checkpoints" / "best.pt", weights_only=True)["model"] for d in (stopped, never)]
    assert all(torch.equal(kept[0][key], kept[1][key]) for key in kept[0])


def test_patience_counts_epochs_without_a_strict_improvement():
    stopping = EarlyStopping(patience=2, maximize=True)
    improved = [stopping.update(epoch, value) for epoch, value in enumerate([0.5, 0.7, 0.7, 0.6])]
    assert improved == [True, True, False, False] and stopping.exhausted and stopping.best_epoch == 1
    restored = EarlyStopping(patience=2, maximize=True)
    restored.load_state_dict(stopping.state_dict())
    assert restored == stopping


def test_early_stopping_needs_a_validation_metric(tmp_path, fake_pair):
    with pytest.raises(ConfigError, match="trainer.patience needs a validation split"):
        train_here(tmp_path / "toy", "trainer.patience=3")
    with pytest.raises(ConfigError, match="must be measured on the validation split"):
        train_here(tmp_path / "train", *fake_pair, "trainer.patience=3", "objective.metric=train/loss")
    with pytest.raises(ConfigError, match="trainer.patience must be at least 1 or null"):
        train_here(tmp_path / "zero", *fake_pair, "trainer.patience=0")
