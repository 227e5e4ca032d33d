"""MLflow as a recorder (logger=mlflow): one MLflow run per run, a sweep's jobs nested under its run.

Each run's MLflow run holds its settings as params (src.outputs.hyperparameters, TensorBoard's HParams),
every scalar at its epoch, its pictures, metrics.json and checkpoints as artifacts, tags `sweep` and `job`
in a sweep, and its status: completed -> FINISHED, failed -> FAILED, interrupted and pruned -> KILLED
(both stopped before their epochs ran out; tag `status` says which). A resumed run continues the MLflow
run its folder names in mlflow_run.json; a sweep's parent run is named in the sweep folder's
mlflow_sweep.json, which jobs in other processes (joblib, SLURM) read.

Speed: importing MLflow and opening its store take seconds, a run's epochs may take less. So every
MLflow call goes to one worker thread, in order, while the epochs train; scalars wait in a list and go
as one `log_batch` each time the TensorBoard writer flushes (FLUSH_SECONDS, each checkpoint, the end).
"""

import importlib.util
import json
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.errors import ConfigError
from src.events import FLUSH_SECONDS
from src.files import write_json_atomically
from src.outputs import HyperParameters

log = logging.getLogger(__name__)
RUN_FILE = "mlflow_run.json"  # in a run folder: the MLflow run it records to
SWEEP_FILE = "mlflow_sweep.json"  # in a sweep folder: the parent run of its jobs
STATUSES = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}
BATCH = 1000  # MLflow's most metrics in one log_batch (and 100 params or tags)
NOT_IN_A_KEY = re.compile(r"[^\w\-. /]")  # MLflow's keys: alphanumerics, _ - . space /


def require_mlflow() -> None:
    """Refuse logger=mlflow in one line where MLflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "logger=mlflow needs MLflow: pip install -e '.[mlflow]' (or pip install mlflow-skinny)"
        )


def preload(logger: DictConfig) -> None:
    """Import MLflow and open its store on the worker while the run loads its data."""
    worker().submit(experiment_id, logger)


@cache
def worker() -> ThreadPoolExecutor:
    """The one thread every MLflow call of this process runs on, in the order they were made."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")


@cache
def client(tracking_uri: str) -> Any:
    """An MlflowClient of `tracking_uri`, its store opened once per process."""
    from mlflow import MlflowClient

    for chatty in ("alembic", "mlflow.store.db.utils"):  # a new database's migrations, one line each
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(logger: DictConfig) -> str:
    """The id of `logger.experiment_name`, created where it is missing; a sqlite store keeps its
    artifacts beside the database (MLflow's own default is ./mlruns in whatever folder runs it)."""
    from mlflow.exceptions import MlflowException

    tracker = client(logger.tracking_uri)
    found = tracker.get_experiment_by_name(logger.experiment_name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if logger.tracking_uri.startswith("sqlite:///"):
        database = Path(logger.tracking_uri.removeprefix("sqlite:///")).resolve()
        location = (database.parent / "artifacts").as_uri()
    try:
        return str(tracker.create_experiment(logger.experiment_name, artifact_location=location))
    except MlflowException:  # another job of the sweep created it first
        return str(tracker.get_experiment_by_name(logger.experiment_name).experiment_id)


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


def mlflow_key(tag: str) -> str:
    """`tag` as MLflow takes it (a class name may hold other characters)."""
    return NOT_IN_A_KEY.sub("_", tag)


class MLflowSink:
    """A run's records in an MLflow run (src.outputs.Sink); every call returns at once."""

    def __init__(
        self,
        logger: DictConfig,
        run_dir: Path,
        name: str,
        config_yaml: str,
        hyperparameters: HyperParameters,
        start_epoch: int,
        sweep_dir: Path | None = None,
    ) -> None:
        """`sweep_dir`: the sweep this run is a job of (its parent MLflow run, tags `sweep`, `job`)."""
        self.logger = logger
        self.run_dir = run_dir
        self.pending: list[tuple[str, float, int, int]] = []
        self.last_flush = time.monotonic()
        self.calls: list[Future[Any]] = []
        self.run_id: str | None = None
        continued = held_run(run_dir / RUN_FILE) if start_epoch > 0 else None
        self._submit(lambda: self._open(name, config_yaml, hyperparameters, continued, sweep_dir))

    def _open(
        self,
        name: str,
        config_yaml: str,
        hyperparameters: HyperParameters,
        continued: str | None,
        sweep_dir: Path | None,
    ) -> None:
        from mlflow.entities import Param

        tracker = client(self.logger.tracking_uri)
        if continued is not None:  # its params stay the first start's: MLflow's cannot change
            tracker.update_run(continued, status="RUNNING")
            self.run_id = continued
            return
        tags = {"run_dir": str(self.run_dir)}
        if sweep_dir is not None:
            tags |= {"sweep": str(sweep_dir), "job": self.run_dir.name}
            parent = held_run(sweep_dir / SWEEP_FILE)
            if parent is not None:
                tags["mlflow.parentRunId"] = parent
        run = tracker.create_run(experiment_id(self.logger), run_name=name, tags=tags)
        self.run_id = run.info.run_id
        hold_run(self.run_dir / RUN_FILE, self.run_id, self.logger.tracking_uri)
        params = [Param(key, str(value)) for key, value in hyperparameters.items()]
        for first in range(0, len(params), 100):
            tracker.log_batch(self.run_id, params=params[first : first + 100])
        tracker.log_text(self.run_id, config_yaml, "config.yaml")

    def _submit(self, call: Callable[[], Any]) -> None:
        self.calls.append(worker().submit(call))

    def scalars(self, step: int, metrics: dict[str, float]) -> None:
        milliseconds = int(time.time() * 1000)
        self.pending.extend((tag, value, step, milliseconds) for tag, value in metrics.items())
        if time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def picture(self, name: str, path: Path, png: bytes, width: int, height: int, step: int) -> None:
        self._submit(
            lambda: client(self.logger.tracking_uri).log_artifact(self.run_id, str(path), "pictures")
        )

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        if batch:
            self._submit(lambda: self._log_metrics(batch))

    def _log_metrics(self, batch: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        metrics = [
            Metric(mlflow_key(tag), value, milliseconds, step) for tag, value, step, milliseconds in batch
        ]
        for first in range(0, len(metrics), BATCH):
            client(self.logger.tracking_uri).log_batch(self.run_id, metrics=metrics[first : first + BATCH])

    def finish(self, status: str, reason: str | None) -> None:
        self.flush()
        self._submit(lambda: self._end(status, reason))

    def _end(self, status: str, reason: str | None) -> None:
        tracker = client(self.logger.tracking_uri)
        tracker.set_tag(self.run_id, "status", status)
        if reason is not None:
            tracker.set_tag(self.run_id, "reason", reason)
        tracker.log_artifact(self.run_id, str(self.run_dir / "metrics.json"))
        for checkpoint in ("last.pt", "best.pt"):
            path = self.run_dir / "checkpoints" / checkpoint
            if path.is_file():
                tracker.log_artifact(self.run_id, str(path), "checkpoints")
        tracker.set_terminated(self.run_id, STATUSES.get(status, "FAILED"))

    def close(self) -> None:
        """Wait for the run's MLflow calls; one that failed is said in one line (the run's own files
        and TensorBoard still have everything)."""
        self.flush()
        calls, self.calls = self.calls, []
        for call in calls:
            error = call.exception()
            if error is not None:
                log.warning(f"MLflow could not record {self.run_dir}: {error}")
                return


# --- a sweep's parent run ----------------------------------------------------------------------------


def open_sweep_run(logger: DictConfig, sweep_dir: Path, overrides: list[str]) -> None:
    """The parent run of a sweep's jobs, named in `sweep_dir`/mlflow_sweep.json (a resumed sweep
    continues its own)."""
    tracker = client(logger.tracking_uri)
    held = held_run(sweep_dir / SWEEP_FILE)
    if held is not None:
        tracker.update_run(held, status="RUNNING")
        return
    tags = {"sweep": str(sweep_dir), "overrides": " ".join(overrides)[:5000]}
    run = tracker.create_run(experiment_id(logger), run_name=sweep_dir.name, tags=tags)
    hold_run(sweep_dir / SWEEP_FILE, run.info.run_id, logger.tracking_uri)


def close_sweep_run(logger: DictConfig, sweep_dir: Path, stopped: bool, files: list[Path]) -> None:
    """End the sweep's parent run, its summary `files` as artifacts: KILLED when the sweep was
    stopped, else FINISHED (each job has its own status)."""
    held = held_run(sweep_dir / SWEEP_FILE)
    if held is None:
        return
    tracker = client(logger.tracking_uri)
    for path in files:
        if path.is_file():
            tracker.log_artifact(held, str(path))
    tracker.set_terminated(held, "KILLED" if stopped else "FINISHED")
