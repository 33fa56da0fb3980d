"""Hydra glue: the ConfigStore schemas and DictConfig -> Config conversion."""

from __future__ import annotations

import logging
import sys

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from lepton_jax.config import Config


def register_configs() -> None:
    """Stores the typed schema; config.yaml lists it first, so YAML values are type-checked
    and unknown keys rejected before any work."""
    ConfigStore.instance().store(name="base_config", node=Config)


def to_config(cfg: DictConfig) -> Config:
    """The one place a DictConfig becomes the library's dataclass."""
    return OmegaConf.to_object(cfg)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class ConsoleFormatter(logging.Formatter):
    """The Hydra task's console lines: a run's own lines as they are (the log file keeps
    Hydra's timestamped format), other messages with their source and level."""

    def __init__(self):
        super().__init__("[%(name)s][%(levelname)s] - %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("lepton_jax") and record.levelno == logging.INFO:
            return record.getMessage()
        return super().format(record)


class ConsoleHandler(logging.StreamHandler):
    """Hydra's console handler, writing to `sys.stdout` as it is at each record: the live
    progress bar (rich) replaces it to print lines above the bar, and a handler that kept
    the original stream glued them to the bar's line."""

    def __init__(self, stream=None):  # Hydra's default config passes ext://sys.stdout
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass
