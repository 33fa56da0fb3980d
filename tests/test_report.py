"""`lepton-jax report` on sweep directories written by hand (no training)."""

import itertools
import json
import re
import shutil

import numpy as np
import pytest

from lepton_jax.errors import UserError
from lepton_jax.report import report


def _job(root, name, lr, seed, monitor, value, config=None, run=None, result=None):
    """A finished job's files; `config`: more config fields by dotted name
    (`{"trainer.batch_size": 7}`), `run` and `result`: more keys of run.json and result.json."""
    job = root / name
    job.mkdir(parents=True)
    fields = {"optim": {"lr": lr}, "seed": seed, "trainer": {"monitor": monitor}}
    for key, field_value in (config or {}).items():
        *parents, last = key.split(".")
        node = fields
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = field_value
    (job / "run.json").write_text(json.dumps({"config": fields, **(run or {})}))
    split, metric = monitor.split("/")
    (job / "result.json").write_text(json.dumps({"monitor": value, split: {metric: value},
                                                 **(result or {})}))
    (job / "metrics.jsonl").write_text(json.dumps({"step": 1, "epoch": 1, "train/loss": 1.0,
                                                   monitor: value}) + "\n")


@pytest.mark.parametrize("monitor,best_lr", [("val/loss", 0.1), ("val/f1", 0.01)])
def test_best_config_follows_the_monitored_metric_direction(tmp_path, capsys, monitor, best_lr,
                                                           figures):
    """A loss is minimized, a score maximized; the table names the monitored metric, and the
    plot against lr stars the best config's mean."""
    values = {0.01: [0.9, 0.8], 0.1: [0.2, 0.3]}
    n = 0
    for lr, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            _job(tmp_path, str(n), lr, seed, monitor, value)
            n += 1
    table = report(tmp_path)
    out = capsys.readouterr().out
    assert f"{monitor} (monitored), mean ± std over seeds (4 of 4 jobs finished)" in out
    assert f"best: optim.lr={best_lr} — {monitor} " in out
    # The plots are named after the metric they show, not "monitor".
    plot = f"report_{monitor.replace('/', '_')}_vs_optim.lr.png"
    assert (f"wrote report.csv, {plot}, report_{monitor.replace('/', '_')}_vs_seed.png, "
            f"report_curves.png in {tmp_path}") in out
    assert table.set_index("optim.lr")["mean"].to_dict() == pytest.approx({0.01: 0.85, 0.1: 0.25})
    stars = [line for line in figures[0].axes[0].get_lines() if line.get_marker() == "*"]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [
        ([best_lr], [pytest.approx({0.01: 0.85, 0.1: 0.25}[best_lr])])]
    assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"


def test_the_chosen_configs_test_score_is_beside_its_validation_score(tmp_path, capsys):
    """Configs are ranked on validation; the number a researcher quotes is the chosen config's
    test score, which the report had left out (report.csv held only the ranked metric). It is
    now a column of the table and report.csv, and the best line gives the best config's."""
    val = {0.01: [0.90, 0.92], 0.1: [0.95, 0.97]}
    test = {0.01: [0.91, 0.89], 0.1: [0.93, 0.96]}
    n = 0
    for lr in val:
        for seed in range(2):
            _job(tmp_path, str(n), lr, seed, "val/accuracy", val[lr][seed],
                 result={"test": {"accuracy": test[lr][seed]}})
            n += 1
    table = report(tmp_path).set_index("optim.lr")
    out = capsys.readouterr().out
    assert table["test/accuracy mean"].to_dict() == pytest.approx({0.01: 0.90, 0.1: 0.945})
    assert table.at[0.1, "test/accuracy std"] == pytest.approx(np.std([0.93, 0.96], ddof=1))
    # Its column is named by the metric alone, its cells "mean ± std": the table fits 80
    # columns (a terminal's, or rich's width when piped) without folding the header.
    assert " test/accuracy ┃\n" in out and "0.9000 ± 0.0141" in out, out
    assert max(len(line) for line in out.splitlines() if line[:1] in "┏┃┡│└") <= 80, out
    assert ("best: optim.lr=0.1 — val/accuracy 0.9600 ± 0.0141 over 2 runs; its test/accuracy "
            "0.9450 ± 0.0212") in out, out
    csv = (tmp_path / "report.csv").read_text().splitlines()[0]
    assert csv == "optim.lr,mean,std,count,test/accuracy mean,test/accuracy std"
    # Ranked by a test metric itself, or by one a job lacks on test, there is no such column.
    assert "test/accuracy mean" not in report(tmp_path, metric="test/accuracy")


def test_a_wide_tables_headers_break_at_the_dot_instead_of_being_cut(tmp_path, capsys,
                                                                     figures):
    """Three optimizer fields swept: in 80 columns rich had cut the headers to "optim.mome…"
    and "optim.weig…", and folded each test cell over two lines. The dotted names now break
    after their last dot, so every name is whole and every cell on one line. In the plots,
    the legend naming the other fields' combinations had covered the lines; it now lies
    beside the axes."""
    grid = itertools.product((0.02, 0.1), (0.0, 0.9), (0.0, 1e-4), range(2))
    for n, (lr, momentum, decay, seed) in enumerate(grid):
        _job(tmp_path, str(n), lr, seed, "val/accuracy", 0.9 + 0.005 * n,
             config={"optim.momentum": momentum, "optim.weight_decay": decay},
             result={"test": {"accuracy": 0.8 + 0.01 * n}})
    report(tmp_path)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert "…" not in out and max(map(len, table)) <= 80, out
    headers = [cell.strip() for line in table if line.startswith("┃")
               for cell in line.strip("┃").split("┃")]
    columns = ["".join(pair) for pair in zip(headers[:len(headers) // 2],
                                             headers[len(headers) // 2:], strict=True)]
    assert columns == ["optim.lr", "optim.momentum", "optim.weight_decay", "mean", "std",
                       "count", "test/accuracy"], out
    rows = [line for line in table if line.startswith("│")]
    assert len(rows) == 8 and all(" ± " in row for row in rows), out
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for fig in figures[:4]:  # against optim.lr, momentum, weight_decay and the seed
        ax = fig.axes[0]
        renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure has no canvas left
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.x0 > ax.get_window_extent(renderer).x1, ax.get_title()


def test_a_score_axis_stays_within_what_the_score_can_be(tmp_path, figures):
    """Two seeds of one lr, one collapsed (0.96 and 0.09): mean ± std spans -0.10 to 1.14,
    and the axis was stretched past an accuracy of 1. It now ends just above 1 and below 0;
    a loss axis is left to matplotlib."""
    for n, (lr, seed, value) in enumerate([(0.02, 0, 0.95), (0.02, 1, 0.96), (0.1, 0, 0.96),
                                           (0.1, 1, 0.09)]):
        _job(tmp_path / "acc", str(n), lr, seed, "val/accuracy", value)
        _job(tmp_path / "loss", str(n), lr, seed, "val/loss", 2 - value)
    report(tmp_path / "acc", print_table=False)
    lo, hi = figures[0].axes[0].get_ylim()
    spread = float(np.std([0.96, 0.09], ddof=1))
    assert 0.525 + spread > 1.1 and 0.525 - spread < -0.05  # what the bar spans
    assert -0.05 < lo <= 0.0 and 1.0 <= hi < 1.05
    figures.clear()
    report(tmp_path / "loss", print_table=False)
    assert figures[0].axes[0].get_ylim()[1] > 1.5 + spread


def test_a_sweep_over_a_list_field_reports_and_unlike_runs_are_refused(tmp_path, capsys):
    """`-m 'model.hidden=[32],[64,32]'` crashed report (a list cannot be hashed to group);
    the widths are now written as the override writes them, and so is a null. A folder of a classifier's and
    a regression's runs would rank an accuracy against an MSE: it is refused."""
    for n, (hidden, value) in enumerate([([32], 0.90), ([32], 0.92), ([64, 32], 0.95)]):
        _job(tmp_path / "widths", str(n), 0.1, n, "val/accuracy", value,
             config={"model.hidden": hidden}, run={"data": {"task": "classification"}})
    for n in range(3):  # as runs record it; `auto` is val/accuracy for a classifier
        run_file = tmp_path / "widths" / str(n) / "run.json"
        run_file.write_text(run_file.read_text().replace('"val/accuracy"', '"auto"'))
    table = report(tmp_path / "widths").set_index("model.hidden")
    assert table["mean"].to_dict() == pytest.approx({"[32]": 0.91, "[64,32]": 0.95})
    assert "best: model.hidden=[64,32] — val/accuracy 0.9500" in capsys.readouterr().out
    # `optim.clip_norm=null,1.0`: null was NaN, which pandas' grouping and counting skip, so
    # the sweep read as one config.
    for n, (clip, value) in enumerate([(None, 0.90), (None, 0.92), (1.0, 0.95), (1.0, 0.97)]):
        _job(tmp_path / "clips", str(n), 0.1, n % 2, "val/accuracy", value,
             config={"optim.clip_norm": clip}, run={"data": {"task": "classification"}})
    table = report(tmp_path / "clips").set_index("optim.clip_norm")
    assert table["mean"].to_dict() == pytest.approx({"1": 0.96, "null": 0.91})
    assert "best: optim.clip_norm=1 — val/accuracy 0.9600" in capsys.readouterr().out
    _job(tmp_path / "widths", "3", 0.1, 0, "val/mse", 3.0, run={"data": {"task": "regression"}})
    with pytest.raises(UserError, match=re.escape(
            f"the runs in {tmp_path / 'widths'} monitor unlike metrics (val/accuracy of 3 "
            "classification runs; val/mse of 1 regression run); report a folder of like runs, "
            "or rank them all by one metric with --metric")):
        report(tmp_path / "widths")


def test_configs_tied_on_the_mean_rank_by_their_spread(tmp_path, capsys):
    """Accuracies over one split are counts: lr 0.03 and 0.1 below both average 177.33/180,
    though pandas' group means differ by 1.1e-16 (the digits_lr_sweep preset's result). The
    smaller std breaks the tie, whatever the rounding, and the best line says so."""
    values = {0.03: [179 / 180, 177 / 180, 176 / 180], 0.1: [177 / 180, 177 / 180, 178 / 180],
              0.01: [0.5, 0.5, 0.5]}
    n = 0
    for lr, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            _job(tmp_path, str(n), lr, seed, "val/accuracy", value)
            n += 1
    report(tmp_path)
    out = capsys.readouterr().out
    assert ("best: optim.lr=0.1 — val/accuracy 0.9852 ± 0.0032 over 3 runs (tied on the mean "
            "with optim.lr=0.03; the smaller std decided)") in out, out
    # Single runs (Optuna's points) have no std: the line said the std decided all the same.
    for n, lr in enumerate((0.02, 0.05)):
        _job(tmp_path / "single", str(n), lr, 0, "val/accuracy", 0.95)
    report(tmp_path / "single")
    assert ("best: optim.lr=0.02 — val/accuracy 0.9500 (1 run) (tied on the mean with "
            "optim.lr=0.05; named the first in the table)") in capsys.readouterr().out


def test_the_loss_says_what_it_measures(tmp_path, capsys, figures):
    """A regression trained on standardized targets has a loss on that scale beside an MSE
    in the target's units (0.2 vs 1.2e+06): the run's table and curves say which loss it is;
    a classifier sweep's curves say cross-entropy."""
    run = tmp_path / "run"
    run.mkdir()
    config = {"data": {"normalize_target": True}, "trainer": {"monitor": "auto"}}
    (run / "run.json").write_text(json.dumps({"config": config, "data": {"task": "regression"}}))
    metrics = {"mse": 1.187e6, "mae": 877.6, "r2": 0.82, "loss": 0.2041}
    (run / "result.json").write_text(json.dumps({"monitor": 1.187e6, "val": metrics,
                                                 "test": metrics, "steps": 4, "epochs": 2}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 2, "epoch": 1, "train/loss": 0.5,
                                                   "val/mse": 1.3e6}) + "\n")
    report(run)
    out = capsys.readouterr().out
    assert "loss (standardized)" in out and "1.187e+06" in out, out
    assert figures[0].axes[0].get_ylabel() == "train/loss (MSE on standardized targets)"
    sweep = tmp_path / "sweep"
    for n, lr in enumerate([0.1, 0.2]):
        _job(sweep, str(n), lr, 0, "val/accuracy", 0.9, run={"data": {"task": "classification"}})
    figures.clear()
    report(sweep)
    curves = figures[-1].axes[0]
    assert curves.get_ylabel() == "train/loss (cross-entropy)"


def test_runs_that_ended_at_chance_are_named_under_the_table(tmp_path, capsys):
    """Their means sit in the table among the others' (0.1 for lr 1.0); the line under it
    says they ended at chance, per config, from the warnings their result.json keeps."""
    n = 0
    for lr, values in ((0.05, [0.95, 0.93]), (1.0, [0.1, 0.12])):
        for seed, value in enumerate(values):
            warned = lr == 1.0 and seed == 0
            _job(tmp_path, str(n), lr, seed, "val/accuracy", value, result={
                "warnings": ["warning: the final model predicts class 3 for all ..."]}
                if warned else None)
            n += 1
    report(tmp_path)
    out = capsys.readouterr().out
    assert ("ended at chance: optim.lr=1 (1 of 2 runs) — its final model predicts one class, "
            "or does no better than always predicting the most common (its train.log says "
            "more)\n") in out, out
    assert out.count("ended at chance") == 1
    # Configs run once each (Optuna's points): "1 of 1 runs" said nothing; two runs are
    # spoken of in the plural.
    for n, lr in enumerate((2.0, 3.0)):
        _job(tmp_path / "once", str(n), lr, 0, "val/accuracy", 0.1,
             result={"warnings": ["warning: the final model predicts class 3 for all ..."]})
    _job(tmp_path / "once", "2", 0.05, 0, "val/accuracy", 0.95)
    report(tmp_path / "once")
    out = capsys.readouterr().out
    assert ("ended at chance: optim.lr=2; optim.lr=3 — each one's final model predicts one "
            "class, or does no better than always predicting the most common (their train.log "
            "files say more)\n") in out, out


def test_the_best_line_shows_integer_fields_as_integers(tmp_path, capsys):
    """Runs that differ in an int field and a float one (a folder of single runs, as
    `outputs/<date>/` holds): the best line had said `trainer.batch_size=7.0`."""
    for n, (lr, batch, value) in enumerate([(0.01, 7, 0.94), (0.05, 64, 0.88)]):
        _job(tmp_path, str(n), lr, 0, "val/accuracy", value,
             config={"trainer.batch_size": batch})
    report(tmp_path)
    assert "best: optim.lr=0.01, trainer.batch_size=7 — val/accuracy 0.9400 (1 run)" in \
        capsys.readouterr().out


def test_sampled_values_print_short_and_single_runs_show_no_spread(tmp_path, capsys, figures):
    """An Optuna-style sweep: one run per sampled lr. The table shows each lr to 6 digits and
    "–" for the spread of one run; the best line names the exact lr and says "(1 run)"."""
    lrs = [0.036673518333094415, 0.08923418089348906, 0.19396969938668554]
    for n, (lr, value) in enumerate(zip(lrs, [0.94, 0.97, 0.93], strict=True)):
        _job(tmp_path, str(n), lr, 0, "val/accuracy", value)
    report(tmp_path)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "0.0" in line or "0.1" in line]
    assert any("0.0366735" in r and "0.9400" in r and "–" in r for r in rows), out
    assert "0.036673518" not in out.split("best:")[0]
    assert "nan" not in out
    assert "best: optim.lr=0.08923418089348906 — val/accuracy 0.9700 (1 run)" in out
    # Drawn values are not a grid: their plot keeps matplotlib's ticks, not one per value.
    assert not any("0.0366735" in t.get_text() for t in figures[0].axes[0].get_xticklabels())


def test_a_missing_or_empty_sweep_dir_is_one_clear_error(tmp_path, capsys):
    from lepton_jax.cli import main as cli

    assert cli(["report", str(tmp_path / "nothere")]) == 2
    assert f"error: {tmp_path / 'nothere'} does not exist; point report at a sweep" in \
        capsys.readouterr().err
    (tmp_path / "file.csv").write_text("a\n")
    assert cli(["report", str(tmp_path / "file.csv")]) == 2
    assert f"error: {tmp_path / 'file.csv'} is not a directory" in capsys.readouterr().err
    assert cli(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no job directories with run.json" in err and "a level down" not in err
    # outputs/ itself: its runs are under dates, a level further down.
    _job(tmp_path / "outputs" / "2026-11-29", "10-00-00", 0.1, 0, "val/accuracy", 0.9)
    assert cli(["report", str(tmp_path / "outputs")]) == 2
    assert ("; its runs are a level down: point it at one of "
            f"{tmp_path / 'outputs' / '2026-11-29'}\n") in capsys.readouterr().err
    # A mistyped metric gets the near one.
    assert cli(["report", str(tmp_path / "outputs" / "2026-11-29"), "--metric", "val/acc"]) == 2
    assert "try one of val/accuracy (val/accuracy, misspelt?)" in capsys.readouterr().err


def test_a_diverged_run_directory_says_where_it_diverged(tmp_path, capsys, figures):
    """A standalone run that diverged writes no result.json (report said "the run has not
    finished (rerun its command ...)", which would diverge again); a population member's
    result.json says "diverged" (report printed an empty table of "None steps"). Both now
    say where, and draw the curves up to there, ending in a cross."""
    from lepton_jax.cli import main as cli

    for name, result in (("alone", None), ("member", {"status": "diverged", "step": 25,
                                                       "loss": float("inf")})):
        run = tmp_path / name
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"config": {"optim": {"lr": 9.0}}}))
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
            {"step": 10, "epoch": 1, "train/loss": 2.0, "val/accuracy": 0.3},
            {"step": 20, "epoch": 2, "train/loss": 40.0, "val/accuracy": 0.1},
            {"step": 25, "event": "diverged", "loss": float("inf")})))
        if result is not None:
            (run / "result.json").write_text(json.dumps(result))
        figures.clear()
        assert cli(["report", str(run)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{run}: diverged at step 25 (loss=inf), after 2 evaluations; "
                              "no final metrics\nwrote report.csv, report_curves.png"), out
        for ax in figures[0].axes:
            cross = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
            assert len(cross) == 1 and list(cross[0].get_xdata()) == [2]


def test_one_run_directory_reports_its_final_metrics_and_curves(tmp_path, capsys, figures):
    from lepton_jax.cli import main as cli

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": {"optim": {"lr": 0.1}, "seed": 0}}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": 10 * e, "epoch": e, "train/loss": 1.0 / e, "val/accuracy": 0.5 + e / 10,
                    "val/f1": 0.4 + e / 10}) + "\n" for e in (1, 2, 3)))
    assert cli(["report", str(run)]) == 2  # no result.json yet
    assert "has not finished" in capsys.readouterr().err
    val = {"accuracy": 0.8, "f1": 0.75, "loss": 0.4, "confusion": [[1]]}
    test = {"accuracy": 0.7, "f1": 0.65, "loss": 0.5, "confusion": [[1]]}
    (run / "result.json").write_text(json.dumps({"steps": 30, "epochs": 3, "val": val,
                                                 "test": test, "monitor": 0.8}))
    table = report(run)
    out = capsys.readouterr().out
    assert "one run, 30 steps, 3 epochs" in out
    assert f"wrote report.csv, report_curves.png, report_confusion.png in {run}" in out
    assert table.to_dict("records") == [{"split": "val", "accuracy": 0.8, "f1": 0.75, "loss": 0.4},
                                        {"split": "test", "accuracy": 0.7, "f1": 0.65, "loss": 0.5}]
    assert (run / "report_curves.png").read_bytes()[:4] == b"\x89PNG"
    # The curves, then the test split's confusion matrix.
    assert [ax.get_ylabel() for ax in figures[-2].axes] == ["train/loss", "val/accuracy"]

    # --metric picks the curve beside the loss; one the run never recorded is refused.
    report(run, metric="val/f1")
    assert [ax.get_ylabel() for ax in figures[-2].axes] == ["train/loss", "val/f1"]
    np.testing.assert_allclose(figures[-2].axes[1].lines[0].get_ydata(), [0.5, 0.6, 0.7])
    (run / "report.csv").unlink()
    assert cli(["report", str(run), "--metric", "val/nope"]) == 2
    assert (f"error: metric 'val/nope' is not in {run / 'metrics.jsonl'}; try one of "
            "val/accuracy, val/f1") in capsys.readouterr().err
    assert not (run / "report.csv").exists()

    # A trainer.restore_best run monitoring val/f1: its curve, the kept evaluation starred.
    (run / "run.json").write_text(json.dumps({"config": {"trainer": {"monitor": "val/f1"}}}))
    (run / "result.json").write_text(json.dumps({"steps": 30, "epochs": 3, "val": val,
                                                 "test": test, "monitor": 0.6, "best": {
                                                     "step": 20, "metric": "val/f1",
                                                     "value": 0.6}}))
    report(run, print_table=False)
    ax = figures[-2].axes[1]
    assert ax.get_ylabel() == "val/f1"
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert [(list(s.get_xdata()), s.get_label()) for s in stars] == [([2], "kept (step 20)")]
    assert stars[0].get_ydata()[0] == pytest.approx(0.6)


def test_one_run_s_confusion_matrix_is_drawn_with_its_class_names(tmp_path, figures):
    """The test split's confusion matrix: cells shaded by their share of the true class (the
    diagonal is each class's recall), labelled with their counts, axes with the classes'
    own names; a run without a test split draws its validation split's."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": {}, "data": {
        "class_values": ["cat", "dog", "owl"]}}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "epoch": 1, "train/loss": 1.0,
                                                   "val/accuracy": 0.5}) + "\n")
    confusion = [[8, 2, 0], [1, 3, 0], [0, 0, 6]]
    (run / "result.json").write_text(json.dumps({"steps": 5, "epochs": 1, "test": {
        "accuracy": 17 / 20, "confusion": confusion}, "val": {"accuracy": 0.5, "confusion": [[1]]}}))
    report(run, print_table=False)
    ax = figures[-1].axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(),
                               [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3", "6", "8"]  # zeros left blank
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "owl"]
    assert ax.get_title() == "test confusion, 20 examples, accuracy 0.8500"
    assert (run / "report_confusion.png").read_bytes()[:4] == b"\x89PNG"
    (run / "result.json").write_text(json.dumps({"steps": 5, "epochs": 1, "val": {
        "accuracy": 0.5, "confusion": [[1, 1], [0, 0]]}}))
    report(run, print_table=False)
    assert figures[-1].axes[0].get_title().startswith("val confusion, 2 examples")
    assert [t.get_text() for t in figures[-1].axes[0].get_xticklabels()] == ["0", "1"]


def test_auto_monitor_without_a_validation_split_is_the_test_accuracy(tmp_path, capsys):
    """Training resolves `auto` to test/accuracy when there is no validation split (val
    fraction 0); the report names and ranks that metric, not val/mse."""
    for n, (lr, value) in enumerate([(0.01, 0.6), (0.1, 0.9)]):
        _job(tmp_path, str(n), lr, 0, "test/accuracy", value)
        run = tmp_path / str(n) / "run.json"
        config = json.loads(run.read_text())
        config["config"]["trainer"]["monitor"] = "auto"
        run.write_text(json.dumps(config))
    report(tmp_path)
    out = capsys.readouterr().out
    assert "test/accuracy (monitored)" in out
    assert "best: optim.lr=0.1 — test/accuracy 0.9000" in out


def test_runs_monitoring_the_test_split_beside_validation_runs_are_not_ranked_together(
        tmp_path, capsys):
    """`auto` is val/accuracy with a validation split and test/accuracy without one; a sweep
    over data.val_fraction=0,0.1 ranked both as one metric (the report resolved `auto` as if
    every run had a validation split). It reads each run's `monitored` from result.json."""
    for n, (fraction, split) in enumerate([(0.0, "test"), (0.1, "val")]):
        _job(tmp_path, str(n), 0.1, 0, f"{split}/accuracy", 0.9,
             config={"data.val_fraction": fraction, "trainer.monitor": "auto"},
             result={"monitored": f"{split}/accuracy", "test": {"accuracy": 0.9}})
    with pytest.raises(UserError, match=re.escape(
            "monitor unlike metrics (test/accuracy of 1 run; val/accuracy of 1 run)")):
        report(tmp_path)
    assert report(tmp_path, metric="test/accuracy") is not None


def test_a_sweep_over_two_fields_is_drawn_as_a_grid(tmp_path, capsys, figures):
    """lr x momentum, two seeds: report_val_loss_grid.png has a cell per config holding its
    mean over seeds (rows: momentum rising up the axis), its text the mean ± std, a config
    whose runs all diverged a grey cell saying so, and the best config framed. Points a
    sampler drew (no grid: most cells would be empty) get no such plot."""
    values = {(0.01, 0.0): [0.8, 0.6], (0.1, 0.0): [0.3, 0.5], (0.01, 0.9): [0.2, 0.2],
              (0.1, 0.9): None}
    n = 0
    for (lr, momentum), losses in values.items():
        for seed in (0, 1):
            _job(tmp_path, str(n), lr, seed, "val/loss", 0.0 if losses is None else losses[seed],
                 config={"optim.momentum": momentum})
            if losses is None:
                (tmp_path / str(n) / "result.json").write_text(json.dumps({"status": "diverged"}))
            n += 1
    report(tmp_path)
    assert "report_val_loss_grid.png" in capsys.readouterr().out
    [grid] = [f for f in figures if f.axes[0].get_title().startswith("val/loss (monitored): ")]
    ax = grid.axes[0]
    assert ax.get_title() == "val/loss (monitored): optim.lr × optim.momentum"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "0.9"]
    cells = ax.get_images()[0].get_array()
    np.testing.assert_allclose(cells.data[0], [0.7, 0.4])  # momentum 0: lr 0.01, lr 0.1
    assert cells[1, 0] == pytest.approx(0.2) and cells.mask[1, 1]
    texts = {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text()
             for t in ax.texts}
    assert texts == {(0, 0): "0.7000\n± 0.1414", (1, 0): "0.4000\n± 0.1414",
                     (0, 1): "0.2000\n± 0.0000", (1, 1): "2 diverged"}
    framed = {tuple(round(v, 2) for v in p.get_xy()) for p in ax.patches}
    assert framed == {(-0.45, 0.55)}  # lr 0.01, momentum 0.9: the lowest loss
    for path in tmp_path.glob("*/"):
        if path.is_dir():
            shutil.rmtree(path)
    for n, (lr, momentum) in enumerate([(0.013, 0.51), (0.031, 0.77), (0.07, 0.12)]):
        _job(tmp_path, str(n), lr, 0, "val/loss", 0.5, config={"optim.momentum": momentum})
    report(tmp_path)
    assert "_grid.png" not in capsys.readouterr().out


def test_learning_curves_are_coloured_by_the_swept_value_and_mark_divergence(tmp_path,
                                                                             figures):
    """report_curves.png: a config's seeds share one colour, configs get distinct colours in
    the order of their values, the legend names them, and a diverged job ends in a cross."""
    n = 0
    for lr in (0.1, 0.01, 0.03):
        for seed in (0, 1):
            _job(tmp_path, str(n), lr, seed, "val/accuracy", 0.5 + lr)
            n += 1
    # Job 5 (lr 0.03, seed 1) diverged after its first evaluation.
    (tmp_path / "5" / "result.json").write_text(json.dumps({"status": "diverged", "step": 3}))
    report(tmp_path, print_table=False)
    curves = next(f for f in figures if f._suptitle is not None
                  and f._suptitle.get_text().startswith("learning curves"))
    assert curves._suptitle.get_text() == "learning curves per job, coloured by optim.lr"
    loss_ax, val_ax = curves.axes
    assert (loss_ax.get_ylabel(), val_ax.get_ylabel()) == ("train/loss", "val/accuracy")
    lines = [ln for ln in loss_ax.get_lines() if ln.get_linestyle() == "-"]
    colour = {int(job): ln.get_color() for job, ln in enumerate(lines)}
    assert len(colour) == 6
    assert colour[0] == colour[1] and colour[2] == colour[3] and colour[4] == colour[5]
    assert len({colour[0], colour[2], colour[4]}) == 3
    legend = [t.get_text() for t in curves.legends[0].get_texts()]
    assert legend == ["optim.lr=0.01", "optim.lr=0.03", "optim.lr=0.1", "diverged"]
    crosses = [ln for ln in loss_ax.get_lines() if ln.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_color() == "black"


def test_a_second_swept_field_gets_a_line_style_per_value(tmp_path, figures):
    """Coloured by the model alone, a model's learning rates drew alike; the second swept
    field now gets a line style per value, named in the legend and the title."""
    n = 0
    for model in ("mlp", "lenet5"):
        for lr in (0.1, 0.02):
            for seed in (0, 1):
                _job(tmp_path, str(n), lr, seed, "val/accuracy", 0.9, config={"model.name": model})
                n += 1
    report(tmp_path, print_table=False)
    curves = figures[-1]
    # The fields in run.json's order (these hand-written ones: optim before model).
    assert curves._suptitle.get_text() == ("learning curves per job, coloured by optim.lr, "
                                           "line style by model.name")
    styles = [(ln.get_color(), ln.get_linestyle()) for ln in curves.axes[0].get_lines()]
    assert len(set(styles)) == 4 and styles[0] == styles[1] and styles[0] != styles[2]
    assert [style for _, style in styles] == ["-"] * 4 + ["--"] * 4  # mlp, then lenet5
    legend = [t.get_text() for t in curves.legends[0].get_texts()]
    assert legend == ["optim.lr=0.02", "optim.lr=0.1", "model.name=mlp", "model.name=lenet5"]


def test_a_diverged_job_does_not_flatten_the_others_curves(tmp_path, figures):
    """A job whose val/mse reached 1e36 before it diverged set the scale, and every other
    job's curve lay flat at the bottom: the axes now span the other jobs' values, and the
    diverged job's cross stays on the top edge."""
    for n, lr in enumerate((0.01, 0.1, 1.0)):
        _job(tmp_path, str(n), lr, 0, "val/mse", 1e5 * (n + 1))
    records = [{"step": s, "epoch": s, "train/loss": 1.0 / s, "val/mse": 1e6 / s}
               for s in (1, 2, 3)]
    for n in (0, 1):
        (tmp_path / str(n) / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "2" / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "epoch": 1, "train/loss": 1e10, "val/mse": 1e36}) + "\n")
    (tmp_path / "2" / "result.json").write_text(json.dumps({"status": "diverged", "step": 2}))
    report(tmp_path, print_table=False)
    loss_ax, val_ax = figures[-1].axes[:2]
    for ax, top in ((loss_ax, 1.0), (val_ax, 1e6)):
        low, high = ax.get_ylim()
        assert low < top / 3 and top < high < 2 * top, (low, high)
        cross = next(ln for ln in ax.get_lines() if ln.get_marker() == "x")
        assert list(cross.get_ydata()) == [high] and not cross.get_clip_on()


def test_diverged_and_unfinished_jobs_are_named_and_drawn_where_they_were_swept(tmp_path, capsys,
                                                                             figures):
    """Jobs without results stay out of the table; the line under it names their configs
    and what became of them (a standalone run that diverged says so in its records, as a
    population member does), and the plot against each swept field puts a cross on the x
    axis at their values, ticked as the others."""
    _job(tmp_path, "0", 0.01, 0, "val/accuracy", 0.9)
    _job(tmp_path, "1", 0.1, 0, "val/accuracy", 0.95)
    for name, lr in (("2", 30.0), ("3", 30.0), ("4", 3.0)):
        job = tmp_path / name
        job.mkdir()
        config = {"optim": {"lr": lr}, "seed": 0, "trainer": {"monitor": "val/accuracy"}}
        (job / "run.json").write_text(json.dumps({"config": config}))
    for name in ("2", "3"):  # job 4 has no records: killed, or still running
        (tmp_path / name / "metrics.jsonl").write_text(json.dumps(
            {"event": "diverged", "loss": float("nan"), "step": 6}) + "\n")
    report(tmp_path)
    out = capsys.readouterr().out
    assert "(2 of 5 jobs finished)" in out
    assert "not in the table: optim.lr=30 (2 diverged); optim.lr=3 (1 unfinished)\n" in out, out
    lr_ax = next(f.axes[0] for f in figures
                 if f.axes[0].get_title() == "val/accuracy (monitored) vs optim.lr")
    crosses = [c for c in lr_ax.collections if c.get_label() == "diverged or unfinished"]
    assert len(crosses) == 1
    assert sorted(crosses[0].get_offsets()[:, 0]) == [3.0, 30.0, 30.0]
    assert [t.get_text() for t in lr_ax.get_xticklabels()] == ["0.01", "0.1", "3", "30"]
    low, high = lr_ax.get_xlim()
    assert low < 0.01 and high > 30.0


def test_curves_follow_the_ranked_metric_and_star_the_evaluation_a_job_kept(tmp_path,
                                                                            figures):
    """With trainer.monitor=val/loss the validation curves are of val/loss, and a
    trainer.restore_best job's kept evaluation (result.json `best`) is starred on them."""
    for n, lr in enumerate((0.01, 0.1)):
        job = tmp_path / str(n)
        job.mkdir()
        config = {"optim": {"lr": lr}, "seed": 0, "trainer": {"monitor": "val/loss"}}
        (job / "run.json").write_text(json.dumps({"config": config}))
        records = [{"step": s, "epoch": s, "train/loss": 1.0 / s, "val/accuracy": 0.5,
                    "val/loss": v + lr} for s, v in ((1, 0.5), (2, 0.2), (3, 0.4))]
        (job / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        best = {"step": 2, "metric": "val/loss", "value": 0.2 + lr}
        (job / "result.json").write_text(json.dumps({"monitor": 0.2 + lr, "best": best,
                                                     "val": {"loss": 0.2 + lr}}))
    report(tmp_path, print_table=False)
    curves = next(f for f in figures if f._suptitle is not None
                  and f._suptitle.get_text().startswith("learning curves"))
    val_ax = curves.axes[1]
    assert val_ax.get_ylabel() == "val/loss"
    stars = [ln for ln in val_ax.get_lines() if ln.get_marker() == "*"]
    assert sorted((list(s.get_xdata()), list(s.get_ydata())) for s in stars) == [
        ([2], [pytest.approx(0.21)]), ([2], [pytest.approx(0.3)])]
    assert [t.get_text() for t in curves.legends[0].get_texts()] == [
        "optim.lr=0.01", "optim.lr=0.1", "kept (restore_best)"]


def test_plots_tick_the_swept_values_and_whole_epochs(tmp_path, figures):
    """A grid's plot is ticked at its values as the table writes them (a log axis has no
    crowded minor labels); seeds tick as integers; learning curves tick whole epochs and mark
    each evaluation when there are few."""
    n = 0
    for lr in (0.01, 0.02, 0.04, 0.08):
        for seed in (0, 1, 2):
            _job(tmp_path, str(n), lr, seed, "val/accuracy", 0.5 + lr)
            n += 1
    report(tmp_path, print_table=False)
    by_title = {f.axes[0].get_title().split("\n")[0]: f.axes[0] for f in figures if f.axes[0].get_title()}
    lr_ax = by_title["val/accuracy (monitored) vs optim.lr"]
    assert lr_ax.get_xscale() == "log"
    assert [t.get_text() for t in lr_ax.get_xticklabels()] == ["0.01", "0.02", "0.04", "0.08"]
    assert list(lr_ax.get_xticks()) == [0.01, 0.02, 0.04, 0.08]
    assert [t.get_text() for t in lr_ax.get_xticklabels(minor=True)] in ([], [""] * len(
        lr_ax.get_xticks(minor=True)))
    seed_ax = by_title["val/accuracy (monitored) vs seed"]
    assert [t.get_text() for t in seed_ax.get_xticklabels()] == ["0", "1", "2"]
    curves = next(f for f in figures if f._suptitle is not None)
    for ax in curves.axes:
        ax.set_xlim(0.5, 3.5)  # the locator is asked again for a wider span
        assert all(float(t).is_integer() for t in ax.get_xticks())
        assert {ln.get_marker() for ln in ax.get_lines()} == {"."}


def test_a_field_plot_draws_one_line_per_value_of_the_other_swept_fields(tmp_path, figures):
    """lr × model × seed: the plot against lr averages over seeds only, one line per model
    (a mean over both models would read as a spread over seeds)."""
    values = {("mlp", 0.01): [0.9, 0.8], ("mlp", 0.1): [0.7, 0.6],
              ("lenet5", 0.01): [0.5, 0.4], ("lenet5", 0.1): [0.95, 0.85]}
    n = 0
    for (model, lr), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            _job(tmp_path, str(n), lr, seed, "val/accuracy", value,
                 config={"model.name": model})
            n += 1
    report(tmp_path, print_table=False)
    by_title = {fig.axes[0].get_title().split("\n")[0]: fig for fig in figures if fig.axes}
    ax = by_title["val/accuracy (monitored) vs optim.lr"].axes[0]
    assert "one line per model.name" in ax.get_title()
    lines = {c.get_label(): np.asarray(c.lines[0].get_ydata(), float) for c in ax.containers}
    assert set(lines) == {"model.name=lenet5", "model.name=mlp"}
    np.testing.assert_allclose(lines["model.name=mlp"], [0.85, 0.65])
    np.testing.assert_allclose(lines["model.name=lenet5"], [0.45, 0.9])
    seeds = by_title["val/accuracy (monitored) vs seed"].axes[0]
    assert len(seeds.containers) == 4  # one per config


def test_named_values_and_seeds_place_each_lines_points_side_by_side(tmp_path, figures):
    """model=mlp,lenet5 × lr 0.03,0.1: against the model, both lrs' bars and points were drawn
    at the model's one x, lr 0.03's hidden under lr 0.1's. Each label (a model, a seed) now
    has its place, ticked by name in the command line's order, and the lines sit side by side
    within it, the best config's star on its own line's side."""
    values = {("mlp", 0.03): [0.97, 0.98], ("mlp", 0.1): [0.97, 0.97],
              ("lenet5", 0.03): [0.95, 0.96], ("lenet5", 0.1): [0.09, 0.94]}
    for n, ((model, lr), per_seed) in enumerate(values.items()):
        for seed, value in enumerate(per_seed):
            _job(tmp_path, f"{n}{seed}", lr, seed, "val/accuracy", value,
                 config={"model.name": model})
    # A third lenet5 run at lr 0.1 diverged: its cross sits on lr 0.1's side too.
    _job(tmp_path, "32", 0.1, 2, "val/accuracy", 0.5, config={"model.name": "lenet5"})
    (tmp_path / "32" / "result.json").write_text(json.dumps({"status": "diverged", "step": 3}))
    report(tmp_path, print_table=False)
    by_field = {fig.axes[0].get_xlabel(): fig.axes[0] for fig in figures if fig.axes}
    ax = by_field["model.name"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mlp", "lenet5"]
    crosses = next(c for c in ax.collections if c.get_label() == "diverged or unfinished")
    xs = {c.get_label(): list(c.lines[0].get_xdata()) for c in ax.containers}
    low, high = xs["optim.lr=0.03"], xs["optim.lr=0.1"]
    assert all(a < b for a, b in zip(low, high, strict=True)), xs
    assert [round((a + b) / 2, 6) for a, b in zip(low, high, strict=True)] == [0, 1]
    star = next(line for line in ax.get_lines() if line.get_marker() == "*")
    assert list(star.get_xdata()) == [low[0]]  # mlp at lr 0.03: 0.975
    assert [x for x, _ in crosses.get_offsets()] == [pytest.approx(high[1])]
    seeds = by_field["seed"]
    assert [t.get_text() for t in seeds.get_xticklabels()] == ["0", "1", "2"]
    at = sorted({round(x, 6) for c in seeds.containers for x in c.lines[0].get_xdata()})
    assert len(at) == 8 and all(abs(x - round(x)) < 0.5 for x in at), at


def test_seeds_are_drawn_as_labels_without_a_trend_line(tmp_path, figures):
    """Against the seed, each config's runs are points: a line joining seed 0 to seed 1 would
    read as a trend. Against the lr, each seed-averaged config is joined as usual."""
    n = 0
    for lr in (0.01, 0.1):
        for seed in (0, 1, 2):
            _job(tmp_path, str(n), lr, seed, "val/accuracy", 0.5 + lr + 0.01 * seed)
            n += 1
    report(tmp_path, print_table=False)
    by_field = {fig.axes[0].get_xlabel(): fig.axes[0] for fig in figures if fig.axes}
    styles = {field: {bars.lines[0].get_linestyle() for bars in ax.containers}
              for field, ax in by_field.items() if field in ("seed", "optim.lr")}
    assert styles == {"optim.lr": {"-"}, "seed": {"None"}}
    assert "one colour per optim.lr" in by_field["seed"].get_title()


def test_errors_spanning_decades_are_drawn_on_a_log_axis(tmp_path, capsys, figures):
    """A regression run's val/mse from 5e8 down to 1e7 flattened on a linear axis; an error
    or loss spanning more than a decade gets a log one, in a run's report and a sweep's
    curves. Scores and errors that stay within a decade keep linear axes."""
    def write_run(folder, mse, lr=0.1):
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"config": {"optim": {"lr": lr},
                                                                "seed": 0}}))
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"step": 10 * e, "epoch": e, "train/loss": 1.0 / e, "val/mse": m,
                        "val/r2": 0.5 + e / 10}) + "\n" for e, m in enumerate(mse, 1)))
        val = {"mse": mse[-1], "r2": 0.8, "loss": 0.1}
        (folder / "result.json").write_text(json.dumps(
            {"steps": 10 * len(mse), "epochs": len(mse), "val": val, "test": val,
             "monitor": mse[-1]}))

    write_run(tmp_path / "wide", [5e8, 1e8, 1e7])
    write_run(tmp_path / "narrow", [3e7, 2e7, 1.5e7])
    for name, scale in (("wide", "log"), ("narrow", "linear")):
        report(tmp_path / name, print_table=False)
        assert (figures[-1].axes[1].get_ylabel(), figures[-1].axes[1].get_yscale()) == \
            ("val/mse", scale)
    report(tmp_path / "wide", metric="val/r2", print_table=False)
    assert figures[-1].axes[1].get_yscale() == "linear"
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", [5e8, 1e8, 1e7], lr=0.1)
    write_run(sweep / "1", [3e7, 2e7, 1.5e7], lr=0.2)
    report(sweep, print_table=False)
    curves = next(f for f in figures if f._suptitle is not None
                  and f._suptitle.get_text().startswith("learning curves"))
    assert [(ax.get_ylabel(), ax.get_yscale()) for ax in curves.axes] == \
        [("train/loss", "log"), ("val/mse", "log")]


def test_a_regression_runs_predictions_are_drawn_against_the_true_targets(tmp_path, capsys,
                                                                          figures):
    """A classifier's run dir gets its confusion matrix; a regression's had nothing to look
    at. report_predictions.png scatters the test predictions of the run's own model (its
    files, reloaded) against the targets: their MSE is the test MSE the run reported. Data
    that cannot be read any more leaves the plot out, saying why."""
    import pandas as pd

    from lepton_jax import Config, DataConfig, ModelConfig, TrainerConfig, fit

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["price"] = frame @ [100.0, -50.0, 20.0] + 1000 + rng.normal(scale=5.0, size=300)
    frame.to_csv(tmp_path / "prices.csv", index=False)
    config = Config(model=ModelConfig(name="linear"),
                    data=DataConfig(name="csv", root=str(tmp_path / "prices.csv")),
                    trainer=TrainerConfig(epochs=5, progress="off"))
    run = tmp_path / "run"
    result = fit(config, run)
    capsys.readouterr()
    report(run)
    assert "report_predictions.png" in capsys.readouterr().out
    assert (run / "report_predictions.png").read_bytes()[:4] == b"\x89PNG"
    axes = figures[-1].axes[0]
    true, predicted = axes.collections[0].get_offsets().T
    assert len(true) == 30  # the test split
    # Named by the target column (the CSV's last, as data.target is unset).
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("true price (test)", "predicted price")
    assert axes.get_title().startswith("price: R² ")
    assert np.mean((true - predicted) ** 2) == pytest.approx(result["test"]["mse"], rel=1e-4)
    (tmp_path / "prices.csv").rename(tmp_path / "moved.csv")
    report(run)
    out = capsys.readouterr().out
    assert "no predictions plot: the run's data or model cannot be read here (CSV file" in out


@pytest.mark.parametrize("values,expected", [
    ((0.82, 0.39), ["0.4", "0.5", "0.6", "0.7", "0.8"]),  # within a decade: its ticks between
    ((2.3, 0.01), ["0.01", "0.1", "1"]),                  # powers of ten: its powers of ten
    ((2e8, 3e3), ["1e4", "1e5", "1e6", "1e7", "1e8"])])
def test_a_log_axis_reads_as_plain_numbers(values, expected):
    """A loss falling from 0.82 to 0.39 (digits, 20 epochs) was ticked 4×10⁻¹ ... 8×10⁻¹ on
    the run's and `Trainer.plot`'s log axis; and one from 0.50 to 0.45 had six ticks each
    reading 5e-01. The ticks now read as the numbers they are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lepton_jax.report import log_axis

    fig, ax = plt.subplots()
    ax.plot(np.geomspace(*values, 20))
    log_axis(ax)
    fig.canvas.draw()
    lo, hi = sorted(values)
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if lo <= t.get_position()[1] <= hi and t.get_text()]
    assert sorted(labels, key=float) == expected
    fig, ax = plt.subplots()
    ax.plot(np.linspace(0.5, 0.45, 20))
    log_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if 0.45 <= t.get_position()[1] <= 0.5 and t.get_text()]
    assert len(set(labels)) == len(labels) >= 3 and all(0.45 <= float(v) <= 0.5 for v in labels)
    # The x axis of a plot against sampled learning rates (Optuna's) read 10⁻², 10⁻¹, 10⁰.
    fig, ax = plt.subplots()
    ax.plot([0.0069, 0.035, 0.78], [0.9, 0.95, 0.1])
    log_axis(ax, "x")
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()
            if 0.0069 <= t.get_position()[0] <= 0.78] == ["0.01", "0.1"]
    plt.close("all")


def test_the_curves_legend_writes_sampled_values_as_the_table_does(tmp_path, figures):
    """Optuna's points: the curves' legend had read optim.lr=0.006921920510935365, where the
    table reads 0.00692192; a second field's line styles likewise."""
    lrs = (0.006921920510935365, 0.7845308392754554)
    for n, (lr, momentum) in enumerate(itertools.product(lrs, (0.0, 0.8999999999999999))):
        _job(tmp_path, str(n), lr, 0, "val/accuracy", 0.9, config={"optim.momentum": momentum})
    report(tmp_path)
    curves = next(fig for fig in figures if fig.legends)
    assert [t.get_text() for t in curves.legends[0].get_texts()] == [
        "optim.lr=0.00692192", "optim.lr=0.784531", "optim.momentum=0", "optim.momentum=0.9"]


def test_one_metric_spelt_two_ways_is_not_a_swept_field(tmp_path, capsys):
    """Jobs run with trainer.monitor=auto beside jobs run with val/accuracy (a classifier's
    auto) monitor one metric: the report had taken trainer.monitor for a swept field, with
    a column of its spellings and a plot against them."""
    for n, (lr, monitor) in enumerate([(0.01, "auto"), (0.01, "val/accuracy"),
                                       (0.1, "auto"), (0.1, "val/accuracy")]):
        _job(tmp_path, str(n), lr, n % 2, "val/accuracy", 0.9 + lr,
             config={"trainer.monitor": monitor}, run={"data": {"task": "classification"}})
    table = report(tmp_path)
    out = capsys.readouterr().out
    assert list(table.columns[:1]) == ["optim.lr"] and "trainer.monitor" not in table, table
    assert "report_val_accuracy_vs_trainer.monitor.png" not in out, out
    assert not (tmp_path / "report_val_accuracy_vs_trainer.monitor.png").exists()


def test_ranking_on_the_test_split_is_flagged(tmp_path, capsys):
    """Runs without a validation split (data.val_fraction=0) monitor the test split, and the
    report named the best config by its test score without a word on what that means; so
    did --metric test/accuracy. A note now says the score is biased and what to do."""
    for n, lr in enumerate((0.01, 0.1)):
        _job(tmp_path, str(n), lr, 0, "test/accuracy", 0.9 + lr)
    report(tmp_path)
    note = ("note: ranked on the test split, so the best config's test score is biased upward; "
            "choose on a validation split (data.val_fraction > 0) and quote the test score of "
            "the config chosen there\n")
    assert note in capsys.readouterr().out
    for n, lr in enumerate((0.01, 0.1)):
        _job(tmp_path / "val", str(n), lr, 0, "val/accuracy", 0.9 + lr,
             result={"test": {"accuracy": 0.8}})
    report(tmp_path / "val")
    assert "note: ranked on the test split" not in capsys.readouterr().out
    report(tmp_path / "val", metric="test/accuracy")
    assert note in capsys.readouterr().out
