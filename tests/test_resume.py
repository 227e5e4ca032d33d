"""Reliability: signals, exact resume, changed settings on resume, evaluation, requeue."""

import signal
import time

import pytest
import torch

from src.checkpoint import CheckpointError
from src.evaluate import evaluate_checkpoint
from tests.helpers import (
    command,
    launch,
    read_metrics,
    read_scalars,
    train_here,
    write_fake_dataset,
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
    return ["dataset=mnist_binary", f"dataset.root={root}", "trainer.batch_size=8", "trainer.epochs=150",
            "trainer.checkpoint_every=10"]  # fmt: skip


def test_ctrl_c_then_resume_equals_a_run_never_stopped(tmp_path, fake_run_args):
    stopped = tmp_path / "stopped"
    code, _, err = interrupt_after_first_checkpoint(
        launch(*fake_run_args, f"hydra.run.dir={stopped}"), stopped, signal.SIGINT
    )
    assert code == 130, err
    metrics = read_metrics(stopped)
    assert metrics["status"] == "interrupted" and 10 <= metrics["epochs"] < 150
    assert "resume with:" in err and "resume=true" in err and "Traceback" not in err
    resume_command = err.strip().splitlines()[-1].split()
    assert resume_command[:3] == ["python", "-m", "src.train"]

    train_here(stopped, *resume_command[3:])  # the printed command, continued in this process
    never_stopped = tmp_path / "never"
    train_here(never_stopped, *fake_run_args)

    assert read_scalars(stopped) == read_scalars(never_stopped)  # one clean curve, exactly equal
    finals = [read_metrics(d) for d in (stopped, never_stopped)]
    assert finals[0] == finals[1] and finals[0]["status"] == "completed"
    weights = [
        torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]
        for d in (stopped, never_stopped)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_preemption_notice_checkpoints_and_exits(tmp_path):
    # SIGUSR2, what SLURM sends before it preempts a job (SIGTERM: test_stack's interrupted sweep).
    signal_number, code = signal.SIGUSR2, 140
    run_dir = tmp_path / "run"
    process = launch("trainer.epochs=100000", "trainer.checkpoint_every=200", f"hydra.run.dir={run_dir}")
    returncode, _, err = interrupt_after_first_checkpoint(process, run_dir, signal_number)
    assert returncode == code, err
    metrics = read_metrics(run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert metrics["status"] == "interrupted" and checkpoint["epoch"] == metrics["epochs"] >= 200
    assert "Traceback" not in err


def test_resume_applies_a_changed_optimizer_setting_and_says_so(tmp_path, caplog):
    run_dir = tmp_path / "run"
    train_here(run_dir, "trainer.epochs=5")
    with caplog.at_level("INFO", logger="src"):
        train_here(run_dir, "trainer.epochs=10", "optimizer.lr=0.5", "resume=true")
    assert "optimizer.lr: 0.01 -> 0.5 (the command line wins)" in caplog.text
    # The same as 5 epochs at 0.01 then 5 at 0.5 without stopping: the new rate really applies.
    losses = [value for _, value in read_scalars(run_dir)["train/loss"]]
    at_001 = [value for _, value in read_scalars(_fresh(tmp_path, "a", "trainer.epochs=10"))["train/loss"]]
    assert losses[:6] == at_001[:6] and losses[6] != at_001[6]


def _fresh(tmp_path, name, *overrides):
    train_here(tmp_path / name, *overrides)
    return tmp_path / name


def test_resume_refuses_another_model_or_optimizer_class(tmp_path):
    run_dir = tmp_path / "run"
    train_here(run_dir, "trainer.epochs=5")
    with pytest.raises(CheckpointError, match="another model config"):
        train_here(run_dir, "model=mlp", "trainer.epochs=10", "resume=true")
    with pytest.raises(
        CheckpointError, match=r"another optimizer config \(torch.optim.SGD -> torch.optim.Adam\)"
    ):
        train_here(run_dir, "optimizer=adam", "trainer.epochs=10", "resume=true")


def test_resume_refuses_fewer_epochs_than_trained_and_other_training_files(tmp_path):
    run_dir = tmp_path / "run"
    root = write_fake_dataset(tmp_path / "data")
    pair = ["dataset=mnist_binary", f"dataset.root={root}", "trainer.batch_size=32"]
    train_here(run_dir, *pair, "trainer.epochs=4")
    with pytest.raises(
        CheckpointError, match=r"is at epoch 4, past trainer.epochs=2; resume with trainer.epochs"
    ):
        train_here(run_dir, *pair, "trainer.epochs=2", "resume=true")
    moved = write_fake_dataset(tmp_path / "moved")  # the same files elsewhere: resumes
    other = write_fake_dataset(tmp_path / "other", train_count=200)  # other files: refused
    with pytest.raises(CheckpointError, match="another training data config"):
        train_here(run_dir, *pair[:1], f"dataset.root={other}", *pair[2:], "trainer.epochs=6", "resume=true")
    assert train_here(run_dir, *pair[:1], f"dataset.root={moved}", *pair[2:], "trainer.epochs=6",
                      "resume=true")["epochs"] == 6  # fmt: skip


def test_resume_says_each_changed_training_setting(tmp_path, caplog):
    run_dir = tmp_path / "run"
    train_here(run_dir, "trainer.epochs=5")
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # what the run was trained with
    with caplog.at_level("INFO", logger="src"):
        train_here(run_dir, "trainer.epochs=10", "trainer.batch_size=2", "resume=true")
    assert "trainer.batch_size: None -> 2 (the command line wins)" in caplog.text
    assert "trainer.epochs: 5 -> 10 (the command line wins)" in caplog.text


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    with pytest.raises(CheckpointError, match="last.pt does not exist"):
        train_here(tmp_path / "new", "resume=true")


def test_evaluate_recomputes_what_training_reported(tmp_path, fake_run_args):
    run_dir = tmp_path / "run"
    trained = train_here(run_dir, *fake_run_args[:3], "trainer.epochs=3")
    _write_hydra_config(run_dir, *fake_run_args[:3], "trainer.epochs=3")
    recomputed = evaluate_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert recomputed["test/accuracy"] == trained["test/accuracy"]
    assert recomputed["test/loss"] == trained["test/loss"]


def _write_hydra_config(run_dir, *overrides):
    """What Hydra saves beside a run started by the command (RUN/.hydra/config.yaml)."""
    from omegaconf import OmegaConf

    from tests.helpers import compose_config

    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(compose_config(*overrides), run_dir / ".hydra" / "config.yaml")


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_evaluate_predicts_the_toy_input_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    assert command(f"hydra.run.dir={run_dir}", "trainer.epochs=50").returncode == 0
    process = command(f"ckpt_path={run_dir}/checkpoints/last.pt", "x=4", module="src.evaluate")
    assert process.returncode == 0, process.stderr
    import json

    predicted = json.loads(process.stdout)["predictions"]["4.0"]
    assert predicted == read_metrics(run_dir)["predictions"]["4.0"]
    missing = command("ckpt_path=nope.pt", module="src.evaluate")
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "error: nope.pt does not exist; give a run's checkpoints/last.pt",
    )
    assert command("--help", module="src.evaluate").returncode == 0


def test_a_job_requeued_by_slurm_resumes_by_itself(tmp_path, monkeypatch, caplog):
    run_dir = tmp_path / "run"
    train_here(run_dir, "trainer.epochs=10")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level("INFO", logger="src"):
        train_here(run_dir, "trainer.epochs=20")
    assert f"resuming from {run_dir}/checkpoints/last.pt after epoch 10" in caplog.text
    assert [step for step, _ in read_scalars(run_dir)["train/loss"]] == list(range(20))


def test_a_checkpoint_whose_tensors_do_not_fit_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    train_here(run_dir, "trainer.epochs=5")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["model"] = {name: torch.zeros(3, 3) for name in state["model"]}  # damaged, or edited by hand
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"edited.pt does not fit this run \(Error\(s\) in loading"):
        train_here(tmp_path / "again", "trainer.epochs=10", f"ckpt_path={tmp_path / 'edited.pt'}")
