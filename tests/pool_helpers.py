"""Helpers for the pool launcher tests: a tiny Hydra app, running it, Ray clusters on loopback."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

# A Hydra app whose job x (+faultX=...) can raise, SIGKILL their own process (as the OOM killer would),
# hang, or sleep, once or always; each finished run appends a line to runs.txt in its job dir.
# +slow_report=S: the job's return value takes S seconds to pickle (a slow way back after the
# task has finished). +chanceX=1: job x writes a result.json saying it ended at chance.
# +progress=1: the job reports its steps as lepton_jax's training does, 1 then 2 of 4 (a
# resumed job's start), 1.5 s at each.
APP = '''
import os, signal, subprocess, time
import hydra
from hydra.core.hydra_config import HydraConfig

class SlowToSend(int):
    delay = 0.0

    def __reduce__(self):
        time.sleep(self.delay)
        return (int, (int(self),))

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    x = cfg.get("x", 0)
    node = ""
    if cfg.get("ray_node"):
        import ray
        node = ray.get_runtime_context().get_node_id()
        with open(os.path.join(HydraConfig.get().runtime.output_dir, "starts.txt"), "a") as f:
            f.write(node + "\\n")
    fault = cfg.get(f"fault{x}")
    marker = os.path.join(hydra.utils.get_original_cwd(), f"fault_{x}")
    transient = fault and fault.endswith("_once")
    if fault and not (transient and os.path.exists(marker)):
        with open(marker, "a") as f:
            if fault.startswith("hang"):  # a child process too: the whole tree must go
                f.write(f"{subprocess.Popen(['sleep', '3600']).pid}\\n")
        if fault.startswith("raise"):
            raise ValueError(f"boom in job x={x}")
        if fault.startswith("oom"):
            raise MemoryError("out of host memory (injected)")
        if fault.startswith("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if fault.startswith("hang"):
            time.sleep(3600)
    time.sleep(cfg.get("sleep", 0))
    if cfg.get("progress"):
        from lepton_jax.progress import StepProgress
        progress = StepProgress(4, 1, "off")
        time.sleep(1.5)
        progress.advance(1)
        time.sleep(1.5)
    if cfg.get(f"chance{x}"):  # a result.json as lepton_jax writes one for a run at chance
        with open(os.path.join(HydraConfig.get().runtime.output_dir, "result.json"), "w") as f:
            f.write('{"monitor": 0.1, "warnings": ["warning: the final model predicts ..."]}')
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "runs.txt"), "a") as f:
        f.write(f"{x} {node}\\n")
    print(f"job x={x} done", flush=True)
    if cfg.get("slow_report"):
        value = SlowToSend(x * 10)
        value.delay = float(cfg.slow_report)
        return value
    return x * 10 / cfg.divide if cfg.get("divide") else x * 10

if __name__ == "__main__":
    main()
'''


def write_app(directory: Path) -> Path:
    path = directory / "app.py"
    path.write_text(APP)
    return path


def _app_env(env_extra: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env_extra or {})}
    env.pop("XLA_FLAGS", None)
    return env


def run_app(app: Path, *overrides: str, timeout: float = 300, env_extra: dict | None = None,
            **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(app), "-m", "hydra/launcher=pool", *overrides],
                          cwd=app.parent, env=_app_env(env_extra), capture_output=True, text=True,
                          timeout=timeout, **popen)


def start_app(app: Path, *overrides: str) -> subprocess.Popen:
    """The same multirun as `run_app`, started in the background (to interrupt it)."""
    return subprocess.Popen([sys.executable, str(app), "-m", "hydra/launcher=pool", *overrides],
                            cwd=app.parent, env=_app_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def summary(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "summary.csv", keep_default_na=False).set_index("job")


def runs(sweep_dir: Path, name: str = "runs.txt") -> dict[str, list[str]]:
    """Job dir name -> the lines its finished runs wrote (starts.txt: the nodes it started on)."""
    if not sweep_dir.exists():
        return {}
    return {d.name: (d / name).read_text().splitlines()
            for d in sorted(sweep_dir.iterdir()) if (d / name).exists()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RAY = str(Path(sys.executable).parent / "ray")
# Token authentication with a token of the test run's own, for the nodes and every driver.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
RAY_ENV = {**os.environ, **RAY_AUTH, "RAY_USAGE_STATS_ENABLED": "0",
           # Declare a killed node dead within seconds, not the default ~30 s.
           "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
           "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "4"}


# Ray's single-machine mode binds every Ray process to 127.0.0.1; a multi-node cluster (the
# default mode) advertises and listens on the machine's interface address even when given
# --node-ip-address=127.0.0.1, so only the test that needs two nodes uses it. Drivers must run
# in the cluster's mode (the variable is read when Ray is imported).
SINGLE_MACHINE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
MULTI_NODE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}


def ray_start_head(port: int, num_cpus: int, resources: str = "{}", mode: dict = SINGLE_MACHINE) -> None:
    subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    f"--num-cpus={num_cpus}", f"--resources={resources}",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   env={**RAY_ENV, **mode}, check=True, capture_output=True, timeout=120)


def ray_add_node(port: int, num_cpus: int, node_manager_port: int, resources: str = "{}") -> None:
    subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                    f"--num-cpus={num_cpus}", f"--resources={resources}",
                    f"--node-manager-port={node_manager_port}", "--disable-usage-stats"],
                   env={**RAY_ENV, **MULTI_NODE}, check=True, capture_output=True, timeout=120)


def ray_stop() -> None:
    subprocess.run([RAY, "stop", "--force"], env=RAY_ENV, capture_output=True, timeout=120)


def kill_node(node_manager_port: int) -> int:
    """SIGKILLs the raylet serving `node_manager_port` and its worker processes."""
    import psutil

    killed = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "raylet" in cmd and f"--node_manager_port={node_manager_port}" in cmd:
            for p in [*proc.children(recursive=True), proc]:
                try:
                    p.kill()
                    killed += 1
                except psutil.NoSuchProcess:
                    pass
    return killed


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
