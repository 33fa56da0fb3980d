"""The launcher's typed config, stored as `hydra/launcher=pool`."""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class RayConf:
    # HOST:PORT of a running cluster, "auto" (RAY_ADDRESS or a cluster started on this
    # machine), or null: start a private Ray instance on 127.0.0.1 for this sweep.
    address: Optional[str] = None
    # Resources each job asks Ray for.
    num_cpus: float = 1
    num_gpus: float = 0
    # Seconds to wait for the cluster before giving up with a message.
    connect_timeout: float = 30.0
    # Extra keyword arguments for ray.init (e.g. runtime_env).
    init: Any = field(default_factory=dict)


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.lepton_pool.pool_launcher.PoolLauncher"
    # local: worker processes on this machine's slots; ray: one Ray task per job.
    backend: str = "local"
    # "auto" (one slot per GPU, or per `cpus_per_job` cores on a CPU machine), a number of
    # slots (devices divided evenly among them), or a list of slots such as
    # [{gpus: [0]}, {gpus: [1]}] or [{cpus: [0, 1]}, {cpus: [2, 3]}].
    slots: Any = "auto"
    # GPUs each job gets (slots=auto; null: 1 when the machine has GPUs, else 0).
    gpus_per_job: Optional[int] = None
    # Jobs sharing one GPU (each gets 1/jobs_per_gpu of its memory, less a margin).
    jobs_per_gpu: int = 1
    # Cores each job may use on a CPU machine (slots=auto).
    cpus_per_job: int = 1
    # Seconds a job may run before its whole process tree is killed (null: no limit).
    timeout: Optional[float] = None
    # Reruns of a job after an infrastructure fault (killed, timed out, lost node);
    # an exception raised by the job itself is never retried.
    max_retries: int = 2
    # Stop the sweep at the first failed job.
    fail_fast: bool = False
    # Abort once more than this fraction of the jobs has failed (1.0: never).
    max_failure_rate: float = 1.0
    # Skip jobs this sweep dir already finished (matched by their overrides).
    resume: bool = False
    # Train jobs that differ only in vectorizable fields (lr, momentum, weight decay, warm-up, seed)
    # as one population each (lepton_jax training apps only).
    vectorize: bool = False
    # Split populations larger than this (0: no limit).
    max_population: int = 0
    # Live progress line on stderr: auto (on a terminal or in Jupyter), true, false.
    progress: str = "auto"
    ray: RayConf = field(default_factory=RayConf)


ConfigStore.instance().store(group="hydra/launcher", name="pool", node=PoolLauncherConf,
                             provider="lepton_jax")
