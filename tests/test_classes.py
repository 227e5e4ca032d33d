"""K classes end to end, in this process: MNIST's ten digits (or a subset) with softmax or one-vs-rest BCE,
through every model, optimizer, checkpoint, resume, evaluation, summary and HParams."""

import json

import pytest
from omegaconf import OmegaConf

from src.errors import ConfigError
from src.evaluate import evaluate_checkpoint
from src.sweep import write_summary
from tests.helpers import (
    compose_config,
    event_dir,
    read_metrics,
    read_scalars,
    train_here,
    write_fake_dataset,
)

DIGITS = [str(digit) for digit in range(10)]


@pytest.fixture
def ten_classes(tmp_path):
    """Overrides for a quick ten-class MNIST run on generated files."""
    root = write_fake_dataset(tmp_path / "data")
    return ["dataset=mnist", f"dataset.root={root}", "trainer.epochs=3"]


def as_text(metrics):
    """metrics.json's text of `metrics`: equal where the numbers are, NaN (a score a split cannot
    measure: a class missing from a small validation split) included."""
    return json.dumps(metrics, sort_keys=True)


def save_config(run_dir, *overrides):
    """What Hydra saves beside a run started by the command (RUN/.hydra/config.yaml, overrides.yaml)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(compose_config(*overrides), run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), run_dir / ".hydra" / "overrides.yaml")


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_ten_digits_train_with_either_loss_and_report_each_class(tmp_path, ten_classes, loss):
    metrics = train_here(tmp_path / "run", *ten_classes, f"loss={loss}")
    assert metrics["status"] == "completed" and metrics["test/accuracy"] == 1.0  # the bands are easy
    assert list(metrics["test/accuracy_per_class"]) == DIGITS  # keyed by class name, in class order
    assert set(metrics["test/accuracy_per_class"].values()) == {1.0}
    scalars = read_scalars(tmp_path / "run")
    assert {f"test/accuracy_per_class/{digit}" for digit in DIGITS} <= set(scalars)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert as_text(written) == as_text({k: v for k, v in metrics.items() if k != "parameters"})


def test_a_subset_of_classes_is_labelled_by_its_position(tmp_path, ten_classes):
    metrics = train_here(tmp_path / "run", *ten_classes, "dataset.classes=[7,2,5]", "loss=ce")
    assert list(metrics["test/accuracy_per_class"]) == ["7", "2", "5"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=mlp", "model.hidden_size=32", "optimizer.lr=0.1", "trainer.epochs=6"],
        ["model=mlp", "model.hidden_size=32", "optimizer.lr=0.1", "trainer.epochs=6", "loss=bce"],
        ["optimizer=adam"],
        ["optimizer=adamw", "loss=bce"],
        ["optimizer=lbfgs", "trainer.batch_size=null", "trainer.epochs=2"],
    ],
)
def test_every_model_and_optimizer_trains_ten_classes(tmp_path, ten_classes, overrides):
    metrics = train_here(tmp_path / "run", *ten_classes, *overrides)
    assert metrics["status"] == "completed" and metrics["test/accuracy"] > 0.5
    assert len(metrics["test/accuracy_per_class"]) == 10


def test_one_class_is_refused_in_one_line(ten_classes):
    # The schema's check refuses it before anything is built (repeated and out-of-range classes: test_config).
    from src.config import validate

    with pytest.raises(ConfigError, match=r"^dataset.classes must name at least two classes, got \[4\]$"):
        validate(compose_config(*ten_classes, "dataset.classes=[4]"))


def test_resume_on_ten_classes_equals_a_run_never_stopped(tmp_path, ten_classes):
    args = [*ten_classes, "loss=bce", "trainer.batch_size=16", "trainer.deterministic=true"]
    whole = train_here(tmp_path / "whole", *args, "trainer.epochs=4")
    train_here(tmp_path / "stopped", *args, "trainer.epochs=2")
    resumed = train_here(tmp_path / "stopped", *args, "trainer.epochs=4", "resume=true")
    assert as_text(resumed) == as_text(
        whole
    )  # the same weights: the same val and test metrics, per class too
    # (TensorBoard's curve across a resume is checked by tests/test_resume.py, in processes of their own:
    # in one process, event files opened in the same second can sort out of order.)


def test_evaluate_gives_trainings_test_metrics_and_predictions_per_class(tmp_path, ten_classes):
    run_dir = tmp_path / "run"
    args = [*ten_classes, "loss=ce", "optimizer.lr=0.0001", "trainer.epochs=1"]  # not yet perfect
    trained = train_here(run_dir, *args)
    save_config(run_dir, *args)
    recomputed = evaluate_checkpoint(run_dir / "checkpoints" / "last.pt")
    for key in ("test/loss", "test/accuracy", "test/accuracy_per_class"):
        assert recomputed[key] == trained[key]
    counts = recomputed["test/predictions_per_class"]
    assert list(counts) == DIGITS and sum(sum(row.values()) for row in counts.values()) == 100
    assert all(
        counts[digit].get(digit, 0) / 10 == trained["test/accuracy_per_class"][digit] for digit in DIGITS
    )


def test_the_summary_and_hparams_take_ten_class_runs(tmp_path, ten_classes):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep_dir = tmp_path / "sweep"
    for job, loss in enumerate(["bce", "ce"]):
        train_here(sweep_dir / str(job), *ten_classes, f"loss={loss}")
        save_config(sweep_dir / str(job), *ten_classes, f"loss={loss}")
    rows, table = write_summary(sweep_dir, "val/accuracy", "maximize")
    assert [row["status"] for row in rows] == ["completed", "completed"]
    assert "accuracy_per_class" not in table.splitlines()[2]  # the table lists scalars only
    accumulator = EventAccumulator(str(event_dir(sweep_dir / "1")))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["dataset"].string_value == "mnist" and hparams["loss"].string_value == "ce"
    assert read_metrics(sweep_dir / "1")["test/accuracy"] == 1.0


def test_pairs_keep_their_preset_and_numbers(tmp_path, fake_mnist_root):
    # mnist_binary is mnist with classes [3, 8]: the same run, label 1 for 8, as before.
    pair = ["dataset=mnist_binary", f"dataset.root={fake_mnist_root}", "trainer.epochs=2"]
    as_preset = train_here(tmp_path / "preset", *pair)
    spelled_out = train_here(tmp_path / "spelled", *pair[1:], "dataset=mnist", "dataset.classes=[3,8]",
                             "trainer.batch_size=64", "loss.reduction=mean", "optimizer.lr=0.1",
                             "objective.metric=val/loss")  # fmt: skip
    assert as_preset == spelled_out
    assert compose_config("dataset=fashion_mnist_binary").dataset.classes == [0, 6]
