"""`sweep(..., launcher="pool")`: the command line's Hydra multirun, started from Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from lepton_jax.config import Config
from lepton_jax.errors import UserError
from lepton_jax.sweep import job_row


def _value(value: Any) -> str:
    """A value in Hydra's override grammar (strings quoted, lists and numbers as JSON)."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def launch_pool(config: Config, grid: Mapping[str, Sequence[Any]], root: Path, vectorize: bool,
                max_population: int, options: dict) -> Any:
    """Runs `python -m lepton_jax.train -m` with the pool launcher over `grid`, `config` as
    the primary config; returns one DataFrame row per job (summary.csv and result.json)."""
    import pandas as pd
    from omegaconf import OmegaConf

    from hydra_plugins.lepton_pool.config import PoolLauncherConf

    from lepton_jax.errors import misspelt

    known = [f for f in PoolLauncherConf.__dataclass_fields__ if not f.startswith("_")]
    for key in options:  # before any file is written (Hydra's refusal came after)
        if key not in known:
            raise UserError(f"launcher_options key {key!r} is not a pool launcher option"
                            f"{misspelt(key, known)}; options: {', '.join(known)}")
    root = root.absolute()
    if (root / "summary.csv").exists() and not options.get("resume"):
        raise UserError(f"{root} already holds a sweep; pass launcher_options={{'resume': True}} "
                        "to finish it, or choose another workdir")
    root.mkdir(parents=True, exist_ok=True)
    # The base config as a primary config file: the typed schema first, then its values.
    (root / "sweep_base.yaml").write_text("defaults:\n  - base_config\n  - _self_\n\n"
                                          + OmegaConf.to_yaml(OmegaConf.structured(config)))
    options = {"vectorize": vectorize, "max_population": max_population, **options}
    cmd = [sys.executable, "-m", "lepton_jax.train", "-m", "-cp", str(root), "-cn", "sweep_base",
           *[f"{key}={','.join(_value(v) for v in values)}" for key, values in grid.items()],
           "hydra/launcher=pool", f"hydra.sweep.dir={root}", "hydra.sweep.subdir=${hydra.job.num}",
           *[f"hydra.launcher.{k}={_value(v) if not isinstance(v, bool) else str(v).lower()}"
             for k, v in options.items()]]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines = []
        for line in proc.stdout:  # live in a notebook cell
            print(line, end="", flush=True)
            lines.append(line)
    if not (root / "summary.csv").exists():
        raise UserError(f"the sweep did not start (exit {proc.returncode}): "
                        + "".join(lines[-5:]).strip())
    table = pd.read_csv(root / "summary.csv")
    rows = []
    for record in table.to_dict("records"):
        job_dir = root / str(record["job"])  # hydra.sweep.subdir is the job number
        run = _read(job_dir / "run.json")
        point, source = {}, run.get("config", {})
        for key in grid:
            section, _, field = key.partition(".")
            point[key] = source.get(section, {}).get(field) if field else source.get(section)
        result = _read(job_dir / "result.json")
        status = {"COMPLETED": "done"}.get(record["status"], result.get("status", "failed"))
        row = job_row(int(record["job"]), point, {**result, "status": status},
                      record["duration_s"], root, run.get("population", 1))
        row.update(node=record["node"], attempts=record["attempts"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("job")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
