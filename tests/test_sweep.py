"""Sweeps: summary ranking, failure tolerance, launchers, Optuna, and no state leaking between jobs."""

import csv
import json

import pytest
import yaml
from PIL import Image

from src.sweep import FailedRun, write_summary
from tests.conftest import event_dir, read_scalars, run_cli, write_fake_dataset


def make_job(sweep_dir, number, overrides, metrics):
    job = sweep_dir / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summary_ranks_best_first_and_failures_last(tmp_path):
    make_job(tmp_path, 0, ["optimizer.lr=0.1"], {"status": "completed", "epochs": 5, "val/accuracy": 0.91})
    make_job(tmp_path, 1, ["optimizer.lr=9"], {"status": "failed", "reason": "diverged", "epochs": 2})
    make_job(tmp_path, 2, ["optimizer.lr=0.3"], {"status": "completed", "epochs": 5, "val/accuracy": 0.97})
    make_job(tmp_path, 3, ["optimizer.lr=1"], None)  # killed before writing metrics.json
    rows, table = write_summary(tmp_path, "val/accuracy", "maximize")
    assert [row["job"] for row in rows] == [2, 0, 1, 3]
    with (tmp_path / "summary.csv").open() as file:
        saved = list(csv.DictReader(file))
    assert [(r["rank"], r["job"], r["status"]) for r in saved] == [
        ("1", "2", "completed"), ("2", "0", "completed"), ("3", "1", "failed"), ("4", "3", "failed")
    ]  # fmt: skip
    assert saved[0]["overrides"] == "optimizer.lr=0.3" and saved[0]["val/accuracy"] == "0.97"
    assert "killed" in saved[3]["reason"]
    assert (tmp_path / "summary.md").read_text() == table
    assert "| 1 | 2 | optimizer.lr=0.3 | completed | 0.97 |" in table

    rows, _ = write_summary(tmp_path, "val/accuracy", "minimize")
    assert [row["job"] for row in rows] == [0, 2, 1, 3]


def test_a_failed_run_refuses_to_be_a_number():
    with pytest.raises(ValueError, match="diverged"):
        float(FailedRun("diverged"))


def sweep(tmp_path, *overrides):
    sweep_dir = tmp_path / "sweep"
    process = run_cli("-m", *overrides, f"hydra.sweep.dir={sweep_dir}")
    return process, sweep_dir


def summary_rows(sweep_dir):
    with (sweep_dir / "summary.csv").open() as file:
        return list(csv.DictReader(file))


def test_a_diverging_job_is_a_failed_row_and_the_others_still_run(tmp_path):
    process, sweep_dir = sweep(tmp_path, "loss=bce,ce", "optimizer.lr=0.01,1e38", "trainer.epochs=30")
    assert process.returncode == 1
    assert "error: 2 of 4 jobs failed" in process.stderr
    rows = summary_rows(sweep_dir)
    assert [row["status"] for row in rows] == ["completed", "completed", "failed", "failed"]
    assert {row["overrides"] for row in rows[:2]} == {
        "loss=bce optimizer.lr=0.01 trainer.epochs=30",
        "loss=ce optimizer.lr=0.01 trainer.epochs=30",
    }
    assert float(rows[0]["train/loss"]) < float(rows[1]["train/loss"])  # best first
    assert [row["job"] for row in rows[2:]] == ["1", "3"]  # failures last, by job number
    assert all("diverged" in row["reason"] for row in rows[2:])
    failed = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "diverged" in failed["reason"]
    assert "| rank | job | overrides |" in process.stdout  # the table is printed too
    with Image.open(sweep_dir / "sweep_curves.png") as figure:  # one figure comparing the runs
        figure.verify()
    assert "![curves of every job](sweep_curves.png)" in (sweep_dir / "summary.md").read_text()


def test_runs_are_named_by_their_settings_and_carry_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    process, sweep_dir = sweep(tmp_path, "loss=bce,ce", "trainer.epochs=3")
    assert process.returncode == 0, process.stderr
    assert event_dir(sweep_dir / "1") == sweep_dir / "1" / "loss=ce,trainer.epochs=3"
    accumulator = EventAccumulator(str(event_dir(sweep_dir / "1")))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["loss"].string_value == "ce" and hparams["trainer.epochs"].number_value == 3
    assert hparams["optimizer.lr"].number_value == 0.01


def test_a_job_in_a_sweep_gives_the_numbers_of_the_same_run_alone(tmp_path):
    root = write_fake_dataset(tmp_path / "data")
    common = ["dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=4", "trainer.batch_size=16"]
    process, sweep_dir = sweep(tmp_path, *common, "loss=bce,ce", "seed=5,6")
    assert process.returncode == 0, process.stderr
    alone = run_cli(*common, "loss=ce", "seed=6", f"hydra.run.dir={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr
    in_sweep = json.loads((sweep_dir / "3" / "metrics.json").read_text())
    assert in_sweep == json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert read_scalars(sweep_dir / "3") == read_scalars(tmp_path / "alone")


@pytest.mark.parametrize("launcher", ["hydra/launcher=joblib", "hydra/launcher=submitit_local"])
def test_launchers_run_every_job_in_its_own_directory(tmp_path, launcher):
    extra = ["hydra.launcher.n_jobs=2"] if "joblib" in launcher else []
    process, sweep_dir = sweep(tmp_path, launcher, *extra, "loss=bce,ce", "optimizer.lr=0.01,1e38",
                               "trainer.epochs=20")  # fmt: skip
    assert process.returncode == 1  # two diverge, and the sweep says so
    rows = {row["overrides"]: row for row in summary_rows(sweep_dir)}
    assert rows["loss=ce optimizer.lr=0.01 trainer.epochs=20"]["status"] == "completed"
    assert rows["loss=bce optimizer.lr=1e+38 trainer.epochs=20"]["status"] == "failed"
    for job in range(4):
        assert len(read_scalars(sweep_dir / str(job))["train/loss"]) >= 1  # its own writer and events


def test_slurm_launcher_config_composes():
    process = run_cli("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra")
    assert process.returncode == 0, process.stderr
    launcher = yaml.safe_load(process.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["partition"] == "gpu"
    for key in ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "array_parallelism"):
        assert key in launcher


def optuna_search(tmp_path, name, *overrides):
    sweep_dir = tmp_path / name
    process = run_cli("hparams_search=optuna_lr", "hydra.sweeper.n_trials=6", "trainer.epochs=30",
                      *overrides, f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    return process, sweep_dir


def test_optuna_search_is_seeded_and_its_best_trial_tops_the_summary(tmp_path):
    process, sweep_dir = optuna_search(tmp_path, "first")
    assert "Traceback" not in process.stderr, process.stderr
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    rows = summary_rows(sweep_dir)
    assert len(rows) == 6
    assert {row["status"] for row in rows} <= {"completed", "pruned"}  # the median pruner may stop some
    assert float(rows[0]["train/loss"]) == pytest.approx(results["best_value"])
    assert f"optimizer.lr={results['best_params']['optimizer.lr']}" in rows[0]["overrides"]
    again, again_dir = optuna_search(tmp_path, "again")
    assert again.returncode == process.returncode, again.stderr
    assert [r["overrides"] for r in summary_rows(again_dir)] == [r["overrides"] for r in rows]


def test_a_diverging_optuna_trial_is_a_failed_row_not_a_crash(tmp_path):
    process, sweep_dir = optuna_search(tmp_path, "wild", "optimizer.lr=tag(log, interval(1e-3, 1e38))")
    assert "Traceback" not in process.stderr
    statuses = [row["status"] for row in summary_rows(sweep_dir)]
    assert len(statuses) == 6 and "failed" in statuses
    assert process.returncode == (0 if set(statuses) == {"completed"} else 1)


def test_experiment_presets_compose():
    tutorial = run_cli("experiment=tutorial", "--cfg", "job")
    defaults = run_cli("--cfg", "job")
    assert tutorial.returncode == 0 and tutorial.stdout == defaults.stdout
    comparison = run_cli("experiment=bce_vs_ce", "--cfg", "hydra")
    hydra = yaml.safe_load(comparison.stdout)["hydra"]
    assert hydra["mode"] == "MULTIRUN"
    assert hydra["sweeper"]["params"] == {"loss": "bce,ce", "optimizer.lr": "0.01,0.1,0.3"}
    assert hydra["runtime"]["choices"]["dataset"] == "mnist_binary"
