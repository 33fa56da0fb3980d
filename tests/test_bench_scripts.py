"""scripts/bench_gpu.sh at toy sizes on the CPU: every step of the one GPU call still runs."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_script_runs_every_step_at_toy_sizes(tmp_path, mnist_root):
    """A GPU session has minutes of device time: a step broken by a change to the code it
    drives (a renamed option, a config field) must show here, not there."""
    out = tmp_path / "out"
    env = {**os.environ, "BENCH_SMOKE": "1", "LEPTON_MNIST_ROOT": str(mnist_root),
           "LEPTON_JAX_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", "scripts/bench_gpu.sh", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "FAILED" not in proc.stderr, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    written = sorted(p.name for p in out.iterdir())
    assert written == ["gpu_population4_cold.json", "gpu_population4_commands.json",
                       "gpu_population4_warm.json", "gpu_profile_lenet5_b128.json",
                       "gpu_profile_lenet5_b256.json", "gpu_profile_population4_mlp.json",
                       "gpu_throughput.json", "gpu_time_to_99.json"]
    for name in written:  # each names the machine, the jax version and the commit
        env_info = json.loads((out / name).read_text())["env"]
        assert {"jax", "commit", "device"} <= set(env_info), (name, env_info)
    throughput = json.loads((out / "gpu_throughput.json").read_text())
    assert [(c["model"], c["batch"]) for c in throughput["throughput"]] == [("lenet5", 128),
                                                                        ("mlp", 128)]
