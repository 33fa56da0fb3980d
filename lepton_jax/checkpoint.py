"""orbax checkpoints of the train state: periodic saves, keep-last-K, resume from the latest."""

from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path
from typing import Optional

import jax
import orbax.checkpoint as ocp

from lepton_jax.errors import UserError
from lepton_jax.state import TrainState


# orbax reports every save step at INFO through absl; a run log only needs our own lines.
logging.getLogger("absl").setLevel(logging.WARNING)


# Beside each step's folder: <step>.train_losses.json and <step>.best.msgpack.
_LOSSES = ".train_losses.json"
_BEST = ".best.msgpack"


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
        # The handler named here (the one StandardSave uses anyway) lets `item_metadata` read
        # a checkpoint's array shapes without restoring it.
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_handlers=ocp.StandardCheckpointHandler())
        # orbax removes a killed save's temporary folders in a background thread; one still
        # running when a process exits at once (a config refused right after this) logged a
        # RuntimeError traceback from interpreter shutdown. It takes milliseconds: wait here.
        await_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
        if await_cleanup is not None:
            await_cleanup()

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, state: TrainState, wait: bool = True, train_losses=None,
             best: Optional[dict] = None) -> None:
        """Saves `state` at its step.

        Args:
            train_losses: the per-step losses since the last evaluation, when the step is not
                one; a resumed run's next `train/loss` then averages the same steps as an
                uninterrupted run's (see `train_losses`).
            best: `trainer.restore_best`'s best evaluation so far, `{"step", "value",
                "params"}` (host arrays; None before the first evaluation), kept with the
                step so that a run resumed there ends as an uninterrupted one (see `best`).
        """
        from lepton_jax.parallel import to_host

        step = int(to_host(state.step).reshape(-1)[0])
        kept = self._manager.all_steps()
        if step in kept:
            return
        self._drop_orphans(kept)
        # Written before the step's folder appears: a run killed just after the save still
        # finds them.
        if train_losses is not None and len(train_losses):
            _write_atomically(self._losses_path(step),
                              json.dumps([float(x) for x in train_losses]).encode())
        if best is not None:
            from flax import serialization

            _write_atomically(self.directory / f"{step}{_BEST}",
                              serialization.msgpack_serialize(best))
        if jax.process_count() == 1:
            # One transfer of the whole state; orbax saves host arrays in half the time it
            # takes for device arrays, which it transfers leaf by leaf (29 vs 57 ms for a
            # small model). Several processes save their shards of the global arrays.
            state = jax.device_get(state)
        self._manager.save(step, args=ocp.args.StandardSave(state))
        if wait:
            self._manager.wait_until_finished()

    def wait(self) -> None:
        """Blocks until every save started with `wait=False` is on disk."""
        self._manager.wait_until_finished()

    def _losses_path(self, step: int) -> Path:
        return self.directory / f"{step}{_LOSSES}"

    def train_losses(self, step: int):
        """The losses `save(..., train_losses=...)` kept with `step` (float32), or None."""
        import numpy as np

        try:
            return np.asarray(json.loads(self._losses_path(step).read_text()), np.float32)
        except (OSError, ValueError):
            return None

    def best(self, step: int) -> Optional[dict]:
        """What `save(..., best=...)` kept with `step`: `{"step", "value", "params"}` (numpy
        arrays in nested dicts; step and params None before the first evaluation), or None
        when the run did not keep its best parameters."""
        from flax import serialization

        try:
            return serialization.msgpack_restore((self.directory / f"{step}{_BEST}").read_bytes())
        except FileNotFoundError:
            return None

    def restore(self, target: TrainState, step: Optional[int] = None) -> TrainState:
        """Restores `step` (default: the latest) into the structure and shardings of `target`.

        The injected optimizer hyperparameters (lr, momentum, weight decay, warm-up) are
        `target`'s, which come from the config: a run resumed with another `optim.lr` trains
        on with it, as the schedule follows a changed `trainer.epochs` (unchanged, they equal
        the checkpoint's).

        Raises:
            UserError: when the checkpoint is damaged or does not match the model.
        """
        step = self.latest_step() if step is None else step
        path = self.directory / str(step)
        saved = self._saved_shapes(step)
        as_saved = _hyperparameters_as_saved(target, saved)
        # Compared first: a restore into other shapes fails deep in tensorstore, whose
        # abandoned reads then print "Exception ignored" lines when collected.
        mismatch = _mismatch(as_saved, saved)
        if mismatch:
            raise CheckpointMismatch(
                f"checkpoint {path} was written for another model: {mismatch}. Train with the "
                "settings it was written with, or start a new run directory")
        detail = None
        _quiet_abandoned_reads()  # a failing read's siblings can report while it fails
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(as_saved))
        except Exception as e:  # orbax/tensorstore raise many types for damaged files
            # TensorStore's first line ends in a repr of a bound method: cut it there.
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
            detail = detail.split(" See full TensorStore details")[0][:200]
        if detail is not None:
            # Out of the except block, the error's traceback no longer holds the reads.
            gc.collect()
            # With the shapes read and matching, the arrays' own files are what failed.
            what = "its array files are damaged (truncated or overwritten)" if saved else \
                "it is damaged, or was written for another model"
            earlier = [s for s in self.all_steps() if s < step]
            fallback = (f"resume from step {earlier[-1]}, the one before" if earlier else
                        "start again")
            raise UserError(
                f"checkpoint {path} cannot be restored ({detail}): {what}. Move that folder "
                f"away to {fallback}, or start a new run directory")
        hyper = _hyperparameters(target)
        if hyper is None:
            return restored
        return restored.replace(opt_state=restored.opt_state._replace(hyperparams=hyper))

    def _saved_shapes(self, step: int) -> Optional[dict[str, tuple]]:
        """The checkpoint's array shapes by name (`_shapes`), read from its metadata; None
        when that cannot be read (restoring then says why)."""
        try:
            return _shapes(self._manager.item_metadata(step))
        except Exception:  # damaged metadata
            return None

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
        self._drop_orphans(self._manager.all_steps())  # those of the last save's removal

    def _drop_orphans(self, kept) -> None:
        """Removes the losses and best parameters kept beside steps orbax removed (older than
        every step it keeps, `keep_checkpoints`)."""
        if not kept or not self.directory.is_dir():
            return
        for suffix in (_LOSSES, _BEST):
            for old in self.directory.glob("*" + suffix):
                stem = old.name[:-len(suffix)]
                if stem.isdigit() and int(stem) < min(kept):
                    old.unlink(missing_ok=True)


def _quiet_abandoned_reads() -> None:
    """Quiets, for the rest of the process, Python's reports of the array reads a failed
    restore leaves behind. orbax reads a checkpoint's arrays concurrently; when one file is
    damaged, it closes its event loop while the other reads are in flight, and as they
    finished or were collected, during the failing restore or after it, each printed a
    traceback of up to 60 lines around the one error that says what happened: asyncio's
    "Task (Future, _GatheringFuture) exception was never retrieved", "Exception ignored in:
    <coroutine object _read_array_index_and_device_put>", or TensorStore's callbacks'
    "RuntimeError: Event loop is closed" (5 of 8 CLI runs with a damaged array file). Only
    reports from orbax's reads are dropped; the run fails with its own message anyway."""
    import sys
    import traceback

    if not getattr(sys.unraisablehook, "_lepton_quiet", False):
        hook = sys.unraisablehook

        def unraisable(info) -> None:
            code = getattr(info.object, "cr_code", None)
            if code is not None and "orbax" in code.co_filename:
                return  # an abandoned read coroutine
            if isinstance(info.exc_value, RuntimeError) and \
                    str(info.exc_value) == "Event loop is closed" and any(
                        frame.name == "call_soon_threadsafe"
                        for frame in traceback.extract_tb(info.exc_traceback)):
                return  # a read finishing after orbax closed its loop
            hook(info)

        unraisable._lepton_quiet = True
        sys.unraisablehook = unraisable

        def unretrieved(record: logging.LogRecord) -> bool:
            # "Task", "Future" or "_GatheringFuture exception was never retrieved", then a
            # line naming the future; orbax's code or TensorStore's OCDBT store in it or in
            # the exception's traceback.
            message = record.getMessage()
            error = record.exc_info[1] if record.exc_info else None
            where = message + "".join(traceback.format_tb(getattr(error, "__traceback__",
                                                                  None)))
            return not (message.split("\n", 1)[0].endswith("exception was never retrieved")
                        and ("orbax" in where or "OCDBT" in where))

        logging.getLogger("asyncio").addFilter(unretrieved)


class CheckpointMismatch(UserError):
    """A readable checkpoint whose arrays have other shapes than the config's model: what a
    changed setting explains (`loop.restore_naming_changes` names it), unlike damage."""


def _hyperparameters(state) -> Optional[dict]:
    """The injected optimizer hyperparameters of a state (`opt_state.hyperparams`), or None."""
    hyper = getattr(getattr(state, "opt_state", None), "hyperparams", None)
    return hyper if isinstance(hyper, dict) and hyper else None


def _hyperparameters_as_saved(target, saved: Optional[dict]):
    """`target` with the injected optimizer hyperparameters its checkpoint holds (`saved`: its
    shapes): a checkpoint written before lepton_jax injected one (the warm-up length), or
    after it stopped injecting one, still restores; `restore` then takes them all from
    `target` (the config)."""
    hyper, prefix = _hyperparameters(target), "opt_state.hyperparams."
    if saved is None or hyper is None:
        return target
    held = {name[len(prefix):] for name, shape in saved.items()
            if name.startswith(prefix) and shape == () and "." not in name[len(prefix):]}
    if not held or held == set(hyper):  # none injected there, or the same names
        return target
    template = next(iter(hyper.values()))  # a float32 scalar, placed as the others
    as_saved = {k: hyper.get(k, template) for k in held}
    return target.replace(opt_state=target.opt_state._replace(hyperparams=as_saved))


def _mismatch(target: TrainState, saved: Optional[dict]) -> Optional[str]:
    """The first array of `target` whose shape the checkpoint (`saved`: its shapes) does not
    hold (None when they all match, or when its metadata could not be read)."""
    if saved is None:
        return None
    wanted = _shapes(target)
    for name, shape in wanted.items():
        if name not in saved:
            return f"it holds no {name}"
        if saved[name] != shape:
            return f"{name} is {_shape_text(saved[name])} there, {_shape_text(shape)} here"
    extra = sorted(set(saved) - set(wanted))
    return f"it holds {extra[0]}, which this model has not" if extra else None


def _write_atomically(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _shapes(tree) -> dict[str, tuple]:
    """{"params.Dense_0.kernel": shape} for the arrays of a state or of checkpoint metadata."""
    import jax

    def name(key) -> str:
        return str(getattr(key, "name", getattr(key, "key", getattr(key, "idx", key))))

    return {".".join(name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
            if hasattr(leaf, "shape")}


def _shape_text(shape: tuple) -> str:
    return "x".join(map(str, shape)) if shape else "a scalar"
