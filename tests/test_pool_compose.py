"""The pool's SweepComposer gives every job the config Hydra's own `load_sweep_config`
composes for it: same values, same node types and flags, same Hydra bookkeeping, and the
same errors."""

from __future__ import annotations

import os

import pytest
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.lepton_pool._compose import SweepComposer
from lepton_jax.hydra_app import register_configs

SWEEP_HYDRA = ["hydra/launcher=pool", "hydra.sweep.dir=/tmp/never-written",
               "hydra.job.config.override_dirname.exclude_keys=[seed]"]
JOBS = [
    ["optim.lr=0.1", "seed=3"],
    ["optim.lr=0.2", "seed=3"],
    ["seed=4", "optim.lr=0.1"],  # order kept in hydra.overrides.task
    ["model=lenet5", "optim.lr=0.1"],  # a group choice: its own base
    ["model=lenet5", "optim.lr=0.3", "trainer.epochs=2"],
    ["experiment=mnist_lenet5", "optim.momentum=0.5"],
    ["+extra.depth=3", "+extra.width=2", "++seed=9", "~extra.width"],
    ["optim={lr: 0.7, momentum: 0.0}"],  # a dict on a group key is a value
    ["hydra.job.chdir=true", "seed=1"],  # a job's hydra override goes into its base
    ["data=mnist", "data.root=/nowhere", "model.hidden=[32,16]"],
    [],
    ["optim.lr=0.1", "seed=3"],  # again, after the others: bases were not modified
]
BAD = [
    ["optim.lr=fast"],  # type error in the schema
    ["no_such_key=1"],  # missing + to add
    ["~no_such_key"],
    ["model=resnet"],  # no such group option
    ["optim.lr=0.1,0.2"],  # sweep syntax in a job
]


@pytest.fixture(scope="module")
def sweep():
    GlobalHydra.instance().clear()
    register_configs()
    hydra = Hydra.create_main_hydra2(task_name="train",
                                     config_search_path=create_config_search_path(
                                         "pkg://lepton_jax.conf"))
    master = hydra.config_loader.load_configuration(
        config_name="config", overrides=[*SWEEP_HYDRA, "optim.lr=0.1,0.2", "seed=0,1"],
        run_mode=RunMode.MULTIRUN)
    str(master.hydra.run.dir)  # resolves ${now:...} into the sweep config's cache
    yield hydra.config_loader, master
    GlobalHydra.instance().clear()


def assert_same_node(ours, hydras, path="") -> None:
    """Equal values (unresolved), node classes, types and flags, all the way down."""
    assert type(ours) is type(hydras), path
    assert ours._metadata.flags == hydras._metadata.flags, path
    assert ours._metadata.ref_type == hydras._metadata.ref_type, path
    assert ours._metadata.object_type == hydras._metadata.object_type, path
    if isinstance(ours, DictConfig):
        assert list(ours.keys()) == list(hydras.keys()), path
        for key in ours.keys():
            assert_same_node(ours._get_node(key), hydras._get_node(key), f"{path}.{key}")
    elif isinstance(ours, ListConfig):
        assert len(ours) == len(hydras), path
        for i in range(len(ours)):
            assert_same_node(ours._get_node(i), hydras._get_node(i), f"{path}[{i}]")
    else:
        assert ours._value() == hydras._value(), path


def test_each_job_config_is_the_one_hydra_composes(sweep):
    loader, master = sweep
    composer = SweepComposer(loader)
    for overrides in JOBS:
        ours = composer.load_sweep_config(master, list(overrides))
        hydras = loader.load_sweep_config(master, list(overrides))
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), overrides
        assert_same_node(ours, hydras, str(overrides))
        assert ours.hydra.runtime.cwd == os.getcwd()
        assert OmegaConf.get_cache(ours) == OmegaConf.get_cache(master)  # ${now:} as the sweep's
    # Jobs differing only in values share one base per group choice.
    assert set(composer.bases) == {(), ("model=lenet5",), ("experiment=mnist_lenet5",),
                                   ("hydra.job.chdir=true",), ("data=mnist",)}
    assert ours.hydra.job.override_dirname == "optim.lr=0.1"  # seed excluded by the sweep


def test_job_configs_are_independent_copies(sweep):
    loader, master = sweep
    composer = SweepComposer(loader)
    first = composer.load_sweep_config(master, ["optim.lr=0.1"])
    first.optim.momentum = 0.123
    second = composer.load_sweep_config(master, ["optim.lr=0.2"])
    assert second.optim.momentum == loader.load_sweep_config(master, []).optim.momentum


@pytest.mark.parametrize("overrides", BAD, ids=lambda o: " ".join(o))
def test_bad_overrides_fail_with_hydras_own_error(sweep, overrides):
    loader, master = sweep
    with pytest.raises(Exception) as hydras:
        loader.load_sweep_config(master, list(overrides))
    with pytest.raises(type(hydras.value)) as ours:
        SweepComposer(loader).load_sweep_config(master, list(overrides))
    assert str(ours.value) == str(hydras.value)
