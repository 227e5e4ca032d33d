"""`hydra/launcher=vectorized`: a sweep's jobs that can share a pass over the data train as one stack.

Every job's config is Hydra's own: the config loader composes it (`load_sweep_config`, as Hydra's basic,
joblib and submitit launchers load theirs). Jobs of this project's app that differ only in optimizer
settings (lr, momentum, weight_decay, betas, nesterov), class weights (loss.pos_weight,
loss.class_weight) and `seed` train together (src/stack.py); then
every job goes through Hydra's own `run_job` in order (its working directory, log, callbacks, env_set),
where a stacked job's task reports the outcome its stack gave it, and any other job (LBFGS, a group of
one, a job of another app) runs there, as the basic launcher runs it. So the sweep's lines, summary and
return values are those of any other launcher.
"""

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, env_override, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

# The keys of this project's task config: an app without them (Hydra's test apps, say) is run job by
# job, as the basic launcher runs it.
PROJECT_KEYS = (
    "dataset",
    "model",
    "loss",
    "optimizer",
    "trainer",
    "objective",
    "seed",
    "resume",
    "ckpt_path",
)


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

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):  # as Hydra's basic launcher numbers its jobs
                config.hydra.job.id = str(number)
                config.hydra.job.num = number
            configs.append(config)
        stacked = train_stacks(configs) if all(is_project_config(c) for c in configs) else {}
        returns = []
        for position, config in enumerate(configs):
            task = self.task_function
            if position in stacked:
                task = report(*stacked[position])
            job = run_job(hydra_context=self.hydra_context, task_function=task, config=config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip
            returns.append(job)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns


def is_project_config(config: DictConfig) -> bool:
    return all(key in config for key in PROJECT_KEYS)


def train_stacks(configs: list[DictConfig]) -> dict[int, tuple[Any, Any, float]]:
    """Train every group of two or more jobs that can stack; (context, outcome, seconds) by position."""
    from src.interrupt import Interrupted
    from src.rundir import job_status
    from src.stack import shared_env, stack_key, train_stack

    tasks = [task_config(config) for config in configs]
    contexts = [job_context(config) for config in configs]
    groups: dict[str, list[int]] = {}
    for position, (task, context) in enumerate(zip(tasks, contexts, strict=True)):
        finished = task.resume and job_status(context.run_dir) == "completed"  # kept by the job itself
        key = None if finished else stack_key(task, context.env_set)
        if key is not None:
            groups.setdefault(key, []).append(position)
    stacked: dict[int, tuple[Any, Any, float]] = {}
    for positions in groups.values():
        if len(positions) < 2:
            continue  # a stack of one is a solo run: Hydra's run_job runs it
        started = time.perf_counter()
        try:  # in the members' environment (each member's trial goes to its own policy)
            with env_override(shared_env(contexts[positions[0]].env_set)):
                outcomes = train_stack([(tasks[p], contexts[p]) for p in positions])
        except Interrupted as error:  # every member checkpointed: say how to resume, and stop
            print(f"error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)
        seconds = (time.perf_counter() - started) / len(positions)
        for position, outcome in zip(positions, outcomes, strict=True):
            stacked[position] = (contexts[position], outcome, seconds)
    return stacked


def task_config(config: DictConfig) -> DictConfig:
    """A job's config as its task function sees it: without Hydra's own settings."""
    task = config.copy()
    with open_dict(task):
        del task["hydra"]
    return task


def job_context(config: DictConfig) -> Any:
    """What Hydra will tell the job about itself (src.run.RunContext), before Hydra runs it: its
    directory, as run_job sets `hydra.runtime.output_dir`."""
    from src.run import RunContext

    hydra = config.hydra
    run_dir = Path(os.path.abspath(Path(str(hydra.sweep.dir)) / str(hydra.sweep.subdir)))
    saved = OmegaConf.masked_copy(config, "hydra")  # what HydraConfig holds once Hydra runs the job
    with read_write(saved.hydra.runtime), open_dict(saved.hydra.runtime):
        saved.hydra.runtime.output_dir = str(run_dir)
    return RunContext.from_settings(saved.hydra, run_dir, saved)


def report(context: Any, outcome: Any, seconds: float) -> TaskFunction:
    """The task function of a job its stack already ran: say and return what the stack gave it."""
    from src.run import conclude

    def task(cfg: DictConfig) -> Any:
        return conclude(cfg, context, outcome, seconds)

    return task
