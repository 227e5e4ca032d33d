"""Entry point: `python -m src.train [overrides]`, or `-m` for a sweep. See conf/config.yaml.

`train` reads as a table of contents: prepare the run (check the config, build data, head, model and
optimizer, restore a checkpoint if asked: src/run.py), write its record, then train it as every run
trains, in a stack of one (src/stack.py: the epochs, and after each the run's policy), which ends by
testing, drawing and reporting.
"""

import logging
import os
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

from src.cli import HeldRunLog, exit_with, run_guarded
from src.config import major_minor, register_configs
from src.errors import ConfigError, TrainingDiverged
from src.files import remove_unused
from src.interrupt import end_with_parent_process, mark_app_process
from src.run import RunContext, announce_job, conclude, prepare_run, record_failure, write_run_files
from src.rundir import job_status, previous_run, read_run_metrics
from src.stack import train_runs
from src.sweep import FailedRun
from src.trial import PrunedRun

register_configs()
log = logging.getLogger(__name__)
SEARCH_SWEEPER = "hydra_plugins.logreg_lab.optuna_sweeper.OptunaSweeper"


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


def config_dir() -> Path:
    """The configs: conf/ beside src/ in a checkout (and an editable install), the copy a wheel or a
    `pip install .` ships inside the package (src/conf) elsewhere. An absolute path, so that the
    `logreg-lab` console script finds them from any folder, as `python -m src.train` does."""
    here = Path(__file__).resolve().parent
    shipped = here / "conf"
    return shipped if (shipped / "config.yaml").is_file() else here.parent / "conf"


# What configs may name by `_target_` (Hydra 1.4 asks for the list; 1.3 trusts every target): the
# project's own classes and plugins, torch's optimizers and schedules, Optuna's samplers and pruners,
# and the logging handlers of conf/hydra/job_logging.
TRUSTED_TARGETS = ["src.*", "torch.*", "optuna.*", "hydra_plugins.*", "hydra.*", "logging.*"]


def hydra_settings() -> dict[str, Any]:
    """@hydra.main's settings for the Hydra installed: 1.3's defaults (version_base "1.3"); on 1.4,
    which deprecates version_base and has only its own defaults, the trusted targets."""
    if major_minor(hydra.__version__) < (1, 4):
        return {"version_base": "1.3"}
    return {"execution_whitelist": TRUSTED_TARGETS}


def main() -> None:
    """`python -m src.train` and `logreg-lab`: this project's Hydra app. Hydra's settings (its
    version_base) are global, so they are applied when the app starts, not when this module is
    imported: a launcher or a test may import it beside another Hydra app.

    Hydra's own errors about the command line (an unknown key or option, a value of the wrong type,
    an override it cannot read) are the project's one line too (src/hydra_errors.py): Hydra raises
    them when HYDRA_FULL_ERROR=1, its documented switch, which a user who sets it gets as Hydra's."""
    from src.hydra_errors import is_command_line_error, one_line

    signal.signal(signal.SIGINT, signal.default_int_handler)  # started: Ctrl-C is KeyboardInterrupt again
    mark_app_process()
    users_choice = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra.main(config_path=str(config_dir()), config_name="config", **hydra_settings())(task)()
    except Exception as error:
        if users_choice == "1":
            raise
        if isinstance(error, OSError) and error.filename:  # Hydra making the run or sweep folder
            print(f"error: {unmade_folder(error)}", file=sys.stderr)
            exit_with(2)
        if not is_command_line_error(error):
            raise
        from src.sweep import forget_unstarted_sweep

        forget_unstarted_sweep()  # a sweep refused before its first job leaves no folder
        print(f"error: {one_line(error)}", file=sys.stderr)
        exit_with(2)
    except KeyboardInterrupt:  # before the run's own handler is in place, or a second Ctrl-C
        print("error: stopped by Ctrl-C", file=sys.stderr)
        exit_with(130)
    finally:
        if users_choice is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = users_choice


def unmade_folder(error: OSError) -> str:
    """What to say when Hydra cannot make the run's (or the sweep's) folder."""
    return (f"cannot make the folder {error.filename} ({error.strerror}); choose another hydra.run.dir "
            "(or hydra.sweep.dir)")  # fmt: skip


def task(cfg: DictConfig) -> float | FailedRun | PrunedRun:
    """Train once; return the objective metric for sweepers (a FailedRun when a sweep's job fails)."""
    context = RunContext.from_hydra()
    started = time.perf_counter()
    if not context.in_sweep and is_sweep_preset(HydraConfig.get().sweeper):
        # Hydra 1.4 lets only the primary config or the command line choose multirun.
        refusal = ConfigError("this preset is a sweep (a search, or hydra.sweeper.params): add -m, as in "
                              "python -m src.train -m experiment=bce_vs_ce")  # fmt: skip
        log.error(f"error: {refusal}")
        exit_with(refusal.exit_code, refusal)
    if context.in_sweep:
        end_with_parent_process()
        if cfg.resume and job_status(context.run_dir) == "completed":  # a finished job is kept as it is
            kept = read_run_metrics(context.run_dir) or {}
            announce_job(cfg, context, {**kept, "status": "kept"})
            return kept[cfg.objective.metric]
    return conclude(cfg, context, run_command(cfg, context), time.perf_counter() - started)


def is_sweep_preset(sweeper: DictConfig) -> bool:
    """A sweeper that a preset configured to sweep: the Optuna search, or parameters to sweep."""
    return sweeper.get("_target_") == SEARCH_SWEEPER or bool(sweeper.get("params"))


def run_command(cfg: DictConfig, context: RunContext) -> dict[str, Any] | FailedRun:
    """`train` under the entry point's policy (src/cli.py): a refusal before the run starts writes
    nothing (a run directory made for it goes again), nor does any failure in a directory that holds an
    earlier run; a failure in a new one is recorded there, with its log (a bug's traceback). A sweep's
    job records every failure: it is the job's row in the summary."""
    fresh = previous_run(context.run_dir) is None
    run_log = HeldRunLog()  # nothing reaches a run directory before the command is accepted
    accepted = False

    def start() -> None:
        nonlocal accepted
        accepted = True
        run_log.release()

    def fail(reason: str, refused: bool) -> None:
        if refused and not accepted and not context.in_sweep:  # nothing ran: leave no trace
            run_log.release(keep=False)
            if fresh:  # the run directory made for it: at most an empty log
                remove_unused(
                    context.run_dir, lambda file: file.name == "train.log" and not file.stat().st_size
                )
        elif accepted or fresh:  # an earlier run's files stay as they were
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


if __name__ == "__main__":
    main()
