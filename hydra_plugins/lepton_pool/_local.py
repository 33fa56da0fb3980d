"""The local backend: one long-lived worker process per slot, jobs sent over a socket pair.

Workers start in their own session, so a timed-out job's whole process tree dies with
`killpg`, and a killed worker is replaced by a fresh one for the next job.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Optional

import cloudpickle

from hydra_plugins.lepton_pool._slots import Slot, counted
from lepton_jax.progress import PROGRESS_FILE_ENV, read_progress

_BOOT = ("import json, os, sys; sys.path[:0] = json.loads(os.environ.pop('LEPTON_POOL_SYS_PATH')); "
         "from hydra_plugins.lepton_pool._worker import main; main(int(sys.argv[1]))")


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (as the out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {returncode}"


class _Worker:
    def __init__(self, slot: Slot, ctx: bytes, env: dict, cwd: str, log: Path):
        parent, child = socket.socketpair()
        env = {**env, "LEPTON_POOL_SYS_PATH": json.dumps(sys.path)}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(child.fileno())],
                                         pass_fds=[child.fileno()], env=env, cwd=cwd,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        child.close()
        self.conn = Connection(parent.detach())
        self.conn.send_bytes(ctx)
        self.slot = slot
        self.unit: Any = None

    def kill(self) -> int:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.conn.close()
        return self.proc.wait()


class LocalPool:
    """Runs units (one job, or one population) on slots; `wait` reports what finished."""

    def __init__(self, slots: list[Slot], ctx: bytes, cwd: str, log_dir: Path,
                 machine_has_gpus: bool):
        self.slots, self.ctx, self.cwd, self.log_dir = slots, ctx, cwd, log_dir
        self.machine_has_gpus = machine_has_gpus
        self.workers: dict[int, _Worker] = {}
        self.killed: dict[int, str] = {}  # slot -> why the launcher killed its worker
        self.new_logs: list[Path] = []  # logs this pool created (not an earlier sweep's)

    def _idle(self) -> list[Slot]:
        return [s for s in self.slots
                if s.index not in self.workers or self.workers[s.index].unit is None]

    def free(self) -> int:
        return len(self._idle())

    def start(self) -> None:
        """Starts every slot's worker now rather than at its first job."""
        for slot in self.slots:
            if slot.index not in self.workers:
                self._start(slot)

    def _progress_file(self, slot: Slot) -> Path:
        # Absolute: a job run with hydra.job.chdir=true writes it from inside its job dir.
        return (self.log_dir / f"slot{slot.index}.progress").absolute()

    def _start(self, slot: Slot) -> _Worker:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **slot.env(self.machine_has_gpus),
               PROGRESS_FILE_ENV: str(self._progress_file(slot))}
        log = self.log_dir / f"slot{slot.index}.log"
        if not log.exists():
            self.new_logs.append(log)
        worker = _Worker(slot, self.ctx, env, self.cwd, log)
        self.workers[slot.index] = worker
        return worker

    def submit(self, unit: Any) -> None:
        slot = self._idle()[0]
        worker = self.workers.get(slot.index) or self._start(slot)
        worker.unit = unit
        unit.node = f"{socket.gethostname()}/slot{slot.index}"
        self._progress_file(slot).unlink(missing_ok=True)  # the slot's previous job's
        worker.conn.send_bytes(cloudpickle.dumps(unit.message()))

    def fraction(self, unit: Any) -> Optional[float]:
        """The share of its steps the unit's job has done, as the job last wrote it to the
        slot's progress file (lepton_jax's training does, every 0.5 s); None before it has,
        or for an app that does not."""
        for worker in self.workers.values():
            if worker.unit is unit:
                return read_progress(self._progress_file(worker.slot))
        return None

    def wait(self, timeout: float) -> list[tuple[Any, str, Any]]:
        """[(unit, "ok" | "error" | "fault", outcomes | traceback | reason)]."""
        busy = {w.conn: w for w in self.workers.values() if w.unit is not None}
        if not busy:
            return []
        events = []
        for conn in wait(list(busy), timeout):
            worker = busy[conn]
            unit, worker.unit = worker.unit, None
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                data = None
            if data is not None:
                try:
                    kind, value = cloudpickle.loads(data)
                except Exception as e:  # a result that cannot be rebuilt here
                    kind, value = "error", f"its result could not be read back: {e!r}"
                events.append((unit, kind, value))
            else:
                returncode = worker.kill()
                del self.workers[worker.slot.index]
                reason = self.killed.pop(worker.slot.index, None) or describe_exit(returncode)
                events.append((unit, "fault", reason))
        return events

    def interrupt(self, unit: Any) -> None:
        """Asks the unit's worker to stop its task (SIGINT); a task that already returned
        still reports its result."""
        for worker in self.workers.values():
            if worker.unit is unit:
                try:
                    os.kill(worker.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def kill(self, unit: Any, reason: str) -> None:
        for index, worker in self.workers.items():
            if worker.unit is unit:
                self.killed[index] = reason
                os.killpg(worker.proc.pid, signal.SIGKILL)

    def close(self, discard_logs: bool = False) -> None:
        """Stops the workers. `discard_logs` (a pool that never ran a job) kills them at once
        and removes the logs this pool created while they are still empty (and the log
        folder, if nothing else is in it)."""
        if not discard_logs:
            for worker in self.workers.values():
                if worker.unit is None:
                    try:
                        worker.conn.send_bytes(cloudpickle.dumps(("stop", None)))
                    except OSError:
                        pass
            for worker in self.workers.values():
                try:
                    worker.proc.wait(timeout=5 if worker.unit is None else 0)
                except subprocess.TimeoutExpired:
                    pass
        for worker in self.workers.values():
            worker.kill()
        self.workers.clear()
        for slot in self.slots:
            for path in (self._progress_file(slot), Path(f"{self._progress_file(slot)}.tmp")):
                path.unlink(missing_ok=True)
        if discard_logs:
            for log in self.new_logs:
                if log.exists() and log.stat().st_size == 0:
                    log.unlink()
            try:
                self.log_dir.rmdir()
            except OSError:  # not empty (a worker wrote something, or an earlier sweep's files)
                pass

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def description(self) -> str:
        return (f"local pool of {counted(len(self.slots), 'slot')} "
                f"({'; '.join(s.describe() for s in self.slots)})")
