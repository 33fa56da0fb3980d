"""orbax checkpoints of the train state: periodic saves, keep-last-K, resume from the latest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import orbax.checkpoint as ocp

from lepton_jax.errors import UserError
from lepton_jax.state import TrainState


# orbax reports every save step at INFO through absl; a run log only needs our own lines.
logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpointer:
    """Saves and restores `TrainState` under `run_dir/checkpoints/<step>`.

    orbax writes each step to a temporary folder and renames it when complete, so a run
    killed mid-save leaves the previous checkpoints intact.
    """

    def __init__(self, directory: Path, keep: int, asynchronous: bool = False):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            # Synchronous by default: the loop saves rarely and the state is small, and a
            # finished save() is then on disk before training continues. A population saves
            # many members at once and overlaps them (then waits for all).
            enable_async_checkpointing=asynchronous,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, state: TrainState, wait: bool = True) -> None:
        from lepton_jax.parallel import to_host

        step = int(to_host(state.step).reshape(-1)[0])
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))
        if wait:
            self._manager.wait_until_finished()

    def wait(self) -> None:
        """Blocks until every save started with `wait=False` is on disk."""
        self._manager.wait_until_finished()

    def restore(self, target: TrainState, step: Optional[int] = None) -> TrainState:
        """Restores `step` (default: the latest) into the structure and shardings of `target`.

        Raises:
            UserError: when the checkpoint is damaged or does not match the model.
        """
        step = self.latest_step() if step is None else step
        path = self.directory / str(step)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # orbax/tensorstore raise many types for damaged files
            detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UserError(
                f"checkpoint {path} cannot be restored ({detail}); it is truncated or was "
                "written for another model. Move that folder away to resume from an earlier "
                "checkpoint, or start a new run directory"
            ) from None

    def restore_arrays(self, step: Optional[int] = None) -> dict:
        """The latest (or `step`) checkpoint as nested dicts on this process's first device,
        whatever the device topology it was saved from (prediction, reports)."""
        import jax

        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"{self.directory} holds no checkpoint")
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return self._manager.restore(step, args=ocp.args.StandardRestore(fallback_sharding=here))

    def close(self) -> None:
        self._manager.close()
