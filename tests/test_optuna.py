"""The project's Optuna sweeper (hydra_plugins/logreg_lab) and a job's side of a trial (src/trial.py)."""

import csv
import json
import math
import os
import re
import signal
import time

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hydra_plugins.logreg_lab._optuna_search import (
    OptunaSearch,
    SearchError,
    outcome,
    parse_search_space,
    pruner_config,
    sampler_config,
    trial_seed,
)
from src.sweep import FailedRun, SweepSummary
from src.trial import PrunedRun, epoch_reporter
from tests.helpers import command, launch, read_scalars, write_fake_dataset


# --- search space -------------------------------------------------------------------------------------
def test_search_space_syntax_becomes_optuna_distributions():
    space = parse_search_space([
        "optimizer.lr=tag(log, interval(1e-4, 1.0))",
        "optimizer.weight_decay=interval(0, 0.01)",
        "loss=bce,ce",
        "dataset.classes=choice([0,6],[3,8])",
        "trainer.batch_size=range(16, 80, 16)",
        "optimizer.momentum=range(0.5, 0.9, 0.2)",
        "model=shuffle(range(1, 4))",
        "trainer.checkpoint_every=int(interval(1, 3))",
        "trainer.patience=tag(log, int(interval(1, 5)))",
        "seed=tag(int, interval(0, 9))",
        "trainer.epochs=5",
        "+extra=${seed}",
    ])  # fmt: skip
    shuffled = space.distributions.pop("model")  # shuffle(range(...)): categorical, in a random order
    assert isinstance(shuffled, CategoricalDistribution) and sorted(shuffled.choices) == [1, 2, 3]
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "optimizer.weight_decay": FloatDistribution(0.0, 0.01),
        "loss": CategoricalDistribution(["bce", "ce"]),
        "dataset.classes": CategoricalDistribution(["[0,6]", "[3,8]"]),
        "trainer.batch_size": IntDistribution(16, 64, step=16),  # Hydra's range: the stop is excluded
        "optimizer.momentum": FloatDistribution(0.5, 0.7, step=0.2),
        # Integer intervals include both ends, as in Hydra's Optuna plugin.
        "trainer.checkpoint_every": IntDistribution(1, 3),
        "trainer.patience": IntDistribution(1, 5, log=True),
        "seed": IntDistribution(0, 9),
    }
    space.distributions["model"] = shuffled
    assert space.fixed == ["trainer.epochs=5", "+extra=${seed}"]  # as written, interpolation kept
    params = {"optimizer.lr": 0.0123, "optimizer.weight_decay": 0.0, "loss": "ce", "dataset.classes": "[3,8]",
              "trainer.batch_size": 32, "optimizer.momentum": 0.7, "model": 2}  # fmt: skip
    assert space.overrides(params) == [
        "optimizer.lr=0.0123", "optimizer.weight_decay=0.0", "loss=ce", "dataset.classes=[3,8]",
        "trainer.batch_size=32", "optimizer.momentum=0.7", "model=2", "trainer.epochs=5", "+extra=${seed}",
    ]  # fmt: skip


def test_the_command_line_wins_over_the_preset_and_a_fixed_value_leaves_the_search():
    preset = ["optimizer.lr=tag(log, interval(1e-4, 1.0))", "optimizer.weight_decay=interval(0, 0.01)"]
    space = parse_search_space([*preset, "optimizer.lr=0.1", "optimizer.weight_decay=interval(0, 0.1)"])
    assert space.distributions == {"optimizer.weight_decay": FloatDistribution(0.0, 0.1)}
    assert space.fixed == ["optimizer.lr=0.1"]
    expected = ["optimizer.weight_decay=0.05", "optimizer.lr=0.1"]
    assert space.overrides({"optimizer.weight_decay": 0.05}) == expected
    spaced = parse_search_space(['name=choice("a b",c)'])
    assert spaced.overrides({"name": "a b"}) == ["name=a\\ b"]  # escaped for Hydra's parser


def test_samplers_and_pruners_by_name():
    space = parse_search_space(["loss=bce,ce", "trainer.batch_size=range(8, 40, 8)"])
    grid = sampler_config("grid", 3, 5, space)
    assert grid["search_space"] == {"loss": ["bce", "ce"], "trainer.batch_size": [8, 16, 24, 32]}
    assert sampler_config("tpe", 3, 5, space) == {
        "_target_": "optuna.samplers.TPESampler", "seed": 3, "n_startup_trials": 5,
    }  # fmt: skip
    assert sampler_config("random", 3, 5, space)["_target_"] == "optuna.samplers.RandomSampler"
    custom = {"_target_": "optuna.samplers.QMCSampler", "seed": 1}
    assert sampler_config(custom, 3, 5, space) == custom
    with pytest.raises(SearchError, match="grid needs choices or ranges"):
        sampler_config("grid", 3, 5, parse_search_space(["optimizer.lr=interval(0, 1)"]))
    with pytest.raises(SearchError, match="use one of tpe, random, grid"):
        sampler_config("cmaes-ish", 3, 5, space)
    assert pruner_config("median", 10)["_target_"] == "optuna.pruners.MedianPruner"
    hyperband = {"_target_": "optuna.pruners.HyperbandPruner", "max_resource": 10}  # the epochs
    assert pruner_config("hyperband", 10) == hyperband
    assert pruner_config("none", 10)["_target_"] == "optuna.pruners.NopPruner"
    with pytest.raises(SearchError, match="use one of median, hyperband, none"):
        pruner_config("sometimes", 10)


def test_each_trial_number_has_its_own_seed():
    assert trial_seed(2, 7) == trial_seed(2, 7)
    assert len({trial_seed(2, n) for n in range(50)} | {trial_seed(3, 0)}) == 51
    assert trial_seed(None, 7) is None


def job_return(value=None, error=None):
    job = JobReturn()
    job.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    job.return_value = error or value
    return job


def test_how_a_job_ends_becomes_a_trial_state():
    assert outcome(job_return(0.25)).state == TrialState.COMPLETE and outcome(job_return(0.25)).value == 0.25
    assert outcome(job_return(PrunedRun(3, 0.9))).state == TrialState.PRUNED
    for failure in (FailedRun("training diverged"), math.nan, math.inf, None, "text"):
        assert outcome(job_return(failure)).state == TrialState.FAIL, failure
    crashed = outcome(job_return(error=RuntimeError("out of memory")))
    assert crashed.state == TrialState.FAIL and "out of memory" in crashed.note
    with pytest.raises(ValueError, match="pruned after epoch 3"):
        float(PrunedRun(3, 0.9))  # a sweeper that does not know it records a failure, not a result


def test_an_interrupted_trial_whose_job_had_ended_is_not_run_again(tmp_path):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "resume": True,
                               "objective": {"metric": "val/loss", "direction": "minimize"}})  # fmt: skip
    search = OptunaSearch(config, launcher=None, n_trials=4, n_jobs=1)
    ends = {0: {"status": "completed", "val/loss": 0.3}, 1: {"status": "pruned", "val/loss": 0.9},
            2: {"status": "interrupted", "val/loss": 0.5}}  # fmt: skip
    for number, metrics in ends.items():
        (tmp_path / str(number)).mkdir()
        (tmp_path / str(number) / "metrics.json").write_text(json.dumps(metrics))
    completed, pruned = search.finished_on_disk(0), search.finished_on_disk(1)
    assert (completed.state, completed.value) == (TrialState.COMPLETE, 0.3)
    assert pruned.state == TrialState.PRUNED
    assert search.finished_on_disk(2) is None and search.finished_on_disk(3) is None  # run (again)


# --- the job's side: src/trial.py -------------------------------------------------------------------------
def test_a_job_reports_each_epoch_and_is_told_when_to_stop(tmp_path, monkeypatch):
    journal = str(tmp_path / "journal.log")
    storage = optuna.storages.JournalStorage(JournalFileBackend(journal))
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("pruner", {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2})
    for good in (0.2, 0.3):  # two finished trials whose curves went down
        trial = study.ask()
        for epoch in (1, 2, 3):
            trial.report(good / epoch, epoch)
        study.tell(trial, good / 3)
    hopeless = study.ask()

    assert epoch_reporter(None) is None  # not inside a search
    reporter = epoch_reporter(f"{journal}::s::{hopeless.number}")
    assert reporter is not None
    assert reporter.should_prune(1, 0.9) is True
    assert reporter.should_prune(1, 0.1) is True  # an epoch reported twice (a resumed job) keeps the first
    trial = optuna.load_study(study_name="s", storage=journal_storage(journal)).trials[hopeless.number]
    assert trial.intermediate_values == {1: 0.9} and trial.state == TrialState.RUNNING  # the sweeper tells


def journal_storage(path):
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def saved_study(sweep_dir):
    """The study a search saved in its sweep folder, read by Optuna's own load_study."""
    return optuna.load_study(
        study_name="lr_weight_decay", storage=journal_storage(sweep_dir / "optuna_journal.log")
    )


# --- whole searches -------------------------------------------------------------------------------------
def search(sweep_dir, *overrides, timeout=300):
    overrides = [
        "-m",
        "hparams_search=optuna_lr",
        "trainer.epochs=30",
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    return command(*overrides)


def summary_rows(sweep_dir):
    with (sweep_dir / "summary.csv").open() as file:
        return {int(row["job"]): row for row in csv.DictReader(file)}


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_seeded_search_repeats_exactly_and_optuna_reads_its_study(tmp_path):
    runs = [search(tmp_path / name, "hydra.sweeper.n_trials=4") for name in ("first", "again")]
    for process in runs:
        assert "Traceback" not in process.stderr, process.stderr
    first, again = (summary_rows(tmp_path / name) for name in ("first", "again"))
    assert len(first) == 4
    assert [(r["overrides"], r["status"], r["train/loss"]) for r in first.values()] == [
        (r["overrides"], r["status"], r["train/loss"]) for r in again.values()
    ]
    results = yaml.safe_load((tmp_path / "first" / "optimization_results.yaml").read_text())
    study = optuna.load_study(study_name="lr_weight_decay", storage=journal_storage(results["storage"]))
    assert results["storage"] == str(tmp_path / "first" / "optuna_journal.log")
    assert len(study.trials) == 4 and study.best_value == results["best_value"]
    assert study.best_params == results["best_params"]
    with (tmp_path / "first" / "summary.csv").open() as file:
        top = next(csv.DictReader(file))  # the summary ranks the best trial first
    assert int(top["job"]) == study.best_trial.number and float(top["train/loss"]) == study.best_value
    for trial in study.trials:  # each trial is its job: same parameters, same end
        row = first[trial.number]
        assert f"optimizer.lr={trial.params['optimizer.lr']}" in row["overrides"]
        assert row["status"] == {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}[trial.state]
        assert max(trial.intermediate_values) == int(row["epochs"])  # reported every epoch


def completed_jobs(sweep_dir):
    done = {}
    for path in sweep_dir.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        if metrics.get("status") == "completed":
            done[int(path.parent.name)] = path.read_text()
    return done


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_killed_search_resumes_to_the_requested_number_of_trials(tmp_path):
    sweep_dir = tmp_path / "search"
    # 200 epochs on the toy set: about a second per trial, long enough to be killed mid-search.
    args = ["-m", "hparams_search=optuna_lr", "trainer.epochs=200", "hydra.sweeper.pruner=none",
            "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    process = launch(*args, output=tmp_path / "killed.log")
    deadline = time.monotonic() + 120
    while len(completed_jobs(sweep_dir)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = completed_jobs(sweep_dir)
    assert 2 <= len(before) < 4, (tmp_path / "killed.log").read_text()
    killed = saved_study(sweep_dir)
    assert {t.state for t in killed.trials} <= {TrialState.COMPLETE, TrialState.RUNNING}

    resumed = command(*args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    study = saved_study(sweep_dir)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    after = completed_jobs(sweep_dir)
    assert sorted(after) == [0, 1, 2, 3]
    assert {job: after[job] for job in before} == before  # finished trials were not run again
    assert len(summary_rows(sweep_dir)) == 4

    more = command(*args[:-2], "hydra.sweeper.n_trials=5", f"hydra.sweep.dir={sweep_dir}", "resume=true")
    assert more.returncode == 0, more.stderr
    assert len(saved_study(sweep_dir).trials) == 5
    assert {job: text for job, text in completed_jobs(sweep_dir).items() if job in after} == after

    again = command(*args)  # the same command without resume=true does not mix a new search into it
    assert again.returncode == 2 and "add resume=true to finish it" in again.stderr


def pruning_search(sweep_dir, root, *overrides):
    return command(
        "-m", "hparams_search=optuna_lr", "dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=8",
        "trainer.batch_size=16", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=6",
        "optimizer.lr=choice(0.3,0.1,0.05,1e-7,1e-8,1e-9)", "optimizer.weight_decay=0",
        "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:2,n_warmup_steps:1}",
        f"hydra.sweep.dir={sweep_dir}", *overrides,
    )  # fmt: skip


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_hopeless_learning_rate_is_pruned_not_failed(tmp_path):
    root = write_fake_dataset(tmp_path / "data")
    sweep_dir = tmp_path / "search"
    process = pruning_search(sweep_dir, root)
    assert "Traceback" not in process.stderr, process.stderr
    rows = summary_rows(sweep_dir)
    study = saved_study(sweep_dir)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["optimizer.lr"] < 1e-6 for t in pruned)
    assert not [t for t in study.trials if t.state == TrialState.FAIL]
    for trial in pruned:
        row, job_dir = rows[trial.number], sweep_dir / str(trial.number)
        assert row["status"] == "pruned" and "failed" not in row["status"]
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["status"] == "pruned" and 1 <= metrics["epochs"] < 8
        assert len(read_scalars(job_dir)["val/loss"]) == metrics["epochs"]  # its curve is kept
        assert (job_dir / "checkpoints" / "last.pt").is_file()
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"]["pruned"] == len(pruned) and results["best_params"]["optimizer.lr"] >= 0.05


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_pruned_search_prunes_the_same_trials_under_the_vectorized_launcher(tmp_path):
    """Three trials at a time: stacked together, each member reports to its own trial and leaves the
    stack when pruned, as each does alone under the basic launcher (the study learns how a batch ended
    only after it, so both judge each trial against the same finished ones)."""
    root = write_fake_dataset(tmp_path / "data")
    ends = {}
    for launcher in ("basic", "vectorized"):
        sweep_dir = tmp_path / launcher
        process = pruning_search(sweep_dir, root, f"hydra/launcher={launcher}", "hydra.sweeper.n_jobs=3")
        assert process.returncode == 0, process.stderr
        ends[launcher] = [
            (t.number, t.state, max(t.intermediate_values)) for t in saved_study(sweep_dir).trials
        ]
    assert any(state == TrialState.PRUNED for _, state, _ in ends["basic"])
    assert ends["vectorized"] == ends["basic"]


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_integer_intervals_give_integer_trials(tmp_path):
    sweep_dir = tmp_path / "search"
    process = search(sweep_dir, "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler=random",
                     "trainer.batch_size=int(interval(1, 3))", "trainer.epochs=5")  # fmt: skip
    assert process.returncode == 0, process.stderr
    sizes = [trial.params["trainer.batch_size"] for trial in saved_study(sweep_dir).trials]
    assert len(sizes) == 3 and all(isinstance(size, int) and 1 <= size <= 3 for size in sizes)
    for row in summary_rows(sweep_dir).values():
        assert row["status"] == "completed" and re.search(
            r"trainer\.batch_size=[123](\s|$|,)", row["overrides"]
        )


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_search_whose_every_trial_failed_ends_like_a_failed_sweep(tmp_path):
    process = search(tmp_path / "wild", "hydra.sweeper.n_trials=2", "optimizer.lr=interval(1e37, 1e38)")
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert "error: 2 of 2 jobs failed" in process.stderr
    results = yaml.safe_load((tmp_path / "wild" / "optimization_results.yaml").read_text())
    assert results["best_value"] is None and results["trials"]["fail"] == 2


def test_a_pruned_job_does_not_fail_the_sweep(tmp_path):
    for job, status in enumerate(["completed", "pruned"]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "metrics.json").write_text(json.dumps({"status": status, "train/loss": 0.5}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}},
                               "objective": {"metric": "train/loss", "direction": "minimize"}})  # fmt: skip
    SweepSummary().on_multirun_end(config)  # exits 1 when a job failed


# Hydra's Optuna plugin's own distribution cases (hydra_optuna_sweeper's tests), where this sweeper claims
# the same syntax; `range` keeps Hydra's end-exclusive meaning here (README, Sweeps).
HYDRA_OPTUNA_CASES = [
    ("key=choice(1,2)", CategoricalDistribution([1, 2])),
    ("key=choice(true, false)", CategoricalDistribution([True, False])),
    ("key=choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
    ("key=shuffle(range(1,3))", CategoricalDistribution((1, 2))),
    ("key=interval(1, 5)", FloatDistribution(1, 5)),
    ("key=int(interval(1, 5))", IntDistribution(1, 5)),
    ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
    ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
]


@pytest.mark.parametrize(("line", "expected"), HYDRA_OPTUNA_CASES)
def test_search_space_syntax_gives_hydra_optuna_plugins_distributions(line, expected):
    (distribution,) = parse_search_space([line]).distributions.values()
    if isinstance(expected, CategoricalDistribution):  # shuffle: the same choices, in some order
        assert sorted(distribution.choices, key=str) == sorted(expected.choices, key=str)
    else:
        assert distribution == expected


def test_range_keeps_hydras_end_exclusive_meaning_unlike_the_optuna_plugin():
    (distribution,) = parse_search_space(["key=range(1,3)"]).distributions.values()
    assert distribution == IntDistribution(1, 2)  # hydra-optuna-sweeper: IntDistribution(1, 3)


@pytest.mark.parametrize(
    "line,message",
    [
        ("optimizer.lr=interval(0.1, 0.1)", r"interval\(0.1, 0.1\) is empty"),
        ("optimizer.lr=interval(1, 0.1)", r"interval\(1.0, 0.1\) is empty"),
        ("optimizer.lr=tag(log, interval(0, 1))", r"cannot be sampled \(low > 0 must hold for log=True"),
        ("trainer.batch_size=range(5, 5)", "has no value"),
    ],
)
def test_a_search_space_that_cannot_be_sampled_is_one_line_before_any_trial(line, message):
    with pytest.raises(SearchError, match=message):
        parse_search_space([line])


@pytest.mark.parametrize("setting", ["n_trials", "n_jobs"])
def test_a_search_of_no_trials_is_refused(setting):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": "unused"}}})
    settings = {"n_trials": 4, "n_jobs": 1, setting: 0}
    with pytest.raises(SearchError, match=f"hydra.sweeper.{setting}=0: give at least 1"):
        OptunaSearch(config, launcher=None, **settings)


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_killed_search_under_joblib_leaves_no_trial_training_and_resumes_its_trials(tmp_path):
    from tests.helpers import alive, children_of

    sweep_dir = tmp_path / "search"
    args = ["-m", "hparams_search=optuna_lr", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=none",
            "trainer.epochs=3000", "trainer.checkpoint_every=50", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    process = launch(*args, output=tmp_path / "killed.log")
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not any(sweep_dir.glob("*/checkpoints/last.pt")):
            log = (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline and process.poll() is None, log
            time.sleep(0.2)
        workers += children_of(process.pid)
        process.send_signal(signal.SIGKILL)  # trials 0 and 1 are running in the workers
        process.wait(30)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert workers and not any(alive(pid) for pid in workers)  # no orphan trains on beside the resume
    finally:
        for pid in [*workers, *children_of(process.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    resumed = command(*args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    study = saved_study(sweep_dir)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)  # the killed trials were finished
    rows = summary_rows(sweep_dir)
    assert sorted(rows) == [0, 1, 2, 3] and {row["status"] for row in rows.values()} == {"completed"}
    assert study.best_value == min(float(row["train/loss"]) for row in rows.values())
