"""Data parallelism on 4 simulated CPU devices: jit and pmap strategies equal one device."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from lepton_jax import Config, DataConfig, ModelConfig, TrainerConfig, fit
from lepton_jax.config import ModelConfig as MC, OptimConfig
from lepton_jax.data import DataSplits, load_dataset
from lepton_jax.errors import UserError
from lepton_jax.models import build_model
from lepton_jax.optim import make_optimizer
from lepton_jax.loop import resolve_steps_per_call
from lepton_jax.parallel import DataParallel, local_devices
from lepton_jax.state import create_state
from lepton_jax.step import epoch_permutation, make_train_step

BATCH = 64


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset(DataConfig(name="digits"))


def _setup(data, model_name="mlp", dropout=0.0):
    model = build_model(MC(name=model_name, hidden=[32], dropout=dropout), data.num_outputs)
    tx = make_optimizer(OptimConfig(lr=0.05, momentum=0.9, nesterov=True), 100, 10)
    state = create_state(model, tx, data.input_shape, 0)

    def make_step(axis_name):
        return make_train_step(model, tx, data.task, axis_name)

    return state, make_step


def _run(strategy, devices, data, k, calls, model_name="mlp", dropout=0.0):
    """`calls` fused calls of `k` steps each from step 0; returns (state, losses)."""
    state, make_step = _setup(data, model_name, dropout)
    dp = DataParallel(strategy, devices, BATCH)
    state = dp.replicate(state)
    x, y = dp.replicate((data.x_train, data.y_train))
    perm = dp.replicate(epoch_permutation(state.data_rng, 0, len(data.x_train)))
    losses = []
    for c in range(calls):
        state, metrics = dp.steps(make_step, k)(state, x, y, perm, np.int32(c * k * BATCH))
        losses.append(np.asarray(metrics["loss"]))
    return state, np.concatenate(losses)


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def test_four_devices_present():
    assert len(jax.local_devices()) == 4


@pytest.mark.parametrize("strategy", ["jit", "pmap"])
@pytest.mark.parametrize("model_name", ["mlp", "lenet5"])
def test_one_step_equals_single_device(digits, strategy, model_name):
    one, loss1 = _run("single", jax.local_devices()[:1], digits, 1, 1, model_name)
    many, loss4 = _run(strategy, jax.local_devices(), digits, 1, 1, model_name)
    _assert_close(one.params, many.params)
    np.testing.assert_allclose(loss1, loss4, rtol=1e-5)


@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_one_epoch_equals_single_device(digits, strategy):
    epoch = len(digits.x_train) // BATCH
    one, loss1 = _run("single", jax.local_devices()[:1], digits, 1, epoch)
    many, loss4 = _run(strategy, jax.local_devices(), digits, 1, epoch)
    _assert_close(one.params, many.params, rtol=1e-4, atol=1e-5)
    _assert_close(one.opt_state, many.opt_state, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss1, loss4, rtol=1e-4)


def test_jit_dropout_draws_the_single_device_masks(digits):
    """Under `jit` the step sees the global batch, and the masks drawn for it do not depend
    on how it is sharded; `pmap` folds the device index into each device's key, so its
    shards are not all masked alike (and differ from one device's masks)."""
    epoch = len(digits.x_train) // BATCH
    one, loss1 = _run("single", jax.local_devices()[:1], digits, 1, epoch, dropout=0.5)
    many, loss4 = _run("jit", jax.local_devices(), digits, 1, epoch, dropout=0.5)
    _assert_close(one.params, many.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss1, loss4, rtol=1e-4)
    plain, loss0 = _run("single", jax.local_devices()[:1], digits, 1, epoch)
    assert not np.allclose(loss0, loss1)
    per_device, loss_p = _run("pmap", jax.local_devices(), digits, 1, epoch, dropout=0.5)
    assert np.isfinite(loss_p).all() and not np.allclose(loss_p, loss1)


@pytest.mark.parametrize("strategy", ["single", "pmap"])
def test_fused_steps_equal_single_steps(digits, strategy):
    devices = jax.local_devices()[:1] if strategy == "single" else jax.local_devices()
    stepwise, loss1 = _run(strategy, devices, digits, 1, 6)
    fused, loss6 = _run(strategy, devices, digits, 6, 1)
    fused2, loss3 = _run(strategy, devices, digits, 3, 2)
    _assert_close(stepwise.params, fused.params)
    _assert_close(stepwise.params, fused2.params)
    np.testing.assert_allclose(loss1, loss6, rtol=1e-5)
    np.testing.assert_allclose(loss1, loss3, rtol=1e-5)


def _one_step_observing(digits, strategy, observe):
    """One step under `strategy` from the identity order; `observe(x)` sees the step's batch
    as traced inside the step (global under jit, per device under pmap)."""
    state, make_step = _setup(digits)

    def observing_step(axis_name):
        step = make_step(axis_name)

        def wrapped(state, batch):
            observe(batch[0])
            return step(state, batch)

        return wrapped

    dp = DataParallel(strategy, jax.local_devices(), BATCH)
    state = dp.replicate(state)
    x, y = dp.replicate((digits.x_train, digits.y_train))
    perm = dp.replicate(jnp.arange(len(digits.x_train)))
    state, _ = dp.steps(observing_step, 1)(state, x, y, perm, np.int32(0))
    return dp, state


def test_state_replicated_and_batch_sharded(digits):
    seen = {}

    def observe(x):
        jax.debug.inspect_array_sharding(x, callback=lambda s: seen.setdefault("x", s))

    dp, state = _one_step_observing(digits, "jit", observe)
    for leaf in jax.tree.leaves(state.params):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    assert seen["x"].spec == P("data")
    assert len(seen["x"].device_set) == 4
    shard_rows = {s.data.shape[0] for s in dp.replicate(jnp.zeros((BATCH, 2))).addressable_shards}
    assert shard_rows == {BATCH}  # replicated inputs: every device holds all rows


def test_pmap_steps_on_per_device_shards(digits):
    shapes = []
    _one_step_observing(digits, "pmap", lambda x: shapes.append(x.shape))
    assert shapes[0][0] == BATCH // 4


@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_fit_matches_single_device(tmp_path, strategy):
    def config(parallel, num_devices):
        return Config(model=ModelConfig(hidden=[32]), data=DataConfig(name="digits"),
                      trainer=TrainerConfig(epochs=2, batch_size=BATCH, progress="off",
                                            parallel=parallel, num_devices=num_devices))

    one = fit(config("single", 1), tmp_path / "one")
    many = fit(config(strategy, 4), tmp_path / "many")
    assert many["devices"] == 4 and many["strategy"] == strategy
    assert one["val"]["loss"] == pytest.approx(many["val"]["loss"], rel=1e-4)
    assert one["test"]["accuracy"] == pytest.approx(many["test"]["accuracy"], abs=1 / 180)


def test_batch_not_divisible_by_devices():
    with pytest.raises(UserError, match=r"batch_size \(30\) must be divisible by the device "
                                        r"count \(4\); use a multiple of 4, e.g. 28 or 32"):
        DataParallel("jit", jax.local_devices(), 30)


def test_more_devices_than_exist():
    with pytest.raises(UserError, match=r"num_devices \(8\) exceeds the 4 local cpu device"):
        local_devices(8)


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_steps_per_call(tmp_path, value):
    config = Config(trainer=TrainerConfig(steps_per_call=value))
    with pytest.raises(UserError, match="trainer.steps_per_call"):
        fit(config, tmp_path)


@pytest.mark.parametrize("model_name", ["mlp", "lenet5"])
def test_cli_on_simulated_cpu_devices_does_not_hang(tmp_path, mnist_root, model_name):
    """MNIST-sized training on 2 simulated CPU devices, as a user runs it with XLA_FLAGS.
    XLA:CPU's in-process all-reduce once hung here for good (see `calls_ahead`): within ~60
    steps, on this 2-core machine. XLA aborts a stuck collective after the timeout below, so
    a regression fails the run instead of hanging the suite."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                        "--xla_cpu_collective_call_terminate_timeout_seconds=20"}
    run = subprocess.run(
        [sys.executable, "-m", "lepton_jax.train", "trainer.progress=plain", "data=mnist",
         f"data.root={mnist_root}", "data.limit=12800", f"model={model_name}",
         "trainer.batch_size=128", "trainer.epochs=2", "trainer.eval_every_epochs=0",
         "trainer.checkpoint_every_epochs=0", f"hydra.run.dir={tmp_path / 'run'}"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "on 2 devices | run dir" in run.stdout


def test_auto_steps_per_call_by_backend_and_device_count(tmp_path, digits):
    """`trainer.steps_per_call=auto`: a whole epoch per call on GPU; on XLA:CPU the largest
    divisor of the epoch up to 32 for one device or a vmapped population, one step with
    several devices. run.json records what a run used."""
    auto = TrainerConfig()
    assert resolve_steps_per_call(auto, "gpu", 78) == 78
    assert resolve_steps_per_call(auto, "cpu", 78) == 26
    assert resolve_steps_per_call(auto, "cpu", 78, num_devices=4) == 1
    assert resolve_steps_per_call(auto, "cpu", 78, vmapped=True, num_devices=4) == 26
    assert resolve_steps_per_call(TrainerConfig(steps_per_call="3"), "cpu", 78,
                                  num_devices=4) == 3
    for devices, expected in ((1, 22), (4, 1)):  # digits: 1,437 rows, batch 64: 22 steps
        config = Config(data=DataConfig(name="digits"), model=ModelConfig(hidden=[8]),
                        trainer=TrainerConfig(epochs=1, batch_size=64, num_devices=devices,
                                              progress="off"))
        fit(config, tmp_path / str(devices))
        run = json.loads((tmp_path / str(devices) / "run.json").read_text())
        assert (run["devices"], run["steps_per_call"]) == (devices, expected)


def test_cpu_fused_lenet5_steps_run_convolutions_in_the_fast_form():
    """Inside the `lax.scan` of fused steps, every convolution of a LeNet-5 train step has
    XLA:CPU's NHWC/HWIO labels (`b01f_01io->b01f`), the form it runs fast. XLA's own kernel
    gradient has permuted labels, which XLA:CPU left as they were inside a loop: a fused
    LeNet-5 step took 7x longer than a plain one (`models._conv_kernel_grad`)."""
    model = build_model(MC(name="lenet5"), 10)
    tx = make_optimizer(OptimConfig(lr=0.05), 100, 10)
    state = create_state(model, tx, (28, 28, 1), 0)
    dp = DataParallel("single", jax.local_devices()[:1], 16)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 28, 28, 1), np.float32), rng.integers(0, 10, 64).astype(np.int32)
    perm = epoch_permutation(state.data_rng, 0, 64)
    steps = dp.steps(lambda axis: make_train_step(model, tx, "classification", axis), 4)
    hlo = steps.lower(dp.replicate(state), x, y, perm, np.int32(0)).compile().as_text()
    convolutions = [line for line in hlo.splitlines() if " convolution(" in line]
    assert " while(" in hlo and len(convolutions) == 3  # conv2 forward, both kernel gradients
    labels = {re.search(r"dim_labels=([^,\s]+)", line).group(1) for line in convolutions}
    assert labels == {"b01f_01io->b01f"}


def test_cpu_train_step_compiles_without_ynn_fusions(digits):
    """XLA:CPU programs are compiled without YNNPACK fusions (`parallel.compiler_options`):
    with them a vmapped population's matmuls rounded apart from its members' standalone runs.
    The default compile of the same step has them, so the option is what removes them."""
    state, make_step = _setup(digits)
    dp = DataParallel("single", jax.local_devices()[:1], BATCH)
    assert dp.compiler_options == {"xla_cpu_experimental_ynn_fusion_type": "",
                                   "xla_cpu_copy_insertion_use_region_analysis": True}
    x, y = dp.replicate((digits.x_train, digits.y_train))
    perm = dp.replicate(epoch_permutation(state.data_rng, 0, len(digits.x_train)))
    args = (dp.replicate(state), x, y, perm, np.int32(0))
    ours = dp.steps(make_step, 1).lower(*args).compile().as_text()
    plain = DataParallel("single", jax.local_devices()[:1], BATCH)
    plain.compiler_options = None
    default = plain.steps(make_step, 1).lower(*args).compile().as_text()
    assert "__ynn_fusion" not in ours
    if "__ynn_fusion" not in default:
        # XLA:CPU chooses YNNPACK per CPU; where it does not, there is nothing to remove.
        pytest.skip("XLA:CPU's default compile has no YNNPACK fusions on this CPU")


def test_cpu_fused_steps_update_kernels_in_place(digits):
    """With region analysis in copy insertion (`parallel.compiler_options`), the fused-steps
    loop updates the loop-carried parameters in place; without it XLA:CPU copied kernels
    every step. The states after the loop are bitwise equal."""
    state, make_step = _setup(digits)
    x, y = digits.x_train, digits.y_train
    kernels = {f"f32[{a},{b}]" for a, b in (p.shape for p in jax.tree.leaves(state.params)
                                            if p.ndim == 2)}
    runs = {}
    for name in ("ours", "without"):
        dp = DataParallel("single", jax.local_devices()[:1], BATCH)
        if name == "without":  # the shipped options less region analysis
            dp.compiler_options = {k: v for k, v in dp.compiler_options.items()
                                   if k != "xla_cpu_copy_insertion_use_region_analysis"}
        xd, yd = dp.replicate((x, y))
        perm = dp.replicate(epoch_permutation(state.data_rng, 0, len(x)))
        # A copy each: the step donates the state it is given.
        args = (dp.replicate(jax.tree.map(jnp.copy, state)), xd, yd, perm, np.int32(0))
        run = dp.steps(make_step, 4)
        text = run.lower(*args).compile().as_text()
        # A copy of a loop-carried kernel, not of a product's transpose.
        copies = [line for line in text.splitlines() if " copy(%get-tuple-element" in line
                  and line.split("=")[1].split("{")[0].strip() in kernels]
        runs[name] = (copies, run(*args)[0])
    if not runs["without"][0]:
        pytest.skip("this XLA:CPU copies no kernel in the loop even without region analysis")
    assert runs["ours"][0] == [], runs["ours"][0]
    for a, b in zip(jax.tree.leaves(runs["ours"][1]), jax.tree.leaves(runs["without"][1]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
