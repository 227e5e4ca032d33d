"""src.api: runs from Python give the command's folder, files and numbers; sweeps read back as tables;
src.reproduce trains a finished run's configuration again."""

import json
import logging

import pytest
import torch
from omegaconf import OmegaConf

from src import api
from src.errors import ConfigError, UserError
from src.events import EventWriter, read_scalars
from src.reproduce import differences, main, replayed_overrides
from tests.helpers import command

TOY = ("trainer.epochs=5",)


def test_a_run_from_python_writes_the_commands_folder_and_numbers(tmp_path):
    process = command(*TOY, f"hydra.run.dir={tmp_path / 'cli'}")
    assert process.returncode == 0, process.stderr
    run = api.run(*TOY, f"hydra.run.dir={tmp_path / 'api'}")
    cli = api.load_run(tmp_path / "cli")
    assert run.dir == (tmp_path / "api").resolve()
    assert run.metrics == cli.metrics and run.metrics["status"] == "completed"
    assert run.config == cli.config and run.config.trainer.epochs == 5
    assert run.overrides == cli.overrides == list(TOY)
    for name in ("config.yaml", "overrides.yaml"):
        assert (run.dir / ".hydra" / name).read_text() == (cli.dir / ".hydra" / name).read_text()
    settings = [OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra for folder in (run.dir, cli.dir)]
    for setting in settings:  # the folders differ, and nothing else
        setting.run.dir = setting.runtime.output_dir = None
        setting.overrides.hydra = [o for o in setting.overrides.hydra if not o.startswith("hydra.run.dir")]
    assert OmegaConf.to_yaml(settings[0]) == OmegaConf.to_yaml(settings[1])
    assert sorted(p.name for p in run.dir.iterdir()) == sorted(p.name for p in cli.dir.iterdir())
    assert "completed: 5 epochs" in (run.dir / "train.log").read_text()


def test_two_runs_in_one_process_leave_it_as_it_was(tmp_path):
    torch.manual_seed(123)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    handlers = list(logging.getLogger().handlers)
    first = api.run("optimizer.lr=0.1", *TOY, f"hydra.run.dir={tmp_path / 'a'}")
    second = api.run("optimizer.lr=0.1", *TOY, f"hydra.run.dir={tmp_path / 'b'}")
    assert first.metrics == second.metrics
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert logging.getLogger().handlers == handlers  # no run's train.log left on the root logger
    logging.getLogger("src").info("after the runs")
    assert "after the runs" not in (second.dir / "train.log").read_text()


def test_a_users_mistake_raises_the_commands_one_line(tmp_path):
    with pytest.raises(ConfigError, match="did you mean optimizer=adam"):
        api.run("optimizer=adm")
    with pytest.raises(ConfigError, match="optimizer.lr must be positive"):
        api.run("optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert not (tmp_path / "bad").exists()  # refused before it wrote anything, as the command
    with pytest.raises(ConfigError, match="add -m"):
        api.run("experiment=bce_vs_ce")
    with pytest.raises(ConfigError, match="sweep"):
        api.run("-m", "seed=1,2")


def test_a_finished_folder_is_not_replaced(tmp_path):
    api.run(*TOY, f"hydra.run.dir={tmp_path}")
    with pytest.raises(ConfigError, match="already holds a run"):
        api.run(*TOY, f"hydra.run.dir={tmp_path}")
    with pytest.raises(UserError, match="no metrics.json"):
        api.load_run(tmp_path / "nothing")


def test_a_runs_curves_are_its_tensorboard_scalars(tmp_path):
    pytest.importorskip("pandas")
    run = api.run(*TOY, f"hydra.run.dir={tmp_path}")
    curves = run.curves()
    assert list(curves.columns) == ["tag", "step", "value"]
    loss = curves[curves.tag == "train/loss"]
    assert list(loss.step) == [0, 1, 2, 3, 4]
    assert loss.value.iloc[-1] == pytest.approx(run.metrics["train/loss"], rel=1e-6)


def finished_sweep(folder, lrs=(0.1, 0.2), seeds=(0, 1)):
    """A sweep's folder as the command leaves it (sweep.yaml, multirun.yaml, job folders), by hand."""
    folder.mkdir()
    record = {"overrides": [], "params": {}, "varying": ["optimizer.lr", "loss", "seed"]}
    (folder / "sweep.yaml").write_text(OmegaConf.to_yaml(record))
    (folder / "multirun.yaml").write_text("objective: {metric: train/loss, direction: minimize}\n")
    number = 0
    for lr in lrs:
        for seed in seeds:
            job = folder / str(number)
            (job / ".hydra").mkdir(parents=True)
            overrides = [f"optimizer.lr={lr}", "loss=bce", f"seed={seed}"]
            (job / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
            loss = lr + seed / 100
            metrics = {
                "status": "completed",
                "epochs": 2,
                "train/loss": loss,
                "test/accuracy_per_class": {"3": 0.5},
            }
            (job / "metrics.json").write_text(json.dumps(metrics))
            writer = EventWriter(job / "run")
            for step in range(2):
                writer.scalar("train/loss", loss + 1 - step, step)
            writer.close()
            number += 1
    return folder


def test_a_sweeps_table_has_a_typed_column_per_swept_key(tmp_path):
    pytest.importorskip("pandas")
    sweep = api.load_sweep(finished_sweep(tmp_path / "sweep"))
    table = sweep.table()
    assert list(table.columns[:5]) == ["job", "optimizer.lr", "loss", "seed", "status"]
    assert list(table.job) == [0, 1, 2, 3] and table["optimizer.lr"].dtype == float
    assert table.seed.dtype == int and set(table.loss) == {"bce"}
    assert list(table["train/loss"]) == pytest.approx([0.1, 0.11, 0.2, 0.21])
    assert list(table["test/accuracy_per_class/3"]) == [0.5] * 4


def test_a_sweeps_curves_and_seeds_table(tmp_path):
    pytest.importorskip("pandas")
    sweep = api.load_sweep(finished_sweep(tmp_path / "sweep"))
    curves = sweep.curves()
    assert list(curves.columns) == ["job", "tag", "step", "value"] and len(curves) == 8
    assert list(curves[curves.job == 3].value) == pytest.approx([1.21, 0.21])
    configs = sweep.by_config()
    assert list(configs["optimizer.lr"]) == [0.1, 0.2] and list(configs.seeds) == [2, 2]
    assert list(configs["train/loss_mean"]) == pytest.approx([0.105, 0.205])
    assert "seed" not in configs.columns


def test_a_sweep_without_seeds_has_no_seeds_table(tmp_path):
    pytest.importorskip("pandas")
    sweep = api.load_sweep(finished_sweep(tmp_path / "sweep", seeds=(0,)))
    with pytest.raises(UserError, match="over seeds"):
        sweep.by_config()
    with pytest.raises(UserError, match="not a sweep"):
        api.load_sweep(tmp_path)


def test_scalars_read_as_tensorboards_own_reader_reads_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = EventWriter(tmp_path)
    for step in range(6):
        first.scalar("train/loss", 1.0, step)
        first.scalar("val/loss", 3.0, step)
    first.close()
    resumed = EventWriter(tmp_path, purge_step=3)
    for step in range(3, 5):
        resumed.scalar("train/loss", 2.0, step)
    resumed.close()
    with resumed.path.open("ab") as file:  # a record cut short by a kill
        file.write(b"\x10\x00\x00\x00\x00\x00\x00\x00abc")
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    accumulator.Reload()
    theirs = {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }
    assert read_scalars(tmp_path) == theirs
    assert theirs["train/loss"] == [(0, 1.0), (1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]


def test_reproduce_replays_a_runs_overrides_into_a_new_folder(tmp_path):
    source = api.run(*TOY, "optimizer.lr=0.05", f"hydra.run.dir={tmp_path / 'first'}")
    assert replayed_overrides(source) == [*TOY, "optimizer.lr=0.05"]
    assert main([str(source.dir), f"hydra.run.dir={tmp_path / 'again'}"]) == 0
    again = api.load_run(tmp_path / "again")
    assert again.metrics == source.metrics and again.config == source.config
    assert differences(source, again) == ([], [], 0.0)


def test_reproduce_leaves_out_where_a_run_continued_from(tmp_path):
    source = api.run(*TOY, f"hydra.run.dir={tmp_path / 'first'}")
    (source.dir / ".hydra" / "overrides.yaml").write_text(
        OmegaConf.to_yaml([*TOY, "resume=true", f"ckpt_path={source.dir / 'checkpoints' / 'last.pt'}"])
    )
    assert replayed_overrides(source) == list(TOY)


def test_reproduce_says_which_numbers_differ(tmp_path, capsys):
    source = api.run(*TOY, f"hydra.run.dir={tmp_path / 'first'}")
    metrics = {**source.metrics, "train/loss": source.metrics["train/loss"] * 1.01}
    (source.dir / "metrics.json").write_text(json.dumps(metrics))
    assert main([str(source.dir), f"hydra.run.dir={tmp_path / 'again'}"]) == 1
    assert "error: the numbers differ" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing")]) == 2


@pytest.mark.slow
def test_a_sweep_from_python_runs_the_command_and_reads_back(tmp_path, capsys):
    pytest.importorskip("pandas")
    sweep = api.sweep(*TOY, "optimizer.lr=0.01,0.1", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}",
                      launcher="vectorized")  # fmt: skip
    assert "#3 optimizer.lr=0.1 seed=1" in capsys.readouterr().out
    table = sweep.table()
    assert list(table["optimizer.lr"]) == [0.01, 0.01, 0.1, 0.1] and set(table.status) == {"completed"}
    assert list(sweep.by_config().seeds) == [2, 2]
    assert set(sweep.curves().job) == {0, 1, 2, 3}
    with pytest.raises(UserError, match="already holds this sweep"):
        api.sweep(*TOY, "optimizer.lr=0.01,0.1", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}")
    job = sweep.runs[3]
    assert main([str(job.dir), f"hydra.run.dir={tmp_path / 'again'}"]) == 0  # a job replays alone
