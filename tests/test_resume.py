"""Reliability end to end: signals, exact resume, evaluation, determinism, bad data."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, read_scalars, run_cli, write_fake_dataset


def start(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "src.train", *args]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def interrupt_after_first_checkpoint(process, run_dir, signal_number):
    checkpoint = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


@pytest.fixture
def fake_run_args(tmp_path):
    root = write_fake_dataset(tmp_path / "data")
    return ["dataset=mnist_binary", f"dataset.root={root}", "trainer.batch_size=8", "trainer.epochs=400",
            "trainer.checkpoint_every=20"]  # fmt: skip


def test_ctrl_c_then_resume_equals_a_run_never_stopped(tmp_path, fake_run_args):
    stopped = tmp_path / "stopped"
    code, _, err = interrupt_after_first_checkpoint(
        start(*fake_run_args, f"hydra.run.dir={stopped}"), stopped, signal.SIGINT
    )
    assert code == 130, err
    metrics = json.loads((stopped / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and 20 <= metrics["epochs"] < 400
    assert "resume with:" in err and "resume=true" in err
    resume_command = err.strip().splitlines()[-1].split()
    assert resume_command[:3] == ["python", "-m", "src.train"]

    resumed = run_cli(*resume_command[3:])
    assert resumed.returncode == 0, resumed.stderr
    never_stopped = tmp_path / "never"
    assert run_cli(*fake_run_args, f"hydra.run.dir={never_stopped}").returncode == 0

    assert read_scalars(stopped) == read_scalars(never_stopped)  # one clean curve, exactly equal
    finals = [json.loads((d / "metrics.json").read_text()) for d in (stopped, never_stopped)]
    assert finals[0] == finals[1] and finals[0]["status"] == "completed"
    weights = [
        torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]
        for d in (stopped, never_stopped)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("signal_number,code", [(signal.SIGTERM, 143), (signal.SIGUSR2, 140)])
def test_termination_and_preemption_signals_checkpoint_and_exit(tmp_path, signal_number, code):
    run_dir = tmp_path / "run"
    process = start("trainer.epochs=100000", "trainer.checkpoint_every=200", f"hydra.run.dir={run_dir}")
    returncode, _, err = interrupt_after_first_checkpoint(process, run_dir, signal_number)
    assert returncode == code, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert metrics["status"] == "interrupted" and checkpoint["epoch"] == metrics["epochs"] >= 200
    assert "Traceback" not in err


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("trainer.epochs=5", f"hydra.run.dir={run_dir}").returncode == 0
    process = run_cli("model=mlp", "trainer.epochs=10", "resume=true", f"hydra.run.dir={run_dir}")
    assert process.returncode == 2
    assert process.stderr.strip().startswith("error: ") and "another model config" in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    process = run_cli("resume=true", f"hydra.run.dir={tmp_path / 'new'}")
    assert (
        process.returncode == 2 and "no checkpoint at" in process.stderr and "Traceback" not in process.stderr
    )


def test_evaluate_recomputes_what_training_reported(tmp_path, fake_run_args):
    run_dir = tmp_path / "run"
    assert run_cli(*fake_run_args[:3], "trainer.epochs=3", f"hydra.run.dir={run_dir}").returncode == 0
    process = subprocess.run(
        [sys.executable, "-m", "src.evaluate", f"ckpt_path={run_dir}/checkpoints/last.pt"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    recomputed, trained = json.loads(process.stdout), json.loads((run_dir / "metrics.json").read_text())
    assert recomputed["test/accuracy"] == trained["test/accuracy"]
    assert recomputed["test/loss"] == trained["test/loss"]


def test_evaluate_predicts_the_toy_input(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(f"hydra.run.dir={run_dir}").returncode == 0
    process = subprocess.run(
        [sys.executable, "-m", "src.evaluate", f"ckpt_path={run_dir}/checkpoints/last.pt", "x=4"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    predicted = json.loads(process.stdout)["predictions"]["4.0"]
    assert predicted == json.loads((run_dir / "metrics.json").read_text())["predictions"]["4.0"]


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, fake_run_args):
    args = [*fake_run_args[:3], "trainer.epochs=3", "trainer.deterministic=true"]
    results = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run_cli(*args, f"seed={seed}", f"hydra.run.dir={tmp_path / name}").returncode == 0
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert results["a"] == results["b"]
    assert results["a"]["val/loss"] != results["c"]["val/loss"]


def test_a_truncated_data_file_is_one_line_naming_it(tmp_path):
    root = write_fake_dataset(tmp_path / "data", gz=False)
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    process = run_cli("dataset=mnist_binary", f"dataset.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        f"error: {labels} holds 98 bytes but its header promises 108 (truncated or corrupt); replace it"
    ]


def test_a_job_requeued_by_slurm_resumes_by_itself(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert run_cli("trainer.epochs=10", f"hydra.run.dir={run_dir}").returncode == 0
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    process = run_cli("trainer.epochs=20", f"hydra.run.dir={run_dir}")
    assert process.returncode == 0, process.stderr
    assert f"resuming from {run_dir}/checkpoints/last.pt after epoch 10" in process.stdout
    assert [step for step, _ in read_scalars(run_dir)["train/loss"]] == list(range(20))
