"""Sweeps: summary ranking, failure tolerance, launchers, Optuna, and no state leaking between jobs."""

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from src.events import EventWriter
from src.sweep import FailedRun, SweepSummary, mean_band, seed_groups, write_summary, write_sweep_figure
from tests import tensorboard_readers as tb
from tests.helpers import (
    alive,
    children_of,
    command,
    event_dir,
    launch,
    read_scalars,
    stop_by_hand,
    train_here,
    write_fake_dataset,
    write_overfitting_dataset,
)


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


def seeds_sweep(sweep_dir):
    """Made-up jobs: lr 0.1 and 0.3 over seeds 0-2 (and a failed seed 3 of 0.3), lr 1 over one seed."""
    accuracies = {"0.1": [0.97, 0.98, 0.99], "0.3": [0.95, 0.96, 0.97], "1": [0.93]}
    number = 0
    for lr, values in accuracies.items():
        for seed, accuracy in enumerate(values):
            metrics = {"status": "completed", "epochs": 5, "val/accuracy": accuracy, "val/loss": 1 - accuracy}
            make_job(sweep_dir, number, [f"optimizer.lr={lr}", f"seed={seed}"], metrics)
            number += 1
    make_job(sweep_dir, number, ["optimizer.lr=0.3", "seed=3"], {"status": "failed", "reason": "diverged"})
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump({"varying": ["optimizer.lr", "seed"]}))


def test_seeds_are_summarized_by_configuration_with_numbers_computed_by_hand(tmp_path):
    seeds_sweep(tmp_path)
    rows, table = write_summary(tmp_path, "val/accuracy", "maximize")
    assert [row["job"] for row in rows][:3] == [2, 1, 0]  # the table by job is still there, unchanged
    with (tmp_path / "summary_by_config.csv").open() as file:
        configs = list(csv.DictReader(file))
    assert [(c["rank"], c["config"], c["seeds"], c["failed"]) for c in configs] == [
        ("1", "optimizer.lr=0.1", "3", "0"),
        ("2", "optimizer.lr=0.3", "3", "1"),
        ("3", "optimizer.lr=1", "1", "0"),
    ]
    by_hand = {
        "optimizer.lr=0.1": (0.98, 0.01),
        "optimizer.lr=0.3": (0.96, 0.01),
        "optimizer.lr=1": (0.93, None),
    }
    for config in configs:
        mean, std = by_hand[config["config"]]
        assert float(config["val/accuracy_mean"]) == pytest.approx(mean)
        assert float(config["val/loss_mean"]) == pytest.approx(1 - mean)
        assert (
            (config["val/accuracy_std"] == "")
            if std is None
            else float(config["val/accuracy_std"]) == pytest.approx(std)
        )
    # Welch: t = 0.02 / sqrt(2 * 0.01**2 / 3) = sqrt(6) with 4 degrees of freedom; its closed form at df 4.
    x = math.sqrt(6 / 10)
    assert float(configs[1]["p_vs_best"]) == pytest.approx(1 - (3 * x - x**3) / 2)
    assert configs[1]["tied_with_best"] == "True"  # p = 0.07: three seeds do not tell 0.96 from 0.98
    assert configs[2]["p_vs_best"] == configs[2]["tied_with_best"] == ""  # one seed: no test
    assert "| 1 | optimizer.lr=0.1 | 3 | 0.98 ± 0.01 | 0.02 ± 0.01 | best |" in table
    assert "| 2 | optimizer.lr=0.3 | 3 (1 failed) | 0.96 ± 0.01 | 0.04 ± 0.01 | ≈ best (p=0.07) |" in table
    assert "| 3 | optimizer.lr=1 | 1 | 0.93 | 0.07 |  |" in table
    assert (tmp_path / "summary.md").read_text() == table

    # Clearly worse once the gap is large against the spread.
    make_job(tmp_path / "far", 0, ["optimizer.lr=0.1", "seed=0"], {"status": "completed", "val/loss": 0.10})
    make_job(tmp_path / "far", 1, ["optimizer.lr=0.1", "seed=1"], {"status": "completed", "val/loss": 0.11})
    make_job(tmp_path / "far", 2, ["optimizer.lr=1", "seed=0"], {"status": "completed", "val/loss": 0.50})
    make_job(tmp_path / "far", 3, ["optimizer.lr=1", "seed=1"], {"status": "completed", "val/loss": 0.52})
    _, table = write_summary(tmp_path / "far", "val/loss", "minimize")
    assert "worse (p=" in table


def test_a_sweep_without_repeated_seeds_has_no_table_by_configuration(tmp_path):
    make_job(tmp_path, 0, ["optimizer.lr=0.1", "seed=0"], {"status": "completed", "val/loss": 0.1})
    make_job(tmp_path, 1, ["optimizer.lr=0.3", "seed=1"], {"status": "completed", "val/loss": 0.2})
    _, table = write_summary(tmp_path, "val/loss", "minimize")
    assert "By configuration" not in table and not (tmp_path / "summary_by_config.csv").exists()
    seeds_sweep(tmp_path / "optuna")
    _, table = write_summary(tmp_path / "optuna", "val/loss", "minimize", by_config=False)
    assert "By configuration" not in table


def test_the_sweep_figure_draws_mean_curves_in_standard_deviation_bands(tmp_path):
    from src.pictures import COLORS

    curves = {
        0: [1.0, 2.0, 3.0],
        1: [3.0, 4.0, 5.0],
        2: [10.0, 10.0, 10.0],
        3: [12.0, 12.0],
    }  # 3 stopped early
    for job, values in curves.items():
        make_job(
            tmp_path, job, [f"loss={'bce' if job < 2 else 'ce'}", f"seed={job % 2}"], {"status": "completed"}
        )
        writer = EventWriter(tmp_path / str(job) / "tb")
        for step, value in enumerate(values):
            writer.scalar("val/loss", value, step)
        writer.close()
    assert mean_band([[(0, 1.0), (1, 2.0)], [(0, 3.0), (1, 4.0)], [(0, 5.0)]]) == (
        [(0, 3.0), (1, 3.0)], [(0, 1.0, 5.0), (1, 3.0 - math.sqrt(2), 3.0 + math.sqrt(2))]
    )  # fmt: skip
    (_, low, high), *_ = mean_band([[(0, 0.1)], [(0, 0.1)], [(0, 2.0)]])[1]  # a loss: never below zero
    assert low == 0.0 and high == pytest.approx(0.7333333 + 1.0969655)
    assert mean_band([[(0, -1.0)], [(0, 1.0)]])[1] == [(0, -math.sqrt(2), math.sqrt(2))]  # may go below 0
    rows, _ = write_summary(tmp_path, "val/loss", "minimize")
    figure = write_sweep_figure(tmp_path, rows, "val/loss", seed_groups(rows))
    assert figure == tmp_path / "sweep_curves.png" and (tmp_path / "sweep_curves_jobs.png").is_file()
    # A band is the line's color laid at 48/255 over white; a figure of lines alone has no such pixel.
    red, green, blue = (int(COLORS[0][i : i + 2], 16) for i in (1, 3, 5))
    shade = np.array([round(255 + (c - 255) * 48 / 255) for c in (red, green, blue)])
    for name, shaded in (("sweep_curves.png", True), ("sweep_curves_jobs.png", False)):
        with Image.open(tmp_path / name) as image:
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
        assert (np.abs(pixels - shade).max(axis=1) <= 2).any() == shaded, name


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_sweep_over_seeds_and_schedules_with_early_stopping(tmp_path):
    root = write_overfitting_dataset(tmp_path / "data")
    data = ["dataset=mnist_binary", f"dataset.root={root}", "dataset.val_fraction=0.3", "trainer.epochs=12"]
    process, sweep_dir = sweep(
        tmp_path, *data, "trainer.patience=2", "scheduler=none,cosine", "seed=range(2)"
    )
    assert process.returncode == 0, process.stderr
    configs = {row["config"]: row for row in summary_rows_of(sweep_dir / "summary_by_config.csv")}
    assert set(configs) == {
        "dataset=mnist_binary dataset.root=" + str(root) + f" dataset.val_fraction=0.3 trainer.epochs=12 "
        f"trainer.patience=2 scheduler={name}"
        for name in ("none", "cosine")
    }
    assert all(row["seeds"] == "2" for row in configs.values())
    summary = (sweep_dir / "summary.md").read_text()
    assert "| scheduler=none | 2 |" in summary or "| scheduler=cosine | 2 |" in summary
    assert "![mean ± std by configuration](sweep_curves.png)" in summary
    for job in range(4):  # each job stops on its own, where its own curve says
        curve = [value for _, value in read_scalars(sweep_dir / str(job))["val/loss"]]
        metrics = json.loads((sweep_dir / str(job) / "metrics.json").read_text())
        best, stop = stop_by_hand(curve, 2)
        assert (metrics["best_epoch"], metrics["epochs"]) == (best, stop + 1) == (best, len(curve))
        assert ("train/lr" in metrics) == (job >= 2)  # jobs 2 and 3 run the cosine schedule
    assert {row["stopped_early"] for row in summary_rows(sweep_dir)} <= {"True", "False"}


def summary_rows_of(path):
    with path.open() as file:
        return list(csv.DictReader(file))


def test_a_failed_run_refuses_to_be_a_number():
    with pytest.raises(ValueError, match="diverged"):
        float(FailedRun("diverged"))


def sweep(tmp_path, *overrides):
    sweep_dir = tmp_path / "sweep"
    process = command("-m", *overrides, f"hydra.sweep.dir={sweep_dir}")
    return process, sweep_dir


def summary_rows(sweep_dir):
    with (sweep_dir / "summary.csv").open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_sweep_ranks_its_jobs_keeps_failures_and_names_runs_by_their_settings(tmp_path):
    from tensorboard.plugins.hparams import api_pb2

    process, sweep_dir = sweep(tmp_path, "loss=bce,ce", "optimizer.lr=0.01,1e38", "trainer.epochs=30")
    assert process.returncode == 1
    assert "error: 2 of 4 jobs failed" in process.stderr
    jobs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir() and path.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
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
    assert process.stdout.splitlines()[:5] == [  # one line per job, then the table
        f"sweep: {sweep_dir}",
        "#0 loss=bce optimizer.lr=0.01: train/loss " + f"{float(rows[0]['train/loss']):.4g} (completed)",
        "#1 loss=bce optimizer.lr=1e+38: " + rows[2]["reason"] + " (failed)",
        "#2 loss=ce optimizer.lr=0.01: train/loss " + f"{float(rows[1]['train/loss']):.4g} (completed)",
        "#3 loss=ce optimizer.lr=1e+38: " + rows[3]["reason"] + " (failed)",
    ]
    assert "| rank | job | overrides |" in process.stdout and "trainer.epochs=30 |" not in process.stdout
    assert "[HYDRA]" not in process.stdout and "Launching" not in process.stdout
    assert process.stdout.count("TensorBoard: tensorboard --logdir") == 1
    with Image.open(sweep_dir / "sweep_curves.png") as figure:  # one figure comparing the runs
        figure.verify()
    assert "![curves of every job](sweep_curves.png)" in (sweep_dir / "summary.md").read_text()

    # TensorBoard: jobs named by what the sweep varies, one command for the whole sweep, and HParams
    # with the varied settings first and the failed jobs as failures.
    assert event_dir(sweep_dir / "2") == sweep_dir / "2" / "loss=ce,optimizer.lr=0.01"
    output = process.stdout + process.stderr
    assert output.count("tensorboard --logdir") == 1 and f"tensorboard --logdir {sweep_dir}\n" in output
    experiment, groups = tb.hparams(tb.python_loader(sweep_dir), sweep_dir)
    assert [(info.name, info.differs) for info in experiment.hparam_infos[:2]] == [
        ("loss", True), ("optimizer.lr", True)
    ]  # fmt: skip
    assert not any(info.differs for info in experiment.hparam_infos[2:])
    statuses = {group.name: group.sessions[0].status for group in groups}
    assert statuses == {
        "0/loss=bce,optimizer.lr=0.01": api_pb2.STATUS_SUCCESS,
        "1/loss=bce,optimizer.lr=1e+38": api_pb2.STATUS_FAILURE,
        "2/loss=ce,optimizer.lr=0.01": api_pb2.STATUS_SUCCESS,
        "3/loss=ce,optimizer.lr=1e+38": api_pb2.STATUS_FAILURE,
    }
    hparams = {group.name: group.hparams for group in groups}["2/loss=ce,optimizer.lr=0.01"]
    assert hparams["loss"].string_value == "ce" and hparams["trainer.epochs"].number_value == 30
    assert hparams["optimizer.lr"].number_value == 0.01


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_bug_in_a_sweep_job_is_a_failed_row_with_its_traceback_in_the_jobs_log(tmp_path):
    process, sweep_dir = sweep(
        tmp_path, "dataset._target_=src.data.Split,src.data.load_toy", "trainer.epochs=2"
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr
    rows = {row["job"]: row for row in summary_rows(sweep_dir)}
    assert rows["1"]["status"] == "completed" and rows["0"]["status"] == "failed"
    assert "unexpected keyword argument" in rows["0"]["reason"]
    assert "Traceback (most recent call last)" in (sweep_dir / "0" / "train.log").read_text()


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_job_in_a_sweep_gives_the_numbers_of_the_same_run_alone(tmp_path):
    root = write_fake_dataset(tmp_path / "data")
    common = ["dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=4", "trainer.batch_size=16"]
    process, sweep_dir = sweep(tmp_path, *common, "loss=bce,ce", "seed=5,6")
    assert process.returncode == 0, process.stderr
    alone = tmp_path / "alone"
    train_here(alone, *common, "loss=ce", "seed=6")
    in_sweep = json.loads((sweep_dir / "3" / "metrics.json").read_text())
    assert in_sweep == json.loads((alone / "metrics.json").read_text())
    assert read_scalars(sweep_dir / "3") == read_scalars(alone)


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param("hydra/launcher=joblib", marks=pytest.mark.slow),  # workers start cold
        # Marked slow: submitit starts each job cold (~4 s each); `make test-cluster` (CI, as root) runs
        # the same launcher plugin through real SLURM jobs.
        pytest.param("hydra/launcher=slurm_local", marks=pytest.mark.slow),
    ],
)
def test_parallel_launchers_run_each_job_in_its_own_process_directory_and_trial(tmp_path, launcher):
    # Two trials of a search at once (a grid sweep goes through the same launcher), one diverging.
    import optuna

    parallel = "hydra.launcher.n_jobs=2" if "joblib" in launcher else "hydra.launcher.tasks_per_node=1"
    sweep_dir = tmp_path / "search"
    process = command("-m", "hparams_search=optuna_lr", launcher, parallel, "hydra.sweeper.n_jobs=2",
                           "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler=grid", "trainer.epochs=20",
                           "optimizer.lr=choice(0.01,1e38)", "optimizer.weight_decay=0",
                           f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert process.returncode == 1 and "Traceback" not in process.stderr  # one diverged, and it says so
    rows = {row["overrides"].split()[0]: row for row in summary_rows(sweep_dir)}
    assert (
        rows["optimizer.lr=0.01"]["status"] == "completed"
        and rows["optimizer.lr=1e+38"]["status"] == "failed"
    )
    journal = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna_journal.log"))
    study = optuna.load_study(study_name="lr_weight_decay", storage=optuna.storages.JournalStorage(journal))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
    for trial in study.trials:  # each job: its own directory and events, reporting to its own trial
        scalars = read_scalars(sweep_dir / str(trial.number))
        metrics = json.loads((sweep_dir / str(trial.number) / "metrics.json").read_text())
        assert len(scalars["train/loss"]) >= 1
        if trial.state.name == "COMPLETE":
            assert len(trial.intermediate_values) == metrics["epochs"] == 20


def optuna_search(tmp_path, name, *overrides):
    sweep_dir = tmp_path / name
    process = command("-m", "hparams_search=optuna_lr", "hydra.sweeper.n_trials=6", "trainer.epochs=30",
                           *overrides, f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    return process, sweep_dir


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_diverging_optuna_trial_is_a_failed_row_not_a_crash(tmp_path):
    process, sweep_dir = optuna_search(tmp_path, "wild", "optimizer.lr=tag(log, interval(1e-3, 1e38))")
    assert "Traceback" not in process.stderr
    statuses = [row["status"] for row in summary_rows(sweep_dir)]
    assert len(statuses) == 6 and "failed" in statuses
    assert process.returncode == (0 if set(statuses) == {"completed"} else 1)


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_second_sweep_in_the_same_folder_is_refused(tmp_path):
    first, sweep_dir = sweep(tmp_path, "loss=bce,ce", "trainer.epochs=3")
    assert first.returncode == 0, first.stderr
    before = (sweep_dir / "0" / "metrics.json").read_bytes()
    other, _ = sweep(tmp_path, "optimizer.lr=0.1,0.2", "trainer.epochs=3")
    assert other.returncode == 2
    assert other.stderr.strip() == (
        f"error: {sweep_dir} holds another sweep (loss=bce,ce trainer.epochs=3); choose another "
        "hydra.sweep.dir, or repeat that sweep's overrides with resume=true to finish it"
    )
    again, _ = sweep(tmp_path, "loss=bce,ce", "trainer.epochs=3")
    assert again.returncode == 2 and "add resume=true to finish it" in again.stderr
    assert (sweep_dir / "0" / "metrics.json").read_bytes() == before


def test_a_mistake_common_to_every_job_is_reported_once_before_any_job_runs(tmp_path):
    process, sweep_dir = sweep(tmp_path, "dataset=mnist_binary", "dataset.root=/nonexistent", "loss=bce,ce")
    assert process.returncode == 2
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("error: mnist data not found")
    assert not sweep_dir.exists()  # refused before any job: no folder is left behind


def test_early_stopping_without_a_validation_split_is_refused_once_for_the_sweep(tmp_path):
    process, sweep_dir = sweep(tmp_path, "trainer.patience=3", "loss=bce,ce")
    assert process.returncode == 2
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("error: trainer.patience needs a validation split")
    assert not sweep_dir.exists()  # refused before any job: no folder is left behind


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_killed_sweep_resumes_keeping_finished_jobs_and_continuing_the_stopped_one(tmp_path):
    import signal
    import time

    args = [
        "-m",
        "seed=0,1,2",
        "trainer.epochs=600",
        "trainer.checkpoint_every=50",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    sweep_dir = tmp_path / "sweep"
    process = launch(*args)
    deadline = time.monotonic() + 120
    while not (sweep_dir / "1" / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # the sweep's own process dies: no handler runs
    process.communicate(timeout=60)
    finished = (sweep_dir / "0" / "metrics.json").read_bytes()
    assert not (sweep_dir / "2").exists() or not (sweep_dir / "2" / "metrics.json").exists()

    # Resumed by parallel workers (the basic launcher resumes the killed search in test_optuna).
    resumed = command(*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert (sweep_dir / "0" / "metrics.json").read_bytes() == finished  # untouched
    last_logged = (sweep_dir / "0" / "train.log").read_text().splitlines()[-1]
    assert "#0 seed=0: train/loss" in last_logged and last_logged.endswith("(kept)")  # said, not rerun
    assert [row["status"] for row in summary_rows(sweep_dir)] == ["completed"] * 3
    alone = tmp_path / "alone"
    train_here(alone, "seed=1", "trainer.epochs=600")
    assert read_scalars(sweep_dir / "1") == read_scalars(alone)  # continued exactly, one curve


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_the_slurm_launcher_where_no_cluster_answers_says_so_in_one_line(tmp_path):
    # A PATH without SLURM's commands, as on a laptop (where sbatch is installed but no cluster answers,
    # the line names sbatch's own last words instead; that takes its DNS time-outs, so not tested here).
    no_cluster = {"PATH": str(Path(sys.executable).parent), "SLURM_CONF": str(tmp_path / "no-slurm.conf")}
    process = command(
        "-m",
        "hydra/launcher=slurm",
        "trainer.epochs=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env=no_cluster,
    )
    assert process.returncode == 2
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("error: ") and "hydra/launcher=slurm_local" in line


def ends(sweep_dir, jobs):
    """How each job ended, as metrics.json says (status, epochs, early stopping, learned numbers)."""
    keys = ("status", "epochs", "best_epoch", "stopped_early", "test_weights")
    rows = []
    for job in range(jobs):
        metrics = json.loads((sweep_dir / str(job) / "metrics.json").read_text())
        rows.append(
            ({key: metrics.get(key) for key in keys}, metrics.get("val/loss"), metrics.get("train/lr"))
        )
    return rows


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
@pytest.mark.parametrize(
    "launcher",
    [
        # joblib's and submitit's workers start cold (several seconds each): slow, run by CI.
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow),
        ["hydra/launcher=vectorized"],
        pytest.param(
            ["hydra/launcher=slurm_local", "hydra.launcher.tasks_per_node=1"], marks=pytest.mark.slow
        ),
    ],
    ids=["joblib", "vectorized", "submitit"],
)
def test_every_launcher_trains_with_the_same_rules_as_the_basic_one(tmp_path, launcher):
    """A schedule (train/lr), early stopping (patience, best weights) and divergence: one engine, so
    each job ends as it ends under the basic launcher."""
    root = write_fake_dataset(tmp_path / "data")
    jobs = ["optimizer.lr=0.3,0.03,1e38", "scheduler=step", "scheduler.step_size=2", "trainer.patience=2",
            "dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=12",
            "trainer.batch_size=16"]  # fmt: skip
    results = {}
    for name, chosen in (("basic", []), ("other", launcher)):
        sweep_dir = tmp_path / name
        process = command("-m", *jobs, *chosen, f"hydra.sweep.dir={sweep_dir}")
        assert process.returncode == 1 and "1 of 3 jobs failed" in process.stderr, process.stderr  # diverged
        results[name] = ends(sweep_dir, 3)
    statuses = [end["status"] for end, _, _ in results["basic"]]
    assert statuses[:2] == ["completed", "completed"] and statuses[2] == "failed"
    assert any(end["stopped_early"] for end, _, _ in results["basic"][:2])  # patience ran out in one
    for (end, val_loss, lr), (basic_end, basic_val_loss, basic_lr) in zip(
        results["other"], results["basic"], strict=True
    ):
        assert end == basic_end
        assert (val_loss is None, lr is None) == (basic_val_loss is None, basic_lr is None)
        if val_loss is not None:
            assert val_loss == pytest.approx(basic_val_loss, rel=1e-5) and lr == pytest.approx(basic_lr)


# Sweeps whose jobs' configs Hydra composes in ways a shortcut could get wrong: a dict override of the
# node a swept value lives in (the command line's order counts), `+` and `++`, a list override after an
# element's, interpolations in task and hydra overrides.
DIFFERENTIAL = {
    "dict after a swept value": ["optimizer.lr=0.1,0.2", "optimizer={lr:0.05}"],
    "+ and ++": ["+hydra.job.env_set.NOTE=a", "++optimizer.weight_decay=0.001", "seed=3,4"],
    "list after its element": ["dataset.inputs.0=5.0", "dataset.inputs=[1.0,2.0,3.0]", "seed=1,2"],
    "interpolations": ["optimizer.lr=0.01,0.02", "+hydra.job.env_set.RUN_OUT=${hydra:runtime.output_dir}",
                       "hydra.sweep.subdir=job_${hydra.job.num}"],
}  # fmt: skip


@pytest.mark.parametrize("launcher", [pytest.param("basic", marks=pytest.mark.slow), "vectorized"])
@pytest.mark.parametrize(
    "case", [case if case == "dict after a swept value" else pytest.param(case, marks=pytest.mark.slow)
             for case in DIFFERENTIAL]
)  # fmt: skip
def test_every_job_runs_the_config_hydra_composes_for_its_command_line(tmp_path, launcher, case):
    from hydra import compose

    from tests.helpers import hydra_on_conf

    sweep_dir = tmp_path / "sweep"
    process = command("-m", *DIFFERENTIAL[case], "trainer.epochs=3", f"hydra/launcher={launcher}",
                           f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert process.returncode == 0, process.stderr
    jobs = sorted(path.parent.parent for path in sweep_dir.glob("*/.hydra/config.yaml"))
    assert len(jobs) == 2
    hydra_on_conf()
    for job in jobs:
        overrides = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        saved = OmegaConf.load(job / ".hydra" / "config.yaml")
        hydras = compose(config_name="config", overrides=overrides)
        assert OmegaConf.to_yaml(saved) == OmegaConf.to_yaml(hydras), (job, overrides)
        settings = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra
        assert list(settings.overrides.task) == overrides
        assert job.name == str(OmegaConf.select(settings, "job.num")) or job.name.startswith("job_")
        trained = json.loads((job / "metrics.json").read_text())
        assert trained["status"] == "completed"
        if case == "dict after a swept value":  # the run trained with the config it saved
            assert saved.optimizer.lr == 0.05
            state = torch.load(job / "checkpoints" / "last.pt", weights_only=True)
            assert state["optimizer"]["param_groups"][0]["lr"] == 0.05


def finished_sweep(sweep_dir, statuses):
    for job, status in enumerate(statuses):
        (sweep_dir / str(job)).mkdir()
        (sweep_dir / str(job) / "metrics.json").write_text(json.dumps({"status": status, "train/loss": 0.5}))
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}},
                             "objective": {"metric": "train/loss", "direction": "minimize"}})  # fmt: skip


def test_jobs_a_cluster_stopped_fail_a_sweep_that_ran_to_its_end(tmp_path, capsys):
    # SLURM's time limit or scancel interrupts a job; the sweep itself went on and must say it failed
    config = finished_sweep(tmp_path, ["completed", "interrupted", "interrupted"])
    with pytest.raises(SystemExit) as exit_:
        SweepSummary().on_multirun_end(config)
    assert exit_.value.code == 1 and "error: 2 of 3 jobs failed" in capsys.readouterr().err


def test_a_sweep_on_its_way_out_keeps_its_own_exit_status(tmp_path):
    # Hydra 1.4 calls on_multirun_end in a finally: a Ctrl-C's exit status (130) must not become 1
    config = finished_sweep(tmp_path, ["completed", "interrupted"])
    with pytest.raises(SystemExit) as exit_:
        try:
            sys.exit(130)
        finally:
            SweepSummary().on_multirun_end(config)
    assert exit_.value.code == 130
    assert (tmp_path / "summary.csv").is_file()  # summarized all the same


def test_damaged_or_stray_job_folders_are_rows_saying_so_and_never_lose_the_summary(tmp_path):
    make_job(tmp_path, 0, ["optimizer.lr=0.1"], {"status": "completed", "epochs": 5, "train/loss": 0.2})
    make_job(tmp_path, 1, ["optimizer.lr=0.2"], {"status": "completed", "epochs": "12", "train/loss": 0.1})
    make_job(tmp_path, 2, ["optimizer.lr=0.3"], None)
    (tmp_path / "2" / "metrics.json").write_text('{"status": "compl')  # cut short by a full disk
    make_job(tmp_path, 3, ["optimizer.lr=0.4"], {"status": "completed", "epochs": 5, "train/loss": 0.3})
    (tmp_path / "3" / ".hydra" / "overrides.yaml").write_bytes(b"\x00\xff[: garbage")
    (tmp_path / "7").mkdir()  # an empty stray folder is no job
    rows, table = write_summary(tmp_path, "train/loss", "minimize")
    assert {row["job"]: row["status"] for row in rows} == {
        0: "completed",
        1: "failed",
        2: "failed",
        3: "completed",
    }
    reasons = {row["job"]: row.get("reason") for row in rows}
    assert "epochs is not a number" in reasons[1] and "metrics.json unreadable" in reasons[2]
    assert (tmp_path / "summary.csv").is_file() and "| 3 |" in table


def test_jobs_in_a_custom_subdir_are_found_and_numbered_by_hydra(tmp_path):
    for number, lr in enumerate(["0.1", "0.2"]):
        job = tmp_path / f"lr_{lr}" / "run"  # hydra.sweep.subdir=lr_${optimizer.lr}/run
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizer.lr={lr}"]))
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": number}}}))
        (job / "metrics.json").write_text(
            json.dumps({"status": "completed", "epochs": 3, "train/loss": 1 - number})
        )
    rows, _ = write_summary(tmp_path, "train/loss", "minimize")
    assert [(row["job"], row["overrides"]) for row in rows] == [
        (1, "optimizer.lr=0.2"),
        (0, "optimizer.lr=0.1"),
    ]


def test_resume_in_any_spelling_is_not_part_of_a_configuration():
    spelled = ["loss=bce seed=0", "loss=bce seed=1 resume=True", "loss=ce seed=0 +resume=true"]
    spelled.append("loss=ce seed=1")
    rows = [{"job": number, "overrides": overrides} for number, overrides in enumerate(spelled)]
    assert list(seed_groups(rows)) == ["loss=bce", "loss=ce"]


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_joblib_sweep_leaves_no_worker_training(tmp_path):
    import signal
    import time

    sweep_dir = tmp_path / "sweep"
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    long_jobs = ["optimizer.lr=0.1,0.2,0.3", "trainer.epochs=10000000", "trainer.checkpoint_every=100"]
    process = launch("-m", *joblib, *long_jobs, f"hydra.sweep.dir={sweep_dir}")
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not (sweep_dir / "0" / "checkpoints" / "last.pt").is_file():
            assert time.monotonic() < deadline and process.poll() is None, "job 0 never checkpointed"
            time.sleep(0.2)
        workers += children_of(process.pid)
        process.send_signal(signal.SIGKILL)  # no handler, no clean-up of its own: the workers must go
        process.wait(30)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(alive(pid) for pid in workers)
    finally:  # whatever happened, nothing of this test trains on
        for pid in [*workers, *children_of(process.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert (
        metrics["status"] == "interrupted" and "SIGTERM" in metrics["reason"]
    )  # stopped with its checkpoint


def test_a_summary_that_cannot_be_written_is_one_line_and_a_failed_sweep(tmp_path, capsys):
    config = finished_sweep(tmp_path, ["completed", "completed"])
    (tmp_path / "summary.csv").mkdir()  # stands in for a full disk or a read-only folder (root writes those)
    with pytest.raises(SystemExit) as exit_:
        SweepSummary().on_multirun_end(config)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and line.startswith(
        f"error: could not write the sweep's summary into {tmp_path}"
    )
    assert "resume=true" in line


def test_joblib_with_no_workers_is_refused_before_the_sweep():
    from src.errors import ConfigError
    from src.sweep import check_once
    from tests.helpers import compose_with_hydra

    with pytest.raises(ConfigError, match=r"hydra.launcher.n_jobs=0 runs no job; give the number of workers"):
        check_once(compose_with_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=0"))


def test_a_job_that_could_not_write_its_files_is_summarized_with_the_reason_it_returned(tmp_path, capsys):
    from hydra.core.utils import JobReturn, JobStatus

    config = finished_sweep(tmp_path, ["completed"])
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "train.log").write_text("")  # all a job on a full disk could leave
    reason = f"cannot write {tmp_path}/1/metrics.json: No space left on device; free some disk space"
    ended = JobReturn(
        overrides=["optimizer.lr=0.2"], status=JobStatus.COMPLETED, _return_value=FailedRun(reason)
    )
    summary = SweepSummary()
    summary.on_job_end(OmegaConf.create({"hydra": {"job": {"num": 1}}}), ended)
    with pytest.raises(SystemExit):
        summary.on_multirun_end(config)
    rows = {int(row["job"]): row for row in csv.DictReader((tmp_path / "summary.csv").open())}
    assert rows[1]["status"] == "failed" and rows[1]["reason"] == reason  # not "the job was killed"
    assert rows[1]["overrides"] == "optimizer.lr=0.2"
    assert "error: 1 of 2 jobs failed" in capsys.readouterr().err


def test_a_write_that_fails_for_want_of_space_is_the_users_one_line_wherever_it_happens():
    import errno

    from src.errors import OutputError, find_user_error

    wrapped = RuntimeError("while flushing an event file")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    found = find_user_error(wrapped)
    assert isinstance(found, OutputError)
    assert (
        str(found)
        == "cannot write the run's files: No space left on device; free some disk space, then resume the run"
    )
    assert find_user_error(OSError(errno.ENOENT, "No such file or directory")) is None  # not a write failure


def test_a_run_log_on_a_full_disk_says_so_once_instead_of_a_traceback_per_line(capsys):
    import logging

    from src.cli import RunLogFile

    handler = RunLogFile("/dev/full")  # every write: No space left on device
    logger = logging.getLogger("tests.full_disk")
    logger.addHandler(handler)
    try:
        for line in range(5):
            logger.warning("line %d", line)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.splitlines() == [
        "warning: cannot write /dev/full (No space left on device); the rest of this run's log goes to the "
        "terminal only"
    ]


@pytest.mark.slow
def test_a_sweep_that_fills_the_disk_fails_in_one_line_per_job_and_resumes_once_there_is_space(tmp_path):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        data = write_fake_dataset(tmp_path / "data")
        sweep = ["-m", "dataset=mnist_binary", f"dataset.root={data}", "optimizer.lr=0.1,0.2,0.3,0.4,0.5,0.6",
                 "trainer.epochs=2", f"hydra.sweep.dir={disk}/sweep"]  # fmt: skip
        full = command(*sweep)
        assert full.returncode == 1
        assert "Logging error" not in full.stderr and "Traceback" not in full.stderr + full.stdout
        assert "No space left on device" in full.stdout + full.stderr
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        resumed = command(*sweep, "resume=true")
        assert resumed.returncode == 0, resumed.stderr
        rows = list(csv.DictReader((disk / "sweep" / "summary.csv").open()))
        assert len(rows) == 6 and {row["status"] for row in rows} == {"completed"}
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.slow
def test_a_resumed_job_whose_checkpoint_is_damaged_is_a_failed_row_saying_so(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = ["-m", "optimizer.lr=0.1,0.2", "trainer.epochs=3", f"hydra.sweep.dir={sweep_dir}"]
    assert command(*sweep).returncode == 0
    job = sweep_dir / "1"
    metrics = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))  # as after a Ctrl-C
    checkpoint = job / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # cut short
    resumed = command(*sweep, "resume=true")
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr
    rows = {int(row["job"]): row for row in csv.DictReader((sweep_dir / "summary.csv").open())}
    assert rows[0]["status"] == "completed"
    assert rows[1]["status"] == "failed" and str(checkpoint) in rows[1]["reason"]
    assert "killed" not in rows[1]["reason"]


def test_a_search_figure_colours_the_best_jobs_and_greys_the_rest_with_short_labels(tmp_path):
    from src.pictures import CHART_SIZE, COLORS, GREY, LEGEND_ROW

    for job in range(14):  # 12 completed, the worst one diverging to a spike; 2 pruned after one epoch
        lr = 0.001 * (job + 1) + 1e-17 * job  # the long digits Optuna samples
        status = "pruned" if job >= 12 else "completed"
        final = 100.0 if job == 11 else 0.1 * job
        make_job(tmp_path, job, [f"optimizer.lr={lr!r}", f"optimizer.weight_decay={lr / 3!r}"],
                 {"status": status, "val/loss": final})  # fmt: skip
        writer = EventWriter(tmp_path / str(job) / "tb")
        for step, value in enumerate([1.0, 0.5 + 0.05 * job, final][: 1 if status == "pruned" else 3]):
            writer.scalar("val/loss", value, step)
        writer.close()
    rows, _ = write_summary(tmp_path, "val/loss", "minimize", by_config=False)
    figure = write_sweep_figure(tmp_path, rows, "val/loss")
    with Image.open(figure) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    width, plot_height = CHART_SIZE
    assert (
        pixels.shape[0] == plot_height + LEGEND_ROW * (len(COLORS) + 1) + 10
    )  # 10 rows, then one for the rest
    grey = np.array([int(GREY[i : i + 2], 16) for i in (1, 3, 5)])
    legend_keys = pixels[plot_height + 4 + LEGEND_ROW // 2 :: LEGEND_ROW, 30][: len(COLORS) + 1]
    coloured = [np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)]) for c in COLORS]
    assert all((key == colour).all() for key, colour in zip(legend_keys, [*coloured, grey], strict=True))
    # The y axis is set by the coloured curves: the grey spike to 100 is cut at the frame, and the
    # coloured ones use the plot's height (their top, 1.0, is near the top of the frame).
    plot = pixels[74 : plot_height - 66, 84 : width - 22]
    first = np.array(coloured[0])
    rows_with_first = np.nonzero((np.abs(plot - first).max(axis=2) <= 2).any(axis=1))[0]
    assert rows_with_first.min() < 0.2 * plot.shape[0]
    from src.console import readable_override

    assert readable_override("optimizer.lr=0.0030000000000000005") == "optimizer.lr=0.003"
    assert (
        readable_override("trainer.epochs=12") == "trainer.epochs=12"
        and readable_override("x=True") == "x=true"
    )


def test_summary_csv_keeps_every_score_and_summary_md_the_five_scalars(tmp_path):
    scores = {"val/roc_auc": 0.91, "test/roc_auc": 0.9, "test/ece": 0.03}
    make_job(tmp_path, 0, ["loss=bce"], {"status": "completed", "epochs": 3, "val/loss": 0.3, **scores})
    make_job(tmp_path, 1, ["loss=ce"], {"status": "completed", "epochs": 3, "val/loss": 0.2, **scores})
    _, table = write_summary(tmp_path, "val/loss", "minimize")
    header = next(csv.reader((tmp_path / "summary.csv").open()))
    assert header[-3:] == ["val/roc_auc", "test/roc_auc", "test/ece"]
    assert "roc_auc" not in table and "val/loss" in table
    _, table = write_summary(tmp_path, "val/roc_auc", "maximize")  # the objective is in both
    assert (
        "val/roc_auc" in table
        and next(csv.reader((tmp_path / "summary.csv").open())).count("val/roc_auc") == 1
    )
