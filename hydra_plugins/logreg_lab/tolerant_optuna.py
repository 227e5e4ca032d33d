"""Hydra's Optuna sweeper, except that a search whose every trial failed ends like any failed sweep.

The plugin asks Optuna for the best trial at the end, which raises when no trial completed. Here that
case is logged, and the sweep summary (src.sweep.SweepSummary) then lists the failures and exits 1.
Selected by conf/hparams_search/*.yaml through `hydra.sweeper._target_`; Hydra only accepts sweepers
from the `hydra_plugins` namespace package, hence this folder.
"""

import logging

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class TolerantOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        try:
            return super().sweep(arguments)
        except ValueError as error:
            if "No trials are completed" not in str(error):
                raise
            log.error("no trial completed: every trial failed")
