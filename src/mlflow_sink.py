"""MLflow as a recorder (logger=mlflow): one MLflow run per run, a sweep's jobs nested under its run.

Each run's MLflow run holds its settings as params (src.outputs.hyperparameters, TensorBoard's HParams),
every scalar at its epoch, its pictures, metrics.json and checkpoints as artifacts, tags `sweep` and `job`
in a sweep, and its status: completed -> FINISHED, failed -> FAILED, interrupted and pruned -> KILLED
(both stopped before their epochs ran out; tag `status` says which). A resumed run continues the MLflow
run its folder names in mlflow_run.json; a sweep's parent run is named in the sweep folder's
mlflow_sweep.json, which jobs in other processes (joblib, SLURM) read.

Speed: importing MLflow and opening its store take seconds of Python, a run's epochs may take less. So
every MLflow call of a run goes, in order, to a writer process of its own (src.mlflow_writer, one per
training process), while the epochs train; scalars wait in a list and go as one `log_batch` each time
the TensorBoard writer flushes (FLUSH_SECONDS, each checkpoint, the end).
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.errors import ConfigError
from src.events import FLUSH_SECONDS
from src.mlflow_writer import RUN_FILE, SWEEP_FILE, client, experiment_id, held_run, hold_run
from src.outputs import HyperParameters

log = logging.getLogger(__name__)


def require_mlflow() -> None:
    """Refuse logger=mlflow in one line where MLflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "logger=mlflow needs MLflow: pip install -e '.[mlflow]' (or pip install mlflow-skinny)"
        )


class Writer:
    """This process's src.mlflow_writer process, which makes every MLflow call of its runs in order."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        project = str(Path(__file__).resolve().parent.parent)  # where `src` is, however it was found
        path = os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))
        # A session of its own, out of the terminal's reach: a Ctrl-C stops the training process, which
        # then ends its runs through the writer, instead of stopping the writer in the middle of a call.
        # It ends when its stdin does, whatever ended the training process.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "src.mlflow_writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,
        )

    def send(self, key: str, call: str, *arguments: Any) -> None:
        """Returns at once (the writer reads as fast as it is sent to); where the writer is gone, its
        run's `close` says so and training goes on."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps([key, call, *arguments]) + "\n")
            self.process.stdin.flush()
        except OSError:  # its pipe is closed
            pass

    def close(self, key: str) -> str | None:
        """Wait until the writer has made `key`'s calls; the first that failed, in one line."""
        assert self.process.stdout is not None
        self.send(key, "close")
        try:
            answer = self.process.stdout.readline()
        except OSError:
            answer = ""
        if not answer:
            return f"its writer process stopped (exit code {self.process.wait()})"
        error = json.loads(answer)["error"]
        return None if error is None else str(error)


_writer: Writer | None = None


def writer() -> Writer:
    """The writer of this process, started on first use (again in a forked child, or after it stopped)."""
    global _writer  # one per process, as the interpreter itself
    if _writer is None or _writer.pid != os.getpid() or _writer.process.poll() is not None:
        _writer = Writer()
    return _writer


def preload(logger: DictConfig) -> None:
    """Start the writer, which imports MLflow and opens its store while the run loads its data."""
    writer().send("", "preload", logger.tracking_uri, logger.experiment_name)


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
        self.run_dir = run_dir
        self.key = str(run_dir)
        self.pending: list[tuple[str, float, int, int]] = []
        self.last_flush = time.monotonic()
        self.closed = False
        continued = held_run(run_dir / RUN_FILE) if start_epoch > 0 else None
        params = {key: str(value) for key, value in hyperparameters.items()}
        self.writer = writer()
        self.writer.send(self.key, "start", logger.tracking_uri, logger.experiment_name, self.key)
        self.writer.send(
            self.key,
            "open",
            name,
            config_yaml,
            params,
            continued,
            None if sweep_dir is None else str(sweep_dir),
        )

    def scalars(self, step: int, metrics: dict[str, float]) -> None:
        milliseconds = int(time.time() * 1000)
        self.pending.extend((tag, value, step, milliseconds) for tag, value in metrics.items())
        if time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def picture(self, name: str, path: Path, png: bytes, width: int, height: int, step: int) -> None:
        self.writer.send(self.key, "artifact", str(path), "pictures")

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        if batch:
            self.writer.send(self.key, "metrics", batch)

    def finish(self, status: str, reason: str | None) -> None:
        self.flush()
        self.writer.send(self.key, "end", status, reason)

    def close(self) -> None:
        """Wait for the run's MLflow calls; one that failed is said in one line (the run's own files
        and TensorBoard still have everything)."""
        if self.closed:
            return
        self.closed = True
        self.flush()
        error = self.writer.close(self.key)
        if error is not None:
            log.warning(f"MLflow could not record {self.run_dir}: {error}")


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
    experiment = experiment_id(logger.tracking_uri, logger.experiment_name)
    run = tracker.create_run(experiment, run_name=sweep_dir.name, tags=tags)
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
