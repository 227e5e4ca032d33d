"""joblib's workers, forked from one server process that imported torch and Hydra once.

Under `hydra/launcher=joblib`, loky starts each worker as a new interpreter, which imports torch, its
compiler (torch.optim imports it at its first step) and Hydra before its first job: about 3.8 s each, at
the moment the sweep launches, while the sweep's own process waits. `JoblibWorkersFromServer` (a
callback in conf/config.yaml) starts multiprocessing's fork server as the sweep starts, with those
imports preloaded, and tells loky to start its workers from it: the server imports while the sweep's
process checks and composes the jobs, and each worker is then a fork of it, ready at once. Each is still
a process of its own, started the way loky supports (loky refuses a plain fork of the sweep's process,
which has threads by then). Where there is no fork server (Windows) loky starts its workers as usual.
"""

import logging
import multiprocessing
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


class JoblibWorkersFromServer(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks): for a joblib sweep, start the fork server
    its workers will come from, before the sweep's check and composition."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.launcher.get("_target_") != JOBLIB_LAUNCHER:
            return
        if "forkserver" not in multiprocessing.get_all_start_methods():
            return
        from multiprocessing import forkserver

        from joblib.externals.loky.backend import context

        try:
            multiprocessing.get_context("forkserver").set_forkserver_preload(preload())
            forkserver.ensure_running()  # returns at once; the server imports in the background
        except (OSError, ValueError) as error:  # loky starts its workers as usual
            log.debug("no fork server for joblib's workers: %s", error)
            return
        context.set_start_method("forkserver", force=True)


def preload() -> list[str]:
    """What a job imports before its first step: torch's compiler, Hydra, and the project's modules the
    sweep's process imported, except the one it runs as `__main__` (src.train): each worker runs that
    itself, as multiprocessing's `__mp_main__`, and runpy warns when it finds it imported already."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    main = spec.name if spec is not None else None
    project = sorted(name for name in list(sys.modules) if name.split(".")[0] == "src" and name != main)
    return ["torch._dynamo", "hydra", *project]
