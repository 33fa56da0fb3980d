"""A run SIGKILLed mid-epoch and rerun ends bitwise equal to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, run_cli

ARGS = ["model.hidden=[128]", "trainer.epochs=12", "trainer.batch_size=32",
        "trainer.checkpoint_every_steps=7", "trainer.checkpoint_every_epochs=0"]


def _final_state(run_dir):
    mngr = ocp.CheckpointManager(run_dir / "checkpoints")
    return mngr.latest_step(), mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if "event" not in x]


def _steps(run_dir):
    folder = run_dir / "checkpoints"
    return [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_cli(*ARGS, f"hydra.run.dir={reference}").returncode == 0

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.Popen([sys.executable, "-m", "lepton_jax.train", "trainer.progress=off",
                             *ARGS, f"hydra.run.dir={resumed}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and max(_steps(resumed), default=0) < 60:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(_steps(resumed))
    total = max(_steps(reference))
    steps_per_epoch = total // 12
    assert 60 <= killed_at < total and killed_at % steps_per_epoch != 0  # mid-epoch

    second = run_cli(*ARGS, f"hydra.run.dir={resumed}")
    assert second.returncode == 0, second.stderr
    step_a, a = _final_state(reference)
    step_b, b = _final_state(resumed)
    assert step_a == step_b == total
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 4
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert _records(reference) == _records(resumed)
    assert "resumed" in (resumed / "metrics.jsonl").read_text()
