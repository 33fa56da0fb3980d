"""When training stops before its last step (early stopping, Ctrl-C), and which step's
parameters a run keeps (`trainer.restore_best`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

import jax

from lepton_jax import config as config_lib
from lepton_jax.config import TrainerConfig
from lepton_jax.errors import UserError


class Best:
    """The best value of a monitored validation metric so far and the step it came from: an
    evaluation beats it when it is better by more than `min_delta`."""

    def __init__(self, metric: str, min_delta: float, value: Optional[float] = None,
                 step: Optional[int] = None):
        self.metric, self.min_delta = metric, min_delta
        self._sign = 1.0 if config_lib.maximized(metric) else -1.0
        self.value, self.step = value, step

    def update(self, step: int, value: float) -> bool:
        """Takes one evaluation's value; True when it is the new best."""
        if self.value is None or self._sign * (value - self.value) > self.min_delta:
            self.value, self.step = value, step
            return True
        return False

    def summary(self) -> dict:
        return {"step": self.step, "metric": self.metric, "value": self.value}


class EarlyStop:
    """`trainer.patience`: training stops once the monitored validation metric has gone
    `patience` evaluations in a row without improving on its best by more than `min_delta`."""

    def __init__(self, metric: str, patience: int, min_delta: float):
        self.metric, self.patience = metric, patience
        self._best = Best(metric, min_delta)
        self.waited = 0

    @property
    def best(self) -> Optional[float]:
        return self._best.value

    @property
    def best_step(self) -> Optional[int]:
        return self._best.step

    @property
    def due(self) -> bool:
        return self.waited >= self.patience

    def update(self, step: int, value: float) -> bool:
        """Takes one evaluation's value; True once training should stop."""
        self.waited = 0 if self._best.update(step, value) else self.waited + 1
        return self.due

    def replay(self, records: list[dict]) -> "EarlyStop":
        """The state after the evaluations a resumed run already recorded."""
        for record in records:
            if self.metric in record:
                self.update(record["step"], record[self.metric])
        return self

    def summary(self, step: int) -> dict:
        return {"step": step, "metric": self.metric, "best": self.best,
                "best_step": self.best_step, "patience": self.patience}


def _watched(trainer: TrainerConfig, task: str, splits: list[str], field: str, off: str) -> str:
    """The validation metric `trainer.monitor` names, for the option `field` that watches it."""
    if "val" not in splits:
        raise UserError(f"trainer.{field} watches the validation split, but this data has "
                        f"none; set data.val_fraction > 0 or trainer.{field}={off}")
    metric = config_lib.monitor_name(trainer.monitor, task, True)
    if not metric.startswith("val/"):
        raise UserError(f"trainer.{field} watches trainer.monitor, which must be a validation "
                        f"metric (val/accuracy, val/loss, ...), not {metric!r}")
    return metric


def early_stop(trainer: TrainerConfig, task: str, splits: list[str]) -> Optional[EarlyStop]:
    """An `EarlyStop` for `trainer.patience` (None when 0), watching `trainer.monitor`."""
    if not trainer.patience:
        return None
    return EarlyStop(_watched(trainer, task, splits, "patience", "0"), trainer.patience,
                     trainer.min_delta)


def best_kept(trainer: TrainerConfig, task: str, splits: list[str]) -> Optional[Best]:
    """A `Best` for `trainer.restore_best` (None when off): the run ends with the parameters
    of its best evaluation of `trainer.monitor`, by the same rule as early stopping's."""
    if not trainer.restore_best:
        return None
    return Best(_watched(trainer, task, splits, "restore_best", "false"), trainer.min_delta)


def early_line(early: EarlyStop, step: int, steps_per_epoch: int) -> str:
    return (f"early stop at step {step} (epoch {step / steps_per_epoch:.4g}): {early.metric} "
            f"has not improved on {early.best:.4g} (step {early.best_step}) for "
            f"{early.patience} evaluations")


def evaluations(records: list[dict], until_step: int) -> list[dict]:
    """The records (`writers.read_records`) a resumed run keeps, events left out: those up to
    `until_step` (later ones are dropped when it resumes)."""
    return [r for r in records if "event" not in r and r.get("step", 0) <= until_step]


class StopRequest:
    """Set by the first Ctrl-C (SIGINT) during training; see `stop_on_interrupt`."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:  # the second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[Optional[StopRequest]]:
    """While training: the first Ctrl-C lets the running device call finish, the loop saves a
    checkpoint of that step and raises `Interrupted`; a second Ctrl-C interrupts at once.

    Yields None (Ctrl-C keeps Python's behaviour) outside the main thread, where signal
    handlers cannot be set (a Ray task), and with several processes, whose checkpoints are
    collective: one process alone could not save one.
    """
    if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
        yield None
        return
    stop = StopRequest()
    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
