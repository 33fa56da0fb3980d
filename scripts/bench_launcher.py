"""Per-job overhead of the pool launcher vs Hydra's basic and joblib launchers.

    python scripts/bench_launcher.py [--jobs 64] [--rounds 3] [--out FILE]

Each launcher runs the same multirun of a trivial Hydra app (returns a number, no JAX) as
its own command, alternating launchers round by round. Per-job overhead is the marginal
wall time of one more job: (T(jobs) - T(1 job)) / (jobs - 1), median over rounds, so
interpreter start and plugin discovery count once. Prints a table, writes JSON with machine
and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = '''
import hydra

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    return cfg.x * 2

if __name__ == "__main__":
    main()
'''
LAUNCHERS = {"pool": ["hydra/launcher=pool"], "basic": ["hydra/launcher=basic"],
             "joblib": ["hydra/launcher=joblib"]}


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                       text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("LEPTON_COMMIT", "unknown")


def sweep_seconds(app: Path, launcher: list[str], jobs: int, sweep_dir: Path) -> float:
    cmd = [sys.executable, str(app), "-m", *launcher, f"+x=range(0,{jobs})",
           f"hydra.sweep.dir={sweep_dir}", "hydra/job_logging=disabled"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=app.parent, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--launchers", default="pool,basic,joblib")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    names = args.launchers.split(",")
    walls = {n: {"one": [], "all": []} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(APP)
        for r in range(args.rounds):
            for name in names:
                for key, jobs in (("one", 1), ("all", args.jobs)):
                    walls[name][key].append(
                        sweep_seconds(app, LAUNCHERS[name], jobs, Path(tmp) / f"{name}{r}{key}"))
                print(f"round {r} {name}: 1 job {walls[name]['one'][-1]:.2f} s, {args.jobs} jobs "
                      f"{walls[name]['all'][-1]:.2f} s", flush=True)
    rows = {}
    for name in names:
        one, total = statistics.median(walls[name]["one"]), statistics.median(walls[name]["all"])
        rows[name] = {"wall_1_s": one, f"wall_{args.jobs}_s": total,
                      "per_job_ms": 1000 * (total - one) / (args.jobs - 1)}
    print(f"\n{'launcher':<8} {'1 job s':>8} {str(args.jobs) + ' jobs s':>9} {'per job ms':>11}")
    for name, row in rows.items():
        print(f"{name:<8} {row['wall_1_s']:>8.2f} {row[f'wall_{args.jobs}_s']:>9.2f} "
              f"{row['per_job_ms']:>11.1f}")
    result = {"env": {"machine": platform.node(), "cpu_count": os.cpu_count(),
                      "python": platform.python_version(), "commit": _commit(),
                      "date": time.strftime("%Y-%m-%d %H:%M:%S")},
              "jobs": args.jobs, "rounds": args.rounds, "wall_s": walls, "median": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
