"""The process that makes a run's MLflow calls (`python -m src.mlflow_writer`, started by src.mlflow_sink).

Importing MLflow and opening its store take seconds of Python, and a training loop of small models is
Python too: on a thread of the training process they would hold the interpreter lock the epochs need
(a Fashion-MNIST pair's 30 epochs went from 2.5 s to 5.5 s). In a process of its own they run on the other
core, and training goes on as if MLflow were not there.

It reads one JSON message per line on stdin, `[run key, call, arguments...]`, and makes the calls in
order, one RunWriter per run key (a stack of runs shares one writer; `preload` opens the store early).
`["close", key]` is answered on stdout with one JSON line, `{"error": message or null}`: the first call
that failed for that run. At the end of stdin (the training process ended, however it ended) it makes
the calls it has and stops. This module imports no torch, and MLflow only where a call needs it.
"""

import contextlib
import json
import logging
import os
import queue
import re
import sys
import threading
from functools import cache
from pathlib import Path
from typing import IO, Any

from src.files import write_json_atomically

RUN_FILE = "mlflow_run.json"  # in a run folder: the MLflow run it records to
SWEEP_FILE = "mlflow_sweep.json"  # in a sweep folder: the parent run of its jobs
STATUSES = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}
BATCH = 1000  # MLflow's most metrics in one log_batch (and 100 params or tags)
NOT_IN_A_KEY = re.compile(r"[^\w\-. /]")  # MLflow's keys: alphanumerics, _ - . space /


def mlflow_key(tag: str) -> str:
    """`tag` as MLflow takes it (a class name may hold other characters)."""
    return NOT_IN_A_KEY.sub("_", tag)


def hold_run(record: Path, run_id: str, tracking_uri: str) -> None:
    """Name the MLflow run in `record` (mlflow_run.json, mlflow_sweep.json), so that a resume continues it."""
    write_json_atomically(record, {"run_id": run_id, "tracking_uri": tracking_uri})


def held_run(record: Path) -> str | None:
    """The MLflow run id `record` (mlflow_run.json, mlflow_sweep.json) names, if it is there."""
    try:
        run_id = json.loads(record.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) else None


@cache
def client(tracking_uri: str) -> Any:
    """An MlflowClient of `tracking_uri`, its store opened once per process."""
    from mlflow import MlflowClient

    for chatty in ("alembic", "mlflow.store.db.utils"):  # a new database's migrations, one line each
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(tracking_uri: str, experiment_name: str) -> str:
    """The id of `experiment_name`, created where it is missing; a sqlite store keeps its artifacts
    beside the database (MLflow's own default is ./mlruns in whatever folder runs it)."""
    from mlflow.exceptions import MlflowException

    tracker = client(tracking_uri)
    found = tracker.get_experiment_by_name(experiment_name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        location = (database.parent / "artifacts").as_uri()
    try:
        return str(tracker.create_experiment(experiment_name, artifact_location=location))
    except MlflowException:  # another job of the sweep created it first
        return str(tracker.get_experiment_by_name(experiment_name).experiment_id)


class RunWriter:
    """One run's MLflow run: the calls src.mlflow_sink.MLflowSink sends, made against the store."""

    def __init__(self, tracking_uri: str, experiment_name: str, run_dir: str) -> None:
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.run_dir = Path(run_dir)
        self.run_id: str | None = None

    def open(
        self,
        name: str,
        config_yaml: str,
        params: dict[str, str],
        continued: str | None,
        sweep_dir: str | None,
    ) -> None:
        from mlflow.entities import Param

        tracker = client(self.tracking_uri)
        if continued is not None:  # its params stay the first start's: MLflow's cannot change
            tracker.update_run(continued, status="RUNNING")
            self.run_id = continued
            return
        tags = {"run_dir": str(self.run_dir)}
        if sweep_dir is not None:
            tags |= {"sweep": sweep_dir, "job": self.run_dir.name}
            parent = held_run(Path(sweep_dir) / SWEEP_FILE)
            if parent is not None:
                tags["mlflow.parentRunId"] = parent
        run = tracker.create_run(
            experiment_id(self.tracking_uri, self.experiment_name), run_name=name, tags=tags
        )
        self.run_id = run.info.run_id
        hold_run(self.run_dir / RUN_FILE, self.run_id, self.tracking_uri)
        entries = [Param(key, value) for key, value in params.items()]
        for first in range(0, len(entries), 100):
            tracker.log_batch(self.run_id, params=entries[first : first + 100])
        tracker.log_text(self.run_id, config_yaml, "config.yaml")

    def metrics(self, batch: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        metrics = [
            Metric(mlflow_key(tag), value, milliseconds, step) for tag, value, step, milliseconds in batch
        ]
        for first in range(0, len(metrics), BATCH):
            client(self.tracking_uri).log_batch(self.run_id, metrics=metrics[first : first + BATCH])

    def artifact(self, path: str, folder: str | None) -> None:
        client(self.tracking_uri).log_artifact(self.run_id, path, folder)

    def end(self, status: str, reason: str | None) -> None:
        tracker = client(self.tracking_uri)
        tracker.set_tag(self.run_id, "status", status)
        if reason is not None:
            tracker.set_tag(self.run_id, "reason", reason)
        tracker.log_artifact(self.run_id, str(self.run_dir / "metrics.json"))
        for checkpoint in ("last.pt", "best.pt"):
            path = self.run_dir / "checkpoints" / checkpoint
            if path.is_file():
                tracker.log_artifact(self.run_id, str(path), "checkpoints")
        tracker.set_terminated(self.run_id, STATUSES.get(status, "FAILED"))


def serve(incoming: IO[str], answers: IO[str]) -> None:
    """Make the calls `incoming` sends, in order, until it ends."""
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # at once, so that the training process never waits on a full pipe
        for line in incoming:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    writers: dict[str, RunWriter] = {}
    errors: dict[str, str] = {}
    while (line := lines.get()) is not None:
        key, call, *arguments = json.loads(line)
        if call == "preload":  # import MLflow and open the store while the run loads its data
            with contextlib.suppress(Exception):  # the run's own calls meet it again and say it
                experiment_id(*arguments)
        elif call == "start":
            writers[key] = RunWriter(*arguments)
        elif call == "close":
            answers.write(json.dumps({"error": errors.pop(key, None)}) + "\n")
            answers.flush()
            writers.pop(key, None)
        elif key not in errors:  # after a failed call, the run's later calls cannot succeed
            try:
                getattr(writers[key], call)(*arguments)
            except Exception as error:  # noqa: BLE001 - said in one line by the training process
                errors[key] = f"{type(error).__name__}: {error}".splitlines()[0]


if __name__ == "__main__":
    # Answers go on the real stdout alone: whatever MLflow prints goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, answers)
