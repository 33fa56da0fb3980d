"""The Hydra Launcher class; the work lives in `_core` (imported when a sweep starts)."""

from __future__ import annotations

import atexit
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class PoolLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        # Hydra instantiates the launcher from PoolLauncherConf's fields.
        self.params = OmegaConf.create(params)
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None
        # Jobs this process has launched: later batches of a sweeper (Optuna) add to the
        # same sweep dir, which must not look like a foreign sweep.
        self.launched: set[int] = set()
        self.prestarted: Any = None  # the local pool, started in setup() (see _core.prestart)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra_plugins.lepton_pool import _core
        from hydra_plugins.lepton_pool._job import remembering

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        # The sweeper composes each job to validate its batch before launching it; the
        # launcher reuses those configs instead of composing every job a second time, and
        # its workers start meanwhile.
        remembering(hydra_context)
        if self.prestarted is not None:
            self.prestarted.close()
        try:
            self.prestarted = _core.prestart(self)
        except _core.PoolError as e:  # a bad option: said now, before the sweep dir is made
            _core.fail(e)
        except Exception:  # noqa: BLE001 - launch() starts the pool again and reports why
            self.prestarted = None
        if self.prestarted is not None:
            atexit.register(self._discard_unused_pool)

    def _discard_unused_pool(self) -> None:
        """At exit, a pool that launch() never took (the sweeper rejected the batch: a bad
        override) stops, and its empty worker logs go, leaving the sweep dir as Hydra left it."""
        if self.prestarted is not None:
            self.prestarted.close(discard_logs=True)
            self.prestarted = None

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.lepton_pool import _core

        return _core.launch(self, job_overrides, initial_job_idx)
