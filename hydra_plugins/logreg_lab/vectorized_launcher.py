"""`hydra/launcher=vectorized`: a sweep's jobs that can share a pass over the data train as one stack.

Jobs that differ only in optimizer settings (lr, momentum, weight_decay, betas, nesterov) and `seed`
train together (src/stack.py); the others (LBFGS, or a group of one) run one by one in this process, as
the basic launcher runs them. Then every job goes through Hydra's own job machinery in order (its
working directory, log, callbacks), where a stacked job reports the outcome its stack gave it, so the
sweep's lines, summary and return values are those of any other launcher.

What keeps it fast besides the shared epochs: the sweeper and the launcher share each job's config,
derived from one composition per pattern of group choices (sweep_configs.py), and a stacked job, which
only reports, goes through run_job's steps without run_job's copies of its config (run_reported).
"""

import copy
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _flush_loggers,
    _save_config,
    configure_log,
    env_override,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.logreg_lab import sweep_configs

log = logging.getLogger(__name__)


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.logreg_lab.vectorized_launcher.VectorizedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf)


class VectorizedLauncher(Launcher):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        # Before the sweeper checks its first batch: this launcher takes the config the sweeper checked
        # (composed once per pattern of group choices: sweep_configs.py).
        sweep_configs.install(hydra_context.config_loader, keep_checked=True)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from src.interrupt import Interrupted
        from src.rundir import job_status
        from src.stack import stack_key, train_stack

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs: list[DictConfig] = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            if any(config is other for other in configs):  # the same overrides twice: two jobs
                config = copy.deepcopy(config)
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = number
            with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):  # as run_job sets it
                config.hydra.runtime.output_dir = os.path.abspath(job_dir(config))
            configs.append(config)

        tasks, contexts = [task_config(c) for c in configs], [job_context(c) for c in configs]
        groups: dict[str, list[int]] = {}
        for position, (task, context) in enumerate(zip(tasks, contexts, strict=True)):
            finished = task.resume and job_status(context.run_dir) == "completed"  # kept by the job itself
            key = None if finished else stack_key(task, context.env_set)
            if key is not None:
                groups.setdefault(key, []).append(position)
        stacked: dict[int, tuple[Any, float]] = {}
        for positions in groups.values():
            if len(positions) < 2:
                continue  # a stack of one is a solo run
            started = time.perf_counter()
            try:  # in the members' environment (each member's trial goes to its own policy)
                with env_override(shared_env(contexts[positions[0]].env_set)):
                    outcomes = train_stack([(tasks[p], contexts[p]) for p in positions])
            except Interrupted as error:  # every member checkpointed: say how to resume, and stop
                print(f"error: {error}", file=sys.stderr)
                sys.exit(error.exit_code)
            seconds = (time.perf_counter() - started) / len(positions)
            for position, outcome in zip(positions, outcomes, strict=True):
                stacked[position] = (outcome, seconds)

        returns = []
        for position, config in enumerate(configs):
            if position in stacked:
                reporter = report(contexts[position], *stacked[position])
                returns.append(run_reported(self.hydra_context, config, tasks[position], reporter))
            else:
                returns.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                       config=config, job_dir_key="hydra.sweep.dir",
                                       job_subdir_key="hydra.sweep.subdir"))  # fmt: skip
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns


def shared_env(env_set: dict[str, str]) -> dict[str, str]:
    """What a stack's members share of `hydra.job.env_set` (stack_key groups them so): all of it but
    the Optuna trial each names, which its own run reads (src.run.prepare_run)."""
    from src.trial import TRIAL_ENV

    return {key: value for key, value in env_set.items() if key != TRIAL_ENV}


def task_config(config: DictConfig) -> DictConfig:
    """A job's config as its task function sees it: without Hydra's own settings."""
    task = config.copy()
    with open_dict(task):
        del task["hydra"]
    return task


def job_dir(config: DictConfig) -> Path:
    """The job's directory, as run_job finds it."""
    return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)


def job_context(config: DictConfig) -> Any:
    """What Hydra would tell the job about itself (src.train.RunContext), before Hydra runs it."""
    from src.train import RunContext

    hydra = config.hydra
    run_dir = job_dir(config)
    saved = OmegaConf.masked_copy(config, "hydra")  # what HydraConfig holds once Hydra runs the job
    return RunContext.from_settings(hydra, run_dir, saved)


def report(context: Any, outcome: Any, seconds: float) -> TaskFunction:
    """The task function of a job its stack already ran: say and return what the stack gave it."""
    from src.train import conclude

    def task(cfg: DictConfig) -> Any:
        return conclude(cfg, context, outcome, seconds)

    return task


def run_reported(
    hydra_context: HydraContext, config: DictConfig, task_cfg: DictConfig, task: TaskFunction
) -> JobReturn:
    """Hydra's run_job (hydra/core/utils.py) for a job its stack already ran, step for step (the Hydra
    settings of the job, its working directory and log file, callbacks, the JobReturn), less the three
    copies of the whole config run_job makes for a task that could change it: this one only reports."""
    callbacks = hydra_context.callbacks
    old_cwd, orig_hydra_cfg = os.getcwd(), HydraConfig.instance().cfg
    output_dir = config.hydra.runtime.output_dir  # set by launch, as run_job sets it
    HydraConfig.instance().set_config(config)
    chdir = bool(config.hydra.job.chdir)  # None is False since version_base 1.2 (the project's 1.3)
    try:
        ret = JobReturn()
        ret.cfg, ret.hydra_cfg = task_cfg, HydraConfig.instance().cfg  # type: ignore[assignment]
        ret.overrides = list(config.hydra.overrides.task)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if chdir:
            os.chdir(output_dir)
        ret.working_dir = os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            folder = Path(output_dir) / str(config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", folder)
            _save_config(ret.hydra_cfg, "hydra.yaml", folder)  # type: ignore[arg-type]
            _save_config(config.hydra.overrides.task, "overrides.yaml", folder)
        with env_override(config.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task)
            try:
                ret.return_value = task(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as error:
                ret.return_value = error
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = orig_hydra_cfg
        if chdir:
            os.chdir(old_cwd)
