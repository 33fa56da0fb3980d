"""Hydra's own launcher test suites, run on the pool launcher (local and Ray backends)."""

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.lepton_pool.pool_launcher import PoolLauncher


def test_discovery():
    assert PoolLauncher.__name__ in [p.__name__ for p in Plugins.instance().discover(Launcher)]


@pytest.mark.parametrize("launcher_name, overrides", [("pool", [])])
class TestPoolLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({"defaults": [{"override hydra/launcher": "pool"}, {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"}]},
      ["-m"])],
)
class TestPoolLauncherIntegration(IntegrationTestSuite):
    pass
