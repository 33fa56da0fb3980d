"""lepton_jax: a JAX research toolkit and experiment runner.

The names whose modules import JAX (`fit`, `Dataset`, `Model`, `Trainer`) load on first use
(PEP 562), so that `python -m lepton_jax.train -m ...` starts without importing JAX in
processes that never train: a pool sweep's launcher process, `--cfg`, a config error.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Light modules, imported now. `report` and `sweep` must be: they share their modules' names,
# and importing a submodule later would set the package attribute to the module itself.
from lepton_jax.config import (Config, DataConfig, LoggerConfig, ModelConfig, OptimConfig,
                               TrainerConfig)
from lepton_jax.errors import DivergedError, Interrupted, UserError
from lepton_jax.report import report
from lepton_jax.sweep import sweep

_LAZY = {"Dataset": "lepton_jax.api", "Model": "lepton_jax.api", "Trainer": "lepton_jax.api",
         "fit": "lepton_jax.loop"}
__all__ = [
    "Dataset", "Model", "Trainer",
    "Config", "DataConfig", "LoggerConfig", "ModelConfig", "OptimConfig", "TrainerConfig",
    "DivergedError", "Interrupted", "UserError", "fit", "report", "sweep",
]
__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time `__getattr__` loads them
    from lepton_jax.api import Dataset, Model, Trainer  # noqa: F401
    from lepton_jax.loop import fit  # noqa: F401


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lepton_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # The public API (what tab completion offers), not this module's own imports.
    return sorted([*__all__, "__version__"])
