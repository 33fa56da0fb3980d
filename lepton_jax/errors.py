"""The one exception type for mistakes a user can fix (bad config, bad files)."""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input: printed as one line, never as a traceback.

    The message names the field, file or value, the constraint, and the fix.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show instead of the traceback: the caller's own lines (a
        notebook cell's) and the message, without the frames inside lepton_jax, whose wall
        had buried the one line that says what to fix."""
        import traceback
        from pathlib import Path

        inside = (str(Path(__file__).parent), str(Path(__file__).parent.parent / "hydra_plugins"))
        frames = [f for f in traceback.extract_tb(self.__traceback__)
                  if not f.filename.startswith(inside) and "IPython" not in Path(f.filename).parts]
        lines = "".join(traceback.format_list(frames)).splitlines()
        return [*lines, f"{type(self).__name__}: {self}"]


def misspelt(name: str, valid) -> str:
    """A message's tail naming the valid name closest to a mistyped one (` (lr,
    misspelt?)`), or "" when none is close."""
    import difflib

    near = difflib.get_close_matches(name, list(valid), n=1)
    return f" ({near[0]}, misspelt?)" if near else ""


def repeated(said: str, values: list) -> str:
    """A warning when a sweep lists a value more than once (`optim.lr=0.1,0.10`, a slip for
    0.01?), whose jobs would train more than once, or "". Values compare with ==, so 0.1 and
    0.10, or two equal lists, are one value."""
    seen: list = []
    for i, value in enumerate(values):
        if value in values[:i] and value not in seen:
            seen.append(value)
    if not seen:
        return ""
    times = [sum(v == value for v in values) for value in seen]
    listed = ", ".join(f"{value} {'twice' if n == 2 else f'{n} times'}"
                       for value, n in zip(seen, times, strict=True))
    whose = "that value's" if len(seen) == 1 else "those values'"
    return f"warning: {said} lists {listed}: the sweep trains {whose} jobs more than once"


def as_path(value, what: str):
    """`value` as a pathlib.Path; anything but a str or os.PathLike (a number, None) is
    one UserError naming `what`, not os.fspath's TypeError."""
    import os
    from pathlib import Path

    if not isinstance(value, (str, os.PathLike)):
        raise UserError(f"{what} is {value!r} ({type(value).__name__}); pass a path (a str or "
                        "pathlib.Path)")
    return Path(value)


def os_reason(error: OSError, path) -> str:
    """An OSError as a message's parenthesis: 'Not a directory: /a/file/x'."""
    return f"{error.strerror or type(error).__name__}: {error.filename or path}"


class DivergedError(UserError):
    """Training produced a non-finite loss; the last good checkpoint (`kept`: its step, or
    None where none had been saved before it) is kept."""

    def __init__(self, step: int, loss: float, hint: str = "", kept: int | None = None):
        # "The last good checkpoint was kept" had been said of runs that had none yet.
        saved = (f"the last good checkpoint (step {kept}) was kept" if kept is not None else
                 "no checkpoint had been saved before it")
        super().__init__(
            f"training diverged at step {step} (loss={loss}); {saved}. Lower optim.lr or set "
            f"optim.clip_norm.{hint and ' ' + hint}"
        )
        self.step, self.loss, self.hint, self.kept = step, loss, hint, kept

    def __reduce__(self):  # travels between processes (sweep workers) intact
        return DivergedError, (self.step, self.loss, self.hint, self.kept)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a step boundary, with a checkpoint saved there: rerunning
    into the same run directory resumes as if nothing had happened."""

    def __init__(self, step: int, epoch: float):
        super().__init__(f"training stopped at step {step} (epoch {epoch:.4g}) after Ctrl-C; "
                         "a checkpoint of that step was saved")
        self.step, self.epoch = step, epoch

    def __reduce__(self):  # travels between processes (sweep workers) intact
        return Interrupted, (self.step, self.epoch)
