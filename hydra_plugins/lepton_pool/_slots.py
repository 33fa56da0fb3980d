"""Slots: which devices (GPUs, or CPU cores on a CPU machine) each worker process owns."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


log = logging.getLogger(__name__)


class PoolError(Exception):
    """A launcher setting the user can fix; printed as one line."""


@dataclass
class Slot:
    index: int
    gpus: list[int] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)
    # Share of GPU memory for this slot's jobs when several slots share a GPU.
    mem_fraction: Optional[float] = None

    def env(self, machine_has_gpus: bool) -> dict[str, str]:
        env = {}
        if self.gpus or machine_has_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        if self.mem_fraction is not None:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{self.mem_fraction:.3f}"
        if self.cpus:
            env["LEPTON_POOL_CPUS"] = ",".join(map(str, self.cpus))
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[var] = str(len(self.cpus))
        return env

    def describe(self) -> str:
        if self.gpus:
            share = f" ({self.mem_fraction:.0%} memory)" if self.mem_fraction else ""
            return f"slot{self.index}: GPU {','.join(map(str, self.gpus))}{share}"
        return f"slot{self.index}: CPU cores {','.join(map(str, self.cpus))}"


def visible_gpus() -> list[int]:
    """GPU indices this process may use, without initializing CUDA (the launcher must not
    hold a GPU its jobs need)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(v) for v in visible.split(",") if v.strip().lstrip("-").isdigit()
                and int(v) >= 0]
    driver = Path("/proc/driver/nvidia/gpus")
    return list(range(len(list(driver.iterdir())))) if driver.is_dir() else []


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def make_slots(spec: Any, gpus_per_job: Optional[int], jobs_per_gpu: int, cpus_per_job: int,
               gpus: Optional[list[int]] = None, cpus: Optional[list[int]] = None) -> list[Slot]:
    """Slots from `hydra.launcher.slots` (auto, a count, or a list of {gpus, cpus})."""
    from omegaconf import Container, OmegaConf

    if isinstance(spec, Container):  # a list from the command line arrives as a ListConfig
        spec = OmegaConf.to_container(spec, resolve=True)
    gpus = visible_gpus() if gpus is None else gpus
    cpus = usable_cpus() if cpus is None else cpus
    if jobs_per_gpu < 1:
        raise PoolError(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu} must be at least 1")
    if cpus_per_job < 1:
        raise PoolError(f"hydra.launcher.cpus_per_job={cpus_per_job} must be at least 1")
    per_job = (1 if gpus else 0) if gpus_per_job is None else gpus_per_job
    if per_job < 0:
        raise PoolError(f"hydra.launcher.gpus_per_job={per_job} must be 0 or more")
    if per_job > len(gpus):
        raise PoolError(f"hydra.launcher.gpus_per_job={per_job} but this machine has "
                        f"{len(gpus)} GPU{'s' * (len(gpus) != 1)} visible; use at most "
                        f"{len(gpus)} (or gpus_per_job=0 for CPU jobs)")
    share = round(0.9 / jobs_per_gpu, 3) if jobs_per_gpu > 1 else None
    # Settings that would change nothing here (they had been ignored without a word).
    if jobs_per_gpu > 1 and not per_job:
        log.warning(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu} has no effect: the jobs use "
                    f"no GPU ({len(gpus)} visible); slots follow cpus_per_job")
    if not per_job and spec == "auto" and cpus_per_job > len(cpus):
        log.warning(f"hydra.launcher.cpus_per_job={cpus_per_job} but {len(cpus)} cores are "
                    f"usable here: one slot of all {len(cpus)}")
    if isinstance(spec, str) and spec == "auto":
        if per_job:
            groups = [gpus[i:i + per_job] for i in range(0, len(gpus) // per_job * per_job, per_job)]
            return [Slot(i, g, mem_fraction=share)
                    for i, g in enumerate(g for g in groups for _ in range(jobs_per_gpu))]
        count = max(1, len(cpus) // cpus_per_job)
        return [Slot(i, cpus=cpus[i * cpus_per_job:(i + 1) * cpus_per_job] or cpus)
                for i in range(count)]
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise PoolError(f"hydra.launcher.slots={spec} must be at least 1 (or auto)")
        if per_job:
            if spec <= len(gpus):
                each = len(gpus) // spec
                return [Slot(i, gpus[i * each:(i + 1) * each]) for i in range(spec)]
            sharing = math.ceil(spec / len(gpus))
            return [Slot(i, [gpus[i % len(gpus)]], mem_fraction=round(0.9 / sharing, 3))
                    for i in range(spec)]
        each = max(1, len(cpus) // spec)
        return [Slot(i, cpus=cpus[(i * each) % len(cpus):(i * each) % len(cpus) + each])
                for i in range(spec)]
    if isinstance(spec, (list, tuple)):
        slots = []
        for i, item in enumerate(spec):
            item = dict(item) if hasattr(item, "keys") else None
            if item is None or set(item) - {"gpus", "cpus", "mem_fraction"}:
                raise PoolError(f"hydra.launcher.slots[{i}] must be a mapping with keys gpus, "
                                "cpus, mem_fraction, e.g. [{gpus: [0]}, {gpus: [1]}]")
            slot = Slot(i, list(item.get("gpus") or []), list(item.get("cpus") or []),
                        item.get("mem_fraction"))
            for g in slot.gpus:
                if g not in gpus:
                    raise PoolError(f"hydra.launcher.slots[{i}] asks for GPU {g}; visible GPUs: "
                                    f"{gpus or 'none'}")
            for c in slot.cpus:
                if c not in cpus:
                    raise PoolError(f"hydra.launcher.slots[{i}] asks for CPU core {c}; usable "
                                    f"cores: {cpus}")
            slots.append(slot)
        if not slots:
            raise PoolError("hydra.launcher.slots is an empty list; give at least one slot or auto")
        return slots
    raise PoolError(f"hydra.launcher.slots={spec!r} must be auto, a number of slots, or a list "
                    "such as [{gpus: [0]}, {gpus: [1]}]")


def counted(n: int, noun: str) -> str:
    """`1 job`, `3 jobs`: counts in the launcher's lines."""
    return f"{n} {noun}{'s' * (n != 1)}"
