"""lepton_jax: a JAX research toolkit and experiment runner.

The public names load on first use (PEP 562), so that `python -m lepton_jax.train -m ...` and
`lepton-jax report` start without importing JAX in processes that never train: a pool
sweep's launcher process, the report command, a config error.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Dataset": "lepton_jax.api", "Model": "lepton_jax.api", "Trainer": "lepton_jax.api",
    "Config": "lepton_jax.config", "DataConfig": "lepton_jax.config",
    "LoggerConfig": "lepton_jax.config", "ModelConfig": "lepton_jax.config",
    "OptimConfig": "lepton_jax.config", "TrainerConfig": "lepton_jax.config",
    "DivergedError": "lepton_jax.errors", "UserError": "lepton_jax.errors",
    "fit": "lepton_jax.loop", "report": "lepton_jax.report", "sweep": "lepton_jax.sweep",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time `__getattr__` loads them
    from lepton_jax.api import Dataset, Model, Trainer  # noqa: F401
    from lepton_jax.config import Config, DataConfig, LoggerConfig  # noqa: F401
    from lepton_jax.config import ModelConfig, OptimConfig, TrainerConfig  # noqa: F401
    from lepton_jax.errors import DivergedError, UserError  # noqa: F401
    from lepton_jax.loop import fit  # noqa: F401
    from lepton_jax.report import report  # noqa: F401
    from lepton_jax.sweep import sweep  # noqa: F401


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lepton_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
