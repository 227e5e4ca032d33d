"""End to end: the real `python -m src.train` in a subprocess, as a user runs it."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, event_dir, read_scalars, run_cli, tutorial_run, write_fake_dataset


def test_default_run_reproduces_the_tutorial(train_cli):
    process, run_dir = train_cli()
    assert process.returncode == 0, process.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 1000
    assert metrics["predictions"]["4.0"] == pytest.approx(0.88, abs=0.01)
    losses, w, b = tutorial_run(seed=2)  # the default seed
    scalars = read_scalars(run_dir)
    assert [step for step, _ in scalars["train/loss"]] == list(range(1000))
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(losses, abs=1e-5)
    assert metrics["train/loss"] == pytest.approx(losses[-1], abs=1e-5)
    assert f"w = {w:.4f}" in process.stdout and f"b = {b:.4f}" in process.stdout
    assert "P(y=1 | x=4.0) = 0.88" in process.stdout and str(run_dir) in process.stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert event_dir(run_dir) == run_dir / "defaults"  # TensorBoard's run name: no overrides


def test_tensorboard_run_name_tells_the_settings(train_cli):
    process, run_dir = train_cli("loss=ce", "optimizer.lr=0.05", "trainer.epochs=3")
    assert process.returncode == 0, process.stderr
    assert event_dir(run_dir) == run_dir / "loss=ce,optimizer.lr=0.05,trainer.epochs=3"


@pytest.mark.parametrize(
    "overrides,expected_w",
    [(["loss=ce"], 2), (["optimizer=lbfgs", "trainer.epochs=5"], 1), (["model=mlp"], 0)],
)
def test_each_option_runs_and_logs(train_cli, overrides, expected_w):
    process, run_dir = train_cli(*overrides)
    assert process.returncode == 0, process.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and 0 <= metrics["predictions"]["4.0"] <= 1
    assert set(read_scalars(run_dir)) == {"train/loss"}
    w_line = [line for line in process.stdout.splitlines() if line.startswith("w = ")]
    assert len(w_line[0].split(",")) == expected_w if expected_w else not w_line


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_pair_on_generated_files_logs_validation_and_test(train_cli, tmp_path, layout):
    folder = tmp_path / "data" / ("MNIST/raw" if layout == "torchvision" else "")
    write_fake_dataset(folder, gz=layout == "flat")
    process, run_dir = train_cli(
        "dataset=mnist_binary", f"dataset.root={tmp_path / 'data'}", "trainer.epochs=5"
    )
    assert process.returncode == 0, process.stderr
    scalars = read_scalars(run_dir)
    assert set(scalars) == {"train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy"}
    assert [step for step, _ in scalars["val/accuracy"]] == list(range(5))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/accuracy"] == scalars["test/accuracy"][-1][1] == 1.0  # the bands are easy
    assert "predictions" not in metrics


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset=imagenet"], "Could not find 'dataset/imagenet'"),
        (["optimizer.lr=abc"], "Value 'abc' of type 'str' could not be converted to Float"),
        (["optimizer.lr=-1"], "error: optimizer.lr must be positive, got -1.0"),
        (["trainer.epochs=0"], "error: trainer.epochs must be at least 1, got 0"),
        (["dataset=mnist_binary", "dataset.classes=[3,12]"], "error: dataset.classes must be digits 0-9"),
        (["dataset=mnist_binary", "dataset.classes=[3,3]"], "error: dataset.classes must differ"),
        (["device=cuda"], "error: device=cuda is not available"),
        (["dataset=mnist_binary", "dataset.root=/nonexistent"], "error: mnist data not found"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_traceback(train_cli, overrides, message):
    import torch

    if overrides == ["device=cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    process, run_dir = train_cli(*overrides)
    assert process.returncode != 0
    assert message in process.stderr
    assert "Traceback" not in process.stderr
    if run_dir.exists():  # refused before training: a failed status, no epochs, no events
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "failed" and metrics["epochs"] == 0
        assert message.removeprefix("error: ") in metrics["reason"]
        assert not list(run_dir.rglob("events.out.tfevents.*"))


def test_divergence_fails_the_run_and_keeps_what_was_logged(train_cli):
    process, run_dir = train_cli("optimizer.lr=1e38")
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [
        "error: training diverged: train/loss became nan at epoch 2; "
        "lower optimizer.lr or use loss.reduction=mean"
    ]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "diverged" in metrics["reason"] and metrics["epochs"] == 2
    assert [step for step, _ in read_scalars(run_dir)["train/loss"]] == [0, 1]


def test_runs_started_together_get_their_own_directories(tmp_path):
    command = [sys.executable, "-m", "src.train", "trainer.epochs=1"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env) for _ in range(2)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    run_dirs = sorted((tmp_path / "experiments" / "runs").glob("*/*"))
    assert len(run_dirs) == 2
    assert all((run_dir / "metrics.json").is_file() for run_dir in run_dirs)


def test_multirun_writes_one_directory_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    process = run_cli("-m", "loss=bce,ce", "optimizer.lr=0.01,0.1", "trainer.epochs=20",
                      f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert process.returncode == 0, process.stderr
    jobs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir() and path.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["epochs"] == 20
        assert (sweep_dir / job / ".hydra" / "overrides.yaml").is_file()
