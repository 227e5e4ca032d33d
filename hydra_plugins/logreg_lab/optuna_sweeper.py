"""An Optuna sweeper for Hydra, on Optuna's public API: `hydra/sweeper=optuna` (conf/hparams_search/).

Search space, in `hydra.sweeper.params` or on the command line, in Hydra's override syntax:
`interval(0, 1)` (uniform float; ints give ints), `tag(log, interval(1e-4, 1))` (log scale),
`choice(a, b)` or `a,b` (categorical), `range(1, 10, 3)` (Hydra's range: 1, 4, 7), and a fixed value.

The study is saved in the sweep folder (a journal file), and `resume=true` continues it. Each job is told
its trial through the environment (src/trial.py) and reports its objective every epoch, so the pruner
can stop a hopeless trial early. Hydra imports this module at every start; Optuna is only imported when
a search runs (_optuna_search.py).
"""

import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.logreg_lab.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # sampler/pruner configs arrive as configs: the jobs rebuild the pruner
    sampler: Any = "tpe"  # tpe | random | grid, or a config with _target_ (e.g. optuna.samplers.GPSampler)
    seed: int | None = None  # seeds the sampler: the same search repeats
    n_startup_trials: int = 10  # TPE: random trials before it models the results
    pruner: Any = "median"  # median | hyperband | none, or a config with _target_
    direction: str = "minimize"
    study_name: str = "search"
    storage: str | None = None  # null: <sweep dir>/optuna_journal.log; or a journal file, or a database URL
    n_trials: int = 20  # the study's size: a resumed study runs only what is missing
    n_jobs: int = 1  # trials asked of Optuna at once, run in parallel by a parallel launcher
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="logreg_lab"
)


class OptunaSweeper(Sweeper):
    """Runs an Optuna study through Hydra's launcher, a batch of `n_jobs` trials at a time."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.logreg_lab._optuna_search import OptunaSearch, SearchError

        assert self.config is not None and self.launcher is not None, "Hydra calls setup first"
        try:
            OptunaSearch(self.config, self.launcher, **self.settings).run(arguments)
        except SearchError as error:  # the user's to fix: one line, like src.train's errors
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
