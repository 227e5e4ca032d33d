"""The project from Python (a notebook, a script): train a run or a sweep, read finished ones back.

    from src import api
    run = api.run("dataset=mnist_binary", "trainer.epochs=5")    # as `python -m src.train ...`
    run.metrics["test/accuracy"], run.config.optimizer.lr, run.curves()
    sweep = api.sweep("experiment=bce_vs_ce_seeds", launcher="vectorized")
    sweep.table(), sweep.by_config(), sweep.curves()               # pandas DataFrames

`run()` is the command's own path in this process: Hydra composes the config (its public `compose`)
and runs `src.train.task`, the command's task function, through Hydra's `run_job`, so the run gets the
folder, .hydra/ files, train.log and numbers the command gives it. Where the command prints one line and
exits, `run()` raises the project's error (src/errors.py) with that line. It leaves the process as it
found it: logging, torch's threads, random state and deterministic flag, Hydra's global state.

`sweep()` runs the command itself, `python -m src.train -m ...`, in a new process: a sweep is Hydra's
sweeper and launcher (joblib's workers, Optuna's trials, the vectorized stacks) and its summary
callback, which Hydra starts only from its command line. Its lines are printed as they come.

The tables need pandas: `pip install -e '.[analysis]'`.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from src.config import major_minor
from src.errors import ConfigError, OutputError, UserError
from src.rundir import read_run_metrics

if TYPE_CHECKING:
    import pandas

# What Hydra 1.3's command line adds to its own overrides for a run (so .hydra/hydra.yaml is the
# command's); 1.4's only sets the mode.
RUN_MODE = ["hydra.mode=RUN"] if major_minor(hydra.__version__) < (1, 4) else []
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # where `src` is importable from


class Run:
    """A run's folder, as the command left it."""

    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder).resolve()

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json, as a dict."""
        try:
            metrics = read_run_metrics(self.dir)
        except ValueError as error:
            raise UserError(f"{self.dir / 'metrics.json'} cannot be read ({error})") from None
        if metrics is None:
            raise UserError(f"{self.dir} holds no metrics.json: not a run's folder (or one refused)")
        return metrics

    @property
    def config(self) -> DictConfig:
        """The config it ran with (.hydra/config.yaml)."""
        loaded = OmegaConf.load(self.dir / ".hydra" / "config.yaml")
        assert isinstance(loaded, DictConfig)
        return loaded

    @property
    def overrides(self) -> list[str]:
        """Its command line's overrides (.hydra/overrides.yaml)."""
        return [str(o) for o in OmegaConf.load(self.dir / ".hydra" / "overrides.yaml")]

    def curves(self) -> "pandas.DataFrame":
        """Every scalar it logged to TensorBoard, long-form: columns tag, step, value."""
        pandas = _pandas()
        rows = [(tag, step, value) for tag, points in _scalars(self.dir).items() for step, value in points]
        return pandas.DataFrame(rows, columns=["tag", "step", "value"])


class Sweep:
    """A sweep's folder: its jobs' folders, sweep.yaml and summary."""

    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder).resolve()

    def __repr__(self) -> str:
        return f"Sweep({str(self.dir)!r})"

    @property
    def runs(self) -> dict[int, Run]:
        """Its jobs by job number."""
        from src.sweep import job_folders

        return {number: Run(folder) for number, folder in job_folders(self.dir)}

    def table(self) -> "pandas.DataFrame":
        """One row per job: `job`, each swept key as a column of its own type, `status`, and every
        final metric (a per-class accuracy as `test/accuracy_per_class/<class>`)."""
        pandas = _pandas()
        rows = [{"job": row["job"], **row["swept"], **final_metrics(row["metrics"])} for row in self._jobs()]
        table = pandas.DataFrame(rows)
        first = ["job", *self.swept_keys, "status"]
        return table[[c for c in first if c in table] + [c for c in table if c not in first]]

    def curves(self) -> "pandas.DataFrame":
        """Every job's scalars from its TensorBoard events, long-form: columns job, tag, step, value."""
        pandas = _pandas()
        frames = []
        for number, run in self.runs.items():
            for tag, points in _scalars(run.dir).items():
                steps, values = zip(*points, strict=True) if points else ((), ())
                frames.append((number, tag, steps, values))
        return pandas.DataFrame(
            {
                "job": [number for number, _, steps, _ in frames for _ in steps],
                "tag": [tag for _, tag, steps, _ in frames for _ in steps],
                "step": [step for _, _, steps, _ in frames for step in steps],
                "value": [value for *_, values in frames for value in values],
            }
        )

    def by_config(self) -> "pandas.DataFrame":
        """The seeds' table (summary_by_config.csv's rows): per configuration, its swept keys but `seed`
        as typed columns, the seeds, each metric's `_mean` and `_std`, Welch's p-value against the best,
        ranked by the objective's mean."""
        from src.sweep import seed_groups, summarize_configs, summary_metrics

        pandas = _pandas()
        jobs = self._jobs()
        rows = [
            {**row["metrics"], "job": row["job"], "overrides": " ".join(row["overrides"])} for row in jobs
        ]
        groups = seed_groups(rows)
        if not groups:
            raise UserError(f"{self.dir} repeats no configuration over seeds; sweep seed=0,1,2 too")
        metric, direction = self.objective
        configs = summarize_configs(groups, metric, direction, summary_metrics(rows, metric))
        swept = {row["job"]: row["swept"] for row in jobs}
        keys = [key for key in self.swept_keys if key != "seed"]
        table = pandas.DataFrame(
            [{**{k: swept[int(c["jobs"].split()[0])].get(k) for k in keys}, **c} for c in configs]
        )
        first = ["rank", *keys, "seeds", "failed"]
        return table[[c for c in first if c in table] + [c for c in table if c not in first]]

    @property
    def swept_keys(self) -> list[str]:
        """The keys the sweep varies (sweep.yaml)."""
        from src.sweep import varying_keys

        return varying_keys(self.dir)

    @property
    def objective(self) -> tuple[str, str]:
        """(metric, direction) it is ranked by."""
        config = OmegaConf.load(self.dir / "multirun.yaml")
        return str(config.objective.metric), str(OmegaConf.select(config, "objective.direction"))

    def _jobs(self) -> list[dict[str, Any]]:
        """Each job's number, overrides, typed swept values and metrics.json (a failed row when it has
        none: src.sweep.read_job)."""
        from src.sweep import job_folders, read_job

        keys = self.swept_keys
        jobs = []
        for number, folder in job_folders(self.dir):
            overrides, metrics = read_job(folder)
            jobs.append({"job": number, "overrides": overrides, "metrics": metrics,
                         "swept": typed_values(overrides, keys)})  # fmt: skip
        return jobs


def typed_values(overrides: list[str], keys: list[str]) -> dict[str, Any]:
    """The values `overrides` give `keys`, typed as Hydra reads them (0.1 a float, 3 an int, true a
    bool, [4,9] a list, a group's option a str)."""
    values = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key in keys and not override.is_delete():
            values[key] = override.value()
    return values


def final_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json as one flat row: status, reason, epochs, every number; an object of numbers (the
    per-class accuracies) as one column per key."""
    row: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            row.update({f"{key}/{name}": v for name, v in value.items() if isinstance(v, int | float)})
        elif isinstance(value, int | float | str | bool) or value is None:
            row[key] = value
    return row


def load_run(folder: str | Path) -> Run:
    """A finished (or stopped) run's folder."""
    run = Run(folder)
    run.metrics  # noqa: B018  (says in one line when it is no run's folder)
    return run


def load_sweep(folder: str | Path) -> Sweep:
    """A sweep's folder."""
    from src.sweep import SWEEP_RECORD

    sweep = Sweep(folder)
    if not (sweep.dir / SWEEP_RECORD).is_file():
        raise UserError(f"{sweep.dir} holds no {SWEEP_RECORD}: not a sweep's folder")
    return sweep


def run(*overrides: str) -> Run:
    """Train one run as `python -m src.train OVERRIDES` does; its folder. A mistake the command would
    say in one line raises the project's error with that line (ConfigError, DataError, ...)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import run_job
    from hydra.types import HydraContext, RunMode

    from src.cli import CommandEnded
    from src.hydra_errors import is_command_line_error, one_line
    from src.train import task, unmade_folder

    if {"-m", "--multirun"} & set(overrides):
        raise ConfigError("run() trains one run; sweep() runs a multirun (without -m)")
    with kept_as_it_was(), project_hydra() as trusted:
        try:
            config = compose(
                config_name="config", overrides=[*overrides, *RUN_MODE], return_hydra_config=True
            )
        except Exception as error:
            if not is_command_line_error(error):
                raise
            raise ConfigError(one_line(error)) from None
        with open_dict(config):
            config.hydra.mode = RunMode.RUN  # as Hydra's run sets it
        callbacks = Callbacks(config)
        callbacks.on_run_start(config=config, config_name="config")
        loader = GlobalHydra.instance().config_loader()
        context = HydraContext(config_loader=loader, callbacks=callbacks, **trusted)  # type: ignore[arg-type]
        try:
            job = run_job(task_function=task, config=config, job_dir_key="hydra.run.dir", job_subdir_key=None,
                          hydra_context=context)  # fmt: skip
        except OSError as error:
            if not error.filename:
                raise
            raise OutputError(unmade_folder(error)) from None
        except CommandEnded as ended:  # the command would have said it in one line and exited
            raise (ended.error or UserError(f"the run ended with exit status {ended.code}")) from None
        callbacks.on_run_end(config=config, config_name="config", job_return=job)
        job.return_value  # noqa: B018  (raises what the task raised: a bug's traceback)
        return Run(config.hydra.runtime.output_dir)  # run_job sets it


class Callbacks:
    """The config's `hydra.callbacks`, each called as Hydra's own run calls them (Hydra keeps the class
    that does it, hydra._internal.callbacks, private): a run's start and end, its job's."""

    def __init__(self, config: DictConfig) -> None:
        from hydra.utils import instantiate

        self.callbacks = [instantiate(settings) for settings in (config.hydra.callbacks or {}).values()]

    def on_run_start(self, **kwargs: Any) -> None:
        for callback in self.callbacks:
            callback.on_run_start(**kwargs)

    def on_job_start(self, **kwargs: Any) -> None:
        for callback in self.callbacks:
            callback.on_job_start(**kwargs)

    def on_job_end(self, **kwargs: Any) -> None:
        for callback in reversed(self.callbacks):
            callback.on_job_end(**kwargs)

    def on_run_end(self, **kwargs: Any) -> None:
        for callback in reversed(self.callbacks):
            callback.on_run_end(**kwargs)


@contextlib.contextmanager
def project_hydra() -> Iterator[dict[str, Any]]:
    """Hydra on the project's configs with the command's settings (src.train.hydra_settings: its
    version_base, or on 1.4 its trusted targets) and its job name (train: the log is train.log), for
    the block; a Hydra the caller had initialized (their own compose) is put back after it. Yields what
    Hydra's context for a job takes of those settings (on 1.4, its execution_whitelist)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.train import config_dir, hydra_settings

    settings = hydra_settings()
    held = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    version = {key: value for key, value in settings.items() if key == "version_base"}
    try:
        with contextlib.ExitStack() as stack:
            if "execution_whitelist" in settings:  # Hydra 1.4: what hydra.main(execution_whitelist=) does
                from hydra.utils import execution_whitelist  # type: ignore[attr-defined,unused-ignore]

                stack.enter_context(execution_whitelist(settings["execution_whitelist"]))
            stack.enter_context(
                initialize_config_dir(config_dir=str(config_dir()), job_name="train", **version)
            )
            yield {key: value for key, value in settings.items() if key == "execution_whitelist"}
    finally:
        GlobalHydra.instance().clear()
        if held is not None:
            GlobalHydra.instance().initialize(held)


@contextlib.contextmanager
def kept_as_it_was() -> Iterator[None]:
    """What a run changes in its process, as it was before the block: the logging configuration
    (Hydra's job_logging sends the root log to the run's train.log), torch's threads, global random
    state and deterministic flag. So two runs in one process give the numbers of two processes, and a
    notebook's own logging does not end up in a run's log."""
    import torch

    loggers = {name: logger for name, logger in logging.root.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)}  # fmt: skip
    kept = {name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for name, lg in loggers.items()}
    root = (logging.root.level, list(logging.root.handlers))
    threads, rng, deterministic = (
        torch.get_num_threads(),
        torch.get_rng_state(),
        torch.are_deterministic_algorithms_enabled(),
    )
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        if torch.are_deterministic_algorithms_enabled() != deterministic:
            torch.use_deterministic_algorithms(deterministic)
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if isinstance(logger, logging.Logger):
                level, handlers, propagate, disabled = kept.get(name, (logging.NOTSET, [], True, False))
                logger.setLevel(level)
                logger.handlers[:] = handlers
                logger.propagate, logger.disabled = propagate, disabled
        for handler in logging.root.handlers:
            if handler not in root[1]:
                handler.close()  # the run's train.log
        logging.root.setLevel(root[0])
        logging.root.handlers[:] = root[1]


def sweep(*overrides: str, launcher: str = "basic") -> Sweep:
    """Run `python -m src.train -m OVERRIDES hydra/launcher=LAUNCHER` (basic, joblib, vectorized,
    slurm, ...; an Optuna search is `hparams_search=...`) in a new process, printing its lines; its
    folder. A sweep the command refuses raises the project's error with its line; one that ran with
    failed jobs returns, its table saying which."""
    from src.sweep import SWEEP_RECORD

    chosen = any(o.split("=", 1)[0] == "hydra/launcher" for o in overrides)
    argv = [
        sys.executable,
        "-m",
        "src.train",
        "-m",
        *overrides,
        *([] if chosen else [f"hydra/launcher={launcher}"]),
    ]
    path = os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path})  # fmt: skip
    folder, said = None, None
    assert process.stdout is not None
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith("sweep: ") and folder is None:
                folder = Path(line[len("sweep: ") :].strip())
            elif line.startswith("error: "):
                said = line[len("error: ") :].strip()
        code = process.wait()
    except KeyboardInterrupt:  # the sweep checkpoints its jobs and says how to resume
        process.send_signal(signal.SIGINT)
        process.wait()
        raise
    if folder is not None and (folder / SWEEP_RECORD).is_file() and code in (0, 1):
        return Sweep(folder)
    refused = UserError(said or f"the sweep ended with exit status {code}")
    refused.exit_code = code
    raise refused


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """A run's scalars, from every folder of event files under it (src/events.py's reader)."""
    from src.events import read_scalars

    scalars: dict[str, list[tuple[int, float]]] = {}
    for folder in sorted({path.parent for path in run_dir.rglob("events.out.tfevents.*")}):
        for tag, points in read_scalars(folder).items():
            scalars.setdefault(tag, []).extend(points)
    return scalars


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise UserError(
            "the tables need pandas: pip install -e '.[analysis]' (or pip install pandas)"
        ) from None
    return pandas


__all__ = ["Run", "Sweep", "load_run", "load_sweep", "run", "sweep"]
