"""When training stops before its last step: early stopping on a validation metric, and Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

import jax

from lepton_jax import config as config_lib
from lepton_jax.config import TrainerConfig
from lepton_jax.errors import UserError


class EarlyStop:
    """`trainer.patience`: training stops once the monitored validation metric has gone
    `patience` evaluations in a row without improving on its best by more than `min_delta`."""

    def __init__(self, metric: str, patience: int, min_delta: float):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self._sign = 1.0 if config_lib.maximized(metric) else -1.0
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.waited = 0

    @property
    def due(self) -> bool:
        return self.waited >= self.patience

    def update(self, step: int, value: float) -> bool:
        """Takes one evaluation's value; True once training should stop."""
        if self.best is None or self._sign * (value - self.best) > self.min_delta:
            self.best, self.best_step, self.waited = value, step, 0
        else:
            self.waited += 1
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


def early_stop(trainer: TrainerConfig, task: str, splits: list[str]) -> Optional[EarlyStop]:
    """An `EarlyStop` for `trainer.patience` (None when 0), watching `trainer.monitor`."""
    if not trainer.patience:
        return None
    if "val" not in splits:
        raise UserError("trainer.patience watches the validation split, but this data has "
                        "none; set data.val_fraction > 0 or trainer.patience=0")
    metric = config_lib.monitor_name(trainer.monitor, task, True)
    if not metric.startswith("val/"):
        raise UserError(f"trainer.patience watches trainer.monitor, which must be a validation "
                        f"metric (val/accuracy, val/loss, ...), not {metric!r}")
    return EarlyStop(metric, trainer.patience, trainer.min_delta)


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
