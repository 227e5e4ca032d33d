"""The Optuna search behind hydra_plugins/logreg_lab/optuna_sweeper.py (imported only when one runs).

One search: open (or continue) the study in its storage, ask Optuna for `n_jobs` trials at a time, run
them as Hydra jobs through the launcher, tell Optuna how each ended (complete, pruned or failed), and
write optimization_results.yaml. The pruner runs in the jobs (src/trial.py), which read it from the
study's user attribute `pruner`.
"""

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from src.console import readable_override
from src.sweep import FailedRun
from src.trial import PRUNED, TRIAL_ENV, PrunedRun

log = logging.getLogger(__name__)

JOURNAL_FILE = "optuna_journal.log"
RESULTS_FILE = "optimization_results.yaml"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
# Samplers whose only state is their random generator: seeded per trial number, so that a resumed search
# draws what an uninterrupted one would have. (The grid sampler's seed orders its grid once.)
RESEEDED = ("tpe", "random")


class SearchError(ValueError):
    """A search that cannot run as configured; the message says why and what to change."""


@dataclass
class SearchSpace:
    """What the search draws (Optuna distributions) and what every trial gets as is (override lines)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]
    # Override text of each categorical choice, where it differs from the value Optuna stores
    # (a list choice is stored as its text; a string choice is written escaped).
    choice_text: dict[str, dict[Any, str]]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """Override lines for one trial's parameters, then the fixed ones."""
        lines = []
        known = [name for name in self.distributions if name in params]
        names = known + [name for name in params if name not in self.distributions]
        for name in names:  # an interrupted trial keeps its parameters, even if the search space changed
            value = params[name]
            text = self.choice_text.get(name, {}).get(value)
            lines.append(f"{name}={text if text is not None else Transformer.str(value)}")
        return lines + self.fixed

    def grid(self) -> dict[str, list[Any]]:
        """Every value of each parameter, for the grid sampler (choices and ranges only)."""
        grid = {}
        for name, distribution in self.distributions.items():
            if isinstance(distribution, CategoricalDistribution):
                grid[name] = list(distribution.choices)
            elif (
                isinstance(distribution, IntDistribution | FloatDistribution)
                and distribution.step is not None
                and not distribution.log
            ):
                count = round((distribution.high - distribution.low) / distribution.step) + 1
                grid[name] = [distribution.low + i * distribution.step for i in range(count)]
            else:
                raise SearchError(
                    f"sampler=grid needs choices or ranges, not an interval: {name} ({distribution})"
                )
        return grid


def parse_search_space(lines: list[str]) -> SearchSpace:
    """Parse override lines (the sweeper's params first, then the command line; a later key wins)."""
    by_key: dict[str, Override] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        by_key.pop(override.key_or_group, None)  # keep the order of the last mention
        by_key[override.key_or_group] = override
    distributions, fixed, choice_text = {}, [], {}
    for key, override in by_key.items():
        if not override.is_sweep_override():
            fixed.append(override.input_line or f"{override.get_key_element()}={override.value()}")
            continue
        try:
            distribution, texts = to_distribution(override)
        except SearchError:
            raise
        except ValueError as error:  # Optuna's own check of a distribution (a log scale from 0, ...)
            reason = str(error).replace("`", "")
            raise SearchError(f"{key}: {override.input_line} cannot be sampled ({reason})") from None
        distributions[key] = distribution
        if texts:
            choice_text[key] = texts
    return SearchSpace(distributions, fixed, choice_text)


def to_distribution(override: Override) -> tuple[BaseDistribution, dict[Any, str]]:
    """The Optuna distribution of one sweep override, with the override text of categorical choices."""
    key = override.key_or_group
    if override.is_interval_sweep():
        sweep = cast(IntervalSweep, override.value())
        assert sweep.start is not None and sweep.end is not None  # the parser gives both ends
        if sweep.start >= sweep.end:
            raise SearchError(f"{key}: interval({sweep.start}, {sweep.end}) is empty")
        log_scale = "log" in sweep.tags
        # int(interval(a, b)) casts both ends to ints (and `tag(int, ...)` says so, as in Hydra's Optuna
        # plugin): integers from a to b, both included. A plain interval's ends are floats.
        if "int" in sweep.tags or (type(sweep.start) is int and type(sweep.end) is int):
            return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale), {}
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale), {}
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise SearchError(f"{key}: {override.input_line} has no value")
    if override.is_range_sweep() and not cast(RangeSweep, override.value()).shuffle:
        step = abs(cast(RangeSweep, override.value()).step)
        numbers = cast(list[int | float], values)  # a range's values are numbers
        if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers) and isinstance(step, int):
            return IntDistribution(int(min(numbers)), int(max(numbers)), step=step), {}
        low, high = (float(f"{v:.12g}") for v in (min(numbers), max(numbers)))  # 0.30000000000000004: 0.3
        return FloatDistribution(low, high, step=float(step)), {}
    # choice(...), a,b,c, or a shuffled range: categorical. Transformer.encode turns a list or dict
    # choice into its override text, which must be written back unescaped.
    originals = list(override.sweep_iterator())
    texts = {}
    for value, original in zip(values, originals, strict=True):
        if isinstance(value, str) and not isinstance(original, str):
            texts[value] = value
    return CategoricalDistribution(cast(list[bool | int | float | str | None], values)), texts


def sampler_config(spec: Any, seed: int | None, n_startup_trials: int, space: SearchSpace) -> dict:
    """The sampler as a config with `_target_`, from a name or a config."""
    if isinstance(spec, dict) and "_target_" in spec:
        return dict(spec)
    if spec == "tpe":
        return {"_target_": "optuna.samplers.TPESampler", "seed": seed, "n_startup_trials": n_startup_trials}
    if spec == "random":
        return {"_target_": "optuna.samplers.RandomSampler", "seed": seed}
    if spec == "grid":
        return {"_target_": "optuna.samplers.GridSampler", "search_space": space.grid(), "seed": seed}
    raise SearchError(f"hydra.sweeper.sampler={spec}: use one of {', '.join(SAMPLERS)}, or a _target_ config")


def pruner_config(spec: Any, epochs: int | None) -> dict:
    """The pruner as a config with `_target_`, from a name or a config (stored in the study)."""
    if isinstance(spec, dict) and "_target_" in spec:
        return dict(spec)
    if spec == "median":
        return {"_target_": "optuna.pruners.MedianPruner"}
    if spec == "hyperband":
        return {"_target_": "optuna.pruners.HyperbandPruner", "max_resource": epochs or "auto"}
    if spec in ("none", None):
        return {"_target_": "optuna.pruners.NopPruner"}
    raise SearchError(f"hydra.sweeper.pruner={spec}: use one of {', '.join(PRUNERS)}, or a _target_ config")


def build(config: dict) -> Any:
    """An Optuna object from a config with `_target_` (hydra's instantiate, which the jobs use too)."""
    from hydra.utils import instantiate

    return instantiate(config, _convert_="all")


def trial_seed(seed: int | None, number: int) -> int | None:
    """A seed per trial number: a resumed search draws what the uninterrupted one would have."""
    return None if seed is None else int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def storage_spec(storage: str | None, sweep_dir: Path) -> str:
    """The study's storage: a journal file (default: in the sweep folder) or a database URL."""
    if storage is None:
        return str((sweep_dir / JOURNAL_FILE).resolve())
    return storage if "://" in storage else str(Path(storage).resolve())


def clear_stale_lock(spec: str, sweep_dir: Path) -> None:
    """Remove the journal's lock left by a search killed while it wrote (SIGKILL, out of memory), which
    Optuna would wait 30 s for before taking it over. A journal inside the sweep folder belongs to this
    sweep alone (the folder is held), and no trial runs yet, so such a lock is stale."""
    lock = Path(spec + ".lock")  # where JournalFileBackend's default lock lives
    if lock.parent == sweep_dir.resolve() and os.path.lexists(lock):  # the lock may be a dangling link
        lock.unlink()


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(spec))


@dataclass
class Outcome:
    state: TrialState
    value: float | None
    note: str
    told: bool = False  # the job's own line said it already (src.sweep.job_line): not printed twice


def outcome(job: JobReturn) -> Outcome:
    """How a job ended, for Optuna: a number completes its trial; PrunedRun prunes it; anything else
    (an exception, FailedRun, NaN, no number) fails it and the search goes on."""
    try:
        result = job.return_value  # raises what the job raised
    except Exception as error:
        return Outcome(TrialState.FAIL, None, f"failed: {type(error).__name__}: {error}")
    if isinstance(result, PrunedRun):
        note = f"pruned after epoch {result.epoch} ({result.value:.6g})"
        return Outcome(TrialState.PRUNED, None, note, told=True)
    if isinstance(result, FailedRun):
        return Outcome(TrialState.FAIL, None, repr(result), told=True)
    try:
        value = float(result)
    except (TypeError, ValueError) as error:
        return Outcome(TrialState.FAIL, None, f"failed: returned {result!r} ({error})")
    if not math.isfinite(value):
        return Outcome(TrialState.FAIL, None, f"failed: returned {value}")
    return Outcome(TrialState.COMPLETE, value, f"completed: {value:.6g}", told=True)


class OptunaSearch:
    """One run of the sweeper: `run(arguments)` does the whole search."""

    def __init__(self, config: DictConfig, launcher: Launcher, **settings: Any) -> None:
        self.config, self.launcher = config, launcher
        self.settings: dict[str, Any] = {k: OmegaConf.to_container(v) if isinstance(v, DictConfig) else v
                         for k, v in settings.items()}  # fmt: skip
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.n_trials, self.n_jobs = int(self.settings["n_trials"]), int(self.settings["n_jobs"])
        for name, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if value < 1:
                raise SearchError(f"hydra.sweeper.{name}={value}: give at least 1")
        self.resume = bool(config.get("resume", False))

    def run(self, arguments: list[str]) -> optuna.Study:
        params = self.settings.get("params") or {}
        lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
        space = parse_search_space(lines)
        # `resume` is the sweeper's to apply: only a re-run of an interrupted trial continues a checkpoint.
        space.fixed = [line for line in space.fixed if line.split("=", 1)[0].lstrip("+~") != "resume"]
        sampler = sampler_config(self.settings["sampler"], self.settings.get("seed"),
                                 int(self.settings.get("n_startup_trials", 10)), space)  # fmt: skip
        if sampler["_target_"] == "optuna.samplers.GridSampler":
            size = math.prod(len(values) for values in space.grid().values())
            if self.n_trials > size:
                log.info(f"grid of {size} points: n_trials {self.n_trials} -> {size}")
                self.n_trials = size
        epochs = OmegaConf.select(self.config, "trainer.epochs", default=None)
        pruner = pruner_config(self.settings.get("pruner"), epochs)
        study = self.open_study(sampler, pruner)

        rerun = self.interrupted_trials(study)
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))  # enqueued
        to_ask = max(0, self.n_trials - (len(study.trials) - waiting))
        log.info(f"study {study.study_name} in {self.storage}: {len(study.trials)} trials so far, "
                 f"{len(rerun)} interrupted to continue, {to_ask} to run")  # fmt: skip
        while rerun or to_ask:
            batch: list[tuple[Any, bool]] = [(trial, True) for trial in rerun[: self.n_jobs]]
            rerun = rerun[self.n_jobs :]
            while len(batch) < self.n_jobs and to_ask:
                if self.settings["sampler"] in RESEEDED:
                    seed = trial_seed(sampler["seed"], len(study.get_trials(deepcopy=False)))
                    study.sampler = build({**sampler, "seed": seed})
                batch.append((study.ask(space.distributions), False))
                to_ask -= 1
            self.run_batch(study, space, batch)
        self.write_results(study)
        return study

    def open_study(self, sampler: dict, pruner: dict) -> optuna.Study:
        self.storage = storage_spec(self.settings.get("storage"), self.sweep_dir)
        clear_stale_lock(self.storage, self.sweep_dir)
        storage = open_storage(self.storage)
        name, direction = self.settings["study_name"], self.settings["direction"]
        # objective.direction is an enum, which arrives as "Direction.minimize"
        named = str(getattr(direction, "name", direction)).rsplit(".", 1)[-1].lower()
        direction = cast(Literal["minimize", "maximize"], named)
        existing = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
        if name in existing and existing[name].n_trials and not self.resume:
            raise SearchError(
                f"{self.storage} already holds study {name!r} with {existing[name].n_trials} trials: add "
                "resume=true to continue it, or give another hydra.sweep.dir"
            )
        if name in existing and existing[name].direction.name.lower() != direction:
            raise SearchError(f"study {name!r} was made to {existing[name].direction.name.lower()}, "
                              f"not to {direction}; keep objective.direction")  # fmt: skip
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=build(sampler), pruner=build(pruner),
            direction=direction, load_if_exists=True,
        )  # fmt: skip
        study.set_user_attr("pruner", pruner)  # what the jobs prune with (src/trial.py)
        return study

    def interrupted_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        """Trials left running by a search that was killed: resumed in their own folders."""
        if not self.resume:
            return []
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def finished_on_disk(self, number: int) -> Outcome | None:
        """How an interrupted trial's job ended, if it did finish before the search was killed."""
        metrics_file = self.sweep_dir / str(number) / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        value = metrics.get(self.config.objective.metric)
        if metrics.get("status") == "completed" and value is not None and math.isfinite(value):
            return Outcome(TrialState.COMPLETE, value, f"completed before the search stopped: {value:.6g}")
        if metrics.get("status") == PRUNED:
            return Outcome(TrialState.PRUNED, None, "pruned before the search stopped")
        return None  # interrupted, failed while starting, or never started: run it (again)

    def run_batch(self, study: optuna.Study, space: SearchSpace, batch: list[tuple[Any, bool]]) -> None:
        if any(interrupted for _, interrupted in batch):
            ended = {trial.number: self.finished_on_disk(trial.number) for trial, _ in batch}
            for trial, _ in batch:
                end = ended[trial.number]
                if end is not None:
                    self.tell(study, trial.number, end)
            batch = [(trial, interrupted) for trial, interrupted in batch if ended[trial.number] is None]
            if not batch:
                return
        overrides = []
        for trial, interrupted in batch:
            number = trial.number
            lines = space.overrides(trial.params)
            if interrupted and (self.sweep_dir / str(number) / "checkpoints" / "last.pt").is_file():
                lines.append("resume=true")
            trial_env = f"{self.storage}::{study.study_name}::{number}"
            lines += [f"hydra.sweep.subdir={number}",  # a job's folder is its trial's number
                      f"++hydra.job.env_set.{TRIAL_ENV}={quote(trial_env)}"]  # fmt: skip
            overrides.append(lines)
        first = min(trial.number for trial, _ in batch)
        returns = self.launcher.launch(overrides, initial_job_idx=first)
        for (trial, _), job in zip(batch, returns, strict=True):
            self.tell(study, trial.number, outcome(job))

    def tell(self, study: optuna.Study, number: int, result: Outcome) -> None:
        try:
            study.tell(number, result.value, state=result.state)
        except RuntimeError:
            # The grid sampler stops the study when its grid is done, which only works inside
            # study.optimize; the trial is recorded all the same.
            if not isinstance(study.sampler, optuna.samplers.GridSampler):
                raise
        log.log(logging.DEBUG if result.told else logging.INFO, f"trial {number}: {result.note}")

    def write_results(self, study: optuna.Study) -> None:
        counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
                  for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}  # fmt: skip
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "storage": self.storage,
                                   "direction": study.direction.name.lower(), "trials": counts}  # fmt: skip
        if counts["complete"]:
            best = study.best_trial
            results |= {"best_trial": best.number, "best_params": best.params, "best_value": best.value}
        else:
            log.error("no trial completed: every trial failed or was pruned")
            results |= {"best_trial": None, "best_params": None, "best_value": None}
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / RESULTS_FILE).write_text(yaml.safe_dump(results, sort_keys=False))
        if counts["complete"]:  # as the jobs' lines say it (the file keeps every digit)
            settings = " ".join(readable_override(f"{key}={value}") for key, value in best.params.items())
            log.info(f"best: trial {best.number}, {best.value:.4g}: {settings}")


def quote(text: str) -> str:
    """A value for a Hydra override, quoted so that paths keep their slashes and colons."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
