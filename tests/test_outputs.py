import json

from omegaconf import OmegaConf

from src.outputs import RunRecorder, hyperparameters, run_name
from src.sweep import sweep_definition
from tests.helpers import compose_with_choices, read_scalars, train_here


def test_run_name_is_the_overrides_as_one_short_safe_folder_name():
    assert run_name([]) == "defaults"
    assert run_name(["loss=ce", "optimizer.lr=0.1"]) == "loss=ce,optimizer.lr=0.1"
    assert run_name(["dataset.root=/data/mnist/"]) == "dataset.root=mnist"  # a path: its last part
    assert run_name(["dataset.download=False"]) == run_name(["dataset.download=false"])
    assert run_name(["dataset.download=True"]) == "dataset.download=true"
    assert run_name(["trainer.epochs=9", "resume=true", "ckpt_path=/a/b/last.pt"]) == "trainer.epochs=9"
    assert len(run_name([f"x{i}=1" for i in range(100)])) <= 200


def swept(task: list[str], params: dict | None = None) -> set[str]:
    """The keys a sweep with these overrides and sweeper params varies, as its jobs read them."""
    config = OmegaConf.create({"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}})
    return set(sweep_definition(config)["varying"])


def test_a_sweep_job_is_named_by_the_keys_the_sweep_varies():
    keys = swept(["loss=bce,ce", "optimizer.lr=0.01,0.1", "dataset=mnist_binary"])
    assert keys == {"loss", "optimizer.lr"}
    job = ["loss=bce", "optimizer.lr=0.01", "dataset=mnist_binary", "dataset.root=/tmp/mnist_flat"]
    assert run_name(job, keys) == "loss=bce,optimizer.lr=0.01"
    optuna = swept(["trainer.epochs=30"], {"optimizer.lr": "tag(log, interval(1e-5, 1))"})
    assert run_name(["optimizer.lr=0.003", "trainer.epochs=30"], optuna) == "optimizer.lr=0.003"
    assert run_name(["optimizer.lr=0.005545996722241045"], optuna) == "optimizer.lr=0.005546"
    assert run_name(job, swept(["dataset=mnist_binary"])) == ",".join(job).replace(
        "/tmp/mnist_flat", "mnist_flat"
    )


def test_hyperparameters_hold_choices_main_knobs_and_every_override():
    overrides = ["loss=ce", "optimizer.momentum=0.9", "dataset=mnist_binary", "dataset.classes=[4,9]"]
    cfg, choices = compose_with_choices(*overrides)
    params = hyperparameters(cfg, choices, overrides)
    assert params["loss"] == "ce" and params["dataset"] == "mnist_binary" and params["device"] == "cpu"
    assert params["optimizer.momentum"] == 0.9 and params["optimizer.lr"] == 0.1
    assert params["loss.reduction"] == "mean" and params["trainer.batch_size"] == 64
    assert type(params["loss.reduction"]) is str and type(params["device"]) is str  # not Reduction.mean
    assert params["dataset.classes"] == "4,9"  # a list, as TensorBoard can show it
    assert all(isinstance(value, int | float | str | bool) for value in params.values())


def test_hyperparameters_keep_booleans_and_leave_out_unset_values():
    overrides = ["dataset=mnist_binary", "dataset.download=false", "trainer.batch_size=null", "resume=true"]
    cfg, choices = compose_with_choices(*overrides)
    params = hyperparameters(cfg, choices, overrides)
    assert params["dataset.download"] is False  # a boolean in HParams, not 0.0
    assert "trainer.batch_size" not in params  # null (a full batch) is no number: no value, not "None"
    assert "resume" not in params


def test_recorder_keeps_last_values_and_marks_a_crash_as_failed(tmp_path):
    try:
        with RunRecorder(tmp_path, "run", "seed: 1\n", {"seed": 1}) as recorder:
            recorder.record_epoch(0, {"train/loss": 2.0})
            recorder.record_epoch(1, {"train/loss": 1.5})
            raise RuntimeError("disk on fire")
    except RuntimeError:
        pass
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"status": "failed", "reason": "disk on fire", "epochs": 2, "train/loss": 1.5}
    assert read_scalars(tmp_path)["train/loss"] == [(0, 2.0), (1, 1.5)]


def test_the_recorder_is_told_the_epoch(tmp_path):
    with RunRecorder(tmp_path, "run", "", {}) as recorder:
        recorder.record_epoch(4, {"val/loss": 0.3})  # no train/loss, still epoch 5 completed
        recorder.record(5, {"test/loss": 0.2})  # a final measurement is no epoch
        assert recorder.finish("completed")["epochs"] == 5


def test_predictions_csv_holds_every_test_example_with_its_class_probabilities(tmp_path, fake_pair):
    import csv

    run_dir = tmp_path / "run"
    metrics = train_here(run_dir, *fake_pair)
    with (run_dir / "predictions.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["index", "label", "predicted", "p_3", "p_8"]
    assert [int(row["index"]) for row in rows] == list(range(len(rows)))
    assert {row["label"] for row in rows} <= {"3", "8"}
    for row in rows:
        p_3, p_8 = float(row["p_3"]), float(row["p_8"])
        assert abs(p_3 + p_8 - 1) < 1e-5 and row["predicted"] == ("8" if p_8 >= p_3 else "3")
    right = sum(row["label"] == row["predicted"] for row in rows) / len(rows)
    assert abs(right - metrics["test/accuracy"]) < 1e-6  # the same predictions as the metrics'
