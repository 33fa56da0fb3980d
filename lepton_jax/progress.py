"""Progress display: a rich bar on a terminal (or Jupyter), nothing when output is a log."""

from __future__ import annotations

import sys


class StepProgress:
    """A bar over training steps; `mode` is auto, rich, plain or off."""

    def __init__(self, total: int, completed: int, mode: str, description: str = "train"):
        use_rich = mode == "rich" or (mode == "auto" and is_interactive())
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
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, info=info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def is_interactive() -> bool:
    """A terminal, or a Jupyter kernel (where rich draws its bar as a widget)."""
    if sys.stdout.isatty():
        return True
    try:  # Jupyter: rich renders its bar as a widget there
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:
        return False
