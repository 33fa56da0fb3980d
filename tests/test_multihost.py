"""Two JAX processes on 127.0.0.1 (gloo CPU collectives) train one data-parallel run."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

WORKER = REPO / "tests" / "multihost_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo", **extra}
    env.pop("XLA_FLAGS", None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_two_processes_match_one_process(tmp_path, strategy):
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "run"), str(tmp_path / f"p{i}.npz"),
         strategy], cwd=tmp_path,
        env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(i)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)
    # One process with the same 4 devices (2 simulated, as a reference run).
    single = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "single"),
                             str(tmp_path / "single.npz"), strategy], cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    a, b = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "p1.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])  # identical on both processes
    ref = np.load(tmp_path / "single.npz")
    for key in a.files:
        np.testing.assert_allclose(a[key], ref[key], rtol=1e-4, atol=1e-5)
    # Process 0 wrote the run's files; both took part in the checkpoints.
    assert (tmp_path / "run" / "result.json").exists()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()]
