"""Sweep reports: results grouped over seeds (mean ± std), the best config, and PNG plots."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import textwrap
from pathlib import Path
from typing import Optional

from lepton_jax.config import flat_dict, maximized, monitored_name
from lepton_jax.errors import UserError, as_path, misspelt
from lepton_jax.writers import (at_chance_reason, diverged_at, metric_value, read_records,
                                short_value)


def load_jobs(sweep_dir: Path):
    """One row per job directory holding run.json (and result.json when it finished)."""
    import pandas as pd

    if not sweep_dir.is_dir():
        what = "is not a directory" if sweep_dir.exists() else "does not exist"
        raise UserError(f"{sweep_dir} {what}; point report at a sweep directory "
                        "(multirun/<date>/<time> or a sweep() workdir)")
    rows, curves = [], {}
    run_files = sorted(sweep_dir.glob("*/run.json"), key=lambda p: (len(p.parent.name),
                                                                   p.parent.name))
    if not run_files and (sweep_dir / "run.json").exists():
        run_files = [sweep_dir / "run.json"]  # one run's directory: a sweep of one job
    for run_file in run_files:
        job = run_file.parent
        run = json.loads(run_file.read_text())
        # A list (model.hidden) as the override writes it, [64,32]: a sweep over widths
        # crashed grouping and plotting, which need values they can hash.
        row = {"job": job.name, **{k: "[" + ",".join(map(str, v)) + "]" if isinstance(v, list)
                                   else v for k, v in flat_dict(run["config"]).items()},
               "task": run.get("data", {}).get("task")}
        result_file = job / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        records = read_records(job)
        row["status"] = result.get("status", "done" if "monitor" in result else
                                   "diverged" if diverged_at(records) else "unfinished")
        row["monitor"] = result.get("monitor")
        row["monitored"] = monitored_name(result, str(row.get("trainer.monitor", "auto")),
                                          row["task"])
        row["best_step"] = result.get("best", {}).get("step")  # trainer.restore_best
        row["at_chance"] = bool(result.get("warnings"))  # `loop.chance_warning`
        for split in ("val", "test"):
            for name, value in result.get(split, {}).items():
                if name != "confusion":
                    row[f"{split}/{name}"] = value
        rows.append(row)
        if (job / "metrics.jsonl").exists():
            curves[job.name] = [r for r in records if "train/loss" in r]
    if not rows:
        # outputs/ or multirun/ itself: its runs lie a level further down, under dates
        below = sorted({p.parent.parent for p in sweep_dir.glob("*/*/run.json")})
        hint = f"; its runs are a level down: point it at one of {', '.join(map(str, below[:3]))}" \
            + (", ..." if len(below) > 3 else "") if below else ""
        raise UserError(f"{sweep_dir} holds no job directories with run.json; point report at "
                        f"a sweep directory (multirun/<date>/<time> or a sweep() workdir){hint}")
    jobs = pd.DataFrame(rows)
    for column in [c for c in jobs.columns if "." in c or c == "seed"]:
        given = [v for v in jobs[column] if v is not None and v == v]
        if given and len(given) < len(jobs):
            # `optim.clip_norm=null,1.0`: null was NaN, which grouping drops and counting
            # skips, so the sweep read as one config. Values as the override writes them.
            jobs[column] = [short_value(v) if v is not None and v == v else "null"
                            for v in jobs[column]]
    return jobs, curves


def report(sweep_dir: str | os.PathLike, metric: Optional[str] = None,
           print_table: bool = True):
    """Summarizes a sweep directory; writes report.csv and PNG plots there.

    Args:
        sweep_dir: a Hydra multirun directory or a `sweep()` workdir; or one run's
            directory, for its final metrics and learning curves (`report_curves.png`).
        metric: the column to rank by (default: the jobs' monitored metric).
        print_table: print a table to the console.

    Returns:
        The grouped table (pandas DataFrame): mean, std and count of `metric` per swept config,
        and for a validation metric its test counterpart's (`test/accuracy mean`, `... std`);
        for one run, its final metrics per split.
    """
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = as_path(sweep_dir, "report's sweep_dir")
    jobs, curves = load_jobs(root)
    if (root / "run.json").exists():
        return _report_run(root, curves.get(root.name, []), print_table, plt, metric)
    metric = metric or "monitor"
    if metric not in jobs or (metric != "monitor" and "/" not in metric):
        known = [c for c in jobs.columns if "/" in c]
        raise UserError(f"metric {metric!r} is not in the results; try one of "
                        f"{', '.join(known)}{misspelt(metric, known)}")
    config_cols = [c for c in jobs.columns if "." in c or c == "seed"]
    swept = [c for c in config_cols
             if jobs[c].astype(str).nunique() > 1 and not c.startswith("data.root")]
    done = jobs[jobs["status"] == "done"]
    if done.empty:
        raise UserError(f"no finished job in {root}; nothing to report")
    resolved = done["monitored"].astype(str).tolist()
    if len(set(resolved)) == 1 and "trainer.monitor" in swept:
        # `auto` in some jobs and `val/accuracy` in others name one metric: not a swept
        # field (it had drawn a plot against the two spellings of the same thing).
        swept.remove("trainer.monitor")
    by = [c for c in swept if c != "seed"]
    if metric == "monitor":
        # A folder of unlike runs (a classifier's accuracy beside a regression's MSE) would
        # rank numbers that mean different things.
        # (pandas drops a group keyed by None: a task run.json does not record is "".)
        tasks = [t if isinstance(t, str) else "" for t in done["task"]]
        kinds = pd.Series(1, index=pd.MultiIndex.from_arrays(
            [tasks, resolved])).groupby(level=[0, 1]).size()
        if len(kinds) > 1:
            said = "; ".join(f"{monitor} of {count} {task + ' ' * bool(task)}run"
                             f"{'s' * (count != 1)}"
                             for (task, monitor), count in kinds.items())
            raise UserError(f"the runs in {root} monitor unlike metrics ({said}); report a "
                            "folder of like runs, or rank them all by one metric with --metric")
    if by:
        keyed = done.assign(**{c: done[c].astype(str) for c in by if done[c].dtype == object})
        table = keyed.groupby(by)[metric].agg(["mean", "std", "count"]).reset_index()
    else:
        table = done[[metric]].agg(["mean", "std", "count"]).T.reset_index(drop=True)
    name = resolved[0] if metric == "monitor" else metric
    label = f"{name} (monitored)" if metric == "monitor" else metric
    # Configs are chosen on validation; the score to quote for the chosen one is its test
    # split's, which the table carries beside the ranked metric.
    held_out = "test/" + name.split("/", 1)[1] if name.startswith("val/") else None
    if held_out in done and done[held_out].notna().all():
        scores = (keyed.groupby(by)[held_out] if by else done[held_out]).agg(["mean", "std"])
        scores = scores.reset_index(drop=True) if by else scores.to_frame().T
        table[f"{held_out} mean"] = scores["mean"].to_numpy()
        table[f"{held_out} std"] = scores["std"].to_numpy()
    else:
        held_out = None
    maximize = maximized(name)
    best, tied = best_config(table, maximize)
    table.to_csv(root / "report.csv", index=False)
    written = [root / "report.csv"]

    unfinished = jobs[jobs["status"] != "done"]
    for field in swept:
        # With other fields swept too, one line per combination of their values: a mean over
        # other configs would read as a spread over seeds.
        others = [c for c in by if c != field]
        fig, ax = plt.subplots(figsize=(8, 3.5) if others else (5, 3.5))
        numeric = jobs[field].map(lambda v: isinstance(v, (int, float))).all()
        # Names (model=mlp,lenet5) and seeds are labels, not a scale: each gets a place on
        # the axis, and the lines of the other fields' combinations sit side by side within
        # it (drawn at one x, lr 0.03's bars and points hid under lr 0.1's).
        labelled = not numeric or field == "seed"
        if labelled:
            values = _in_order(jobs[field])
            place = {str(v): i for i, v in enumerate(values)}
            x = done[field].astype(str).map(place)
        else:
            x = done[field]
        series = (list(done.assign(_x=x).groupby([done[c].astype(str) for c in others],
                                                 sort=True))
                  if others else [((), done.assign(_x=x))])

        # Where each series (by its key: the other fields' values) sits within a label's place.
        shift = [(k - (len(series) - 1) / 2) * 0.6 / len(series) if labelled else 0.0
                 for k in range(len(series))]
        sides = {tuple(key): shift[k] for k, (key, _) in enumerate(series)}
        colors = plt.get_cmap("tab10" if len(series) <= 10 else "viridis")
        for k, (_, runs) in enumerate(series):
            runs = runs.assign(_x=runs["_x"] + shift[k]) if labelled else runs
            named = ", ".join(f"{c}={short_value(runs[c].iloc[0])}" for c in others)
            color = ("black" if not others else
                     colors(k if len(series) <= 10 else k / max(len(series) - 1, 1)))
            ax.scatter(runs["_x"], runs[metric], alpha=0.5, color=None if not others else color,
                       label="runs" if not others else None)
            stats = runs.groupby("_x")[metric].agg(["mean", "std"]).reset_index()
            ax.errorbar(stats["_x"], stats["mean"], yerr=stats["std"].fillna(0.0), color=color,
                        marker="_", markersize=14,
                        # Seeds are labels, not a scale: no line implying a trend across them.
                        linestyle="none" if labelled else "-",
                        capsize=4, label="mean ± std" if not others else named)
        if len(unfinished):  # where runs diverged or failed: crosses on the x axis
            # On a label's place, each on its own config's side, as its finished runs are.
            # (A config none of whose runs finished has no side: the middle.)
            configs = list(zip(*(unfinished[c].astype(str) for c in others), strict=True)) \
                if others else [()] * len(unfinished)
            ax.scatter([place[value] + sides.get(tuple(config), 0.0) for value, config
                        in zip(unfinished[field].astype(str), configs, strict=True)]
                       if labelled else unfinished[field],
                       [0.0] * len(unfinished), transform=ax.get_xaxis_transform(),
                       marker="x", color="tab:red", clip_on=False, zorder=3,
                       label="diverged or unfinished")
        if field in by:  # the config the best line names, where it lies
            at = table.at[best.name, field]
            if labelled:  # on its own line's side of the label's place
                at = place[str(at)] + sides.get(
                    tuple(str(table.at[best.name, c]) for c in others), 0.0)
            ax.plot([at], [best["mean"]], "*", color="gold",
                    markeredgecolor="black", markersize=15, zorder=4, label="best")
        if len(series) <= 10 and others:
            # A line per combination of the other fields: labels too long to sit over the
            # data, so the legend goes beside the axes (the saved area grows to hold it).
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        elif len(series) <= 10:
            ax.legend(fontsize=8)
        # A grid spanning ≥ 8× (lr 0.01…0.08) is usually geometric: read it on a log axis.
        if not labelled and jobs[field].nunique() > 2 and (jobs[field] > 0).all() and \
                jobs[field].max() / jobs[field].min() >= 8:
            log_axis(ax, "x")
        if not labelled and len(unfinished) and jobs[field].nunique() > 1:
            # The crosses do not widen the axis as points do: leave every value a margin.
            lo, hi = jobs[field].min(), jobs[field].max()
            if ax.get_xscale() == "log":
                pad = (hi / lo) ** 0.05
                ax.set_xlim(lo / pad, hi * pad)
            else:
                ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        grid = sorted(jobs[field].unique()) if not labelled else []
        # A typed grid (0.01, 0.02, 3e-4: few short values) is ticked at its values; values
        # a sampler drew (Optuna's 0.0366735...) keep matplotlib's own ticks.
        if labelled:
            ax.set_xticks(range(len(values)), [short_value(v) for v in values])
            ax.set_xlim(-0.5, len(values) - 0.5)
        elif len(grid) <= 12 and all(float(f"{v:.3g}") == v for v in grid):
            _tick_at_values(ax.xaxis, grid)
        ax.set_xlabel(field)
        ax.set_ylabel(label)
        _within_bounds(ax, name)
        per = ("one colour per {}" if field == "seed" else "one line per {}, mean ± std").format(
            ", ".join(others))
        ax.set_title(f"{label} vs {field}" + (f"\n{textwrap.fill(per, 60)}"
                                               if others else ""), fontsize=10 if others else None)
        written.append(_save(fig, root / f"report_{name.replace('/', '_')}_vs_{field}.png",
                             plt, bbox_inches="tight"))
    cells = jobs[by[0]].astype(str).nunique() * jobs[by[1]].astype(str).nunique() \
        if len(by) == 2 else 0
    if cells and len(jobs.groupby([jobs[c].astype(str) for c in by])) > cells / 2:
        # A grid (Optuna's sampled points would leave most cells empty).
        written.append(_plot_grid(root, jobs, table, by, best, name, label, plt))
    written.append(_plot_curves(root, jobs, curves, swept, by, plt, name))

    if print_table:
        # iterrows gives one dtype per row (floats), so the count is printed as an int.
        # Sampled values (Optuna's 0.036673518333094415) shown to 6 digits; one run has no
        # spread ("–", not pandas' nan); the best line keeps the exact value to copy.
        def mean_std(row, prefix: str = "") -> str:
            if row["count"] < 2:
                return metric_value(row[f"{prefix}mean"])
            return f"{metric_value(row[f'{prefix}mean'])} ± {metric_value(row[f'{prefix}std'])}"

        rows = [[*(short_value(r[c]) for c in by), metric_value(r["mean"]),
                 metric_value(r["std"]) if r["count"] > 1 else "–", str(int(r["count"])),
                 *([mean_std(r, f"{held_out} ")] if held_out else [])]
                for _, r in table.iterrows()]
        # From the table, by label: a row as a Series is one dtype, which showed an int
        # field of a mostly numeric table as a float (trainer.batch_size=7.0).
        def config_of(label) -> str:
            return ", ".join(f"{c}={table.at[label, c]}" for c in by)

        described = config_of(best.name) or "the only config"
        spread = (f"± {metric_value(best['std'])} over {int(best['count'])} runs" if best["count"] > 1
                  else "(1 run)")
        if len(tied):
            others = "; ".join(config_of(label) for label in tied.index)
            # Say what decided: single runs (Optuna's points) have no std to compare.
            stds = tied["std"].fillna(float("inf"))
            own = best["std"] if best["std"] == best["std"] else float("inf")
            why = ("the smaller std decided" if (stds > own).all() else
                   "more runs decided" if (tied["count"] < best["count"]).all() else
                   "named the first in the table")
            spread += f" (tied on the mean with {others}; {why})"
        if held_out:
            spread += f"; its {held_out} {mean_std(best, f'{held_out} ')}"
        _print_table(f"{root}: {label}, mean ± std over seeds ({len(done)} of {len(jobs)} "
                     "jobs finished)", [*by, "mean", "std", "count",
                                        *([held_out] if held_out else [])],
                     rows, f"best: {described} — {name} {metric_value(best['mean'])} {spread}\n"
                     + _on_test(name, by) + _unfinished_line(unfinished, by)
                     + _chance_line(done, by) + _wrote(written))
    return table


def _plot_grid(root: Path, jobs, table, by: list, best, name: str, label: str, plt) -> Path:
    """`report_<metric>_grid.png` for a sweep over two fields (besides the seed), such as
    lr x momentum: a cell per config, coloured by its mean over seeds (brighter is better,
    also for a loss), written in it with its std; the best config outlined in gold. A config
    none of whose runs finished is a grey cell saying how its runs ended."""
    import numpy as np
    from matplotlib.colors import Normalize

    (x_values, y_values), (x_field, y_field) = [_in_order(jobs[field]) for field in by], by
    xs, ys = [str(v) for v in x_values], [str(v) for v in y_values]  # as the table's keys
    means = np.full((len(ys), len(xs)), np.nan)
    text = [[""] * len(xs) for _ in ys]
    for config in table.index:  # by label: a row as a Series turns an int field to floats
        row = table.loc[config]
        i = ys.index(str(table.at[config, y_field]))
        j = xs.index(str(table.at[config, x_field]))
        means[i, j] = row["mean"]
        text[i][j] = metric_value(row["mean"]) + (
            f"\n± {metric_value(row['std'])}" if row["count"] > 1 else "")
    for (y, x), runs in jobs[jobs["status"] != "done"].groupby(
            [jobs[y_field].astype(str), jobs[x_field].astype(str)]):
        i, j = ys.index(y), xs.index(x)
        if np.isnan(means[i, j]):  # none of its runs finished: how they ended
            text[i][j] = "\n".join(f"{n} {status}" for status, n
                                   in runs["status"].value_counts().items())
    maximize = maximized(name)
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r").with_extremes(bad="lightgrey")
    finite = means[np.isfinite(means)]
    # Colours span the configs' usual range (Tukey's fences): one collapsed config (0.52
    # among 0.91-0.98) had left every other cell the same yellow. Those beyond keep the end
    # colours, the colour bar's arrows say so, and their numbers are written in them.
    q1, q3 = np.percentile(finite, [25, 75]) if finite.size else (0.0, 1.0)
    lo, hi = (max(finite.min(), q1 - 1.5 * (q3 - q1)), min(finite.max(), q3 + 1.5 * (q3 - q1))
              ) if finite.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    norm = Normalize(lo, hi)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
              (True, True): "both"}[(bool(finite.size and finite.min() < lo),
                                     bool(finite.size and finite.max() > hi))]
    fig, ax = plt.subplots(figsize=(1.1 * len(xs) + 2.6, 0.7 * len(ys) + 1.8))
    # Row 0 at the bottom: the second field's values rise up the axis, as on a plot.
    image = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, norm=norm, aspect="auto",
                      origin="lower")
    if len(xs) * len(ys) <= 150:  # beyond, too small to read: the colours say it
        for i in range(len(ys)):
            for j in range(len(xs)):
                shade = cmap(norm(means[i, j])) if np.isfinite(means[i, j]) else (0.83,) * 3
                dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
                ax.text(j, i, text[i][j], ha="center", va="center",
                        fontsize=8 if len(xs) * len(ys) <= 36 else 6,
                        color="white" if dark else "black")
    i, j = ys.index(str(table.at[best.name, y_field])), xs.index(str(table.at[best.name, x_field]))
    for color, width in (("black", 5), ("gold", 2.5)):  # gold edged in black, as the star
        ax.add_patch(plt.Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor=color,
                                   linewidth=width))
    ax.set_xticks(range(len(xs)), [short_value(v) for v in x_values])
    ax.set_yticks(range(len(ys)), [short_value(v) for v in y_values])
    ax.set_xlabel(x_field)
    ax.set_ylabel(y_field)
    bar = fig.colorbar(image, ax=ax, extend=extend)
    over = ", mean over seeds" if (table["count"] > 1).any() else ""
    bar.set_label(f"{label}{over}" + ("" if maximize else " (lower is better)"), fontsize=8)
    if not maximize:
        bar.ax.invert_yaxis()  # better at the top, as for a score
    ax.set_title(f"{label}: {x_field} × {y_field}", fontsize=10)
    return _save(fig, root / f"report_{name.replace('/', '_')}_grid.png", plt,
                 bbox_inches="tight")


def _in_order(column) -> list:
    """A swept field's distinct values in the order its axis shows them: numbers by size,
    names as they were swept."""
    values = list(dict.fromkeys(column))
    if all(isinstance(v, (int, float)) for v in values):
        values.sort()
    return values


def _within_bounds(ax, metric: str) -> None:
    """Keeps the y axis inside what the metric can be: a std bar of two seeds, one of which
    collapsed (accuracy 0.96 and 0.09), reached 1.11 and stretched the axis past an accuracy
    of 1. Scores lie in [0, 1]; R² is at most 1."""
    kind = metric.rsplit("/", 1)[-1]
    if kind not in ("accuracy", "precision", "recall", "f1", "r2"):
        return
    lo, hi = ax.get_ylim()
    margin = 0.02 * (hi - lo)  # a point at 1.0 still shows whole
    ax.set_ylim(lo if kind == "r2" else max(lo, -margin), min(hi, 1.0 + margin))


def best_config(table, maximize: bool):
    """The row of `table` (mean, std, count per config) with the best mean, and the rows tied
    with it. Means equal to 12 significant digits tie: accuracies are counts over the same
    split, and two configs' means of k/180 differed only in float rounding (1.1e-16), which
    had picked the one with 2.7 times the spread. Among ties the smaller std wins, then the
    one with more runs."""
    key = table["mean"].map(lambda v: float(f"{v:.12g}"))
    ranked = table.assign(_key=-key if maximize else key,
                          _std=table["std"].fillna(float("inf")), _count=-table["count"])
    ranked = ranked.sort_values(["_key", "_std", "_count"], kind="stable")
    top = ranked.iloc[0]
    tied = ranked.iloc[1:][ranked["_key"].iloc[1:] == top["_key"]]
    drop = ["_key", "_std", "_count"]
    return top.drop(drop), tied.drop(columns=drop)


def _named(row, by: list) -> str:
    """A job's config as the lines under the table name it (`optim.lr=0.36`), or `job 3`."""
    return ", ".join(f"{c}={short_value(row[c])}" for c in by) or f"job {row['job']}"


def _on_test(name: str, by: list) -> str:
    """A line when configs were ranked on the test split (runs with data.val_fraction=0
    monitor it, or --metric test/...): the best one's score is then no estimate of how it
    does on new data, which the best line had not said."""
    if not name.startswith("test/") or not by:
        return ""
    return ("note: ranked on the test split, so the best config's test score is biased "
            "upward; choose on a validation split (data.val_fraction > 0) and quote the "
            "test score of the config chosen there\n")


def _unfinished_line(unfinished, by: list) -> str:
    """`not in the table: optim.lr=30 (2 diverged); optim.lr=1 (1 unfinished)` (a newline after),
    or nothing when every job finished."""
    if unfinished.empty:
        return ""
    counts: dict[str, dict[str, int]] = {}
    for _, row in unfinished.iterrows():
        config = _named(row, by)
        statuses = counts.setdefault(config, {})
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return "not in the table: " + "; ".join(
        f"{config} (" + ", ".join(f"{n} {status}" for status, n in statuses.items()) + ")"
        for config, statuses in counts.items()) + "\n"


def _chance_line(done, by: list) -> str:
    """`ended at chance: optim.lr=0.36 (2 of 2 runs); ... — why` (with a newline) for jobs
    whose final model did no better than predicting one class (`loop.chance_warning`), or
    nothing. Their means sit in the table among the others'; this says why they are low."""
    if "at_chance" not in done or not done["at_chance"].any():
        return ""
    parts = []
    for _, runs in done.groupby([done[c].astype(str) for c in by] or
                                     [done["job"].astype(str)], sort=False):
        if runs["at_chance"].any():  # "1 of 1 runs" of a config run once says nothing
            parts.append(_named(runs.iloc[0], by) + (
                f" ({int(runs['at_chance'].sum())} of {len(runs)} runs)" if len(runs) > 1
                else ""))
    return (f"ended at chance: {'; '.join(parts)} — "
            f"{at_chance_reason(int(done['at_chance'].sum()))}\n")


def _tick_at_values(axis, values: list) -> None:
    """A grid's few values as the axis's only ticks, written as in the table (0.01, 0.08, not
    10⁻² with crowded 3×10⁻² minor labels; seeds 0, 1, 2, not 0.5 steps)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    axis.set_ticks(values, [short_value(v) for v in values])
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def epoch_axis(ax, longest: int) -> None:
    """Epochs are counted in whole numbers; a curve of a few evaluations gets its points
    marked, so two evaluations do not read as a straight trend."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = ax.get_xlim()
    if math.floor(hi) - math.ceil(lo) < 1:
        # Too few whole epochs in view for integer ticks: one evaluation at epoch 1 was
        # ticked 0.945, 0.960, ... From 0, where training starts, epochs 0 and 1 show.
        ax.set_xlim(left=min(lo, 0.0))
    if longest <= 20:
        for line in ax.get_lines():
            if line.get_marker() in (None, "None", ""):
                line.set_marker(".")


def log_axis(ax, which: str = "y") -> None:
    """A log axis (y, or x) whose ticks read as plain numbers (0.4, 0.5, 1, 0.01): within a
    decade, where matplotlib labels the ticks between powers of ten, it had written 4×10⁻¹
    or, for a loss from 0.50 to 0.45, 5e-01 on each of six ticks."""
    from matplotlib import ticker

    class Plain(ticker.LogFormatterSciNotation):  # its choice of ticks to label, as numbers
        def __call__(self, x, pos=None):
            if not super().__call__(x, pos):
                return ""
            return re.sub(r"e\+?(-?)0*(?=\d)", r"e\1", f"{x:.3g}")  # 1e+08 as 1e8, 1e-05 as 1e-5

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def error_axis(ax, key: str, values: Optional[list] = None) -> None:
    """A log axis for an error or loss (`val/mse`, `val/loss`) whose plotted values (or
    `values`) span more than a decade: on a linear one a first epoch's 5e8 flattens every
    later one's 1e8."""
    if maximized(key):
        return
    if values is None:
        values = [v for line in ax.get_lines() for v in line.get_ydata()
                  if isinstance(v, (int, float)) and v == v]
    if values and min(values) > 0 and max(values) > 10 * min(values):
        log_axis(ax)


def mark_kept(ax, records: list[dict], key: str, step: Optional[int], color, label: str,
              size: float) -> bool:
    """A star on `ax` at the evaluation of `step` among `records` (metrics.jsonl's): the one
    whose parameters a `trainer.restore_best` run kept. False when no record is of `step`."""
    kept = [r for r in records if r["step"] == step]
    if kept:
        ax.plot([kept[0]["epoch"]], [kept[0].get(key)], "*", color=color,
                markeredgecolor="black", markersize=size, label=label)
    return bool(kept)


def loss_label(task: Optional[str], normalize_target: object = True) -> str:
    """What a run's `train/loss` and `val/loss` measure: a classifier's cross-entropy, a
    regression's MSE, on standardized targets (`data.normalize_target`, the default), where
    val/mse is in the target's own units and differs from the loss by the targets' variance."""
    if task == "classification":
        return "cross-entropy"
    if task == "regression":
        return "MSE on standardized targets" if normalize_target in (True, None) else "MSE"
    return ""


def _loss_axis_label(jobs) -> str:
    """`train/loss (cross-entropy)` when every job's loss is the same kind, else `train/loss`."""
    kinds = {loss_label(task, jobs.get("data.normalize_target", {}).get(i)) for i, task
             in jobs["task"].items()} if "task" in jobs else set()
    return f"train/loss ({kinds.pop()})" if len(kinds) == 1 and "" not in kinds else "train/loss"


_STYLES = ("-", "--", ":", "-.")


def _plot_curves(root: Path, jobs, curves: dict, swept: list, by: list, plt,
                 ranked: str = "") -> Path:
    """report_curves.png: train loss and the validation metric per job over epochs.

    Jobs are coloured by the first swept field other than the seed (numbers in order on a
    sequential colormap, other values in distinct colours), so a config's seeds share a
    colour and the trend reads at a glance, and a second one of up to four values gets a
    line style per value; a diverged job's curve ends in a black cross, and
    a star marks the evaluation whose parameters a `trainer.restore_best` job kept.
    A seeds-only sweep of at most 12 jobs gets one legend entry per job. The validation
    curve is of `ranked`, the metric the table ranks by, when the records hold it."""
    curve_key = next((k for k in (ranked, "val/accuracy", "val/mse", "val/loss") if any(
        k in r for records in curves.values() for r in records)), None)
    keys = ["train/loss", *([curve_key] if curve_key else [])]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys) + 1.5, 3.8), squeeze=False)
    rows = jobs.set_index("job")
    field = by[0] if by else None
    colors = {}  # str(value) -> colour, in the values' order
    if field is not None:
        values = list(rows[field].unique())
        numeric = all(isinstance(v, numbers.Number) and v == v for v in values)
        values.sort(key=lambda v: v if numeric else str(v))
        cmap = plt.get_cmap("viridis" if numeric or len(values) > 10 else "tab10")
        for i, v in enumerate(values):
            # viridis up to 0.9: its last tenth is too pale to read on white.
            colors[str(v)] = cmap(i / max(len(values) - 1, 1) * 0.9) \
                if cmap.name == "viridis" else cmap(i)
    # A second swept field of a few values gets a line style each: coloured by model alone,
    # a model's learning rates were indistinguishable.
    second = by[1] if len(by) > 1 else None
    styles, seconds = {}, []  # str(value) -> line style
    if second is not None and rows[second].nunique() <= len(_STYLES):
        seconds = list(rows[second].unique())
        if all(isinstance(v, numbers.Number) for v in seconds):
            seconds.sort()
        styles = {str(v): style for v, style in zip(seconds, _STYLES, strict=False)}
    else:
        second = None
    for job, records in curves.items():
        if not records or job not in rows.index:
            continue
        row = rows.loc[job]
        if field is not None:
            color, label = colors[str(row[field])], f"{field}={short_value(row[field])}"
        else:
            color = None
            label = f"{job}: " + ", ".join(f"{c.split('.')[-1]}={short_value(row[c])}"
                                           for c in swept)
        epochs = [r["epoch"] for r in records]
        style = styles.get(str(row[second]), "-") if second else "-"
        for ax, key in zip(axes[0], keys, strict=True):
            ax.plot(epochs, [r.get(key) for r in records], color=color, alpha=0.75, label=label,
                    linestyle=style)
            if row["status"] == "diverged":
                ax.plot(epochs[-1:], [records[-1].get(key)], "x", color="black", markersize=8,
                        label="diverged")
            if key != "train/loss":
                mark_kept(ax, records, key, row.get("best_step"), color, "kept (restore_best)",
                          10)
    longest = max((len(r) for r in curves.values()), default=0)
    diverged = set(rows.index[rows["status"] == "diverged"])
    for ax, key in zip(axes[0], keys, strict=True):
        epoch_axis(ax, longest)
        ax.set_ylabel(_loss_axis_label(jobs) if key == "train/loss" else key)
        # The other jobs' values: a diverged job's 1e36 would flatten them all.
        kept = [v for job, records in curves.items() if job not in diverged
                for v in (r.get(key) for r in records)
                if isinstance(v, (int, float)) and math.isfinite(v)]
        if key != "train/loss":
            error_axis(ax, key, kept or None)
        else:
            log_axis(ax)
        if diverged and kept:
            _focus(ax, kept)
    fig.suptitle("learning curves per job" + (f", coloured by {field}" if field else "")
                 + (f", line style by {second}" if second else ""))
    first = {}  # one legend entry per label: a value's seeds share theirs
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            first.setdefault(name, handle)
    if field is not None:  # the values' order, then the styles', then the markers'
        from matplotlib.lines import Line2D

        # Values as the table shows them: Optuna's 0.006921920510935365 as 0.00692192.
        for value in seconds:
            first[f"{second}={short_value(value)}"] = Line2D([], [], color="grey",
                                                            linestyle=styles[str(value)])
        order = [f"{field}={short_value(v)}" for v in values] + \
            [f"{second}={short_value(v)}" for v in seconds] + ["diverged", "kept (restore_best)"]
        first = {name: first[name] for name in order if name in first}
    names, handles = list(first), list(first.values())
    if handles and (field is not None or len(curves) <= 12):
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
                   frameon=False)
    # The legend sits outside the axes: the saved area grows to hold it.
    return _save(fig, root / "report_curves.png", plt, bbox_inches="tight")


def _focus(ax, values: list) -> None:
    """Limits `ax` to `values` (the jobs that did not diverge) with a margin; a diverged
    job's curve leaves through the top or bottom, and its cross stays on the edge."""
    lo, hi = min(values), max(values)
    if ax.get_yscale() == "log" and lo > 0:
        pad = max(hi / lo, 10.0) ** 0.08
        low, high = lo / pad, hi * pad
    else:
        pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 1.0
        low, high = lo - pad, hi + pad
    ax.set_ylim(low, high)
    for line in ax.get_lines():
        if line.get_label() == "diverged":  # its cross, kept in sight at the edge
            line.set_ydata([min(max(y, low), high) if y == y else high
                            for y in line.get_ydata()])
            line.set_clip_on(False)


def _save(fig, path: Path, plt, **savefig) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, **savefig)
    plt.close(fig)
    return path


def _wrote(paths: list[Path]) -> str:
    return f"wrote {', '.join(p.name for p in paths)} in {paths[0].parent}"


def _print_table(header: str, columns: list, rows: list, footer: str = "") -> None:
    """A header line, a rich table (the first column left-aligned when it holds names),
    and an optional footer; plain lines are never hard-wrapped."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(header, soft_wrap=True, markup=False)
    # Rich shortens a header that does not fit to "optim.mome…"; a table too wide for the
    # console breaks its dotted names after the last dot instead ("optim." over "momentum").
    widths = [max(len(col), *(len(row[i]) for row in rows)) for i, col in enumerate(columns)]
    if sum(widths) + 3 * len(columns) + 1 > console.width:
        columns = [re.sub(r"^(.*[./])(?=.)", "\\1\n", col) for col in columns]
    t = Table()
    for col in columns:
        t.add_column(col, justify="left" if col == "split" else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    if footer:
        console.print(footer, soft_wrap=True, markup=False)


def _report_run(root: Path, records: list, print_table: bool, plt,
                metric: Optional[str] = None):
    """One run's directory: final metrics per split (report.csv) and its curves: train loss,
    and `metric` (default: its trainer.monitor when a validation metric, else validation
    accuracy, MSE or loss) per evaluation, with a star at the evaluation whose parameters a
    trainer.restore_best run kept; for a classifier, its confusion matrix (`_plot_confusion`)."""
    import pandas as pd

    result_file = root / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    divergence = diverged_at(read_records(root)) if not result or \
        result.get("status") == "diverged" else None
    if not result and divergence is None:
        raise UserError(f"{root} holds no result.json: the run has not finished (rerun its "
                        "command to resume it)")
    run = json.loads((root / "run.json").read_text())
    monitor = run.get("config", {}).get("trainer", {}).get("monitor", "auto")
    keys = [k for k in (monitor, "val/accuracy", "val/mse", "val/loss")
            if any(k in r for r in records)]
    if metric is not None:
        known = sorted({k for r in records for k in r} - {"step", "epoch", "event", "train/loss"})
        if metric not in known:
            raise UserError(f"metric {metric!r} is not in {root / 'metrics.jsonl'}; try one "
                            f"of {', '.join(known) or '(no validation metrics recorded)'}"
                            f"{misspelt(metric, known)}")
        keys = [metric]
    splits = [s for s in ("val", "test") if s in result]
    # A diverged run (a standalone one writes no result.json; a population member's says
    # "diverged") has no final metrics: its row says where it diverged. It had been told to
    # rerun its command, or shown an empty table of "None steps".
    table = pd.DataFrame([{"split": s, **{k: v for k, v in result[s].items()
                                          if k != "confusion"}} for s in splits]
                         if divergence is None else
                         [{"status": "diverged", "step": divergence[0], "loss": divergence[1]}])
    table.to_csv(root / "report.csv", index=False)

    fig, axes = plt.subplots(1, 1 + bool(keys), figsize=(5 + 4 * bool(keys), 3.5), squeeze=False)
    epochs = [r["epoch"] for r in records]
    axes[0, 0].plot(epochs, [r["train/loss"] for r in records], marker=".")
    log_axis(axes[0, 0])
    kind = loss_label(run.get("data", {}).get("task"),
                      run.get("config", {}).get("data", {}).get("normalize_target"))
    axes[0, 0].set_ylabel(f"train/loss ({kind})" if kind else "train/loss")
    if keys:
        axes[0, 1].plot(epochs, [r.get(keys[0]) for r in records], marker=".", color="C1")
        axes[0, 1].set_ylabel(keys[0])
        error_axis(axes[0, 1], keys[0])
        kept = result.get("best", {}).get("step")
        if mark_kept(axes[0, 1], records, keys[0], kept, "C1", f"kept (step {kept})", 12):
            axes[0, 1].legend(fontsize=8)
    if divergence is not None and records:  # its curves end in a cross, as in a sweep's
        for ax, key in zip(axes[0], ["train/loss", *keys[:1]], strict=True):
            ax.plot(epochs[-1:], [records[-1].get(key)], "x", color="black", markersize=8)
    for ax in axes[0]:
        epoch_axis(ax, len(records))
    fig.suptitle(root.name)
    written = [root / "report.csv", _save(fig, root / "report_curves.png", plt)]
    split = next((s for s in ("test", "val") if "confusion" in result.get(s, {})), None)
    if split is not None:
        written.append(_plot_confusion(root, result[split], split,
                                       run.get("data", {}).get("class_values") or [], plt))
    note = ""
    if run.get("data", {}).get("task") == "regression" and divergence is None and splits:
        plotted, note = _plot_predictions(root, run, splits[-1], plt)
        written += [plotted] if plotted else []

    if print_table and divergence is not None:
        step, loss = divergence
        print(f"{root}: diverged at step {step} (loss={loss}), after "
              f"{len(records)} evaluation{'s' * (len(records) != 1)}; no final "
              f"metrics\n{_wrote(written)}")
    elif print_table:
        rows = [[metric_value(v) if isinstance(v, float) else str(v) for v in r]
                for _, r in table.iterrows()]
        _print_table(f"{root}: one run, {result.get('steps')} steps, {result.get('epochs')} "
                     "epochs", [c if c != "loss" or not kind.endswith("targets") else
                                "loss (standardized)" for c in table.columns], rows,
                     note + _wrote(written))
    return table


def _plot_predictions(root: Path, run: dict, split: str, plt) -> tuple[Optional[Path], str]:
    """report_predictions.png: a regression run's predictions on `split` against the true
    targets, one panel per target (up to four), the diagonal where they would be equal: the
    regression's counterpart of a classifier's confusion matrix. The model is the run dir's
    (`Model.load`) and the split is cut again from the run's data config; data that cannot be
    read here (moved, or arrays from a notebook) leaves the plot out, with a line saying why.

    Returns:
        The PNG's path (or None), and the line saying why it is missing ("" when drawn).
    """
    import numpy as np

    from lepton_jax.api import Dataset, Model
    from lepton_jax.config import DataConfig
    from lepton_jax.metrics import regression_metrics

    data = dict(run.get("config", {}).get("data", {}))
    if data.get("name") not in ("csv", "digits", "mnist"):
        return None, "no predictions plot: the run's data came from arrays, not a file\n"
    folder = data.get("root")
    if folder and not Path(folder).is_absolute() and not Path(folder).exists():
        launched = _launch_dir(root)  # Hydra's record of where the command ran
        if launched is not None and (launched / folder).exists():
            data["root"] = str(launched / folder)
    try:
        raw = Dataset._load(DataConfig(**data)).splits(normalized=False)
        model = Model.load(root)
    except (UserError, TypeError) as e:
        return None, f"no predictions plot: the run's data or model cannot be read here ({e})\n"
    x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
    predicted = model.predict(x).reshape(len(y), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    shown = min(y.shape[1], 4)
    column = _target_column(data) if y.shape[1] == 1 else None
    fig, axes = plt.subplots(1, shown, figsize=(4.2 * shown, 4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        true, guess = y[:, i], predicted[:, i]
        ax.scatter(true, guess, s=8, alpha=0.5)
        lo, hi = min(true.min(), guess.min()), max(true.max(), guess.max())
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, label="predicted = true")
        r2 = regression_metrics(true, guess)["r2"]
        name = f"target {i}" if y.shape[1] > 1 else column
        ax.set_title(f"{name}: R² {r2:.4f}" if name else f"R² {r2:.4f}", fontsize=10)
        ax.set_xlabel(f"true {column + ' ' if column else ''}({split})")
        ax.set_ylabel(f"predicted {column}" if column else "predicted")
        ax.legend(fontsize=8)
    fig.suptitle(f"{root.name}: {split} predictions against the true targets")
    return _save(fig, root / "report_predictions.png", plt, bbox_inches="tight"), ""


def _target_column(data: dict) -> Optional[str]:
    """A CSV run's target column: `data.target`, or the file's last column."""
    if data.get("name") != "csv":
        return None
    if data.get("target"):
        return str(data["target"])
    import pandas as pd

    try:
        return str(pd.read_csv(data["root"], nrows=0).columns[-1])
    except (OSError, ValueError, IndexError):
        return None


def _launch_dir(run_dir: Path) -> Optional[Path]:
    try:
        from omegaconf import OmegaConf

        return Path(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.cwd)
    except Exception:  # noqa: BLE001 - not a Hydra run (a notebook's), or no record
        return None


def _plot_confusion(root: Path, metrics: dict, split: str, class_values: list, plt) -> Path:
    """`report_confusion.png`: a classification run's confusion matrix on `split` (rows: true
    class, columns: predicted), each cell shaded by its share of the true class's examples
    (the diagonal is each class's recall) and labelled with its count."""
    import numpy as np

    counts = np.asarray(metrics["confusion"])
    k = len(counts)
    names = [short_value(v) for v in class_values] if len(class_values) == k else list(range(k))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(3.5, 0.45 * k + 1.5), 12)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 20:  # counts stay legible
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8 if k > 10 else 9,
                        color="white" if shares[i, j] > 0.5 else "black")
    ticks = range(k) if k <= 30 else range(0, k, max(k // 15, 1))
    ax.set_xticks(list(ticks), [str(names[t]) for t in ticks])
    ax.set_yticks(list(ticks), [str(names[t]) for t in ticks])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = metrics.get("accuracy")
    ax.set_title(f"{split} confusion, {int(counts.sum()):,} examples"
                 + (f", accuracy {accuracy:.4f}" if accuracy is not None else ""), fontsize=10)
    return _save(fig, root / "report_confusion.png", plt)
