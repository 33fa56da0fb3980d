"""The Ray backend: each job (or population) is a Ray task asking for its resources.

Ray's own task retries handle lost nodes and killed workers; the launcher adds the per-job
timeout (cancel, then resubmit) and the same failure policy as the local pool.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Optional

import cloudpickle
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.lepton_pool._slots import PoolError, counted
from lepton_jax.progress import PROGRESS_FILE_ENV, read_progress

log = logging.getLogger(__name__)


def _task(ctx_bytes: bytes, message: tuple, progress_file: str) -> tuple:
    """Runs in a Ray worker: one job or one population, in the launcher's cwd. The job
    reports its steps to `progress_file` (read by the launcher where it can see the file:
    this machine, or a filesystem the nodes share)."""
    import ray

    from hydra_plugins.lepton_pool import _job

    ctx = cloudpickle.loads(ctx_bytes)
    cwd = os.getcwd()
    _job.enter(ctx)
    os.environ[PROGRESS_FILE_ENV] = progress_file
    try:
        kind, payload = message
        outcomes = ([_job.run_one(ctx, *payload)] if kind == "job"
                    else _job.run_population(ctx, payload))
    finally:
        os.environ.pop(PROGRESS_FILE_ENV, None)  # Ray reuses the worker for other tasks
        os.chdir(cwd)
    return outcomes, ray.get_runtime_context().get_node_id()


def _reachable(address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PoolError(f"hydra.launcher.ray.address={address!r} must be HOST:PORT, auto, or null "
                        "(a private Ray instance on 127.0.0.1)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise PoolError(f"cannot reach a Ray cluster at {address} within {timeout:g} s ({e}); "
                        "start one with `ray start --head --node-ip-address=...` or fix "
                        "hydra.launcher.ray.address") from None


_joined: dict = {}  # the address this process's Ray driver is connected to


def connect(ray_conf: DictConfig) -> None:
    """Joins the cluster at `ray.address`, or starts a private instance on 127.0.0.1."""
    import ray

    address = ray_conf.address
    if ray.is_initialized():
        if _joined.get("address", "?") == address:
            return
        ray.shutdown()  # an earlier sweep of this process used another cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    extra = OmegaConf.to_container(ray_conf.init, resolve=True) or {}
    kwargs = dict(log_to_driver=False, configure_logging=False, **extra)
    if address in (None, "", "local"):
        ray.init(address="local", include_dashboard=False, **kwargs)
        atexit.register(ray.shutdown)
        _joined["address"] = address
        return
    if address != "auto":
        _reachable(address, ray_conf.connect_timeout)
        if address.rpartition(":")[0] in ("127.0.0.1", "localhost"):
            # A loopback cluster: the driver must not advertise the machine's own address.
            kwargs.setdefault("_node_ip_address", "127.0.0.1")
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError) as e:
        raise PoolError(f"cannot join the Ray cluster at {address}: {e}") from None
    _joined["address"] = address


def _loopback_only() -> None:
    """A private instance serves this machine alone: Ray's single-machine mode binds it
    (GCS, raylet, workers) to 127.0.0.1 instead of the network interface's address."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when Ray is imported
    ray_constants = sys.modules.get("ray._private.ray_constants")
    if ray_constants is not None and hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False  # Ray was imported before this sweep


class RayPool:
    def __init__(self, opts: DictConfig, ctx: bytes, progress_dir: Path):
        self.progress_dir = progress_dir
        if opts.ray.address in (None, "", "local"):
            _loopback_only()
        try:
            import ray
        except ImportError:
            raise PoolError("hydra.launcher.backend=ray needs Ray: pip install "
                            "'lepton-jax[ray]'") from None
        self.ray = ray
        connect(opts.ray)
        gpus = max((n["Resources"].get("GPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if opts.ray.num_gpus > gpus:
            raise PoolError(f"hydra.launcher.ray.num_gpus={opts.ray.num_gpus:g} but no node of the "
                            f"Ray cluster has more than {gpus:g} GPUs")
        self.ctx = ray.put(ctx)
        # Ray reruns a task whose worker or node died (max_retries); an exception raised by
        # the job is returned inside its JobReturn, so it is never retried.
        self.remote = ray.remote(_task).options(num_cpus=opts.ray.num_cpus,
                                                num_gpus=opts.ray.num_gpus,
                                                max_retries=opts.max_retries,
                                                retry_exceptions=False)
        self.num_cpus = max(opts.ray.num_cpus, 1e-3)
        self.max_retries = opts.max_retries
        self.running: dict[Any, Any] = {}
        self.killed: dict[int, str] = {}
        self.nodes: dict[str, str] = {}

    @property
    def capacity(self) -> int:
        cpus = self.ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.num_cpus))

    def free(self) -> int:
        # Tasks beyond the cluster's capacity would wait in Ray's queue while their timeout runs.
        return self.capacity - len(self.running)

    def _progress_file(self, unit: Any) -> Path:
        # Absolute: a job run with hydra.job.chdir=true writes it from inside its job dir.
        return (self.progress_dir / f"unit{unit.id}.progress").absolute()

    def submit(self, unit: Any) -> None:
        self.progress_dir.mkdir(parents=True, exist_ok=True)
        progress = self._progress_file(unit)
        progress.unlink(missing_ok=True)  # an earlier attempt's
        self.running[self.remote.remote(self.ctx, unit.message(), str(progress))] = unit

    def fraction(self, unit: Any) -> Optional[float]:
        """The share of its steps the unit's job has done (`_local.LocalPool.fraction`);
        None where its node's files are not this machine's."""
        return read_progress(self._progress_file(unit)) if unit in self.running.values() \
            else None

    def wait(self, timeout: float) -> list[tuple[Any, str, Any]]:
        from ray import exceptions as rex

        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        events = []
        for ref in ready:
            unit = self.running.pop(ref)
            try:
                outcomes, node = self.ray.get(ref)
                unit.node = self._node_name(node)
                events.append((unit, "ok", outcomes))
            except rex.TaskCancelledError:
                events.append((unit, "fault", self.killed.pop(unit.id, "cancelled")))
            except rex.RayTaskError as e:
                events.append((unit, "error", str(e)))
            except (rex.RayError, OSError) as e:
                # Ray has already spent max_retries on a lost worker or node.
                unit.attempts += self.max_retries
                events.append((unit, "lost", f"{type(e).__name__}: {str(e).splitlines()[0]}"))
        return events

    def _node_name(self, node_id: str) -> str:
        """IP and short id: several nodes may share one machine (and IP)."""
        if node_id not in self.nodes:
            self.nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in self.ray.nodes()}
        return f"{self.nodes.get(node_id, '?')}/{node_id[:8]}"

    def kill(self, unit: Any, reason: str) -> None:
        for ref, running in self.running.items():
            if running is unit:
                self.killed[unit.id] = reason
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()
        for path in self.progress_dir.glob("unit*.progress*"):
            path.unlink(missing_ok=True)

    def description(self) -> str:
        nodes = sum(1 for n in self.ray.nodes() if n["Alive"])
        return f"Ray cluster of {counted(nodes, 'node')}, {counted(self.capacity, 'job slot')}"

