"""Entry point: `python -m src.train [overrides]`, or `-m` for a sweep. See conf/config.yaml.

`train` reads as a table of contents: prepare the run (check the config, build data, head, model and
optimizer, restore a checkpoint if asked: src/run.py), write its record, then train it as every run
trains, in a stack of one (src/stack.py: the epochs, and after each the run's policy), which ends by
testing, drawing and reporting.
"""

import ctypes
import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.cli import HeldRunLog, run_guarded
from src.config import register_configs
from src.console import summary
from src.errors import TrainingDiverged
from src.run import RunContext, prepare_run, record_failure, write_run_files
from src.rundir import job_status, previous_run, read_run_metrics
from src.stack import train_runs
from src.sweep import FailedRun, job_line, varying_keys
from src.trial import PRUNED, PrunedRun

register_configs()
log = logging.getLogger(__name__)


def train(cfg: DictConfig, context: RunContext, on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run one experiment described by `cfg`, writing into `context.run_dir`; returns metrics.json's
    content (and the learned parameters, when there are few).

    Nothing is written before every check has passed; then `on_start()` is called. The run trains as
    every run does, in a stack (of one: src/stack.py).
    """
    with ExitStack() as held:
        run = prepare_run(cfg, context, held)
        if on_start is not None:
            on_start()
        write_run_files(cfg, context)
        (outcome,) = train_runs([run], held)
        if isinstance(outcome, TrainingDiverged):
            raise outcome
        return outcome


# An absolute path, so that the `logreg-lab` console script finds conf/ as `python -m src.train` does.
@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="config"
)
def main(cfg: DictConfig) -> float | FailedRun | PrunedRun:
    """Train once; return the objective metric for sweepers (a FailedRun when a sweep's job fails)."""
    context = RunContext.from_hydra()
    started = time.perf_counter()
    if context.in_sweep:
        end_with_parent_process()
        if cfg.resume and job_status(context.run_dir) == "completed":  # a finished job is kept as it is
            kept = read_run_metrics(context.run_dir) or {}
            announce_job(cfg, context, {**kept, "status": "kept"})
            return kept[cfg.objective.metric]
    return conclude(cfg, context, run_command(cfg, context), time.perf_counter() - started)


def conclude(
    cfg: DictConfig, context: RunContext, outcome: dict[str, Any] | FailedRun, seconds: float
) -> float | FailedRun | PrunedRun:
    """What a finished job says (one line in a sweep, the summary alone) and returns to the sweeper."""
    if isinstance(outcome, FailedRun):
        announce_job(cfg, context, {"status": "failed", "reason": outcome.reason})
        return outcome
    if outcome["status"] == PRUNED:  # the sweeper records a pruned trial, not a failed one
        announce_job(cfg, context, outcome)
        return PrunedRun(outcome["epochs"], outcome.get(cfg.objective.metric, float("nan")))
    if context.in_sweep:  # one line per job; the sweep prints its table and one TensorBoard command
        announce_job(cfg, context, outcome)
    else:
        log.info(summary(outcome, context.run_dir, seconds))
    return outcome[cfg.objective.metric]


def run_command(cfg: DictConfig, context: RunContext) -> dict[str, Any] | FailedRun:
    """`train` under the entry point's policy (src/cli.py): a refusal writes nothing into a directory
    that holds an earlier run; a failure in a new one is recorded there, with its log."""
    fresh = previous_run(context.run_dir) is None
    run_log = HeldRunLog()  # nothing reaches a run directory before the command is accepted
    accepted = False

    def start() -> None:
        nonlocal accepted
        accepted = True
        run_log.release()

    def fail(reason: str) -> None:
        if accepted or fresh:  # an earlier run's files stay as they were
            run_log.release()
            record_failure(cfg, context, reason)
        else:
            run_log.release(keep=False)

    return run_guarded(
        lambda: train(cfg, context, on_start=start),
        in_sweep=context.in_sweep,
        log_file=context.log_file if fresh else None,
        record_failure=fail,
    )


def announce_job(cfg: DictConfig, context: RunContext, outcome: dict[str, Any]) -> None:
    """A sweep job's one line: its number, what varies, its objective and status (the sweep prints
    the table)."""
    if context.in_sweep:
        varying = varying_keys(context.run_dir.parent)
        number = HydraConfig.get().job.num
        log.info(job_line(number, context.overrides, varying, outcome, cfg.objective.metric))


def end_with_parent_process() -> None:
    """A job in a worker process (joblib's) stops, with a checkpoint, when the sweep's process dies,
    rather than training on unseen (Linux: the kernel sends SIGTERM when the parent goes)."""
    if multiprocessing.current_process().name == "MainProcess" or not sys.platform.startswith("linux"):
        return
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG
    ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGTERM)


if __name__ == "__main__":
    main()
