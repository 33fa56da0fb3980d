"""Composes a sweep's job configs as Hydra's `load_sweep_config` does, but composes each
distinct choice of config groups once.

Hydra composes every job from scratch: it reads the config files, builds the defaults
list, merges it (~90 ms on the 2-core CI machine), and only then applies the job's plain
value overrides (`optim.lr=0.1`, `+x=3`, `~key`) to the merged config. Jobs of a sweep
usually differ only in such value overrides, so their merged configs are equal up to that
last step. `SweepComposer` keeps the merged config of each group choice ("base") and gives
a job a copy of it with the job's value overrides applied by Hydra's own function, and the
job-specific `hydra.overrides.task`, `hydra.job.override_dirname` and `hydra.runtime.cwd`
set as Hydra sets them (~7 ms). Anything else (group overrides, `hydra.*` overrides of the
job, sweep syntax, an override Hydra rejects) is keyed into the base or goes through
Hydra's own path, so errors read exactly as Hydra's.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

try:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser
except ImportError:  # a Hydra that moved them: every job is composed by Hydra
    OverridesParser = None


class SweepComposer:
    def __init__(self, loader: Any) -> None:
        self.loader = loader  # Hydra's ConfigLoaderImpl
        self.master: Optional[DictConfig] = None
        self.bases: dict[tuple[str, ...], DictConfig] = {}
        self.groups: dict[str, bool] = {}
        self.parser = OverridesParser.create() if OverridesParser is not None else None

    def load_sweep_config(self, master: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if self.parser is None:
            return self.loader.load_sweep_config(master, sweep_overrides)
        if master is not self.master:  # a new sweep config (Optuna: a new batch) starts over
            self.master, self.bases = master, {}
        try:
            return self._quick(master, sweep_overrides)
        except Exception:  # Hydra's own path raises its own message
            return self.loader.load_sweep_config(master, sweep_overrides)

    def _quick(self, master: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(sweep_overrides))
        values, group_lines = [], []
        for override in parsed:
            if self._is_value(override):
                values.append(override)
            else:
                group_lines.append(override.input_line)
        choice = tuple(group_lines)
        base = self.bases.get(choice)
        if base is None:
            base = self.loader.load_sweep_config(master, list(choice))
            self.bases[choice] = base
        config = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        task = [o for o in parsed if not o.is_hydra_override()]
        job = config.hydra.job
        with open_dict(config.hydra):
            config.hydra.runtime.cwd = os.getcwd()
            config.hydra.overrides.task = [o.input_line for o in task]
            job.override_dirname = get_overrides_dirname(
                overrides=task, kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master, to_config=config)
        return config

    def _is_value(self, override: Any) -> bool:
        """A plain value override of the task's config, applied after composition."""
        if (override.is_hydra_override() or override.is_sweep_override()
                or override.package is not None):
            return False
        if isinstance(override.value(), dict):  # Hydra merges dicts as values, even on groups
            return True
        key = override.key_or_group
        if key not in self.groups:
            self.groups[key] = self.loader.repository.group_exists(key)
        return not self.groups[key]
