"""The matrix products of one MLP 784-512-512-10 train step: XLA's against PyTorch's and numpy's.

The MLP b128 step is bound by its matrix products (`profile_step.py`: the large dots take about
three quarters of it). This times each product of the step alone, in the same process, the
libraries alternating round by round: XLA:CPU as the trainer compiles it (no YNNPACK fusions,
`parallel.compiler_options`), XLA with its default YNNPACK fusions, `torch.mm` (MKL on x86)
and numpy (OpenBLAS). The sum over the step's products bounds how fast a step can be with
each library's GEMMs. Writes JSON with machine, jax version and commit.

    python scripts/bench_gemm.py [--batch 128] [--rounds 5] [--out OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lepton_jax.parallel import compiler_options  # noqa: E402
from scripts.bench import environment  # noqa: E402


def step_products(batch: int, widths=(784, 512, 512, 10)) -> list[tuple[str, tuple, bool, bool]]:
    """(name, (m, k, n), transpose a, transpose b) of each product a train step computes:
    forward x @ W, weight gradients x.T @ g, input gradients g @ W.T (not for the first layer,
    whose input is data)."""
    products = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        products.append((f"forward {i}", (batch, fan_in, fan_out), False, False))
        products.append((f"weight grad {i}", (fan_in, batch, fan_out), True, False))
        if i:
            products.append((f"input grad {i}", (batch, fan_out, fan_in), False, True))
    return products


def _timed(run, reps: int) -> float:
    run()
    start = time.perf_counter()
    for _ in range(reps):
        run()
    return (time.perf_counter() - start) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    trainer_options = compiler_options(jax.default_backend())
    libraries = {"xla (trainer)": trainer_options, "xla (ynn fusions)": {}}
    torch = None
    if not args.no_torch:
        import torch
    rows = []
    for name, (m, k, n), ta, tb in step_products(args.batch):
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)

        def product(x, y, ta=ta, tb=tb):
            return (x.T if ta else x) @ (y.T if tb else y)

        runs = {}
        for label, options in libraries.items():
            f = jax.jit(product, compiler_options=options)
            xa, xb = jax.device_put(a), jax.device_put(b)
            runs[label] = lambda f=f, xa=xa, xb=xb: f(xa, xb).block_until_ready()
        if torch is not None:
            ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
            runs["torch.mm"] = lambda x=ta_, y=tb_, ta=ta, tb=tb: torch.mm(x.T if ta else x,
                                                                          y.T if tb else y)
        runs["numpy"] = lambda a=a, b=b: product(a, b)
        seconds = {label: [] for label in runs}
        for _ in range(args.rounds):  # alternating: the VM's drifts hit every library alike
            for label, run in runs.items():
                seconds[label].append(_timed(run, args.reps))
        flops = 2 * m * k * n
        row = {"product": name, "m": m, "k": k, "n": n, "transpose_a": ta, "transpose_b": tb,
               "ms": {label: statistics.median(s) * 1e3 for label, s in seconds.items()}}
        row["gflops"] = {label: flops / ms / 1e6 for label, ms in row["ms"].items()}
        rows.append(row)
        print(f"{name:14s} {m:4d}x{k:4d}x{n:4d}  " + "  ".join(
            f"{label} {g:6.1f} GF/s" for label, g in row["gflops"].items()), flush=True)
    totals = {label: sum(r["ms"][label] for r in rows) for label in rows[0]["ms"]}
    print("the step's products in all: " + ", ".join(f"{label} {ms:.2f} ms"
                                                     for label, ms in totals.items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"env": environment(), "batch": args.batch,
                                              "rounds": args.rounds, "products": rows,
                                              "step_total_ms": totals}, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
