"""`sweep(config, grid)`: train every point of a grid from Python and return a DataFrame."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lepton_jax.config import Config, check_types, native, native_value, require_config
from lepton_jax.errors import UserError, as_path, misspelt, repeated


_handed_out: set[Path] = set()  # default directories given to this process's trainers and sweeps


def fresh_dir(parent: str) -> Path:
    """`parent/<date>-<time>`, with `-2`, `-3`, ... when that folder exists or this process
    gave it out already: two Trainers made in the same second (one per lr in a notebook
    cell) shared a folder, and the second resumed the first's run, or was refused."""
    stamp = Path(parent) / time.strftime("%Y%m%d-%H%M%S")
    path, n = stamp, 1
    while path in _handed_out or path.exists():
        n += 1
        path = stamp.with_name(f"{stamp.name}-{n}")
    _handed_out.add(path)
    return path


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict]:
    """The Cartesian product of `{"optim.lr": [...], "seed": [...]}` as a list of dicts."""
    keys = list(grid)
    for key in keys:
        if isinstance(grid[key], (str, bytes)) or not hasattr(grid[key], "__iter__"):
            raise UserError(f"sweep grid value for {key!r} must be a list of values")
    columns = [[native_value(v) for v in grid[key]] for key in keys]  # np.linspace grids too
    for key, column in zip(keys, columns, strict=True):
        if not column:
            raise UserError(f"sweep grid value for {key!r} is empty; give at least one value")
        twice = repeated(f"sweep grid {{{key!r}: {column}}}", column)
        if twice:
            print(twice, file=sys.stderr)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*columns)]


def check_key(config: Config, key: str, source: str = "sweep grid") -> None:
    """Refuses a dotted key that names no config field, listing the fields where it went
    astray (`optim.lrr` -> optim has: lr, momentum, ...)."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) \
            else []
        if part not in names:
            where = ".".join(parts[:i])
            fields = f"{where} has: {', '.join(names)}" if names else \
                f"{where} is a value, not a group of fields"
            raise UserError(f"{source} key {key!r} is not a config field; "
                            f"{fields if where else 'the config has: ' + ', '.join(names)}"
                            f"{misspelt(part, names)}")
        node = getattr(node, part)
    if dataclasses.is_dataclass(node):  # `model`: a group, which a value would replace whole
        names = [f.name for f in dataclasses.fields(node)]
        example = "name" if "name" in names else names[0]
        raise UserError(f"{source} key {key!r} is a group of fields ({', '.join(names)}); set "
                        f"one of them, such as {key}.{example}")


def with_overrides(config: Config, point: Mapping[str, Any], source: str = "sweep grid") -> Config:
    """A copy of `config` with dotted keys set, type-checked against the schema.

    String values are taken as written when the field is a string (so `trainer.progress=off`
    stays "off", not YAML's boolean), else parsed as YAML (`model.hidden=[512,512]`).
    `source` names where the values came from in error messages.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config = native(config)
    check_types(config)
    for key in point:
        check_key(config, key, source)
    cfg = OmegaConf.structured(config)
    for key, value in point.items():
        value = native_value(value)
        try:
            try:
                OmegaConf.update(cfg, key, value, merge=False)
            except OmegaConfBaseException:
                if not isinstance(value, str):
                    raise
                OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
        except OmegaConfBaseException as e:
            raise UserError(f"{source} value {key}={value!r} does not fit the config: "
                            f"{str(e).splitlines()[0]}") from None
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise UserError(f"{source} values {dict(point)} do not fit the config: "
                        f"{str(e).splitlines()[0]}") from None


def sweep(config: Config, grid: Mapping[str, Sequence[Any]],
          workdir: Optional[str | os.PathLike] = None, vectorize: bool = False,
          max_population: int = 0, launcher: Optional[str] = None,
          launcher_options: Optional[Mapping[str, Any]] = None):
    """Trains every grid point, one job directory each (`workdir/<job number>`).

    Args:
        config: the base configuration.
        grid: dotted config keys -> lists of values, e.g. {"optim.lr": [0.01, 0.1]}.
        workdir: the sweep directory (default ./lepton_sweeps/<time>).
        vectorize: train points that differ only in vectorizable fields (lr, momentum,
            weight decay, warm-up, seed) together as one vmapped population per structural group.
        max_population: split larger populations (0: no limit).
        launcher: None trains here, in this process, one point (or population) after
            another; "pool" runs the same Hydra multirun as the command line with
            `hydra/launcher=pool` (parallel slots, retries, resume; summary.csv).
        launcher_options: `hydra.launcher.*` settings for "pool", e.g. {"slots": 2,
            "timeout": 600, "backend": "ray"}.

    Returns:
        A pandas DataFrame: one row per job with its overrides, status, monitored metric,
        val/test metrics, duration and job directory.
    """
    import pandas as pd

    from lepton_jax.loop import fit

    require_config(config, "sweep")
    if not isinstance(grid, Mapping):
        raise UserError(f"sweep's grid is a {type(grid).__name__}; pass a dict of dotted keys "
                        "to lists of values, e.g. {\"optim.lr\": [0.01, 0.1]}")
    if isinstance(max_population, bool) or not isinstance(max_population, int) \
            or max_population < 0:  # -1 had failed after training, with a KeyError
        raise UserError(f"sweep(max_population={max_population!r}): use 0 (no limit) or a "
                        "positive number of members")
    points = grid_points(grid)
    root = as_path(workdir, "sweep's workdir") if workdir else fresh_dir("lepton_sweeps")
    configs = [with_overrides(config, p) for p in points]  # every key and type checked first
    if launcher is not None:
        from lepton_jax.launch import launch_pool

        if launcher != "pool":
            raise UserError(f"sweep(launcher={launcher!r}): use None (in this process) or 'pool'")
        return launch_pool(config, grid, root, vectorize, max_population,
                           dict(launcher_options or {}))
    rows: dict[int, dict] = {}
    if vectorize:
        from lepton_jax.population import fit_population, group_population

        for group in group_population(configs, max_population):
            started = time.perf_counter()
            try:
                results = fit_population([configs[j] for j in group],
                                         [root / str(j) for j in group])
            except UserError as e:
                results = [{"status": "failed", "error": str(e)}] * len(group)
            seconds = round(time.perf_counter() - started, 3)
            for j, result in zip(group, results, strict=True):
                rows[j] = job_row(j, points[j], result, seconds, root, population=len(group))
    else:
        for job, job_config in enumerate(configs):
            started = time.perf_counter()
            try:
                result = {"status": "done", **fit(job_config, root / str(job))}
            except UserError as e:
                result = {"status": "failed", "error": str(e)}
            rows[job] = job_row(job, points[job], result, round(time.perf_counter() - started, 3),
                             root)
    return pd.DataFrame([rows[j] for j in sorted(rows)]).set_index("job")


def job_row(job: int, point: Mapping[str, Any], result: dict, seconds: float, root: Path,
         population: int = 1) -> dict:
    row = {"job": job, **point, "status": result["status"]}
    if "monitor" in result:
        row["monitor"] = result["monitor"]
    if "best" in result:  # trainer.restore_best: the step whose parameters the metrics are of
        row["best_step"] = result["best"]["step"]
    for split in ("val", "test"):
        for name, value in result.get(split, {}).items():
            if name != "confusion":
                row[f"{split}/{name}"] = value
    if "error" in result:
        row["error"] = str(result["error"])
    row.update(seconds=seconds, population=population, run_dir=str(root / str(job)))
    return row
