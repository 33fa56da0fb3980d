"""Whole-sweep wall time: the multirun vectorized through the pool launcher vs the same
multirun through Hydra's basic launcher (one job after another), each command alternating.

    python scripts/bench_population.py [--points 4x4] [--repeats 2] [--model mlp|lenet5]

Sweep: MLP 784-512-512-10 (or LeNet-5), first 10,000 MNIST training images, 2 epochs,
batch 128, 4 learning rates x 4 seeds. Prints a table and writes JSON (machine, jax version, commit).

    python scripts/bench_population.py --standalone-vs-population N [OUT.json] [--tiny]

One standalone run vs an N-member population of it in one process (issue 5's GPU target);
`--tiny` swaps in a 16-unit MLP on digits, to see the per-member overheads on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def commands(mnist: str, lrs: list[float], seeds: list[int], workdir: Path, epochs: int,
             model: str = "mlp"):
    net = ["model.hidden=[512,512]"] if model == "mlp" else [f"model={model}"]
    common = [*net, "data.name=mnist", f"data.root={mnist}",
              "data.val_fraction=0.05", "data.limit=10000",
              f"trainer.epochs={epochs}", "trainer.batch_size=128", "trainer.progress=off",
              "logger.name=console"]
    sweep = [f"optim.lr={','.join(map(str, lrs))}", f"seed={','.join(map(str, seeds))}"]

    def multirun(name, *extra):
        return [sys.executable, "-m", "lepton_jax.train", "-m", *common, *sweep, *extra,
                f"hydra.sweep.dir={workdir / name}"]

    return {
        # Hydra's default: one job after another in the launcher's process.
        "hydra_basic": multirun("basic"),
        # The pool launcher, vectorized: one population per slot (2 slots of 1 core here).
        "pool_vectorized": multirun("pool", "hydra/launcher=pool", "hydra.launcher.vectorize=true"),
        # One population on one slot owning both cores.
        "pool_vectorized_1slot": multirun("pool1", "hydra/launcher=pool",
                                          "hydra.launcher.vectorize=true", "hydra.launcher.slots=1"),
    }


def main() -> None:
    from scripts.bench import environment

    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("LEPTON_MNIST_ROOT",
                                                     str(REPO.parent / "shared/data/mnist")))
    p.add_argument("--points", default="4x4", help="learning rates x seeds")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", default="mlp", choices=["mlp", "lenet5"])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    n_lr, n_seed = map(int, args.points.split("x"))
    lrs = [round(0.01 * 2 ** i, 4) for i in range(n_lr)]
    seeds = list(range(n_seed))
    walls: dict[str, list[float]] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for name, cmd in commands(args.mnist, lrs, seeds, Path(tmp) / str(r),
                                      args.epochs, args.model).items():
                t0 = time.perf_counter()
                out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                walls.setdefault(name, []).append(time.perf_counter() - t0)
                if out.returncode:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                print(f"round {r} {name}: {walls[name][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    speedup = {k: med["hydra_basic"] / v for k, v in med.items() if k != "hydra_basic"}
    result = {"env": environment(), "model": args.model, "points": n_lr * n_seed, "lrs": lrs, "seeds": seeds,
              "wall_s": walls, "median_s": med, "speedup_vs_basic": speedup}
    print(f"{args.model}, {n_lr * n_seed} points, whole multirun command (median of {args.repeats}):")
    for name, seconds in med.items():
        ratio = ("baseline" if name not in speedup else f"{speedup[name]:.2f}x faster"
                 if speedup[name] >= 1 else f"{1 / speedup[name]:.2f}x slower")
        print(f"  {name:<22} {seconds:6.1f} s  {ratio}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__" and "--standalone-vs-population" not in sys.argv:
    main()


def standalone_vs_population(mnist: str, members: int, out: str | None,
                             tiny: bool = False) -> None:
    """In one process: one standalone `fit` vs a `members`-point population of the same MLP
    (lrs x 4 seeds), each timed end to end (data, compile, train, eval, checkpoints).

    `tiny`: an MLP with one hidden layer of 16 on scikit-learn's digits instead, whose
    arithmetic is negligible even on a CPU, so the ratio shows the per-member overheads a GPU
    run of the real MLP sees."""
    import dataclasses

    from lepton_jax import Config, DataConfig, ModelConfig, OptimConfig, TrainerConfig, fit
    from lepton_jax.population import fit_population
    from scripts.bench import environment

    base = Config(model=ModelConfig(hidden=[512, 512]),
                  data=DataConfig(name="mnist", root=mnist, val_fraction=0.05, limit=10000),
                  optim=OptimConfig(lr=0.05),
                  trainer=TrainerConfig(epochs=2, batch_size=128, progress="off"))
    if tiny:
        base = dataclasses.replace(base, model=ModelConfig(hidden=[16]),
                                   data=DataConfig(name="digits"))
    seeds = 4
    configs = [dataclasses.replace(base, seed=s, optim=dataclasses.replace(base.optim, lr=lr))
               for lr in [0.005 * (i + 1) for i in range(members // seeds)] for s in range(seeds)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(configs[0], Path(tmp) / "alone")
        alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = fit_population(configs, [Path(tmp) / "pop" / str(i) for i in range(members)])
        pop = time.perf_counter() - t0
    done = sum(r["status"] == "done" for r in results)
    # Where the population's time went (setup, training, evaluation, checkpoints).
    timing = next((r["timing"] for r in results if r["status"] == "done"), None)
    result = {"env": environment(), "members": members, "tiny": tiny, "standalone_s": alone,
              "population_s": pop, "ratio": pop / alone, "finished": done,
              "population_timing": timing}
    print(f"one standalone run {alone:.2f} s; population of {members} {pop:.2f} s "
          f"({pop / alone:.2f}x one run); {done} finished", flush=True)
    if out:
        Path(out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__" and "--standalone-vs-population" in sys.argv:
    i = sys.argv.index("--standalone-vs-population")
    rest = [a for a in sys.argv[i + 2:] if a != "--tiny"]
    standalone_vs_population(os.environ.get("LEPTON_MNIST_ROOT", str(REPO.parent / "shared/data/mnist")),
                             int(sys.argv[i + 1]), rest[0] if rest else None, "--tiny" in sys.argv)
