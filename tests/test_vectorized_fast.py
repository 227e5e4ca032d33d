"""What makes the vectorized launcher fast keeps it exact: derived job configs equal Hydra's own."""

import itertools

import pytest
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.logreg_lab.sweep_configs import SweepConfigs
from hydra_plugins.logreg_lab.vectorized_launcher import task_config
from tests.helpers import CONF

SWEEPS = {
    "values": [["optimizer.lr=0.1", "optimizer.lr=0.01"], ["seed=0", "seed=3"],
               ["optimizer.weight_decay=0.0", "optimizer.weight_decay=0.001"]],
    "groups and values": [["optimizer=sgd", "optimizer=adam"], ["loss=bce", "loss=ce"],
                          ["optimizer.lr=0.1", "optimizer.lr=0.02"],
                          ["trainer.epochs=3", "trainer.epochs=5"]],
    "a + override": [["+optimizer.foreach=false", "+optimizer.foreach=true"],
                     ["optimizer.lr=0.1", "optimizer.lr=0.2"]],
    "a ++ override": [["++optimizer.lr=0.3"], ["seed=1", "seed=2"]],
    "interpolations": [["dataset=toy"], ["optimizer.lr=${trainer.epochs}", "optimizer.lr=0.5"],
                       ["hydra.job.chdir=false"]],
}  # fmt: skip


@pytest.fixture
def loader(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_derived_job_config_equals_hydras_own_composition(loader, tmp_path, sweep):
    hydra_overrides = ["hydra/launcher=vectorized", f"hydra.sweep.dir={tmp_path}"]
    master = loader.load_configuration("config", hydra_overrides, RunMode.MULTIRUN)
    configs = SweepConfigs(loader)
    composed = []
    configs.compose = lambda master, overrides: (
        composed.append(overrides) or ConfigLoaderImpl.load_sweep_config(loader, master, overrides)
    )
    jobs = [list(job) for job in itertools.product(*SWEEPS[sweep])]
    for job in jobs:
        ours = configs(master, job)
        assert configs(master, job) is ours  # the sweeper's check and the launcher's load share it
        hydras = ConfigLoaderImpl.load_sweep_config(loader, master, job)
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
        for node in ("hydra.overrides.task", "hydra.overrides.hydra", "hydra.job.override_dirname",
                     "hydra.runtime.choices"):  # fmt: skip
            assert OmegaConf.select(ours, node) == OmegaConf.select(hydras, node), node
        assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
        resolved = [OmegaConf.to_container(task_config(c), resolve=True) for c in (ours, hydras)]
        assert resolved[0] == resolved[1]
    groups = {tuple(o for o in job if o.split("=")[0] in ("optimizer", "loss", "dataset")) for job in jobs}
    if sweep in ("values", "groups and values", "interpolations"):
        assert len(composed) == len(groups)  # one composition per pattern of group choices
    else:
        assert len(composed) == len(jobs)  # + and ~ overrides: every job composed by Hydra
