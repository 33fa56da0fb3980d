"""Whole-sweep wall time: the multirun vectorized through the pool launcher vs the same
multirun through Hydra's basic launcher (one job after another), each command alternating.

    python scripts/bench_population.py [--points 4x4] [--repeats 2] [--model mlp|lenet5]

Sweep: MLP 784-512-512-10 (or LeNet-5), first 10,000 MNIST training images, 2 epochs,
batch 128, 4 learning rates x 4 seeds. Prints a table and writes JSON (machine, jax version, commit).

    python scripts/bench_population.py --standalone-vs-population N [--tiny] [--commands] [--out OUT.json]

One standalone run vs an N-point sweep of it (issue 5's GPU target): in one process (`fit` vs
`fit_population`), or with `--commands` as the commands a user types (one `python -m
lepton_jax.train` vs the N-point multirun vectorized through the pool launcher, each run once
untimed to fill the compile cache, then alternating). `--tiny` swaps in a 16-unit MLP on
digits, to see the per-member overheads on a CPU.
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


def overrides(mnist: str, epochs: int = 2, model: str = "mlp", tiny: bool = False) -> list[str]:
    """The benchmarked job: MLP 784-512-512-10 (or `model`) on the first 10,000 MNIST training
    images, batch 128; `tiny`: a 16-unit MLP on digits instead."""
    if tiny:
        job = ["model.hidden=[16]", "data.name=digits"]
    else:
        net = ["model.hidden=[512,512]"] if model == "mlp" else [f"model={model}"]
        job = [*net, "data.name=mnist", f"data.root={mnist}", "data.val_fraction=0.05",
               "data.limit=10000"]
    return [*job, f"trainer.epochs={epochs}", "trainer.batch_size=128", "trainer.progress=off",
            "logger.name=console"]


def round_line(r: int, name: str, seconds: float, split: list[dict], digits: int = 1) -> str:
    return f"round {r} {name}: {seconds:.{digits}f} s" + "".join(
        f"; population of {t['population']}: {t['timing']}" for t in split)


def commands(mnist: str, lrs: list[float], seeds: list[int], workdir: Path, epochs: int,
             model: str = "mlp") -> dict[str, tuple[list[str], Path]]:
    """Each compared multirun: its command and its sweep dir."""
    common = overrides(mnist, epochs, model)
    sweep = [f"optim.lr={','.join(map(str, lrs))}", f"seed={','.join(map(str, seeds))}"]

    def multirun(name, *extra):
        return ([sys.executable, "-m", "lepton_jax.train", "-m", *common, *sweep, *extra,
                 f"hydra.sweep.dir={workdir / name}"], workdir / name)

    return {
        # Hydra's default: one job after another in the launcher's process.
        "hydra_basic": multirun("basic"),
        # The pool launcher, vectorized: one population per slot (2 slots of 1 core here).
        "pool_vectorized": multirun("pool", "hydra/launcher=pool", "hydra.launcher.vectorize=true"),
        # One population on one slot owning both cores.
        "pool_vectorized_1slot": multirun("pool1", "hydra/launcher=pool",
                                          "hydra.launcher.vectorize=true", "hydra.launcher.slots=1"),
    }


def population_timings(sweep_dir: Path) -> list[dict]:
    """Each population's wall-time split (setup, training, evaluation, checkpoints), read from
    its members' result.json (members of one population share it); [] for plain jobs."""
    seen = []
    for result in sorted(sweep_dir.glob("*/result.json")):
        r = json.loads(result.read_text())
        split = {"population": r.get("population"), "timing": r.get("timing")}
        if r.get("strategy") == "population" and split not in seen:
            seen.append(split)
    return seen


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
    p.add_argument("--standalone-vs-population", type=int, default=0, metavar="N",
                   help="one standalone run vs an N-point population of it (a multiple of 4)")
    p.add_argument("--tiny", action="store_true", help="with --standalone-vs-population: a "
                   "16-unit MLP on digits, whose arithmetic is negligible")
    p.add_argument("--commands", action="store_true", help="with --standalone-vs-population: "
                   "time the whole commands instead of fit calls in one process")
    args = p.parse_args()
    if args.standalone_vs_population:
        if args.standalone_vs_population % 4:
            p.error("--standalone-vs-population takes a multiple of 4 (lrs x 4 seeds)")
        if args.commands:
            standalone_vs_sweep_commands(args.mnist, args.standalone_vs_population, args.out,
                                         args.tiny, args.repeats)
        else:
            standalone_vs_population(args.mnist, args.standalone_vs_population, args.out,
                                     args.tiny)
        return
    n_lr, n_seed = map(int, args.points.split("x"))
    lrs = [round(0.01 * 2 ** i, 4) for i in range(n_lr)]
    seeds = list(range(n_seed))
    walls: dict[str, list[float]] = {}
    timings: dict[str, list] = {}  # per vectorized command and round: each population's split
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for name, (cmd, sweep) in commands(args.mnist, lrs, seeds, Path(tmp) / str(r),
                                               args.epochs, args.model).items():
                t0 = time.perf_counter()
                out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                walls.setdefault(name, []).append(time.perf_counter() - t0)
                if out.returncode:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                split = population_timings(sweep)
                if split:
                    timings.setdefault(name, []).append(split)
                print(round_line(r, name, walls[name][-1], split), flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    speedup = {k: med["hydra_basic"] / v for k, v in med.items() if k != "hydra_basic"}
    result = {"env": environment(), "model": args.model, "points": n_lr * n_seed, "lrs": lrs, "seeds": seeds,
              "wall_s": walls, "median_s": med, "speedup_vs_basic": speedup,
              "population_timing": timings}
    print(f"{args.model}, {n_lr * n_seed} points, whole multirun command (median of {args.repeats}):")
    for name, seconds in med.items():
        ratio = ("baseline" if name not in speedup else f"{speedup[name]:.2f}x faster"
                 if speedup[name] >= 1 else f"{1 / speedup[name]:.2f}x slower")
        print(f"  {name:<22} {seconds:6.1f} s  {ratio}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


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


def standalone_vs_sweep_commands(mnist: str, members: int, out: str | None, tiny: bool,
                                 repeats: int) -> None:
    """The same comparison as whole commands: `python -m lepton_jax.train` for one point vs
    the `members`-point multirun, vectorized through the pool launcher (one population per
    slot; one slot per GPU). Each command runs once untimed first (compile cache), then
    `repeats` times alternating; medians."""
    from scripts.bench import environment

    common = overrides(mnist, tiny=tiny)
    lrs = [round(0.005 * (i + 1), 4) for i in range(members // 4)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    walls: dict[str, list[float]] = {"standalone": [], "sweep": []}
    timings: list = []  # per sweep round: each population's split
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):
            cmds = {
                "standalone": [sys.executable, "-m", "lepton_jax.train", *common,
                               f"optim.lr={lrs[0]}", "seed=0", f"hydra.run.dir={tmp}/alone{r}"],
                "sweep": [sys.executable, "-m", "lepton_jax.train", "-m", *common,
                          f"optim.lr={','.join(map(str, lrs))}", "seed=0,1,2,3",
                          "hydra/launcher=pool", "hydra.launcher.vectorize=true",
                          f"hydra.sweep.dir={tmp}/sweep{r}"],
            }
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
                if r:  # round 0 fills the compile cache
                    walls[name].append(time.perf_counter() - t0)
                    split = population_timings(Path(tmp) / f"sweep{r}") if name == "sweep" else []
                    if split:
                        timings.append(split)
                    print(round_line(r, name, walls[name][-1], split, digits=2), flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    ratio = med["sweep"] / med["standalone"]
    print(f"whole commands (median of {repeats}): one standalone run {med['standalone']:.2f} s; "
          f"{members}-point vectorized sweep {med['sweep']:.2f} s ({ratio:.2f}x one run)")
    if out:
        Path(out).write_text(json.dumps(
            {"env": environment(), "members": members, "tiny": tiny, "wall_s": walls,
             "median_s": med, "ratio": ratio, "population_timing": timings}, indent=2))


if __name__ == "__main__":
    main()
