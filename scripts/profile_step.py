"""Where a train step's time goes: the per-op table of lepton_jax's compiled training program.

Traces a few device calls of the same program `fit` runs (`DataParallel.steps`: the batch
gathered on the device, K steps fused per call) with `jax.profiler`, then sums the innermost
events of each device thread (GPU kernels, or XLA:CPU thunks) by op name. Synthetic inputs of
MNIST's shape: the time does not depend on the pixel values.

    python scripts/profile_step.py --model lenet5 --batch 128
    python scripts/profile_step.py --model lenet5 --batch 8192 --steps-per-call 7 --out P.json
    python scripts/profile_step.py --model mlp --population 8 --steps-per-call 26

Prints the ops that take the most time (ms per step, share of the busy time, calls per step)
and writes them as JSON with machine, device, jax version and commit. On a GPU the times are
the kernels' own. On XLA:CPU ops run side by side on the thread pool and the tracer slows the
step about twofold, so read the CPU table as a ranking: there a 1 MB copy of a donated kernel
showed 0.5 ms, yet compiling without donation (no copy) gave no faster step.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Not ops: wrappers that the trace nests the real work inside (a wrapper with nothing inside,
# an empty loop, is no op either), and XLA:CPU's markers ("end: dot.9" closes inside dot.9;
# thread-pool records).
_NOT_OPS = ("ThunkExecutor", "PjitFunction", "ExecuteHelper", "ExecutePrepare", "ParseArguments",
            "AllocateOutputBuffers", "$", "TfrtCpuExecutable", "PjRt", "end: ",
            "ThreadpoolListener")


def innermost_events(trace: dict) -> list[dict]:
    """The complete ("X") events that contain no other event of their thread: the work itself,
    without the loops and calls that wrap it."""
    by_thread = collections.defaultdict(list)
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and "dur" in e and not str(e.get("name", "")).startswith(_NOT_OPS):
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    leaves = []
    for events in by_thread.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        for i, e in enumerate(events):
            nxt = events[i + 1] if i + 1 < len(events) else None
            if nxt is None or nxt["ts"] >= e["ts"] + e["dur"]:
                leaves.append(e)
    return leaves


def op_table(trace: dict, steps: int, device_pids: set | None = None) -> list[dict]:
    """Per op name: ms per step, share of the summed time, calls per step (largest first).
    `device_pids`: keep only those processes' events (the GPU's streams); None keeps all."""
    totals, counts = collections.Counter(), collections.Counter()
    for e in innermost_events(trace):
        if device_pids is None or e.get("pid") in device_pids:
            totals[e["name"]] += e["dur"]
            counts[e["name"]] += 1
    busy = sum(totals.values()) or 1
    return [{"op": name, "ms_per_step": us / 1e3 / steps, "share": us / busy,
             "calls_per_step": counts[name] / steps} for name, us in totals.most_common()]


_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\([^)]*\)|\S+) ([\w\-]+)\((.*)$")
_DIMS = re.compile(r"((?:lhs|rhs)_(?:batch|contracting)_dims=\{[\d,]*\}|dim_labels=\S+?(?=,|$)"
                   r"|kind=k\w+)")


def describe_ops(hlo_text: str) -> dict[str, str]:
    """Op name -> what it is, from the compiled program's HLO text: result shape, opcode, and
    for matmuls and convolutions the dimension numbers (which operand axes are contracted
    tells a plain product from one with a transposed operand)."""
    described = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            name, shape, opcode, rest = match.groups()
            shape = re.sub(r"\{[\d,]*\}", "", shape)  # layouts
            described[name] = " ".join([shape, opcode, *_DIMS.findall(rest)])
    return described


def _device_pids(trace: dict) -> set | None:
    """The pids of accelerator processes ("/device:GPU:0 ..."); None when there is none
    (XLA:CPU's ops are on its host threads)."""
    pids = {e["pid"] for e in trace.get("traceEvents", [])
            if e.get("ph") == "M" and e.get("name") == "process_name"
            and str(e.get("args", {}).get("name", "")).startswith("/device:")
            and "CPU" not in str(e.get("args", {}).get("name", ""))}
    return pids or None


def profile(model_name: str, batch: int, steps_per_call: int, calls: int, trace_dir: Path,
            members: int = 0):
    """`members` > 0: the vmapped population program (`DataParallel.population_steps`) of
    that many members (seeds 0, 1, ...), each with its own batch order, on one device."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lepton_jax.config import OptimConfig
    from lepton_jax.models import build_model
    from lepton_jax.optim import make_optimizer
    from lepton_jax.parallel import DataParallel
    from lepton_jax.state import create_state
    from lepton_jax.step import epoch_permutation, make_train_step

    from scripts.bench import MODELS

    model = build_model(MODELS[model_name], 10)
    n = batch * steps_per_call
    tx = make_optimizer(OptimConfig(lr=0.05, schedule="constant"), n, n)
    dp = DataParallel("population" if members else "single", jax.local_devices()[:1], batch)
    rng = np.random.default_rng(0)
    x, y = dp.replicate((rng.random((n, 28, 28, 1), np.float32),
                         rng.integers(0, 10, n).astype(np.int32)))

    def make_step(axis):
        return make_train_step(model, tx, "classification", axis)

    if members:
        state = dp.shard_members(jax.tree.map(
            lambda *xs: jnp.stack(xs),
            *[create_state(model, tx, (28, 28, 1), seed) for seed in range(members)]))
        perm = jax.vmap(epoch_permutation, in_axes=(0, None, None))(state.data_rng, 0, n)
        run = dp.population_steps(make_step, steps_per_call, "vmap")
    else:
        state = dp.replicate(create_state(model, tx, (28, 28, 1), 0))
        perm = dp.replicate(epoch_permutation(state.data_rng, 0, n))
        run = dp.steps(make_step, steps_per_call)
    described = describe_ops(run.lower(state, x, y, perm, np.int32(0)).compile().as_text())
    for _ in range(2):  # compile, then one warm call
        state, metrics = run(state, x, y, perm, np.int32(0))
    jax.block_until_ready(metrics)
    walls = []
    for traced in (False, True):  # the same calls without, then with the profiler
        started = time.perf_counter()
        with jax.profiler.trace(str(trace_dir)) if traced else contextlib.nullcontext():
            for _ in range(calls):
                state, metrics = run(state, x, y, perm, np.int32(0))
            jax.block_until_ready(metrics)
        walls.append((time.perf_counter() - started) / (calls * steps_per_call) * 1e3)
    files = sorted(trace_dir.glob("**/*.trace.json.gz"))
    if not files:
        raise SystemExit(f"jax.profiler wrote no trace under {trace_dir}")
    trace = json.load(gzip.open(files[-1]))
    table = op_table(trace, calls * steps_per_call, _device_pids(trace))
    for row in table:  # GPU kernels are named by their fusion, which the HLO text names too
        row["hlo"] = described.get(row["op"], "")
    return table, walls, float(jnp.mean(metrics["loss"]))


def main() -> None:
    from scripts.bench import environment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5", choices=["lenet5", "mlp"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps-per-call", type=int, default=1)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--population", type=int, default=0, metavar="M",
                   help="profile the vmapped population program of M members instead")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table, (plain_ms, traced_ms), loss = profile(args.model, args.batch,
                                                     args.steps_per_call, args.calls, Path(tmp),
                                                     args.population)
    busy = sum(r["ms_per_step"] for r in table)
    members = f", population of {args.population}" if args.population else ""
    print(f"{args.model} b{args.batch}{members}, {args.steps_per_call} step(s) per call: "
          f"{plain_ms:.3f} ms per step ({traced_ms:.3f} ms while traced); the ops below sum to "
          f"{busy:.3f} ms per step")
    print(f"{'ms/step':>9} {'share':>6} {'calls':>6}  op")
    for r in table[:args.top]:
        print(f"{r['ms_per_step']:9.3f} {r['share']:6.1%} {r['calls_per_step']:6.1f}  "
              f"{r['op'][:40]:<24} {r['hlo'][:110]}")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"env": environment(), "model": args.model, "batch": args.batch,
             "population": args.population,
             "steps_per_call": args.steps_per_call, "calls": args.calls,
             "step_ms": plain_ms, "step_ms_traced": traced_ms, "busy_ms_per_step": busy, "final_loss": loss,
             "ops": table}, indent=2))


if __name__ == "__main__":
    main()
