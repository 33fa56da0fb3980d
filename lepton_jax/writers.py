"""Metric sinks sharing one protocol: write_scalars(step, dict), flush(), close()."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol


def short_value(value) -> str:
    """A config value as tables and console lines show it: floats to 6 digits (Optuna's
    0.036673518333094415 reads 0.0366735), anything else as written."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def metric_value(value: float) -> str:
    """A metric as done lines and report tables show it: 4 decimals below 10 (0.9722, a loss
    of 2.3026), else 4 significant digits, as where decimals would hide it (an MAE of 4470
    beside an MSE of 2.871e+07, not 4469.6700; 3.5e-14)."""
    size = abs(value)
    return f"{value:.4f}" if size == 0 or 1e-3 <= size < 10 or size != size else f"{value:.4g}"


def at_chance_reason(runs: int) -> str:
    """Why runs are named as ended at chance (`loop.chance_warning`), in the singular for one."""
    if runs == 1:
        return ("its final model predicts one class, or does no better than always predicting "
                "the most common (its train.log says more)")
    return ("each one's final model predicts one class, or does no better than always "
            "predicting the most common (their train.log files say more)")


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: dict) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    """Appends one JSON object per record to `metrics.jsonl` (no timestamps: reruns compare)."""

    def __init__(self, path: Path, keep_until_step: Optional[int] = None):
        self.path = Path(path)
        self._truncate_after(keep_until_step)
        self._file = open(self.path, "a", encoding="utf-8")

    def _truncate_after(self, step: Optional[int]) -> None:
        """On resume, drops records written after the checkpoint we resume from, and the
        final metrics, which a run that ends writes anew (a finished run started again
        would otherwise hold them twice)."""
        if not self.path.exists():
            return
        if step is None:
            raise FileExistsError(self.path)
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _record_step(line) <= step and not _is_final(line)]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def write_scalars(self, step: int, scalars: dict) -> None:
        self._file.write(json.dumps({"step": step, **scalars}, sort_keys=True) + "\n")
        # Records are rare (eval intervals); flushing each keeps them through a SIGKILL.
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_records(run_dir: Path) -> list[dict]:
    """Every record of `run_dir/metrics.jsonl` (evaluations, finals, events), or [] without
    one."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def diverged_at(records: list[dict]) -> Optional[tuple[int, float]]:
    """(step, loss) of the divergence a run's records (`read_records`) hold, or None."""
    for record in records:
        if record.get("event") == "diverged":
            return record["step"], record["loss"]
    return None


def _is_final(line: str) -> bool:
    """Whether a metrics.jsonl line holds a run's final metrics (`final/<split>/<metric>`)."""
    try:
        return any(key.startswith("final/") for key in json.loads(line))
    except (ValueError, TypeError):
        return False


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # unreadable tail of a killed run: drop it


_log_files = False  # also copy run lines into the log files Hydra set up (train.log)


def log_run_lines(enabled: bool) -> None:
    """Whether `echo` also writes each line, timestamped, to the root logger's log files.

    The Hydra task turns this on for its run, so a job's `train.log` keeps its lines; the
    console still gets plain prints (through whatever `sys.stdout` is then: a progress bar's
    redirect, a notebook), whatever `hydra/job_logging` the user chose (`disabled`, `none`).
    """
    global _log_files
    _log_files = enabled


def _log_files_now() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _to_files(line: str, handlers: list[logging.FileHandler]) -> None:
    record = logging.LogRecord("lepton_jax.run", logging.INFO, __file__, 0, line, None, None)
    for handler in handlers:
        handler.handle(record)


def echo(line: str) -> None:
    """Shows one line of a run: printed (to `sys.stdout` as it is now: notebooks replace it),
    and copied to the log files (`log_run_lines`)."""
    print(line, flush=True)
    if _log_files:
        _to_files(line, _log_files_now())


class JobLog:
    """The log files Hydra set up for one job (its `train.log`), kept to write that job's
    lines later, after Hydra has set up other jobs' logging: a population member's own lines,
    as its standalone run would have logged them. Nothing is written where the job's logging
    had no file (`hydra/job_logging=disabled`)."""

    def __init__(self):
        self._handlers = _log_files_now()

    @property
    def files(self) -> list[str]:
        return [h.baseFilename for h in self._handlers]

    def __call__(self, line: str) -> None:
        # A handler that Hydra closed while setting up the next job reopens its file to
        # append (logging.FileHandler does so unless its mode is "w").
        _to_files(line, self._handlers)

    @contextlib.contextmanager
    def as_root(self) -> Iterator[None]:
        """Logging of any logger goes to this job's files meanwhile, as while its job ran."""
        root = logging.getLogger()
        saved = root.handlers[:]
        root.handlers = [h for h in saved if not isinstance(h, logging.FileHandler)] + \
            self._handlers
        try:
            yield
        finally:
            root.handlers = saved

    def close(self) -> None:
        for handler in self._handlers:
            handler.close()


def record_line(step: int, scalars: dict) -> str:
    """`step 22 | epoch 1 | train/loss 0.8007 | ...`: one record as the console shows it."""
    parts = [f"step {step}"]
    for key, value in scalars.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


class LineWriter:
    """Each record as a console line, handed to `emit`: `echo` (printed and copied to the log
    files, for a run's console) or a population member's `JobLog`."""

    def __init__(self, emit: Callable[[str], None]):
        self.emit = emit

    def write_scalars(self, step: int, scalars: dict) -> None:
        self.emit(record_line(step, scalars))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class WandbWriter:
    """Logs to Weights & Biases; offline by default, so no account or network is needed."""

    def __init__(self, run_dir: Path, project: str, entity: Optional[str], mode: str,
                 config: dict, name: Optional[str] = None, alongside: bool = False):
        """`alongside`: a run that logs while others of this process do (a population's
        members, one wandb run each), instead of finishing the one before it."""
        try:
            import wandb
        except ImportError:
            from lepton_jax.errors import UserError

            raise UserError("logger=wandb needs the wandb package; install lepton-jax[wandb]") from None
        self._run = wandb.init(project=project, entity=entity, mode=mode, config=config,
                               dir=str(run_dir), name=name,
                               reinit="create_new" if alongside else "finish_previous")

    def write_scalars(self, step: int, scalars: dict) -> None:
        self._run.log({k: v for k, v in scalars.items() if isinstance(v, (int, float))},
                      step=step)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._run.finish()


class MultiWriter:
    """Fans records out to several writers; closes all of them even if one fails."""

    def __init__(self, writers: list):
        self.writers = writers

    def write_scalars(self, step: int, scalars: dict) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        errors = []
        for w in self.writers:
            try:
                w.close()
            except Exception as e:  # keep closing the others; report the first
                errors.append(e)
        if errors:
            raise errors[0]
