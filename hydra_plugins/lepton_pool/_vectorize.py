"""Grouping sweep jobs into populations (`hydra.launcher.vectorize=true`)."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import OmegaConf, open_dict

from hydra_plugins.lepton_pool._slots import PoolError


def populations(launcher: Any, todo: list, max_population: int, slots: int) -> list[list]:
    """`todo` ([(num, overrides)]) split into groups with equal structural fields.

    Groups larger than `max_population` are split; with fewer groups than slots (and no
    max_population given) groups are split evenly so that every slot gets a population.
    """
    from lepton_jax.config import Config
    from lepton_jax.population import group_population

    configs = []
    for _, overrides in todo:
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        config = OmegaConf.to_object(cfg)
        if not isinstance(config, Config):
            raise PoolError("hydra.launcher.vectorize=true trains lepton_jax apps "
                            "(python -m lepton_jax.train); this app's config is not a "
                            "lepton_jax Config. Use vectorize=false")
        configs.append(config)
    groups = group_population(configs, max_population)
    if not max_population and len(groups) < slots:
        parts = math.ceil(slots / len(groups))
        groups = [group[k::parts] for group in groups for k in range(min(parts, len(group)))]
        groups = [sorted(g) for g in groups]
    return [[todo[i] for i in group] for group in groups]
