"""A run SIGKILLed mid-epoch, or stopped with Ctrl-C, and rerun ends bitwise equal to an
uninterrupted run."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, run_cli

_ENV = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"PYTHONUNBUFFERED": "1"}
ARGS = ["model.hidden=[128]", "trainer.epochs=12", "trainer.batch_size=32",
        "trainer.checkpoint_every_steps=7", "trainer.checkpoint_every_epochs=0"]


def _assert_same_run(reference, resumed):
    """Final params bitwise equal, and the same evaluation records (train/loss included)."""
    step_a, a = _final_state(reference)
    step_b, b = _final_state(resumed)
    assert step_a == step_b
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 4
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert _records(reference) == _records(resumed)
    assert "resumed" in (resumed / "metrics.jsonl").read_text()


def _stop_with_ctrl_c(argv, metrics):
    """Starts `python -m lepton_jax.train ARGV`, sends SIGINT once `metrics` (a
    metrics.jsonl) holds 3 records, and returns its stdout and the printed resume command."""
    proc = subprocess.Popen([sys.executable, "-m", "lepton_jax.train", *argv], cwd=REPO,
                            env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists()
                                      or len(metrics.read_text().splitlines()) < 3):
        assert proc.poll() is None, "the run finished before Ctrl-C"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # stderr's last line: "interrupted; to resume: python -m lepton_jax.train ..."
    command = shlex.split(err.strip().splitlines()[-1].split("to resume: ", 1)[1])
    assert command[:3] == ["python", "-m", "lepton_jax.train"]
    return out, command


def _run_command(command):
    return subprocess.run([sys.executable, *command[1:]], cwd=REPO, env=_ENV,
                          capture_output=True, text=True, timeout=600)


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
    assert max(_steps(resumed)) == total
    _assert_same_run(reference, resumed)


def test_train_loss_averages_every_step_since_the_last_evaluation(tmp_path):
    """Checkpoints between evaluations (every 7 steps here) do not cut the average short."""
    base = ["model.hidden=[32]", "trainer.epochs=2", "trainer.batch_size=32",
            "trainer.checkpoint_every_epochs=0", "trainer.steps_per_call=1"]
    every_step, per_epoch = tmp_path / "every_step", tmp_path / "per_epoch"
    assert run_cli(*base, "trainer.eval_every_steps=1", "trainer.eval_every_epochs=0",
                   f"hydra.run.dir={every_step}").returncode == 0
    assert run_cli(*base, "trainer.checkpoint_every_steps=7",
                   f"hydra.run.dir={per_epoch}").returncode == 0
    losses = {r["step"]: r["train/loss"] for r in _records(every_step) if "train/loss" in r}
    records = [r for r in _records(per_epoch) if "train/loss" in r]
    assert [r["epoch"] for r in records] == [1, 2]
    start = 0
    for r in records:
        assert r["step"] % 7 != 0  # the epoch does not end on a checkpoint
        expected = np.mean([losses[s] for s in range(start + 1, r["step"] + 1)])
        assert r["train/loss"] == pytest.approx(expected, rel=1e-5)
        start = r["step"]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_printed_command_resumes(tmp_path):
    args = ["trainer.progress=plain", "model.hidden=[64]", "trainer.epochs=40",
            "trainer.batch_size=32", "trainer.steps_per_call=4"]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_cli(*args, f"hydra.run.dir={reference}").returncode == 0
    total = max(_steps(reference))
    steps_per_epoch = total // 40

    out, command = _stop_with_ctrl_c([*args, f"hydra.run.dir={resumed}"],
                                     resumed / "metrics.jsonl")
    stopped_at = max(_steps(resumed))
    assert 3 * steps_per_epoch <= stopped_at < total and stopped_at % 4 == 0
    assert f"stopped at step {stopped_at} of {total}" in out
    assert not (resumed / "result.json").exists()
    assert command[3:] == [*args, f"hydra.run.dir={resumed}"]
    second = _run_command(command)
    assert second.returncode == 0, second.stderr
    assert max(_steps(resumed)) == total
    _assert_same_run(reference, resumed)


@pytest.mark.slow
def test_ctrl_c_in_a_basic_launcher_sweep_prints_the_sweep_resume_command(tmp_path):
    """Hydra's basic launcher runs jobs in its own process: Ctrl-C stops the running job with
    a checkpoint, and the printed command reruns the sweep into the same job dirs, where the
    finished job only evaluates again and the stopped one resumes."""
    sweep = tmp_path / "sweep"
    args = ["-m", "trainer.progress=plain", "model.hidden=[64]", "trainer.epochs=40",
            "trainer.batch_size=32", "trainer.steps_per_call=4", "optim.lr=0.05,0.1"]
    _, command = _stop_with_ctrl_c([*args, f"hydra.sweep.dir={sweep}"],
                                   sweep / "1" / "metrics.jsonl")
    stopped_at = max(_steps(sweep / "1"))
    first = json.loads((sweep / "0" / "result.json").read_text())
    assert not (sweep / "1" / "result.json").exists()
    assert command[3:] == [*args, f"hydra.sweep.dir={sweep}"]
    second = _run_command(command)
    assert second.returncode == 0, second.stderr
    again = json.loads((sweep / "0" / "result.json").read_text())
    assert again["resumed_from"] == first["steps"]
    assert again["test"] == first["test"] and again["val"] == first["val"]
    assert json.loads((sweep / "1" / "result.json").read_text())["resumed_from"] == stopped_at
    assert max(_steps(sweep / "1")) == first["steps"]


def test_a_damaged_checkpoint_names_the_one_before_to_resume_from(tmp_path):
    """The latest checkpoint's array files overwritten (its metadata intact): the error
    says they are damaged and names the step that can resume, rather than the settings
    changed since (here trainer.epochs, which the checkpoints would take)."""
    from lepton_jax import Config, ModelConfig, TrainerConfig, fit
    from lepton_jax.errors import UserError

    def config(epochs):
        return Config(model=ModelConfig(hidden=[16]), trainer=TrainerConfig(
            epochs=epochs, checkpoint_every_epochs=1, progress="off", num_devices=1))

    fit(config(2), tmp_path)
    latest = tmp_path / "checkpoints" / "44"
    # The largest data file holds array data (the first layer's kernel, 784 x 16 floats).
    largest = max((f for f in (latest / "default").rglob("*") if f.is_file()),
                  key=lambda f: f.stat().st_size)
    assert largest.stat().st_size > 20_000
    largest.write_bytes(b"\0" * 100)
    with pytest.raises(UserError) as info:
        fit(config(3), tmp_path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {latest} cannot be restored (")
    assert message.endswith("): its array files are damaged (truncated or overwritten). Move "
                            "that folder away to resume from step 22, the one before, or start "
                            "a new run directory"), message
    latest.rename(tmp_path / "44.damaged")
    assert fit(config(3), tmp_path)["resumed_from"] == 22
