"""Sweeps: one sweep per folder, checked once, a failed job does not stop the others, a ranked summary.

`SweepSummary` is a Hydra callback (conf/config.yaml, hydra.callbacks), whatever the launcher (basic,
joblib, submitit) or sweeper (basic, Optuna):
- before any job runs, it claims the sweep folder (a second sweep there is refused, unless it is the
  same sweep asked to resume), records the sweep's overrides in sweep.yaml, and checks the config and
  the data once, so a mistake common to every job is one line, not one per job;
- when every job has finished, it reads each job's metrics.json, writes summary.csv and summary.md at
  the sweep root, prints the table, and exits 1 when a job failed.

A sweep over seeds (jobs that differ only in `seed` for the same settings) is also summarized by
configuration: mean ± standard deviation over its seeds, ranked by the mean, with Welch's t-test saying
which configurations the seeds cannot tell apart from the best (summary_by_config.csv, and a second
table in summary.md); its figure draws each configuration's mean curve in a ±1 std band.
"""

import csv
import fcntl
import functools
import json
import logging
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from src.console import LOSS_CURVES, readable_override, tensorboard_command
from src.errors import ConfigError, UserError, find_user_error
from src.events import read_scalars
from src.files import remove_unused, write_atomically
from src.metrics import SCALARS, SCORED, TRAIN_LOSS, TRAIN_LR, Direction
from src.stats import SIGNIFICANCE, mean_std, welch_p_value

log = logging.getLogger(__name__)
SWEEP_RECORD = "sweep.yaml"  # at the sweep root: the overrides that define the sweep


class FailedRun:
    """What a failed job returns instead of raising, so that Hydra's sweepers carry on.

    The basic sweeper would stop at the first job that raised; Optuna's crashes on NaN. Optuna calls
    float() on the return value: this one refuses, and Optuna records the trial as failed.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __float__(self) -> float:
        raise ValueError(self.reason)

    def __repr__(self) -> str:
        return f"failed run: {self.reason}"


def sweep_definition(config: DictConfig) -> dict[str, Any]:
    """What makes a sweep this sweep: its command-line overrides (but `resume`) and its search space."""
    overrides = [o for o in config.hydra.overrides.task if o.split("=", 1)[0].lstrip("+~") != "resume"]
    params = OmegaConf.to_container(config.hydra.sweeper.get("params") or OmegaConf.create({}), resolve=False)
    assert isinstance(params, dict)
    parsed = OverridesParser.create().parse_overrides(overrides)
    varying = [o.key_or_group for o in parsed if o.is_sweep_override()] + [str(key) for key in params]
    return {"overrides": overrides, "params": params, "varying": list(dict.fromkeys(varying))}


def read_sweep_record(sweep_dir: Path, key: str) -> list[str]:
    """One list from the sweep.yaml of the sweep in `sweep_dir` (empty when there is none)."""
    return [str(item) for item in _sweep_record(sweep_dir).get(key, [])]


def _sweep_record(sweep_dir: Path) -> dict[str, Any]:
    """The sweep.yaml of the sweep in `sweep_dir` (empty when there is none)."""
    record = sweep_dir / SWEEP_RECORD
    try:
        stamp = record.stat()
    except OSError:
        return {}
    held = load_record(record, stamp.st_mtime_ns, stamp.st_size)
    return held if isinstance(held, dict) else {}


@functools.lru_cache(maxsize=8)
def load_record(record: Path, modified_ns: int, size: int) -> Any:
    """sweep.yaml's content, read once per version of the file (every job of a sweep asks for it)."""
    return OmegaConf.to_container(OmegaConf.load(record))


def sweep_overrides(sweep_dir: Path) -> list[str]:
    """The command-line overrides that made the sweep in `sweep_dir`."""
    return read_sweep_record(sweep_dir, "overrides")


def varying_keys(sweep_dir: Path) -> list[str]:
    """The keys whose values differ between the jobs of the sweep in `sweep_dir`."""
    return read_sweep_record(sweep_dir, "varying")


def shown_overrides(overrides: list[str], varying: list[str]) -> str:
    """A job's overrides, keeping only those of the keys that vary (all of them if none is known)."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in varying] if varying else overrides
    return " ".join(readable_override(o) for o in kept)


def job_line(
    number: int, overrides: list[str], varying: list[str], outcome: dict[str, Any], metric: str
) -> str:
    """The one line a job prints when it ends: number, what varies, the objective, the status."""
    value = outcome.get(metric)
    shown = f"{metric} {value:.4g}" if isinstance(value, float) else outcome.get("reason", "")
    return f"#{number} {shown_overrides(overrides, varying)}: {shown} ({outcome.get('status', 'failed')})"


def job_folders(sweep_dir: Path) -> list[tuple[int, Path]]:
    """The sweep's job folders with their job numbers, in order: the folders named by a number
    (Hydra's default hydra.sweep.subdir) that hold anything, and any other folder below the sweep that
    holds a job's .hydra/ (a custom subdir, `lr_${optimizer.lr}`), numbered by its hydra.yaml."""
    found: dict[Path, int] = {}
    for child in sweep_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and any(child.iterdir()):
            found[child] = int(child.name)
    for hydra_dir in sweep_dir.glob("*/**/.hydra"):
        job_dir = hydra_dir.parent
        if job_dir not in found and (number := job_number(hydra_dir / "hydra.yaml")) is not None:
            found[job_dir] = number
    return sorted(((number, folder) for folder, number in found.items()), key=lambda pair: pair[0])


def job_number(hydra_yaml: Path) -> int | None:
    try:
        number = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num")
    except Exception:  # absent or damaged: not a job folder this summary can place
        return None
    return number if isinstance(number, int) else None


@dataclass(frozen=True)
class JobReport:
    """What a failed job returned to the sweep's process (Hydra's on_job_end): kept for a job whose own
    files could not be written."""

    overrides: list[str]
    reason: str


def read_job(job_dir: Path, reported: JobReport | None = None) -> tuple[list[str], dict[str, Any]]:
    """A job's overrides and metrics.json; a damaged file makes a failed row saying which, not a lost
    summary. `reported`: why the job failed, as it told this process: it says the status even where the
    job's files could not say it (a full disk) or still hold an earlier attempt's (a refused resume)."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    try:
        held = OmegaConf.to_container(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
        overrides = [str(line) for line in held] if isinstance(held, list) else []
    except Exception:
        overrides = []
    metrics = read_metrics(job_dir / "metrics.json")
    if reported is not None:
        return overrides or reported.overrides, {**metrics, "status": "failed", "reason": reported.reason}
    return overrides, metrics


def read_metrics(metrics_file: Path) -> dict[str, Any]:
    """A job's metrics.json, or a failed row saying what is wrong with it."""
    if not metrics_file.is_file():  # killed before it could write anything (out of memory, time limit, ...)
        return {"status": "failed", "reason": "no metrics.json: the job was killed"}
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as error:
        return {"status": "failed", "reason": f"metrics.json unreadable ({type(error).__name__})"}
    if not isinstance(metrics, dict):
        return {"status": "failed", "reason": "metrics.json holds no metrics"}
    if not isinstance(metrics.get("epochs", 0), int):
        return {**metrics, "status": "failed", "reason": "metrics.json damaged (epochs is not a number)"}
    return metrics


def collect_jobs(sweep_dir: Path, reported: dict[int, JobReport] | None = None) -> list[dict[str, Any]]:
    """One row per job folder: its number, overrides, status and final metrics."""
    rows = []
    for number, job_dir in job_folders(sweep_dir):
        overrides, metrics = read_job(job_dir, (reported or {}).get(number))
        rows.append({**metrics, "job": number, "overrides": " ".join(overrides), "folder": job_dir})
    return rows


def rank(rows: list[dict[str, Any]], metric: str, direction: str) -> list[dict[str, Any]]:
    """Completed jobs best first by `metric`; jobs without it, then failed ones, last."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(row: dict[str, Any]) -> tuple:
        value = row.get(metric) if row.get("status") == "completed" else None
        return (value is None, 0.0 if value is None else sign * value, row["job"])

    return sorted(rows, key=key)


EARLY_STOPPING = ("best_epoch", "stopped_early")  # metrics.json keys of runs with trainer.patience


# What a sweep writes into its folder (and attaches to its MLflow parent run, logger=mlflow).
SUMMARY_CSV, SUMMARY_MD, BY_CONFIG_CSV = "summary.csv", "summary.md", "summary_by_config.csv"
CURVES_PNG, CURVES_JOBS_PNG = "sweep_curves.png", "sweep_curves_jobs.png"
SUMMARY_FILES = (SUMMARY_CSV, SUMMARY_MD, BY_CONFIG_CSV, CURVES_PNG, CURVES_JOBS_PNG)


def write_summary(
    sweep_dir: Path,
    metric: str,
    direction: str,
    by_config: bool = True,
    reported: dict[int, JobReport] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Write summary.csv (every override and score, full precision) and summary.md (the overrides that
    vary, 4 significant digits) into `sweep_dir`; returns the ranked rows and the table.

    With `by_config` and jobs that repeat a configuration over seeds, summary.md also gets the table by
    configuration, which goes to summary_by_config.csv as well."""
    rows = rank(collect_jobs(sweep_dir, reported), metric, direction)
    present = measured_metrics(rows, metric)
    added = added_columns(rows)
    columns = ["rank", "job", "overrides", "status", *present, "epochs", "reason", *added]
    for position, row in enumerate(rows, start=1):
        row["rank"] = position

    # summary.csv also has every score the jobs measured (val/roc_auc, test/f1, ...); summary.md, to
    # stay readable, the objective and the five scalars.
    scored = [m for m in SCORED if m not in present and any(m in row for row in rows)]
    with (sweep_dir / SUMMARY_CSV).open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[*columns, *scored], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    varying = varying_keys(sweep_dir)

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column == "overrides":
            value = shown_overrides(str(value).split(), varying)
        text = f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
        return text.replace("|", "\\|")

    header = f"Sweep {sweep_dir}: ranked by {metric} ({direction})\n\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows]
    table = header + "\n".join(lines) + "\n"
    groups = seed_groups(rows) if by_config else {}
    if groups:
        configs = summarize_configs(groups, metric, direction, summary_metrics(rows, metric))
        table += "\n" + write_config_summary(sweep_dir, configs, metric, direction)
    write_atomically(sweep_dir / SUMMARY_MD, table.encode())
    return rows, table


def measured_metrics(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The objective, then the scalars, that some job measured."""
    return list(dict.fromkeys(m for m in [metric, *SCALARS] if any(m in row for row in rows)))


def added_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns beyond the scalars that some job has: train/lr, early stopping's."""
    return [key for key in (TRAIN_LR, *EARLY_STOPPING) if any(key in row for row in rows)]


def summary_metrics(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """What the table by configuration averages over seeds: the objective, every scalar and the
    columns some job has (but `stopped_early`, a yes or no)."""
    added = [key for key in added_columns(rows) if key != "stopped_early"]
    return list(dict.fromkeys([*measured_metrics(rows, metric), *added]))


NOT_CONFIGURATION = ("seed", "resume")  # how a job is sampled or continued, not what it trains


def without_seed(overrides: str) -> str:
    """A job's overrides but `seed` (and `resume`, in any spelling): the configuration its seed is one
    sample of."""
    return " ".join(o for o in overrides.split() if o.split("=", 1)[0].lstrip("+~") not in NOT_CONFIGURATION)


def seed_groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The jobs by configuration (their overrides but `seed`), when the sweep repeats some configuration
    over several seeds; empty otherwise (every configuration is a single run)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda row: row["job"]):
        groups.setdefault(without_seed(row["overrides"]), []).append(row)
    seeded = any(len({seed_of(row["overrides"]) for row in group} - {None}) > 1 for group in groups.values())
    return groups if seeded else {}


def seed_of(overrides: str) -> str | None:
    """The value of a job's `seed=` override, if it has one."""
    for override in overrides.split():
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "seed":
            return value
    return None


def summarize_configs(
    groups: dict[str, list[dict[str, Any]]], metric: str, direction: str, metrics: list[str]
) -> list[dict[str, Any]]:
    """One row per configuration: its seeds (completed jobs), the mean and standard deviation of each
    metric over them, ranked by the mean of `metric`; and Welch's p-value against the best one."""
    configs, samples = [], {}
    for key, group in groups.items():
        done = [row for row in group if row.get("status") == "completed"]
        config: dict[str, Any] = {"config": key, "seeds": len(done), "failed": len(group) - len(done),
                                  "jobs": " ".join(str(row["job"]) for row in group)}  # fmt: skip
        for name in metrics:
            values = [float(row[name]) for row in done if isinstance(row.get(name), int | float)]
            if values:
                config[f"{name}_mean"], config[f"{name}_std"] = mean_std(values)
        samples[key] = [float(row[metric]) for row in done if isinstance(row.get(metric), int | float)]
        configs.append(config)
    sign = -1.0 if direction == "maximize" else 1.0
    mean = f"{metric}_mean"
    configs.sort(key=lambda c: (mean not in c, sign * c.get(mean, 0.0), int(c["jobs"].split()[0])))
    best = samples[configs[0]["config"]] if configs else []
    for position, config in enumerate(configs, start=1):
        config["rank"] = position
        p_value = welch_p_value(samples[config["config"]], best) if position > 1 else None
        config["p_vs_best"] = p_value
        config["tied_with_best"] = None if p_value is None else p_value >= SIGNIFICANCE
    return configs


def write_config_summary(sweep_dir: Path, configs: list[dict[str, Any]], metric: str, direction: str) -> str:
    """summary_by_config.csv (full precision), and the same rows as a markdown table, which it returns."""
    measured = [
        key[: -len("_mean")] for key in dict.fromkeys(k for c in configs for k in c) if key.endswith("_mean")
    ]
    stats = [f"{name}_{part}" for name in measured for part in ("mean", "std")]
    columns = ["rank", "config", "seeds", "failed", *stats, "p_vs_best", "tied_with_best", "jobs"]
    with (sweep_dir / BY_CONFIG_CSV).open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(configs)

    varying = [key for key in varying_keys(sweep_dir) if key != "seed"]

    def spread(config: dict[str, Any], name: str) -> str:
        mean, std = config.get(f"{name}_mean"), config.get(f"{name}_std")
        if mean is None:
            return ""
        return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"

    def versus_best(config: dict[str, Any]) -> str:
        p_value = config["p_vs_best"]
        if config["rank"] == 1:
            return "best"
        if p_value is None:
            return ""  # fewer than two seeds on one side: no test
        return f"≈ best (p={p_value:.2g})" if config["tied_with_best"] else f"worse (p={p_value:.2g})"

    header = (
        f"By configuration: mean ± std over seeds, ranked by mean {metric} ({direction}). ≈ best: Welch's "
        f"t-test cannot tell it from the best (p ≥ {SIGNIFICANCE}): the seeds do not support that ranking."
        "\n\n"
    )
    names = ["rank", "config", "seeds", *measured, "vs best"]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for config in configs:
        shown = shown_overrides(config["config"].split(), varying) or "(defaults)"
        seeds = f"{config['seeds']}" + (f" ({config['failed']} failed)" if config["failed"] else "")
        cells = [str(config["rank"]), shown, seeds, *(spread(config, name) for name in measured),
                 versus_best(config)]  # fmt: skip
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return header + "\n".join(lines) + "\n"


def read_curve(job_dir: Path, tag: str) -> list[tuple[int, float]]:
    """A scalar's (step, value) points from the TensorBoard events of one job."""
    folders = {path.parent for path in job_dir.rglob("events.out.tfevents.*")}
    return sorted(point for folder in folders for point in read_scalars(folder).get(tag, []))


def write_sweep_figure(
    sweep_dir: Path,
    rows: list[dict[str, Any]],
    metric: str,
    groups: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """One chart with every job's curve of `metric` (train/loss if `metric` is only measured at the end).

    With `groups` (a sweep over seeds, best configuration first), sweep_curves.png draws each
    configuration's mean curve in a ±1 standard deviation band instead, and every job's curve goes to
    sweep_curves_jobs.png."""
    from src.pictures import COLORS, line_chart, png_bytes

    tag = metric if not metric.startswith("test/") else TRAIN_LOSS
    shared = set.intersection(*(set(row["overrides"].split()) for row in rows)) if rows else set()

    differing = {o.split("=", 1)[0] for row in rows for o in row["overrides"].split() if o not in shared}
    short = {key: key.rsplit(".", 1)[-1] for key in differing}  # `lr=`, where no other key ends so
    if len(set(short.values())) < len(short):
        short = {key: key for key in differing}

    def label(row: dict[str, Any]) -> str:  # only what tells the jobs apart, as short as it stays clear
        told = [readable_override(o) for o in row["overrides"].split() if o not in shared]
        parts = (o.partition("=") for o in told)
        told = [f"{short[key]}={value}" if has else key for key, has, value in parts]
        return " ".join([f"#{row['job']}", *told])

    by_job = {row["job"]: read_curve(row["folder"], tag) for row in rows}  # read once
    curves = {label(row): by_job[row["job"]] for row in rows}
    # In colour: the best completed jobs (the rows are ranked); the rest, pruned and failed ones
    # among them, in grey behind.
    completed = sum(row.get("status") == "completed" for row in rows)
    highlighted = min(completed, len(COLORS)) or len(COLORS)
    unfinished = Counter(row.get("status", "failed") for row in rows[highlighted:])
    unfinished.pop("completed", None)
    rest = "{count} more jobs, in grey" + "".join(f", {n} {what}" for what, n in sorted(unfinished.items()))

    def chart(title: str) -> Any:
        return line_chart(curves, title, tag, highlighted=highlighted, rest=rest)

    path = sweep_dir / CURVES_PNG
    if not groups:
        path.write_bytes(png_bytes(chart(f"{tag} per job, best first")))
        return path
    (sweep_dir / CURVES_JOBS_PNG).write_bytes(png_bytes(chart(f"{tag} per job")))
    means, bands = {}, {}
    for key, group in groups.items():
        seeds = [by_job[row["job"]] for row in group if row.get("status") == "completed"]
        name = " ".join(o for o in key.split() if o not in shared) or "(defaults)"
        name = f"{name} ({len(seeds)} seeds)"
        means[name], bands[name] = mean_band(seeds)
    title = f"{tag}: mean ± 1 std over seeds, best first"
    path.write_bytes(png_bytes(line_chart(means, title, tag, bands=bands)))
    return path


def mean_band(
    curves: list[list[tuple[int, float]]],
) -> tuple[list[tuple[int, float]], list[tuple[int, float, float]]]:
    """The mean curve of several runs and its ±1 standard deviation band, step by step (a step that
    fewer runs reached, as when some stopped early, is averaged over those that did). Where no run
    went below zero (a loss), neither does the band."""
    values: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            values.setdefault(step, []).append(value)
    mean, band = [], []
    for step in sorted(values):
        average, std = mean_std(values[step])
        mean.append((step, average))
        if std is not None:
            floor = 0.0 if min(values[step]) >= 0 else -math.inf
            band.append((step, max(average - std, floor), average + std))
    return mean, band


_new_sweep_dir: Path | None = None  # the sweep folder this process made for its sweep, if it made one
UNSTARTED = {SWEEP_RECORD, "multirun.yaml"}  # what a sweep folder holds before any job starts


def forget_unstarted_sweep() -> None:
    """Remove the sweep folder this process made, if no job started in it: a refused sweep (a config
    Hydra cannot compose for a job, a refused check) leaves nothing behind."""
    if _new_sweep_dir is not None and _new_sweep_dir.is_dir():
        remove_unused(_new_sweep_dir, lambda file: file.name in UNSTARTED)


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks): claims and checks a sweep before its jobs
    run, and summarizes it once they have."""

    def __init__(self) -> None:
        self._lock: int | None = None  # the sweep folder, held while the sweep runs
        self._failed: dict[int, JobReport] = {}  # jobs run in this process that failed, by number

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Keep why a job failed: a job that cannot write its files (a full disk) has nothing else to
        say it. Jobs in other processes (joblib, SLURM) call their own copy of this callback."""
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return.return_value, FailedRun):
            overrides = list(job_return.overrides or [])
            self._failed[config.hydra.job.num] = JobReport(overrides, job_return.return_value.reason)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            self._claim(sweep_dir, config)
            check_once(config)
            if records_to_mlflow(config):
                from src.mlflow_sink import require_mlflow

                require_mlflow()
        except UserError as error:  # refused: the folder stays as it was (a new one goes again)
            self._release()
            forget_unstarted_sweep()
            print(f"error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)
        record = OmegaConf.to_yaml(OmegaConf.create(sweep_definition(config)))
        write_atomically(sweep_dir / SWEEP_RECORD, record.encode())
        if records_to_mlflow(config):  # the parent run its jobs nest under, in whatever process they run
            from src.mlflow_sink import open_sweep_run

            try:
                open_sweep_run(config.logger, sweep_dir, list(config.hydra.overrides.task))
            except Exception as error:  # MLflow's own errors: an unreachable server, a damaged store
                self._release()
                print(f"error: MLflow at logger.tracking_uri={config.logger.tracking_uri} failed: "
                      f"{str(error).splitlines()[0] if str(error) else type(error).__name__}; check the "
                      "address, or choose logger=tensorboard", file=sys.stderr)  # fmt: skip
                sys.exit(1)
        print(f"sweep: {sweep_dir}")

    def _claim(self, sweep_dir: Path, config: DictConfig) -> None:
        """Hold the sweep folder; refuse one that another sweep runs in or already holds."""
        global _new_sweep_dir
        _new_sweep_dir = None if sweep_dir.exists() else sweep_dir
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(sweep_dir, os.O_RDONLY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another sweep is running in {sweep_dir}; wait for it, or choose another hydra.sweep.dir"
            ) from None
        definition = sweep_definition(config)
        if (sweep_dir / SWEEP_RECORD).is_file():
            held = _sweep_record(sweep_dir)
            same = (
                held.get("overrides") == definition["overrides"]
                and held.get("params") == definition["params"]
            )
            if not same:
                raise UserError(
                    f"{sweep_dir} holds another sweep ({' '.join(held.get('overrides', []))}); choose "
                    "another hydra.sweep.dir, or repeat that sweep's overrides with resume=true to finish it"
                )
            if not config.resume:
                raise UserError(
                    f"{sweep_dir} already holds this sweep; add resume=true to finish it (finished jobs are "
                    "kept, the others run), or choose another hydra.sweep.dir"
                )
        elif any(path.name.isdigit() for path in sweep_dir.iterdir()):
            raise UserError(
                f"{sweep_dir} holds job folders of an unknown sweep; choose another hydra.sweep.dir"
            )

    def _release(self) -> None:
        """Let the sweep folder go (a process's end does it too; a program that runs sweeps one after
        another, like the tests, needs it now)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        stopping = sys.exc_info()[1] is not None  # Hydra 1.4 calls this on the way out, 1.3 does not
        try:
            self._summarize(config, sweep_dir, stopping)
        finally:
            if records_to_mlflow(config):
                from src.mlflow_sink import close_sweep_run

                files = [sweep_dir / name for name in SUMMARY_FILES]
                close_sweep_run(config.logger, sweep_dir, stopping, files)

    def _summarize(self, config: DictConfig, sweep_dir: Path, stopping: bool) -> None:
        """summary.md/.csv and the figure; exits non-zero when a job failed."""
        if stopping and not job_folders(sweep_dir):  # refused before its first job: nothing to summarize
            forget_unstarted_sweep()
            return
        try:
            rows = summarize(config, sweep_dir, self._failed)
        except OSError as error:  # a full disk, a read-only folder: the jobs' own files are all there
            print(f"error: could not write the sweep's summary into {sweep_dir} ({error.strerror or error}); "
                  "each job's results are in its folder: free space or make it writable, then rerun "
                  "the sweep with resume=true to summarize it", file=sys.stderr)  # fmt: skip
            if not stopping:
                sys.exit(1)
            return
        if stopping:
            return  # the sweep itself is stopping: its own exit status stands. Jobs a cluster stopped are
            # failures of a sweep that ran on.
        failed = [row for row in rows if row.get("status") not in ("completed", "pruned")]
        if failed:
            print(f"error: {len(failed)} of {len(rows)} jobs failed (see summary.md)", file=sys.stderr)
            sys.exit(1)


def summarize(
    config: DictConfig, sweep_dir: Path, reported: dict[int, JobReport] | None = None
) -> list[dict[str, Any]]:
    """summary.md/.csv and the figure of a sweep, printed too; returns its rows."""
    objective = config.objective
    direction = Direction(objective.direction).value
    seeds = (
        "optuna" not in str(config.hydra.get("sweeper", {}).get("_target_", "")).lower()
    )  # trials: no seed groups
    rows, table = write_summary(sweep_dir, objective.metric, direction, by_config=seeds, reported=reported)
    groups = seed_groups(rows) if seeds else {}
    if groups:  # the figure's lines in the order of the table by configuration
        order = [c["config"] for c in summarize_configs(groups, objective.metric, direction, [])]
        groups = {key: groups[key] for key in order}
    figure = write_sweep_figure(sweep_dir, rows, objective.metric, groups)
    with (sweep_dir / SUMMARY_MD).open("a") as file:
        if groups:
            file.write(f"\n![mean ± std by configuration]({figure.name})\n")
            file.write("\n![curves of every job](sweep_curves_jobs.png)\n")
        else:
            file.write(f"\n![curves of every job]({figure.name})\n")
    print(table)
    print(f"curves {'by configuration' if groups else 'of every job'}: {figure}")
    curves = [tag for tag in LOSS_CURVES if any(tag in row for row in rows)]
    print(tensorboard_command(sweep_dir, curves))  # one command for the whole sweep, not one per job
    return rows


def records_to_mlflow(config: DictConfig) -> bool:
    """logger=mlflow (or a list with it) in a sweep's config."""
    return bool(OmegaConf.select(config, "logger.mlflow", default=False))


def check_once(config: DictConfig) -> None:
    """The checks every job would make, made once: the config as the sweep gives it to all jobs, and
    the data. (A value that only some jobs get is checked by those jobs.)"""
    from src.build import build_components, build_optimizer, build_scheduler
    from src.config import validate
    from src.stopping import build_early_stopping

    n_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if n_jobs == 0:  # joblib's "has no meaning"
        raise ConfigError(
            "hydra.launcher.n_jobs=0 runs no job; give the number of workers (-1: one per core)"
        )
    cfg = config.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        validate(cfg)
        parts = build_components(cfg)
        build_scheduler(cfg, build_optimizer(cfg, parts.model))
        build_early_stopping(cfg, parts.data)
    except Exception as error:  # what hydra's instantiate wraps may be a user's mistake
        user_error = find_user_error(error)
        if user_error is not None:
            raise user_error from None
        log.debug("sweep check skipped: %s", error)  # a job will report it, with its traceback
