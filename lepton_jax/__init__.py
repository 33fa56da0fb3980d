"""lepton_jax: a JAX research toolkit and experiment runner."""

from lepton_jax.api import Dataset, Model, Trainer
from lepton_jax.config import Config, DataConfig, LoggerConfig, ModelConfig, OptimConfig, TrainerConfig
from lepton_jax.errors import DivergedError, UserError
from lepton_jax.loop import fit
from lepton_jax.report import report
from lepton_jax.sweep import sweep

__all__ = [
    "Dataset", "Model", "Trainer",
    "Config", "DataConfig", "LoggerConfig", "ModelConfig", "OptimConfig", "TrainerConfig",
    "DivergedError", "UserError", "fit", "report", "sweep",
]
__version__ = "0.1.0"
