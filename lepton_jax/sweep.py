"""`sweep(config, grid)`: train every point of a grid from Python and return a DataFrame."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lepton_jax.config import Config
from lepton_jax.errors import UserError


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict]:
    """The Cartesian product of `{"optim.lr": [...], "seed": [...]}` as a list of dicts."""
    keys = list(grid)
    for key in keys:
        if isinstance(grid[key], (str, bytes)) or not hasattr(grid[key], "__iter__"):
            raise UserError(f"sweep grid value for {key!r} must be a list of values")
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def with_overrides(config: Config, point: Mapping[str, Any]) -> Config:
    """A copy of `config` with dotted keys set, type-checked against the schema."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(config),
                                 OmegaConf.from_dotlist([f"{k}={v}" for k, v in point.items()]))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise UserError(f"bad sweep value in {dict(point)}: {str(e).splitlines()[0]}") from None


def sweep(config: Config, grid: Mapping[str, Sequence[Any]],
          workdir: Optional[str | os.PathLike] = None, vectorize: bool = False):
    """Trains every grid point, one job directory each (`workdir/<job number>`).

    Args:
        config: the base configuration.
        grid: dotted config keys -> lists of values, e.g. {"optim.lr": [0.01, 0.1]}.
        workdir: the sweep directory (default ./lepton_sweeps/<time>).
        vectorize: reserved for population training; not available yet.

    Returns:
        A pandas DataFrame: one row per job with its overrides, status, monitored metric,
        val/test metrics, duration and job directory.
    """
    import pandas as pd

    from lepton_jax.loop import fit

    if vectorize:
        raise UserError("vectorize=True (population training) is not available yet; "
                        "use vectorize=False")
    points = grid_points(grid)
    root = Path(workdir) if workdir else Path("lepton_sweeps") / time.strftime("%Y%m%d-%H%M%S")
    configs = [with_overrides(config, p) for p in points]  # every value checked before work
    rows = []
    for job, (point, job_config) in enumerate(zip(points, configs, strict=True)):
        started = time.perf_counter()
        row = {"job": job, **point}
        try:
            result = fit(job_config, root / str(job))
            row.update(status="done", monitor=result["monitor"])
            for split in ("val", "test"):
                for name, value in result.get(split, {}).items():
                    if name != "confusion":
                        row[f"{split}/{name}"] = value
        except UserError as e:
            row.update(status="failed", error=str(e))
        row.update(seconds=round(time.perf_counter() - started, 3), run_dir=str(root / str(job)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("job")
