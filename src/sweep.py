"""Sweeps: a failed job does not stop the others, and the sweep ends with a ranked summary.

Hydra calls `SweepSummary.on_multirun_end` once every job has finished, whatever the launcher (basic,
joblib, submitit) or sweeper (basic, Optuna). It reads each job's metrics.json, writes summary.csv and
summary.md at the sweep root, prints the table, and exits 1 when a job failed.
"""

import csv
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.console import tensorboard_command
from src.events import read_scalars
from src.metrics import SCALARS, TRAIN_LOSS, Direction


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


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory (named by its job number): overrides, status and final metrics."""
    rows = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides: list[str] = list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
        metrics_file = job_dir / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
        else:  # killed before it could write anything (out of memory, cluster time limit, ...)
            metrics = {"status": "failed", "reason": "no metrics.json: the job was killed"}
        rows.append({"job": int(job_dir.name), "overrides": " ".join(overrides), **metrics})
    return rows


def rank(rows: list[dict[str, Any]], metric: str, direction: str) -> list[dict[str, Any]]:
    """Completed jobs best first by `metric`; jobs without it, then failed ones, last."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(row: dict[str, Any]) -> tuple:
        value = row.get(metric) if row.get("status") == "completed" else None
        return (value is None, 0.0 if value is None else sign * value, row["job"])

    return sorted(rows, key=key)


def write_summary(sweep_dir: Path, metric: str, direction: str) -> tuple[list[dict[str, Any]], str]:
    """Write summary.csv and summary.md into `sweep_dir`; returns the ranked rows and the table."""
    rows = rank(collect_jobs(sweep_dir), metric, direction)
    present = [m for m in [metric, *SCALARS] if any(m in row for row in rows)]
    columns = ["rank", "job", "overrides", "status", *dict.fromkeys(present), "epochs", "reason"]
    for position, row in enumerate(rows, start=1):
        row["rank"] = position

    with (sweep_dir / "summary.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: Any) -> str:
        text = f"{value:.5g}" if isinstance(value, float) else "" if value is None else str(value)
        return text.replace("|", "\\|")

    header = f"Sweep {sweep_dir}: ranked by {metric} ({direction})\n\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    table = header + "\n".join(lines) + "\n"
    (sweep_dir / "summary.md").write_text(table)
    return rows, table


def read_curve(job_dir: Path, tag: str) -> list[tuple[int, float]]:
    """A scalar's (step, value) points from the TensorBoard events of one job."""
    folders = {path.parent for path in job_dir.rglob("events.out.tfevents.*")}
    return sorted(point for folder in folders for point in read_scalars(folder).get(tag, []))


def write_sweep_figure(sweep_dir: Path, rows: list[dict[str, Any]], metric: str) -> Path:
    """One chart with every job's curve of `metric` (train/loss if `metric` is only measured at the end)."""
    from src.pictures import line_chart, png_bytes

    tag = metric if not metric.startswith("test/") else TRAIN_LOSS
    shared = set.intersection(*(set(row["overrides"].split()) for row in rows)) if rows else set()

    def label(row: dict[str, Any]) -> str:  # only what tells the jobs apart
        return " ".join([f"#{row['job']}"] + [o for o in row["overrides"].split() if o not in shared])

    curves = {label(row): read_curve(sweep_dir / str(row["job"]), tag) for row in rows}
    path = sweep_dir / "sweep_curves.png"
    path.write_bytes(png_bytes(line_chart(curves, f"{tag} per job, best first", tag)))
    return path


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks) that summarizes a finished sweep."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        objective = config.objective
        rows, table = write_summary(sweep_dir, objective.metric, Direction(objective.direction).value)
        figure = write_sweep_figure(sweep_dir, rows, objective.metric)
        with (sweep_dir / "summary.md").open("a") as file:
            file.write(f"\n![curves of every job]({figure.name})\n")
        print(table)
        print(f"curves of every job: {figure}")
        print(tensorboard_command(sweep_dir))  # one command for the whole sweep, not one per job
        failed = [row for row in rows if row.get("status") != "completed"]
        if failed:
            print(f"error: {len(failed)} of {len(rows)} jobs failed (see summary.md)", file=sys.stderr)
            sys.exit(1)
