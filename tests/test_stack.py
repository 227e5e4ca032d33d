"""Stacked runs (hydra/launcher=vectorized): every member gives its solo run's numbers and files."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.evaluate import evaluate_checkpoint
from src.stack import stack_key, train_stack
from src.sweep import FailedRun
from src.train import RunContext
from tests.helpers import (
    command,
    compose_with_choices,
    launch,
    read_metrics,
    read_scalars,
    train_here,
    tutorial_run,
    write_fake_dataset,
)


def stacked(tmp_path, common, variants):
    """Train the jobs `common + variant` as one stack, each in tmp_path/stack/<n>; their outcomes."""
    jobs = []
    for number, variant in enumerate(variants):
        overrides = [*common, *variant]
        cfg, choices = compose_with_choices(*overrides)
        jobs.append((cfg, RunContext(tmp_path / "stack" / str(number), overrides, choices, in_sweep=True)))
    assert len({stack_key(cfg) for cfg, _ in jobs}) == 1  # one stack
    return train_stack(jobs)


def assert_same_numbers(stack_dir, solo_dir):
    """Every scalar of both runs, equal within 1e-5 relative (float re-association only)."""
    ours, theirs = read_scalars(stack_dir), read_scalars(solo_dir)
    assert ours.keys() == theirs.keys()
    for tag in ours:
        assert [s for s, _ in ours[tag]] == [s for s, _ in theirs[tag]]
        assert [v for _, v in ours[tag]] == pytest.approx([v for _, v in theirs[tag]], rel=1e-5, abs=1e-7), (
            tag
        )
    mine, solo = read_metrics(stack_dir), read_metrics(solo_dir)
    assert (
        mine.keys() == solo.keys() and mine["status"] == solo["status"] and mine["epochs"] == solo["epochs"]
    )


def test_a_stack_on_the_toy_set_gives_the_tutorials_numbers(tmp_path):
    variants = [
        ["optimizer.lr=0.01", "seed=2"],
        ["optimizer.lr=0.1", "seed=2"],
        ["optimizer.lr=0.01", "seed=7"],
    ]
    outcomes = stacked(tmp_path, ["trainer.epochs=300"], variants)
    assert [outcome["status"] for outcome in outcomes] == ["completed"] * 3
    for number, seed in ((0, 2), (2, 7)):
        losses, w, b = tutorial_run(seed, epochs=300)
        curve = read_scalars(tmp_path / "stack" / str(number))["train/loss"]
        assert [value for _, value in curve] == pytest.approx(losses, abs=1e-5)
        assert outcomes[number]["parameters"]["w"] == pytest.approx([w], abs=1e-5)
        assert outcomes[number]["parameters"]["b"] == pytest.approx([b], abs=1e-5)
    train_here(tmp_path / "solo", "trainer.epochs=300", "optimizer.lr=0.1", "seed=2")
    assert_same_numbers(tmp_path / "stack" / "1", tmp_path / "solo")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_stacked_members_on_mini_batches_equal_their_solo_runs(tmp_path, fake_pair, optimizer):
    common = [*fake_pair, f"optimizer={optimizer}", "trainer.batch_size=16", "loss=ce"]
    variants = [
        ["optimizer.lr=0.01", "seed=1"],
        ["optimizer.lr=0.03", "seed=1", "optimizer.weight_decay=0.01"],
        ["optimizer.lr=0.01", "seed=4"],
    ]
    extra = {"sgd": ["optimizer.momentum=0.9"], "adam": ["optimizer.betas=[0.8,0.99]"]}[optimizer]
    variants[1] += extra
    outcomes = stacked(tmp_path, common, variants)
    assert all(outcome["status"] == "completed" for outcome in outcomes)
    for number in (1, 2):  # a sample: another seed's split and batches, other hyperparameters
        solo = tmp_path / f"solo{number}"
        train_here(solo, *common, *variants[number])
        assert_same_numbers(tmp_path / "stack" / str(number), solo)


def test_a_member_that_diverges_leaves_the_stack_and_the_others_carry_on(tmp_path):
    outcomes = stacked(tmp_path, ["trainer.epochs=50"], [["optimizer.lr=1e38"], ["optimizer.lr=0.05"]])
    assert isinstance(outcomes[0], FailedRun) and "train/loss became nan at epoch 2" in outcomes[0].reason
    failed = read_metrics(tmp_path / "stack" / "0")
    assert failed["status"] == "failed" and failed["epochs"] == 2 and "diverged" in failed["reason"]
    train_here(tmp_path / "solo", "trainer.epochs=50", "optimizer.lr=0.05")
    assert_same_numbers(tmp_path / "stack" / "1", tmp_path / "solo")


def test_a_members_checkpoint_is_a_solo_runs(tmp_path, fake_pair):
    from src.run import write_run_record  # noqa: F401  (the member wrote .hydra/ like a run)

    stacked(tmp_path, fake_pair, [["optimizer.lr=0.001"], ["optimizer.lr=0.003"]])  # short of a perfect fit
    member = tmp_path / "stack" / "1"
    evaluated = evaluate_checkpoint(member / "checkpoints" / "last.pt")
    assert evaluated["test/accuracy"] == pytest.approx(read_metrics(member)["test/accuracy"])
    # Continued alone for two more epochs, it equals a solo run of five.
    train_here(member, *fake_pair[:2], "trainer.epochs=5", "optimizer.lr=0.003", "resume=true")
    train_here(tmp_path / "solo", *fake_pair[:2], "trainer.epochs=5", "optimizer.lr=0.003")
    assert_same_numbers(member, tmp_path / "solo")


def test_lbfgs_never_stacks():
    cfg, _ = compose_with_choices("optimizer=lbfgs")
    assert stack_key(cfg) is None


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_the_vectorized_launcher_runs_a_sweep_with_stacked_and_solo_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    process = command("-m", "hydra/launcher=vectorized", "optimizer=sgd,lbfgs", "optimizer.lr=0.01,0.5",
                           "trainer.epochs=20", f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert process.returncode == 0, process.stderr
    lines = [line for line in process.stdout.splitlines() if line.startswith("#")]
    assert [line.split()[0] for line in lines] == ["#0", "#1", "#2", "#3"]
    rows = [json.loads((sweep_dir / str(n) / "metrics.json").read_text()) for n in range(4)]
    assert all(row["status"] == "completed" and row["epochs"] == 20 for row in rows)
    alone = tmp_path / "alone"
    train_here(alone, "optimizer=sgd", "optimizer.lr=0.5", "trainer.epochs=20")
    assert_same_numbers(sweep_dir / "1", alone)
    assert (sweep_dir / "1" / ".hydra" / "config.yaml").is_file() and (sweep_dir / "summary.csv").is_file()
    assert torch.load(sweep_dir / "1" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 20


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_an_interrupted_stack_checkpoints_every_member_and_the_sweep_resumes(tmp_path):
    import signal
    import time

    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=vectorized", "optimizer.lr=0.01,0.05", "trainer.epochs=600",
            "trainer.checkpoint_every=50", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    process = launch(*args)
    deadline = time.monotonic() + 120
    while not (sweep_dir / "1" / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # `kill`: what a scheduler sends (the solo runs test Ctrl-C)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    stopped = [read_metrics(sweep_dir / str(n)) for n in range(2)]
    assert [m["status"] for m in stopped] == ["interrupted"] * 2 and stopped[0]["epochs"] == stopped[1][
        "epochs"
    ]
    printed = err.strip().splitlines()[-1]
    assert "resume=true" in printed and "hydra/launcher=vectorized" in printed and "Traceback" not in err

    pasted = [sys.executable, *shlex.split(printed.strip())[1:]]  # the printed command, as a user pastes it
    resumed = subprocess.run(pasted, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    train_here(tmp_path / "alone", "optimizer.lr=0.05", "trainer.epochs=600")
    assert_same_numbers(sweep_dir / "1", tmp_path / "alone")


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_stack_stopped_by_ctrl_c_and_resumed_equals_the_stack_never_stopped_to_the_last_bit(tmp_path):
    import signal
    import time

    root = write_fake_dataset(tmp_path / "data")
    sweep = ["-m", "hydra/launcher=vectorized", "dataset=mnist_binary", f"dataset.root={root}",
             "optimizer.lr=0.01,0.05,0.1", "trainer.epochs=40", "trainer.checkpoint_every=5",
             "trainer.batch_size=16"]  # fmt: skip
    assert command(*sweep, f"hydra.sweep.dir={tmp_path / 'whole'}").returncode == 0
    process = launch(*sweep, f"hydra.sweep.dir={tmp_path / 'cut'}")
    deadline = time.monotonic() + 120
    while not (tmp_path / "cut" / "2" / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode == 130
    assert read_metrics(tmp_path / "cut" / "0")["status"] == "interrupted"
    resumed = command(*sweep, f"hydra.sweep.dir={tmp_path / 'cut'}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    for job in range(3):  # every scalar of every epoch, bitwise: the same stack, the same arithmetic
        assert read_scalars(tmp_path / "cut" / str(job)) == read_scalars(tmp_path / "whole" / str(job))
