"""What makes the vectorized launcher fast keeps it exact: stacked members equal their solo runs."""

import pytest
import torch
from omegaconf import OmegaConf

from src.losses import BinaryCrossEntropy, CrossEntropy
from src.models import MLP
from src.optimizers import OwnOptimizer
from src.stacked_step import StackedOptimizer, stacked_forward, stacked_parameters, write_back
from src.sweep import FailedRun
from tests.helpers import (
    command,
    read_metrics,
    train_here,
    write_overfitting_dataset,
)
from tests.test_stack import assert_same_numbers, stacked


@pytest.mark.parametrize(
    ("head", "classes"),
    [(BinaryCrossEntropy, 2), (BinaryCrossEntropy, 4), (CrossEntropy, 2), (CrossEntropy, 4)],
)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_member_losses_are_each_members_loss(head, classes, reduction):
    loss_head = head(reduction, classes)
    torch.manual_seed(0)
    logits = torch.randn(5, 30, loss_head.num_outputs)
    targets = loss_head.prepare_targets(torch.randint(0, classes, (30,)))
    expected = torch.stack([loss_head.loss(member, targets) for member in logits])
    assert loss_head.member_losses(logits, targets).tolist() == pytest.approx(expected.tolist(), rel=1e-6)


OPTIMIZERS = {
    "sgd": (torch.optim.SGD, [{"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "nesterov": False},
                              {"lr": 0.03, "momentum": 0.9, "weight_decay": 0.01, "nesterov": False},
                              {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.0, "nesterov": True}]),
    "adam": (torch.optim.Adam, [{"lr": 0.01, "betas": (0.9, 0.999), "weight_decay": 0.0},
                                {"lr": 0.003, "betas": (0.8, 0.99), "weight_decay": 0.01}]),
    "adamw": (torch.optim.AdamW, [{"lr": 0.01, "betas": (0.9, 0.999), "weight_decay": 0.01},
                                  {"lr": 0.02, "betas": (0.5, 0.9), "weight_decay": 0.1}]),
}  # fmt: skip


@pytest.mark.parametrize("holder", ["own", "torch"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_stacked_optimizer_steps_each_member_as_torch_does_alone(name, holder):
    """Members held by the project's OwnOptimizer (every run without a schedule) or by torch's class
    (a scheduled run) step, and end with the state_dict, that torch.optim gives each alone."""
    kind, settings = OPTIMIZERS[name]
    torch.manual_seed(0)
    inputs, targets = torch.randn(40, 6), torch.randn(40, 3)
    solos = [MLP(6, 3, 5) for _ in settings]
    copies = [MLP(6, 3, 5) for _ in settings]
    for solo, copied in zip(solos, copies, strict=True):
        copied.load_state_dict(solo.state_dict())
    solo_optimizers = [kind(m.parameters(), **s) for m, s in zip(solos, settings, strict=True)]
    if holder == "own":
        member_optimizers = [OwnOptimizer(kind.__name__, m.parameters(), **s)
                             for m, s in zip(copies, settings, strict=True)]  # fmt: skip
    else:
        member_optimizers = [kind(m.parameters(), **s) for m, s in zip(copies, settings, strict=True)]
    params = stacked_parameters(copies)
    stacked = StackedOptimizer(params, member_optimizers)
    forward = stacked_forward(copies[0])
    for _ in range(7):
        for model, optimizer in zip(solos, solo_optimizers, strict=True):
            optimizer.zero_grad()
            ((model(inputs) - targets) ** 2).mean().backward()
            optimizer.step()

        def closure():
            stacked.zero_grad()
            losses = ((forward(params, inputs) - targets) ** 2).mean((1, 2))
            losses.sum().backward()
            return losses.detach()

        stacked.step(closure)
    write_back(params, copies)
    for row, (solo, copied, optimizer) in enumerate(zip(solos, copies, member_optimizers, strict=True)):
        for mine, theirs in zip(copied.parameters(), solo.parameters(), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
        stacked.export(row, optimizer, copied)
        solo_state = solo_optimizers[row].state_dict()["state"]
        assert optimizer.state_dict()["param_groups"] == solo_optimizers[row].state_dict()["param_groups"]
        assert optimizer.state_dict()["state"].keys() == solo_state.keys()
        for index, state in optimizer.state_dict()["state"].items():
            assert state.keys() == solo_state[index].keys()
            for key, value in state.items():
                torch.testing.assert_close(value, solo_state[index][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["logistic", "mlp"])
def test_cohorts_of_several_seeds_step_together_and_equal_their_solo_runs(tmp_path, fake_pair, model):
    common = [*fake_pair, f"model={model}", "trainer.batch_size=16", "optimizer=adamw"]
    variants = [[f"optimizer.lr={lr}", f"seed={seed}"] for seed in (1, 4) for lr in (0.01, 0.03)]
    variants[0] += ["optimizer.lr=1e30"]  # diverges: leaves its cohort, the others carry on
    outcomes = stacked(tmp_path, common, variants)
    assert isinstance(outcomes[0], FailedRun)
    assert all(outcome["status"] == "completed" for outcome in outcomes[1:])
    for number in (1, 3):  # one of each seed
        solo = tmp_path / f"solo{number}"
        train_here(solo, *common, *variants[number])
        assert_same_numbers(tmp_path / "stack" / str(number), solo)


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_stacked_jobs_directory_holds_what_a_basic_launchers_job_holds(tmp_path):
    sweeps = {}
    for launcher in ("basic", "vectorized"):
        sweep_dir = tmp_path / launcher
        process = command("-m", f"hydra/launcher={launcher}", "optimizer.lr=0.01,0.1", "seed=1,1",
                               "trainer.epochs=5", f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
        assert process.returncode == 0, process.stderr
        sweeps[launcher] = sweep_dir
    for number in range(4):
        basic, stacked = (sweeps[name] / str(number) for name in ("basic", "vectorized"))
        assert files_in(stacked) == files_in(basic)
        for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "config_tree.txt"):
            assert (stacked / name).read_text() == (basic / name).read_text(), name
        settings = [OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra for folder in (stacked, basic)]
        assert settings[0].runtime.output_dir == str(stacked.resolve())
        for node in ("overrides.task", "job.override_dirname", "job.num", "runtime.choices.optimizer"):
            assert OmegaConf.select(settings[0], node) == OmegaConf.select(settings[1], node), node
        assert f"#{number}" in (stacked / "train.log").read_text()  # the job's line, in its own log
        assert read_metrics(stacked).keys() == read_metrics(basic).keys()


def files_in(folder):
    """Every file under `folder`, an event file by its folder (its name holds a time and a host)."""
    return sorted(
        str(path.parent.relative_to(folder)) + "/<events>"
        if "tfevents" in path.name
        else str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file()
    )


SCHEDULES = [
    ["scheduler=step", "scheduler.step_size=2"],
    ["scheduler=cosine"],
    ["scheduler=plateau", "scheduler.patience=0", "scheduler.threshold=0.5"],
]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_each_member_follows_its_own_schedule_from_its_own_lr(tmp_path, fake_pair, schedule):
    common = [*fake_pair, "trainer.epochs=6", "trainer.batch_size=32", *schedule]
    variants = [
        ["optimizer.lr=0.1", "seed=1"],
        ["optimizer.lr=0.03", "seed=1"],
        ["optimizer.lr=0.1", "seed=2"],
    ]
    outcomes = stacked(tmp_path, common, variants)
    assert all(outcome["status"] == "completed" for outcome in outcomes)
    for number in (1, 2):
        solo = tmp_path / f"solo{number}"
        train_here(solo, *common, *variants[number])
        assert_same_numbers(tmp_path / "stack" / str(number), solo)  # train/lr among the scalars
        ours, theirs = (torch.load(d / "checkpoints" / "last.pt", weights_only=False) for d in
                        (tmp_path / "stack" / str(number), solo))  # fmt: skip
        assert ours["scheduler"].keys() == theirs["scheduler"].keys()
        for key, value in theirs["scheduler"].items():
            assert ours["scheduler"][key] == (
                pytest.approx(value, rel=1e-5) if isinstance(value, float) else value
            )


def test_a_member_out_of_patience_leaves_the_stack_and_the_others_carry_on(tmp_path):
    folder = write_overfitting_dataset(tmp_path / "noise")
    common = ["dataset=mnist_binary", f"dataset.root={folder}", "dataset.val_fraction=0.3",
              "trainer.epochs=15", "trainer.patience=3"]  # fmt: skip
    variants = [["optimizer.lr=0.1"], ["optimizer.lr=0.02"], ["optimizer.lr=0.3", "seed=3"]]
    outcomes = stacked(tmp_path, common, variants)
    assert len({outcome["epochs"] for outcome in outcomes}) > 1  # they stop at different epochs
    for number, variant in enumerate(variants):
        solo = tmp_path / f"solo{number}"
        alone = train_here(solo, *common, *variant)
        member = tmp_path / "stack" / str(number)
        assert_same_numbers(member, solo)
        mine = read_metrics(member)
        assert [mine[key] for key in ("epochs", "best_epoch", "stopped_early", "test_weights")] == [
            alone[key] for key in ("epochs", "best_epoch", "stopped_early", "test_weights")
        ]
        for key in ("val/loss", "test/loss", "test/accuracy"):
            assert mine[key] == pytest.approx(alone[key], rel=1e-5), key
        for name in ("best.pt", "last.pt"):
            saved = (torch.load(d / "checkpoints" / name, weights_only=False) for d in (member, solo))
            assert next(saved)["epoch"] == next(saved)["epoch"], name
