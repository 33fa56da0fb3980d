"""Progress display: a rich bar on a terminal (or Jupyter), a plain line every half minute
with `plain` (for logs), nothing otherwise; and, in a pool launcher's worker, the steps
done in the file it names."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Set by the pool launcher in its workers: the file where a job keeps `{"done": steps,
# "total": steps}`, from which the launcher's progress line shows running jobs' progress.
PROGRESS_FILE_ENV = "LEPTON_POOL_PROGRESS_FILE"
_FILE_EVERY_S = 0.5  # the launcher redraws every 0.1 s; a file per device call would be waste
_PLAIN_EVERY_S = 30.0  # `plain`: a line per half minute; runs shorter than that print none


class StepProgress:
    """A bar over training steps; `mode` is auto, rich, plain or off."""

    def __init__(self, total: int, completed: int, mode: str, description: str = "train"):
        self._total, self._done = total, completed
        self._file = os.environ.get(PROGRESS_FILE_ENV)
        self._written = -float("inf")
        self._write_file()
        use_rich = mode == "rich" or (mode == "auto" and is_interactive())
        # `plain` had drawn nothing at all: lines for logs, where a bar cannot redraw.
        self._plain = mode == "plain"
        self._description = description
        self._started = self._said = time.monotonic()
        self._first, self._lines = completed, 0
        self._bar = None
        if use_rich:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 transient=False)
            self._task = self._bar.add_task(description, total=total, completed=completed,
                                            info="")
            self._bar.start()

    def advance(self, steps: int, info: str = "") -> None:
        self._done += steps
        if self._done >= self._total or time.monotonic() - self._written >= _FILE_EVERY_S:
            self._write_file()
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, info=info)
        if self._plain and time.monotonic() - self._said >= _PLAIN_EVERY_S:
            self._say(info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._plain and self._lines and self._done >= self._total:
            self._say("")  # the end, after lines that left it part-way

    def _say(self, info: str) -> None:
        """`train 445/890 steps (50%) · 0:30 elapsed · 0:30 left · epoch 1.00` on stderr:
        the time left from the rate of the steps done in this process (a resumed run starts
        part-way)."""
        now = time.monotonic()
        self._said, self._lines = now, self._lines + 1
        elapsed, moved = now - self._started, self._done - self._first
        left = (self._total - self._done) * elapsed / moved if moved > 0 else None
        share = self._done / self._total if self._total else 1.0
        print(f"{self._description} {self._done:,}/{self._total:,} steps ({share:.0%}) · "
              f"{_clock(elapsed)} elapsed" + (f" · {_clock(left)} left" if left is not None
                                              and self._done < self._total else "")
              + (f" · {info}" if info else ""), file=sys.stderr, flush=True)

    def _write_file(self) -> None:
        if not self._file:
            return
        self._written = time.monotonic()
        tmp = f"{self._file}.tmp"
        try:  # replaced whole, so the launcher never reads half a file
            with open(tmp, "w") as f:
                json.dump({"done": self._done, "total": self._total}, f)
            os.replace(tmp, self._file)
        except OSError:  # only the launcher's progress line would miss it; training goes on
            pass


def _clock(seconds: float) -> str:
    """0:05, 12:30, 1:02:03."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def is_interactive() -> bool:
    """A terminal, or a Jupyter kernel (where rich draws its bar as a widget)."""
    if sys.stdout.isatty():
        return True
    try:  # Jupyter: rich renders its bar as a widget there
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:
        return False


def read_progress(path) -> "float | None":
    """The share of its steps a job has done, from the file `StepProgress` keeps; None
    before it has written one (or where it is not readable here)."""
    try:
        progress = json.loads(Path(path).read_text())
        return min(progress["done"] / progress["total"], 1.0)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
