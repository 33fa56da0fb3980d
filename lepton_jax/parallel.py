"""Device placement: the data mesh, the `jit` and `pmap` strategies, fused step calls."""

from __future__ import annotations

import os
from functools import cache, partial
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lepton_jax.errors import UserError

AXIS = "data"


def initialize_processes() -> int:
    """Joins a multi-process run when JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID are set (as `jax.distributed.initialize` takes them); returns the count."""
    count = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    # is_initialized, not process_count(): asking for the count would start the backend,
    # after which joining is no longer possible.
    if count > 1 and not jax.distributed.is_initialized():
        try:
            jax.distributed.initialize(
                coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                num_processes=count, process_id=int(os.environ["JAX_PROCESS_ID"]))
        except KeyError as e:
            raise UserError(f"JAX_NUM_PROCESSES={count} needs {e.args[0]} as well") from None
    return jax.process_count()


def to_host(x) -> np.ndarray:
    """A replicated array's value on this host (also when it spans other processes)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def local_devices(num_devices: Optional[int]) -> list:
    """The first `num_devices` local devices (all when None); with several processes, every
    process's devices (each process feeds its own devices' shards of the global batch)."""
    if jax.process_count() > 1:
        return jax.devices()
    devices = jax.local_devices()
    if num_devices is None:
        return devices
    if num_devices > len(devices):
        raise UserError(f"trainer.num_devices ({num_devices}) exceeds the {len(devices)} local "
                        f"{devices[0].platform} device{'s' * (len(devices) != 1)}; use at most "
                        f"{len(devices)} or null for all")
    return devices[:num_devices]


def calls_ahead(devices: list) -> Optional[int]:
    """How many device calls the host may queue behind the running one; None: JAX's own
    limit (32 per device).

    XLA:CPU runs an in-process all-reduce on a worker of its intra-op thread pool (one thread
    per core), and the worker blocks until every device has arrived. With several local CPU
    devices and a long queue of calls, a device's next call can end up waiting behind that
    blocked worker, and the step hangs until XLA aborts the process (jax 0.10.2 on 2 cores:
    LeNet-5 on MNIST on 2 simulated devices stopped after ~60 steps; an MLP 784-512-512-10
    within its first epoch). One call queued ahead keeps the host busy while the device
    works, without that.
    """
    local = [d for d in devices if d.process_index == jax.process_index()]
    if len(local) > 1 and local[0].platform == "cpu":
        return 1
    return None


def wait_behind(pending: list, ahead: Optional[int]) -> None:
    """Waits for the call `ahead` places behind the newest of `pending` (their outputs, in
    call order), so that at most `ahead` calls stay queued; None waits for nothing."""
    if ahead is not None and len(pending) > ahead:
        jax.block_until_ready(pending[-1 - ahead])


@jax.jit
def unstack_members(tree) -> list:
    """A tree with a leading member axis as one tree per member (one device call)."""
    members = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(members)]


@jax.jit
def _restack(states: list, metrics: list):
    """Per-member states and (k,)-shaped metrics back as a population's: members first in
    the state, second in the metrics, as a vmapped step returns them."""
    return (jax.tree.map(lambda *a: jnp.stack(a), *states),
            jax.tree.map(lambda *m: jnp.stack(m, axis=1), *metrics))


def _scan(body: Callable, carry, xs):
    """`lax.scan(body, carry, xs)`, without the loop for one step: XLA:CPU runs a plain step
    faster than a 1-trip while loop (the single runs' one step per call, measured there)."""
    if xs.shape[0] == 1:
        carry, out = body(carry, xs[0])
        return carry, jax.tree.map(lambda m: m[None], out)
    return jax.lax.scan(body, carry, xs)


def resolve_strategy(name: str, num_devices: int) -> str:
    """`auto` picks `jit` on several devices and `single` on one."""
    if name == "auto":
        return "jit" if num_devices > 1 else "single"
    if name == "single" and num_devices > 1:
        raise UserError(f"trainer.parallel=single needs one device but {num_devices} are "
                        "selected; set trainer.num_devices=1 or trainer.parallel=jit")
    return name


def check_batch(batch_size: int, num_devices: int) -> None:
    if batch_size % num_devices:
        lower = batch_size - batch_size % num_devices
        raise UserError(
            f"trainer.batch_size ({batch_size}) must be divisible by the device count "
            f"({num_devices}); use a multiple of {num_devices}, e.g. {max(lower, num_devices)} "
            f"or {lower + num_devices}"
        )


class DataParallel:
    """Runs fused train steps with the batch split over a 1-D `data` mesh.

    `jit`/`single`: one jit with explicit shardings (state replicated, batch sharded); the
    gradient all-reduce falls out of the sharding. `pmap`: the per-device programming model
    written with `jax.shard_map`, gradients averaged with `lax.pmean`.
    """

    def __init__(self, strategy: str, devices: list, batch_size: int):
        if strategy != "population":  # a population splits members, not the batch
            check_batch(batch_size, len(devices))
        self.strategy = strategy
        self.batch_size = batch_size
        self.mesh = Mesh(np.asarray(devices), (AXIS,))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(AXIS))
        # XLA options for every program compiled here (and for evaluation: `Evaluator`).
        self.compiler_options = compiler_options(devices[0].platform)
        self._compiled: dict[int, Callable] = {}

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def replicate(self, tree):
        """Places a pytree (state, dataset arrays) on every device of the mesh."""
        if jax.process_count() == 1:
            return jax.device_put(tree, self.replicated)

        def place(leaf):  # each process fills its own devices from its identical host copy
            host = to_host(leaf)
            return jax.make_array_from_callback(host.shape, self.replicated, lambda i: host[i])

        return jax.tree.map(place, tree)

    def shard_members(self, tree):
        """Places a population's pytree (leading member axis) split over the mesh: each
        device holds and trains its own members."""
        return jax.device_put(tree, NamedSharding(self.mesh, P(AXIS)))

    def steps(self, make_step: Callable, k: int) -> Callable:
        """`run(state, x, y, perm, start) -> (state, metrics stacked over k steps)`.

        Steps `start // batch .. + k` of the epoch whose example order is `perm`; the batch
        is gathered on the device from the resident dataset `x, y`.
        `make_step(axis_name)` builds the pure train step.
        """
        if k not in self._compiled:
            self._compiled[k] = self._build(make_step, k)
        return self._compiled[k]

    def population_steps(self, make_step: Callable, k: int, mode: str = "vmap") -> Callable:
        """Like `steps`, for a population: state leaves and `perms` carry a leading member
        axis, and each member steps on its own batch order.

        `mode="vmap"` batches the members into one computation (`jax.vmap`); `"host"` (one
        device only) calls the standalone run's own compiled program once per member, one
        after another: on XLA:CPU a LeNet-5 member stepped 4x slower vmapped, or looped
        inside one program with `lax.map`, than alone (`population.population_mode`).
        """
        key = ("population", k, mode)
        if key not in self._compiled and mode == "host":
            if self.num_devices != 1:
                raise ValueError("population mode 'host' runs on one device")
            single = DataParallel("single", list(self.mesh.devices.flat), self.batch_size)
            steps = single.steps(make_step, k)

            def host(states, x, y, perms, start):
                out = [steps(s, x, y, perm, start)
                       for s, perm in zip(unstack_members(states), unstack_members(perms),
                                          strict=True)]
                return _restack([s for s, _ in out], [m for _, m in out])

            self._compiled[key] = host
        if key not in self._compiled:
            if mode != "vmap":
                raise UserError(f"population mode {mode!r} is not known; valid: vmap, host")
            bs, step = self.batch_size, jax.vmap(make_step(None))

            def run(states, x, y, perms, start):
                idx = jax.lax.dynamic_slice_in_dim(perms, start, k * bs, axis=1)
                idx = idx.reshape(perms.shape[0], k, bs).swapaxes(0, 1)  # (k, members, batch)

                def body(states, members_idx):
                    return step(states, (x[members_idx], y[members_idx]))

                return _scan(body, states, idx)

            rep = self.replicated
            if self.num_devices == 1:
                self._compiled[key] = jax.jit(run, in_shardings=(rep,) * 5,
                                              out_shardings=(rep, rep), donate_argnums=(0,),
                                              compiler_options=self.compiler_options)
            else:
                # Members split over devices, the dataset on each: every device runs the same
                # population program on its own members, with no communication at all.
                local = jax.shard_map(run, mesh=self.mesh,
                                      in_specs=(P(AXIS), P(), P(), P(AXIS), P()),
                                      out_specs=(P(AXIS), P(None, AXIS)), check_vma=False)
                members = NamedSharding(self.mesh, P(AXIS))
                self._compiled[key] = jax.jit(
                    local, in_shardings=(members, rep, rep, members, rep),
                    out_shardings=(members, NamedSharding(self.mesh, P(None, AXIS))),
                    donate_argnums=(0,), compiler_options=self.compiler_options)
        return self._compiled[key]

    def _build(self, make_step: Callable, k: int) -> Callable:
        bs = self.batch_size

        def indices(perm, start):
            return jax.lax.dynamic_slice_in_dim(perm, start, k * bs).reshape(k, bs)

        if self.strategy in ("jit", "single"):
            step = make_step(None)
            constrain = partial(jax.lax.with_sharding_constraint, shardings=self.batch_sharding)

            def run(state, x, y, perm, start):
                def body(state, idx):
                    return step(state, (constrain(x[idx]), constrain(y[idx])))

                return _scan(body, state, indices(perm, start))

        elif self.strategy == "pmap":
            step = make_step(AXIS)

            def local(state, x, y, idx):
                def body(state, i):
                    return step(state, (x[i], y[i]))

                return _scan(body, state, idx)

            mapped = jax.shard_map(local, mesh=self.mesh,
                                   in_specs=(P(), P(), P(), P(None, AXIS)),
                                   out_specs=(P(), P()))

            def run(state, x, y, perm, start):
                return mapped(state, x, y, indices(perm, start))

        else:
            raise UserError(f"trainer.parallel={self.strategy!r} is not known; valid: "
                            "auto, single, jit, pmap")
        rep = self.replicated
        return jax.jit(run, in_shardings=(rep, rep, rep, rep, rep), out_shardings=(rep, rep),
                       donate_argnums=(0,), compiler_options=self.compiler_options)


# YNNPACK library fusions, XLA:CPU's default for dots, reductions and elementwise ops in
# jax 0.10, turned off: an empty list of fusion types.
_NO_YNN = ("xla_cpu_experimental_ynn_fusion_type", "")
# Copy insertion that proves more buffers may be updated in place: without it XLA:CPU copied
# loop-carried kernels inside a fused-steps loop on every step (MLP 784-512-512-10: the
# 512x512 and 512x10 kernels, ~0.1 ms of a 3.5 ms b128 step).
_REGION_ANALYSIS = ("xla_cpu_copy_insertion_use_region_analysis", True)


@cache
def _compiler_accepts(option: str, value: str | bool) -> bool:
    try:
        jax.jit(lambda a: a + 1, compiler_options={option: value}).lower(jnp.zeros(())).compile()
    except jax.errors.JaxRuntimeError:  # a jaxlib without this option
        return False
    return True


def compiler_options(platform: str) -> dict[str, str | bool] | None:
    """XLA options for the training and evaluation programs on `platform`, by measurement.

    XLA:CPU compiles without YNNPACK fusions, for two reasons. With them, a vmapped
    population's batched matmuls rounded differently from its members' standalone runs (on
    an AVX-512 Xeon an MLP member's parameters drifted 4.5e-4 apart, relative, over 2
    epochs); without them every member equals its standalone run bitwise there. And
    LeNet-5 trains faster without them (b128 step 19-20 ms with, 16-17 ms without; they
    ran its small convolution gradients and pooling reductions slowly). The cost: MLP
    784-512-512-10 b128 trains 8-12 % slower (`scripts/bench.py --ynn`; YNNPACK's dots alone,
    `LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT`, give the same gain and keep members bitwise equal,
    but make a vmapped MLP population 25-40 % slower). Measured with jax 0.10.2 on a 2-core
    AVX-512 Xeon (experiments/benchmarks, sessions 9 and 14).

    And with region analysis in copy insertion (`_REGION_ANALYSIS`): the MLP b128 epoch
    trained 7-9 % faster (two alternating runs of 12 epochs), an 8-member MLP population
    step 4-5 % faster, LeNet-5 b128 unchanged (0.99x), states bitwise equal (session 17)."""
    if platform != "cpu":
        return None
    options = dict(option for option in (_NO_YNN, _REGION_ANALYSIS)
                   if _compiler_accepts(*option))
    return options or None


def default_steps_per_call(platform: str, steps_per_epoch: int,
                          all_reduces: bool) -> str | int:
    """`trainer.steps_per_call=auto`, measured per backend: a whole epoch per call on GPU/TPU
    (4x faster there); on XLA:CPU `cpu_steps_per_call`, except for a program that all-reduces
    over several CPU devices, which keeps one step per call: those in-process all-reduces
    once hung behind queued calls (`calls_ahead`), so they are not given longer programs."""
    if platform != "cpu":
        return "epoch"
    return 1 if all_reduces else cpu_steps_per_call(steps_per_epoch)


def cpu_steps_per_call(steps_per_epoch: int) -> int:
    """`trainer.steps_per_call=auto` on XLA:CPU (a vmapped population, or a run on one
    device): the largest divisor of the epoch up to 32 steps (one compiled program covers the
    epoch, and the progress bar still moves), or the whole epoch when that divisor is below 4.
    Measured faster, alternating in one process on a 2-core Xeon: a 16-member MLP
    784-512-512-10 b128 population step took 64 ms 26 at a time and 85 ms one per call (the
    16-point sweep of `scripts/bench_population.py` on one slot: 22.0 s instead of 24.8 s);
    single runs on 12,800 MNIST images at b128, 25 steps per call vs 1: LeNet-5 14.6 k vs
    13.9 k samples/s, MLP 33.7 k vs 31.2 k (6 rounds). LeNet-5 gained only once its kernel
    gradients ran fast inside a loop (`models._conv_kernel_grad`); before, a scanned LeNet-5
    step took 7x longer than a plain one."""
    best = max(d for d in range(1, min(32, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    return best if best >= 4 else steps_per_epoch
