"""Learning-rate schedules: each one's rates equal torch's own scheduler's, they resume exactly, and the
pairings that make no sense are refused."""

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler

from src.checkpoint import CheckpointError
from src.errors import ConfigError
from tests.helpers import compose_config, read_metrics, read_scalars, train_here

EPOCHS = 6

# Each schedule's overrides, and the same schedule built directly from torch.
SCHEDULES = {
    "step": (
        ["scheduler.step_size=2", "scheduler.gamma=0.5"],
        lambda o: lr_scheduler.StepLR(o, 2, gamma=0.5),
    ),
    "cosine": ([], lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=0.0)),
    "exponential": (["scheduler.gamma=0.8"], lambda o: lr_scheduler.ExponentialLR(o, gamma=0.8)),
    "plateau": (  # decays whenever val/loss has not fallen by half: several times in 6 epochs
        ["scheduler.patience=0", "scheduler.threshold=0.5"],
        lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="min", factor=0.1, patience=0, threshold=0.5),
    ),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_schedule_gives_torchs_own_rates_epoch_by_epoch(tmp_path, fake_pair, name):
    overrides, reference = SCHEDULES[name]
    metrics = train_here(tmp_path, *fake_pair, f"trainer.epochs={EPOCHS}", f"scheduler={name}", *overrides)
    scalars = read_scalars(tmp_path)
    logged = scalars["train/lr"]
    assert [step for step, _ in logged] == list(range(EPOCHS))

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # the MNIST recipe's lr
    scheduler = reference(optimizer)
    expected = []
    for _, val_loss in scalars["val/loss"]:
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(val_loss) if name == "plateau" else scheduler.step()
    assert [rate for _, rate in logged] == [
        float(np.float32(rate)) for rate in expected
    ]  # TensorBoard: float32
    assert len(set(expected)) > 1  # the rate really moved
    assert metrics["train/lr"] == expected[-1] == read_metrics(tmp_path)["train/lr"]


def test_no_schedule_is_no_scheduler_and_logs_no_rate(tmp_path):
    assert compose_config().scheduler is None
    train_here(tmp_path, "trainer.epochs=3")
    assert "train/lr" not in read_scalars(tmp_path) and "train/lr" not in read_metrics(tmp_path)


@pytest.mark.parametrize("name", ["cosine", "plateau"])
def test_a_run_with_a_schedule_resumes_exactly(tmp_path, fake_pair, name):
    schedule = [
        f"scheduler={name}",
        *SCHEDULES[name][0],
        "scheduler.T_max=8" if name == "cosine" else "seed=2",
    ]
    stopped, never = tmp_path / "stopped", tmp_path / "never"
    train_here(stopped, *fake_pair, "trainer.epochs=3", *schedule)
    train_here(stopped, *fake_pair, "trainer.epochs=8", *schedule, "resume=true")
    train_here(never, *fake_pair, "trainer.epochs=8", *schedule)
    assert read_scalars(stopped) == read_scalars(never)
    assert read_metrics(stopped) == read_metrics(never)
    saved = [torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (stopped, never)]
    assert saved[0]["scheduler"] == saved[1]["scheduler"]
    assert all(torch.equal(saved[0]["model"][k], saved[1]["model"][k]) for k in saved[0]["model"])


def test_a_schedule_keeps_its_base_rate_on_resume(tmp_path):
    train_here(tmp_path, "trainer.epochs=3", "scheduler=exponential")
    with pytest.raises(CheckpointError, match=r"optimizer.lr cannot change on resume \(0.01 -> 0.5\)"):
        train_here(tmp_path, "trainer.epochs=6", "scheduler=exponential", "optimizer.lr=0.5", "resume=true")
    with pytest.raises(CheckpointError, match="another scheduler config"):
        train_here(tmp_path, "trainer.epochs=6", "scheduler=step", "resume=true")


def test_pairings_that_make_no_sense_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="line search"):
        train_here(tmp_path / "a", "optimizer=lbfgs", "scheduler=cosine", "trainer.epochs=2")
    # LBFGS's fixed steps (no line search) scale with lr: a schedule applies.
    lbfgs = ["optimizer=lbfgs", "optimizer.line_search_fn=null", "optimizer.lr=0.1"]
    metrics = train_here(
        tmp_path / "b", *lbfgs, "scheduler=exponential", "scheduler.gamma=0.5", "trainer.epochs=3"
    )
    assert metrics["train/lr"] == pytest.approx(0.025)
    with pytest.raises(ConfigError, match="only measured after training"):
        train_here(tmp_path / "c", "scheduler=plateau", "objective.metric=test/loss", "trainer.epochs=2")


@pytest.mark.parametrize(
    "override,message",
    [
        ("scheduler=step scheduler.step_size=0", "scheduler.step_size must be at least 1"),
        ("scheduler=exponential scheduler.gamma=1.5", r"scheduler.gamma must be in \(0, 1\]"),
        ("scheduler=cosine scheduler.T_max=0", "scheduler.T_max must be at least 1"),
        ("scheduler=plateau scheduler.factor=1", r"scheduler.factor must be in \(0, 1\)"),
    ],
)
def test_schedule_settings_are_range_checked(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train_here(tmp_path, *override.split())
