"""Hydra's own conformance suites for launchers (hydra.test_utils.launcher_common_tests), run on the
vectorized launcher as Hydra's joblib and submitit plugins run them on theirs: on Hydra's test apps,
which are not this project's, it must behave as the basic launcher does (every job run one by one, the
app's own version_base kept)."""

import re

import hydra
import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

HYDRA_VERSION = tuple(int(part) for part in re.findall(r"\d+", hydra.__version__)[:2])
# Hydra 1.4.0rc3's own suites fail for its own basic launcher ("Could not find 'hydra/sweeper/basic'",
# in a folder of their own too): they are Hydra 1.3's until 1.4's pass for the basic launcher.
pytestmark = pytest.mark.skipif(
    HYDRA_VERSION >= (1, 4), reason="Hydra 1.4.0rc3's conformance suites fail for its basic launcher"
)


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
