"""Whole-sweep wall time: a vectorized population vs the same sweep through Hydra's basic
launcher (one job after another), each as its own command, alternating.

    python scripts/bench_population.py [--points 4x4] [--repeats 2]

Sweep: MLP 784-512-512-10, first 10,000 MNIST training images, 2 epochs, batch 128,
4 learning rates x 4 seeds. Prints a table and writes JSON (machine, jax version, commit).
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


def commands(mnist: str, lrs: list[float], seeds: list[int], workdir: Path, epochs: int):
    common = ["model.hidden=[512,512]", "data.name=mnist", f"data.root={mnist}",
              "data.val_fraction=0.05", "data.limit=10000",
              f"trainer.epochs={epochs}", "trainer.batch_size=128", "trainer.progress=off",
              "logger.name=console"]
    hydra = [sys.executable, "-m", "lepton_jax.train", "-m", *common,
             f"optim.lr={','.join(map(str, lrs))}", f"seed={','.join(map(str, seeds))}",
             f"hydra.sweep.dir={workdir / 'hydra'}"]
    script = (
        "import sys; from lepton_jax import Config, sweep; from lepton_jax.sweep import with_overrides\n"
        f"base = with_overrides(Config(), {{k: v for k, v in (a.split('=', 1) for a in {common!r})}})\n"
        f"df = sweep(base, {{'optim.lr': {lrs!r}, 'seed': {seeds!r}}}, "
        f"workdir={str(workdir / 'vector')!r}, vectorize=True)\n"
        "print(df[['optim.lr', 'seed', 'val/accuracy']].to_string())\n")
    vector = [sys.executable, "-c", script]
    return {"hydra_basic": hydra, "vectorized": vector}


def main() -> None:
    from scripts.bench import environment

    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("LEPTON_MNIST_ROOT",
                                                     str(REPO.parent / "shared/data/mnist")))
    p.add_argument("--points", default="4x4", help="learning rates x seeds")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    n_lr, n_seed = map(int, args.points.split("x"))
    lrs = [round(0.01 * 2 ** i, 4) for i in range(n_lr)]
    seeds = list(range(n_seed))
    walls: dict[str, list[float]] = {"hydra_basic": [], "vectorized": []}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for name, cmd in commands(args.mnist, lrs, seeds, Path(tmp) / str(r),
                                      args.epochs).items():
                t0 = time.perf_counter()
                out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                walls[name].append(time.perf_counter() - t0)
                if out.returncode:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                print(f"round {r} {name}: {walls[name][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    result = {"env": environment(), "points": n_lr * n_seed, "lrs": lrs, "seeds": seeds,
              "wall_s": walls, "median_s": med, "speedup": med["hydra_basic"] / med["vectorized"]}
    print(f"{n_lr * n_seed} points: Hydra basic launcher {med['hydra_basic']:.1f} s, vectorized "
          f"{med['vectorized']:.1f} s -> {result['speedup']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__" and "--standalone-vs-population" not in sys.argv:
    main()


def standalone_vs_population(mnist: str, members: int, out: str | None) -> None:
    """In one process: one standalone `fit` vs a `members`-point population of the same MLP
    (lrs x 4 seeds), each timed end to end (data, compile, train, eval, checkpoints)."""
    import dataclasses

    from lepton_jax import Config, DataConfig, ModelConfig, OptimConfig, TrainerConfig, fit
    from lepton_jax.population import fit_population
    from scripts.bench import environment

    base = Config(model=ModelConfig(hidden=[512, 512]),
                  data=DataConfig(name="mnist", root=mnist, val_fraction=0.05, limit=10000),
                  optim=OptimConfig(lr=0.05),
                  trainer=TrainerConfig(epochs=2, batch_size=128, progress="off"))
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
    result = {"env": environment(), "members": members, "standalone_s": alone,
              "population_s": pop, "ratio": pop / alone, "finished": done}
    print(f"one standalone run {alone:.2f} s; population of {members} {pop:.2f} s "
          f"({pop / alone:.2f}x one run); {done} finished", flush=True)
    if out:
        Path(out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__" and "--standalone-vs-population" in sys.argv:
    i = sys.argv.index("--standalone-vs-population")
    standalone_vs_population(os.environ.get("LEPTON_MNIST_ROOT", str(REPO.parent / "shared/data/mnist")),
                             int(sys.argv[i + 1]), sys.argv[i + 2] if len(sys.argv) > i + 2 else None)
