"""Hydra's own conformance suites for launchers (hydra.test_utils.launcher_common_tests), run on the
project's launchers as Hydra's joblib and submitit plugins run them on theirs: on Hydra's test apps,
which are not this project's, the vectorized launcher must behave as the basic launcher does (every job
run one by one, the app's own version_base kept), and the SLURM launcher's code (on submitit's local
executor, as hydra-submitit-launcher tests its own) as submitit's does."""

import hydra
import pytest
from hydra import version
from hydra.core.global_hydra import GlobalHydra
from hydra.core.singleton import Singleton
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

from src.config import major_minor

HYDRA_VERSION = major_minor(hydra.__version__)
# Hydra 1.4.0rc3's own suites fail for its own basic launcher ("Could not find 'hydra/sweeper/basic'",
# in a folder of their own too): they are Hydra 1.3's until 1.4's pass for the basic launcher.
pytestmark = pytest.mark.skipif(
    HYDRA_VERSION >= (1, 4), reason="Hydra 1.4.0rc3's conformance suites fail for its basic launcher"
)


@pytest.fixture(autouse=True)
def hydra_of_its_own():
    """The suites start Hydra on their own test apps, as a new process would: without the tests' Hydra
    (initialized on conf/ by tests/helpers.py) and without its version_base, both put back after."""
    saved = Singleton.get_state()
    GlobalHydra.instance().clear()
    version.setbase("1.1")  # the defaults a process without a version_base gets, which the suites expect
    yield
    GlobalHydra.instance().clear()
    Singleton.set_state(saved)


@pytest.mark.parametrize("launcher_name, overrides", [("vectorized", [])])
class TestVectorizedLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides", [("vectorized", ["hydra.sweeper.max_batch_size=2"])])
class TestVectorizedLauncherBatches(BatchedSweeperTestSuite):
    pass


# Each case starts a Hydra app as a process of its own: slow, run by CI.
@pytest.mark.slow
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({"defaults": [{"override hydra/launcher": "vectorized"}, "_self_"]}, ["-m"])],
)
class TestVectorizedLauncherIntegration(IntegrationTestSuite):
    pass


# The SLURM launcher's code on submitit's local executor (conf/hydra/launcher/slurm_local.yaml names the
# same class; Hydra's test apps do not see the project's configs). Each job is a process: slow, run by CI.
@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        (
            "submitit_local",
            [
                "hydra.launcher._target_=hydra_plugins.logreg_lab.submitit_launcher.LocalLauncher",
                "hydra.launcher.timeout_min=2",
            ],
        )
    ],
)
class TestSlurmLauncherOnTheLocalExecutor(LauncherTestSuite):
    pass
