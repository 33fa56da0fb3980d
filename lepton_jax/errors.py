"""The one exception type for mistakes a user can fix (bad config, bad files)."""


class UserError(Exception):
    """A problem in the user's input: printed as one line, never as a traceback.

    The message names the field, file or value, the constraint, and the fix.
    """


class DivergedError(UserError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"training diverged at step {step} (loss={loss}); the last good checkpoint "
            "was kept. Lower optim.lr or set optim.clip_norm."
        )
        self.step, self.loss = step, loss

    def __reduce__(self):  # travels between processes (sweep workers) intact
        return DivergedError, (self.step, self.loss)
