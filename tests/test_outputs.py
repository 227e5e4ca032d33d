import json

from src.outputs import RunRecorder, hyperparameters, run_name
from tests.helpers import compose_with_choices, read_scalars


def test_run_name_is_the_overrides_as_one_safe_folder_name():
    assert run_name([]) == "defaults"
    assert run_name(["loss=ce", "optimizer.lr=0.1"]) == "loss=ce,optimizer.lr=0.1"
    assert run_name(["dataset.root=/data/mnist"]) == "dataset.root=_data_mnist"
    assert len(run_name([f"x{i}=1" for i in range(100)])) <= 200


def test_hyperparameters_hold_choices_main_knobs_and_every_override():
    overrides = ["loss=ce", "optimizer.momentum=0.9", "dataset=mnist_binary", "dataset.classes=[4,9]"]
    cfg, choices = compose_with_choices(*overrides)
    params = hyperparameters(cfg, choices, overrides)
    assert params["loss"] == "ce" and params["dataset"] == "mnist_binary" and params["device"] == "cpu"
    assert params["optimizer.momentum"] == 0.9 and params["optimizer.lr"] == 0.1
    assert params["loss.reduction"] == "mean" and params["trainer.batch_size"] == 64
    assert params["dataset.classes"] == "4,9"  # a list, as TensorBoard can show it
    assert all(isinstance(value, int | float | str | bool) for value in params.values())


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
