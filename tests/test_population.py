"""Population training: every vmapped member equals its standalone run."""

import contextlib
import dataclasses
import json
import re

import jax
import numpy as np
import pytest

from conftest import StopAfterCalls
from lepton_jax import (Config, DataConfig, Model, ModelConfig, OptimConfig, TrainerConfig,
                        fit)
from lepton_jax.checkpoint import Checkpointer
from lepton_jax import population
from lepton_jax.errors import Interrupted, UserError
from lepton_jax.population import fit_population, group_population
from lepton_jax.sweep import grid_points, sweep, with_overrides

LRS = (0.01, 0.03, 0.05, 0.1)


def _params(run_dir):
    return Checkpointer(run_dir / "checkpoints", keep=1).restore_arrays()["params"]


def _assert_member_equals_standalone(member_dir, alone_dir, member, alone, rel_norm=1e-4,
                                     rel_loss=1e-3):
    """Params within `rel_norm` (relative L2 per leaf), metrics within float noise."""
    for a, b in zip(jax.tree.leaves(_params(member_dir)), jax.tree.leaves(_params(alone_dir)),
                    strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.linalg.norm(a - b) <= rel_norm * max(np.linalg.norm(b), 1e-12)
    for split in ("val", "test"):
        assert member[split]["loss"] == pytest.approx(alone[split]["loss"], rel=rel_loss)
        assert member[split]["accuracy"] == pytest.approx(alone[split]["accuracy"],
                                                          abs=2e-3 if rel_loss else 0)


@pytest.mark.slow
# On XLA:CPU LeNet-5 members run through the standalone run's own compiled step, one after
# another (population mode "host"), so they must equal their standalone runs exactly. MLP
# members are vmapped: bitwise equal on the Intel Xeon this was written on (XLA:CPU without
# YNNPACK fusions, `parallel.compiler_options`); with those fusions they drifted 4.5e-4 apart
# there, so 1e-4 is a real bound, left above zero for CPUs whose batched matmuls round apart.
@pytest.mark.parametrize("model,limit,epochs,rel_norm,rel_loss", [
    (ModelConfig(name="mlp", hidden=[128, 64]), 5000, 2, 1e-4, 1e-3),
    (ModelConfig(name="lenet5"), 5000, 2, 0, 0),
], ids=["mlp", "lenet5"])
def test_members_equal_standalone_runs(tmp_path, mnist_root, model, limit, epochs, rel_norm,
                                       rel_loss):
    base = Config(model=model, data=DataConfig(name="mnist", root=str(mnist_root), limit=limit),
                  optim=OptimConfig(momentum=0.9, nesterov=True, schedule="cosine"),
                  trainer=TrainerConfig(epochs=epochs, batch_size=128, progress="off",
                                        num_devices=1))
    points = grid_points({"optim.lr": list(LRS), "seed": [0, 1]})
    configs = [with_overrides(base, p) for p in points]
    results = fit_population(configs, [tmp_path / "pop" / str(i) for i in range(len(points))])
    assert [r["status"] for r in results] == ["done"] * 8
    accuracies = set()
    for i, config in enumerate(configs):
        alone = fit(config, tmp_path / "alone" / str(i))
        _assert_member_equals_standalone(tmp_path / "pop" / str(i), tmp_path / "alone" / str(i),
                                         results[i], alone, rel_norm, rel_loss)
        accuracies.add(round(alone["val"]["loss"], 6))
    assert len(accuracies) == 8  # the members really differ


def _digits(**optim):
    return Config(model=ModelConfig(hidden=[32]), data=DataConfig(name="digits"),
                  optim=OptimConfig(**optim),
                  trainer=TrainerConfig(epochs=2, batch_size=64, progress="off", num_devices=1,
                                        checkpoint_every_epochs=1))


def _assert_population_equals_standalone_runs(configs, tmp_path):
    """Every member of `configs` trained as one population equals its own `fit`; the runs
    really differ (distinct validation losses)."""
    n = len(configs)
    results = fit_population(configs, [tmp_path / "pop" / str(i) for i in range(n)])
    losses = set()
    for i, config in enumerate(configs):
        alone = fit(config, tmp_path / "alone" / str(i))
        _assert_member_equals_standalone(tmp_path / "pop" / str(i), tmp_path / "alone" / str(i),
                                         results[i], alone)
        losses.add(round(alone["val"]["loss"], 6))
    assert len(losses) == n


def test_members_with_dropout_equal_standalone_runs(tmp_path):
    """Each member draws its dropout masks from its own seed's key, as its standalone run."""
    base = dataclasses.replace(_digits(momentum=0.9), model=ModelConfig(hidden=[32],
                                                                         dropout=0.3))
    configs = [with_overrides(base, p) for p in grid_points({"optim.lr": [0.05, 0.1],
                                                             "seed": [0, 1]})]
    _assert_population_equals_standalone_runs(configs, tmp_path)


def test_members_with_gradient_clipping_equal_standalone_runs(tmp_path):
    """optim.clip_norm cuts each member's gradient by its own global norm, as its standalone
    run does. Not bitwise here: the vmapped sum of squares rounds differently (after 5
    epochs the largest parameter difference was 1.2e-7 at lr 0.05, 2.3e-6 at lr 0.2)."""
    base = dataclasses.replace(_digits(momentum=0.9, clip_norm=1.0),
                               trainer=dataclasses.replace(_digits().trainer, epochs=5))
    configs = [with_overrides(base, p) for p in grid_points({"optim.lr": [0.05, 0.2],
                                                             "seed": [0, 1]})]
    _assert_population_equals_standalone_runs(configs, tmp_path)


@pytest.mark.parametrize("schedule", ["warmup_cosine", "constant"])
def test_members_differing_in_warmup_equal_standalone_runs(tmp_path, schedule):
    """The warm-up length is a per-member array, so a sweep over it is one population whose
    members each follow their own schedule, as their standalone runs do."""
    base = _digits(lr=0.1, momentum=0.9, schedule=schedule)
    configs = [with_overrides(base, p) for p in grid_points({"optim.warmup_epochs": [0, 0.5, 1.5],
                                                             "seed": [0, 1]})]
    assert [len(g) for g in group_population(configs)] == [6]
    _assert_population_equals_standalone_runs(configs, tmp_path)


def test_a_member_with_a_refused_config_fails_alone(tmp_path):
    """As a job-by-job sweep would, a member whose config is refused fails with its own
    error, and the others train as the population of the rest."""
    configs = [_digits(lr=lr) for lr in (0.05, -1.0, 0.1)]
    results = fit_population(configs, [tmp_path / "pop" / str(i) for i in range(3)])
    assert [r["status"] for r in results] == ["done", "failed", "done"]
    assert isinstance(results[1]["error"], UserError)
    assert "optim.lr (-1.0) must be > 0" in str(results[1]["error"])
    # Refused once the epoch's steps are known: 1.99 of 2 epochs of 22 steps is all 44.
    warm = [_digits(lr=0.05, schedule="warmup_cosine", warmup_epochs=w) for w in (1.99, 0.5)]
    late = fit_population(warm, [tmp_path / "warm" / str(i) for i in range(2)])
    assert [r["status"] for r in late] == ["failed", "done"]
    assert "optim.warmup_epochs=1.99 is 44 steps, and training has 44" in str(late[0]["error"])
    rest = fit_population([configs[0], configs[2]], [tmp_path / "rest" / str(i) for i in (0, 2)])
    for got, want in zip([results[0], results[2]], rest, strict=True):
        assert got["population"] == want["population"] == 2
        assert got["val"] == want["val"] and got["test"] == want["test"]
    assert not (tmp_path / "pop" / "1" / "result.json").exists()


def test_member_names_show_the_values_that_differ_to_six_digits(tmp_path):
    """Console lines name a member by its job dir and the vectorized values that differ,
    written as the report's table writes them (a np.geomspace lr reads 0.0316228)."""
    from lepton_jax.population import _member_names

    configs = [_digits(lr=lr) for lr in (0.01, 0.03162277660168379)]
    configs[1].seed = 3
    names = _member_names(configs, [tmp_path / "0", tmp_path / "1"])
    assert names == ["0 (optim.lr=0.01 seed=0)", "1 (optim.lr=0.0316228 seed=3)"]
    assert _member_names(configs[:1], [tmp_path / "0"]) == ["0"]


def test_diverging_member_does_not_disturb_others(tmp_path, capsys):
    good, bad = _digits(lr=0.05, schedule="constant"), _digits(lr=1e5, schedule="constant")
    results = fit_population([good, bad], [tmp_path / "p0", tmp_path / "p1"])
    assert results[0]["status"] == "done"
    assert results[1]["status"] == "diverged" and results[1]["step"] >= 1
    # Its error reads as its standalone run's (a sweep's DataFrame shows it).
    # (It diverged in its first epoch, before the first checkpoint, five epochs in.)
    assert results[1]["error"] == (f"training diverged at step {results[1]['step']} (loss="
                                   f"{results[1]['loss']}); no checkpoint had been saved "
                                   "before it. Lower optim.lr or set optim.clip_norm.")
    # Reported when it happens; each evaluation line then counts the live members and names
    # the best one with the score its metrics.jsonl records.
    out = capsys.readouterr().out
    assert out.startswith("population of 2: mlp 32 relu (25,450 params) | digits: "), out
    assert " | sgd momentum 0.9 constant | members differ in optim.lr | 2 epochs x " in out, out
    assert f"job p1 (optim.lr=100000) diverged at step {results[1]['step']} " in out, out
    record = json.loads((tmp_path / "p0" / "metrics.jsonl").read_text().splitlines()[0])
    assert (f"step {record['step']} | epoch 1 | 1/2 members live | train/loss median "
            f"{record['train/loss']:.4g} | val/accuracy best {record['val/accuracy']:.4g} by job "
            "p0 (optim.lr=0.05), ") in out, out
    # The done line and result.json say where the time went.
    timing = results[0]["timing"]
    assert list(timing) == ["setup", "training", "evaluation", "checkpoints"]
    assert all(v > 0 for v in timing.values())
    assert sum(timing.values()) == pytest.approx(results[0]["seconds"], abs=0.01)
    assert re.search(r"done: population of 2 \(1 finished, 1 diverged\), \d+ steps in [\d.]+ s "
                     r"\(setup [\d.]+ s, training [\d.]+ s, evaluation [\d.]+ s, "
                     r"checkpoints [\d.]+ s\)", out), out
    alone = fit(good, tmp_path / "alone")
    _assert_member_equals_standalone(tmp_path / "p0", tmp_path / "alone", results[0], alone)
    assert not (tmp_path / "p1" / "checkpoints").exists() or \
        not [p for p in (tmp_path / "p1" / "checkpoints").iterdir() if p.name.isdigit()]


def test_a_member_ending_at_chance_logs_its_standalone_runs_warning(tmp_path, capsys):
    """A member that collapsed to one class (lr too high for batch 16) gets, in its own log,
    the warning its standalone run prints, and the population's console names it; the
    member that learned gets none."""
    configs = [dataclasses.replace(_digits(lr=lr), trainer=dataclasses.replace(
        _digits().trainer, batch_size=16)) for lr in (2.0, 0.05)]
    logs = [[], []]
    fit_population(configs, [tmp_path / "pop" / str(i) for i in range(2)],
                   logs=[log.append for log in logs])
    console = capsys.readouterr().out
    fit(configs[0], tmp_path / "alone")
    warning = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("warning: the final model predicts class ")]
    assert len(warning) == 1 and "Check optim.lr (now 2, batch 16)" in warning[0], warning
    assert [line for line in logs[0] if line.startswith("warning")] == warning, logs[0]
    assert not [line for line in logs[1] if "warning" in line], logs[1]
    kept = [json.loads((tmp_path / "pop" / str(i) / "result.json").read_text()) for i in (0, 1)]
    assert kept[0]["warnings"] == warning and "warnings" not in kept[1]
    # The population's console names the member, as it names one that diverged.
    assert [line for line in console.splitlines() if "warning" in line] == [
        f"job 0 (optim.lr=2): {warning[0]}"], console


def test_members_stop_early_as_their_standalone_runs_do(tmp_path, capsys):
    """trainer.patience per member: each stops at its standalone run's step with its
    results, and the program ends when the last member has stopped."""
    base = dataclasses.replace(_digits(momentum=0.9), trainer=dataclasses.replace(
        _digits().trainer, epochs=20, patience=3))
    configs = [with_overrides(base, {"optim.lr": lr}) for lr in (0.05, 0.2)]
    results = fit_population(configs, [tmp_path / "pop" / str(i) for i in range(2)])
    out = capsys.readouterr().out
    steps = []
    for i, config in enumerate(configs):
        alone = fit(config, tmp_path / "alone" / str(i))
        assert alone["stopped_early"]["step"] == alone["steps"]  # before the 20 epochs end
        assert results[i]["steps"] == alone["steps"]
        assert results[i]["stopped_early"] == alone["stopped_early"]
        _assert_member_equals_standalone(tmp_path / "pop" / str(i), tmp_path / "alone" / str(i),
                                         results[i], alone)
        steps.append(alone["steps"])
    assert steps[0] != steps[1]  # they stop apart; the first is masked until the second stops
    assert f"done: population of 2 (2 finished, 2 stopped early, 0 diverged), {max(steps)} " \
        "steps" in out, out


def test_members_keep_their_best_parameters_as_their_standalone_runs_do(tmp_path):
    """trainer.restore_best per member, with early stopping: (lr 0.05, seed 2) and (lr 0.07,
    seed 0) run to the end with their best evaluation before it; (lr 0.03, seed 1) stops
    early at step 220, its best at 132. Each ends with its standalone run's results."""
    base = _digits(momentum=0.9, schedule="constant")
    base = dataclasses.replace(base, trainer=dataclasses.replace(
        base.trainer, epochs=12, patience=4, restore_best=True, monitor="val/loss"))
    configs = [with_overrides(base, {"optim.lr": lr, "seed": seed})
               for lr, seed in ((0.05, 2), (0.03, 1), (0.07, 0))]
    results = fit_population(configs, [tmp_path / "pop" / str(i) for i in range(3)])
    assert [(r["steps"], r["best"]["step"]) for r in results] == [(264, 242), (220, 132),
                                                                   (264, 198)]
    for i, config in enumerate(configs):
        alone = fit(config, tmp_path / "alone" / str(i))
        assert results[i]["best"] == {**alone["best"],
                                      "value": pytest.approx(alone["best"]["value"], rel=1e-5)}
        assert results[i]["monitor"] == pytest.approx(alone["monitor"], rel=1e-5)
        assert results[i]["monitored"] == alone["monitored"] == "val/loss"
        _assert_member_equals_standalone(tmp_path / "pop" / str(i), tmp_path / "alone" / str(i),
                                         results[i], alone)
        # Model.load(job dir) predicts with the best parameters, as for the standalone run.
        for a, b in zip(jax.tree.leaves(Model.load(tmp_path / "pop" / str(i)).params),
                        jax.tree.leaves(Model.load(tmp_path / "alone" / str(i)).params),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_resumed_population_names_changed_settings_as_fit_does(tmp_path, capsys):
    """Trained again into its job dirs with more epochs, a population says what changed and
    keeps it in each run.json; another model is refused naming the change, before anything is
    written, each member failing with its own job dir's message as its job would;
    trainer.resume=false refuses job dirs that hold checkpoints."""
    configs = [_digits(lr=lr) for lr in (0.05, 0.1)]
    dirs = [tmp_path / "0", tmp_path / "1"]
    fit_population(configs, dirs)
    longer = [dataclasses.replace(c, trainer=dataclasses.replace(c.trainer, epochs=3))
              for c in configs]
    capsys.readouterr()
    results = fit_population(longer, dirs)
    step = results[0]["resumed_from"]
    assert step == results[0]["steps"] * 2 // 3
    assert (f"resuming every member at step {step} with settings changed since its last start: "
            "trainer.epochs 2 -> 3\n") in capsys.readouterr().out
    for d in dirs:
        assert json.loads((d / "run.json").read_text())["resumed_with_changes"] == [
            {"step": step, "changed": {"trainer.epochs": [2, 3]}}]
    before = {d: (d / "run.json").read_text() for d in dirs}
    wider = [dataclasses.replace(c, model=ModelConfig(hidden=[64])) for c in longer]
    refused = fit_population(wider, dirs)
    assert [r["status"] for r in refused] == ["failed", "failed"]
    for d, r in zip(dirs, refused, strict=True):
        assert str(r["error"]).startswith(f"job directory {d} last ran with other settings: "
                                          "model.hidden [32] -> [64]; its checkpoints do not "
                                          "fit this config")
    assert {d: (d / "run.json").read_text() for d in dirs} == before
    fresh = [dataclasses.replace(c, trainer=dataclasses.replace(c.trainer, resume=False))
             for c in longer]
    with pytest.raises(UserError, match=re.escape(
            f"job directory {dirs[0]} already holds checkpoints and trainer.resume=false")):
        fit_population(fresh, dirs)


def test_a_sweep_extended_into_its_job_dirs_trains_the_new_points_as_standalone_runs(tmp_path):
    """A finished 2-lr population trained again with a third lr (a sweep extended with a new
    point into its sweep dir): the members share no checkpoint step, so each resumes where
    its own run would. The finished ones keep their results; the new one equals its
    standalone run. A job dir holding another model's run fails alone, as its job would."""
    dirs = [tmp_path / "pop" / str(i) for i in range(4)]
    first = fit_population([_digits(lr=lr) for lr in (0.05, 0.1)], dirs[:2])
    extended = [_digits(lr=lr) for lr in (0.05, 0.1, 0.2)]
    before = [(d / "metrics.jsonl").read_text() for d in dirs[:2]]
    results = fit_population(extended, dirs[:3])
    assert [r["status"] for r in results] == ["done"] * 3
    for i in range(2):
        assert results[i]["monitor"] == first[i]["monitor"]
        assert (dirs[i] / "metrics.jsonl").read_text() == before[i]
    alone = fit(extended[2], tmp_path / "alone")
    _assert_member_equals_standalone(dirs[2], tmp_path / "alone", results[2], alone)
    assert results[2]["resumed_from"] is None
    # dirs[0] now holds a hidden-32 run; a hidden-64 population with a fresh member.
    wider = [dataclasses.replace(_digits(lr=lr), model=ModelConfig(hidden=[64]))
             for lr in (0.05, 0.1)]
    mixed = fit_population(wider, [dirs[0], dirs[3]])
    assert mixed[0]["status"] == "failed" and str(mixed[0]["error"]).startswith(
        f"job directory {dirs[0]} last ran with other settings: model.hidden [32] -> [64]")
    assert (dirs[0] / "metrics.jsonl").read_text() == before[0]
    assert mixed[1]["status"] == "done"
    assert mixed[1]["monitor"] == pytest.approx(fit(wider[1], tmp_path / "alone64")["monitor"],
                                                rel=1e-4)


def test_a_population_resumed_with_other_lrs_trains_on_with_them(tmp_path):
    """Resumed with new learning rates, each member steps with its new one, as a standalone
    run resumed the same way does."""
    def stage(lr, epochs):
        config = _digits(lr=lr, momentum=0.9)
        return dataclasses.replace(config, trainer=dataclasses.replace(config.trainer,
                                                                       epochs=epochs))

    first, second = [stage(lr, 2) for lr in (0.05, 0.1)], [stage(lr, 3) for lr in (0.02, 0.04)]
    dirs = [tmp_path / "pop" / str(i) for i in range(2)]
    fit_population(first, dirs)
    results = fit_population(second, dirs)
    for i in range(2):
        alone = tmp_path / "alone" / str(i)
        fit(first[i], alone)
        assert fit(second[i], alone)["resumed_from"] == results[i]["resumed_from"] > 0
        state = Checkpointer(dirs[i] / "checkpoints", keep=1).restore_arrays()
        assert float(state["opt_state"]["hyperparams"]["learning_rate"]) == pytest.approx(
            second[i].optim.lr)
        _assert_member_equals_standalone(dirs[i], alone, results[i],
                                         json.loads((alone / "result.json").read_text()))


def _stop_after_calls(monkeypatch, configs, dirs, calls: int) -> int:
    """Trains the population as if Ctrl-C came after `calls` + 1 device calls; the step it
    stopped at."""
    monkeypatch.setattr(population, "stop_on_interrupt",
                        lambda: contextlib.nullcontext(StopAfterCalls(calls)))
    with pytest.raises(Interrupted) as info:
        fit_population(configs, dirs)
    monkeypatch.undo()
    return info.value.step


def _records(run_dir, skip=("resumed",)):
    """metrics.jsonl's records, without the events named in `skip`."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") not in skip]


def test_population_stopped_by_ctrl_c_resumes_to_the_same_end(tmp_path, monkeypatch, capsys):
    base = _digits(lr=0.05, momentum=0.9)
    base = dataclasses.replace(base, trainer=dataclasses.replace(
        base.trainer, epochs=3, batch_size=32, steps_per_call=4))
    configs = [with_overrides(base, p) for p in grid_points({"optim.lr": [0.05, 0.1],
                                                             "seed": [0, 1]})]
    reference = [tmp_path / "reference" / str(i) for i in range(4)]
    stopped = [tmp_path / "stopped" / str(i) for i in range(4)]
    fit_population(configs, reference)

    assert _stop_after_calls(monkeypatch, configs, stopped, 5) == 24  # 6 calls of 4 steps
    assert "stopped at step 24 of" in capsys.readouterr().out
    for d in stopped:
        assert Checkpointer(d / "checkpoints", keep=3).latest_step() == 24
        assert not (d / "result.json").exists()

    results = fit_population(configs, stopped)
    assert [r["resumed_from"] for r in results] == [24] * 4
    for a, b in zip(reference, stopped, strict=True):
        for x, y in zip(jax.tree.leaves(_params(a)), jax.tree.leaves(_params(b)), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        # train/loss of the first epoch also averages the steps before the stop.
        assert _records(a) == _records(b) and len(_records(a)) == 4


@pytest.mark.parametrize("restore_best", [False, True])
def test_population_resumes_after_a_member_stopped_early(tmp_path, monkeypatch, restore_best):
    """Stopped at step 176, the lr-0.01 member's three checkpoints (132, 154, 176) share no
    step with those of the lr-0.2 member, which stopped early at 88: that member stays
    stopped with its results, the other resumes, and both end as without the stop (with
    trainer.restore_best, each with the best parameters its checkpoint kept)."""
    base = dataclasses.replace(_digits(momentum=0.9), trainer=dataclasses.replace(
        _digits().trainer, epochs=20, patience=3, restore_best=restore_best))
    configs = [with_overrides(base, {"optim.lr": lr}) for lr in (0.2, 0.01)]
    reference = [tmp_path / "reference" / str(i) for i in range(2)]
    stopped = [tmp_path / "stopped" / str(i) for i in range(2)]
    expected = fit_population(configs, reference)
    assert [r["steps"] for r in expected] == [88, 220]

    assert _stop_after_calls(monkeypatch, configs, stopped, 7) == 176
    kept = [sorted(int(p.name) for p in (d / "checkpoints").iterdir() if p.name.isdigit())
            for d in stopped]
    assert kept == [[44, 66, 88], [132, 154, 176]]

    results = fit_population(configs, stopped)
    if restore_best:  # the lr-0.01 member's best comes before the stop, and it ends later
        assert [r["best"]["step"] for r in expected] == [22, 154]
    for a, b, r, e in zip(reference, stopped, results, expected, strict=True):
        for key in ("steps", "stopped_early", "val", "test", "monitor", "best"):
            assert r.get(key) == e.get(key), key
        for x, y in zip(jax.tree.leaves(_params(a)), jax.tree.leaves(_params(b)), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert _records(a) == _records(b)
    assert results[1]["resumed_from"] == 176


def test_population_with_a_diverged_member_resumes(tmp_path, monkeypatch):
    """The lr-1e5 member diverges before its first checkpoint; stopped at step 88, the
    population resumes (that member stays diverged, its metrics.jsonl says where) and ends
    as without the stop."""
    base = _digits(lr=0.05, schedule="constant")
    base = dataclasses.replace(base, trainer=dataclasses.replace(base.trainer, epochs=6))
    configs = [base, with_overrides(base, {"optim.lr": 1e5})]
    reference = [tmp_path / "reference" / str(i) for i in range(2)]
    stopped = [tmp_path / "stopped" / str(i) for i in range(2)]
    expected = fit_population(configs, reference)
    assert [r["status"] for r in expected] == ["done", "diverged"]

    assert _stop_after_calls(monkeypatch, configs, stopped, 3) == 88
    assert not [p for p in (stopped[1] / "checkpoints").iterdir() if p.name.isdigit()]

    results = fit_population(configs, stopped)
    assert results[1] == expected[1]  # diverged, at the same step with the same loss
    assert results[0]["resumed_from"] == 88
    for key in ("steps", "val", "test", "monitor"):
        assert results[0][key] == expected[0][key], key
    for x, y in zip(jax.tree.leaves(_params(reference[0])), jax.tree.leaves(_params(stopped[0])),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for a, b in zip(reference, stopped, strict=True):
        assert _records(a) == _records(b)


def test_grouping_by_structural_fields():
    base = _digits()
    points = grid_points({"model.name": ["mlp", "lenet5"], "optim.lr": [0.01, 0.05, 0.1],
                          "seed": [0, 1]})
    groups = group_population([with_overrides(base, p) for p in points])
    assert sorted(len(g) for g in groups) == [6, 6]
    structural = [with_overrides(base, p) for p in
                  grid_points({"trainer.batch_size": [32, 64], "model.hidden": [[16], [32]]})]
    assert max(len(g) for g in group_population(structural)) == 1
    assert [len(g) for g in group_population([base] * 5, max_population=2)] == [2, 2, 1]


def test_vectorizing_a_shape_field_is_refused(tmp_path):
    a, b = _digits(), _digits()
    b.model.hidden = [64]
    with pytest.raises(UserError, match=r"cannot vectorize over model.hidden"):
        fit_population([a, b], [tmp_path / "a", tmp_path / "b"])


def test_a_monitor_the_population_does_not_report_is_refused_before_training(tmp_path):
    configs = [_digits(lr=lr) for lr in (0.05, 0.1)]
    for c in configs:
        c.trainer.monitor = "val/mse"
    with pytest.raises(UserError, match=r"trainer.monitor='val/mse' is not a metric this "
                                        r"classification run reports; use auto or one of "):
        fit_population(configs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a" / "metrics.jsonl").exists()


def test_vectorized_sweep_dataframe_matches_plain_sweep(tmp_path):
    grid = {"optim.lr": [0.02, 0.08], "seed": [0, 1]}
    fast = sweep(_digits(), grid, workdir=tmp_path / "v", vectorize=True)
    slow = sweep(_digits(), grid, workdir=tmp_path / "s")
    assert list(fast["population"]) == [4] * 4 and list(slow["population"]) == [1] * 4
    np.testing.assert_allclose(fast["val/loss"], slow["val/loss"], rtol=1e-3)
    assert (tmp_path / "v" / "3" / "metrics.jsonl").exists()


def test_report_groups_over_seeds_and_draws_plots(tmp_path, capsys):
    from lepton_jax.cli import main as cli

    df = sweep(_digits(), {"optim.lr": [0.02, 0.08], "seed": [0, 1, 2]}, workdir=tmp_path,
               vectorize=True)
    assert cli(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    import pandas as pd

    table = pd.read_csv(tmp_path / "report.csv").set_index("optim.lr")
    assert list(table.index) == [0.02, 0.08]  # one row per lr, seeds averaged
    for lr in (0.02, 0.08):
        runs = df[df["optim.lr"] == lr]
        row = table.loc[lr]
        assert row["mean"] == pytest.approx(runs["val/accuracy"].mean())
        assert row["std"] == pytest.approx(runs["val/accuracy"].std()) and row["count"] == 3
        # Beside it, the test split's score of the same runs.
        assert row["test/accuracy mean"] == pytest.approx(runs["test/accuracy"].mean())
        assert row["test/accuracy std"] == pytest.approx(runs["test/accuracy"].std())
    best = df.groupby("optim.lr")["val/accuracy"].mean().idxmax()
    assert f"best: optim.lr={best}" in out
    for png in ("report_val_accuracy_vs_optim.lr.png", "report_val_accuracy_vs_seed.png",
                "report_curves.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("model,devices", [(ModelConfig(hidden=[32]), 4),
                                           (ModelConfig(name="lenet5"), 1)],
                         ids=["mlp-vmap", "lenet5-host"])
def test_population_sharded_over_devices_equals_one_device(tmp_path, model, devices):
    """8 members over the 4 simulated devices (2 each) end where the one-device population
    ends, and the train state really is split: each device holds its own members. LeNet-5
    members on XLA:CPU step from the host, on one device whatever the device count."""
    import dataclasses

    from lepton_jax.parallel import DataParallel

    base = dataclasses.replace(_digits(), model=model)
    base.data.limit = 512
    configs = [with_overrides(base, p) for p in grid_points({"optim.lr": list(LRS), "seed": [0, 1]})]
    spread = [dataclasses.replace(c, trainer=dataclasses.replace(c.trainer, num_devices=None))
              for c in configs]
    one = fit_population(configs, [tmp_path / "one" / str(i) for i in range(8)])
    four = fit_population(spread, [tmp_path / "four" / str(i) for i in range(8)])

    assert json.loads((tmp_path / "four" / "0" / "run.json").read_text())["devices"] == devices
    for i in range(8):
        _assert_member_equals_standalone(tmp_path / "four" / str(i), tmp_path / "one" / str(i),
                                         four[i], one[i], rel_norm=1e-5, rel_loss=1e-5)
    # The compiled population step keeps members split: 2 per device, in and out.
    dp = DataParallel("population", jax.devices()[:4], 64)
    states = dp.shard_members({"w": np.arange(8.0).reshape(8, 1)})
    assert {s.data.shape for s in states["w"].addressable_shards} == {(2, 1)}

    def make_step(_):
        return lambda state, batch: ({"w": state["w"] + batch[0].sum()}, {"loss": batch[1][0]})

    run = dp.population_steps(make_step, 1, "vmap")
    x, y = dp.replicate((np.ones((64, 1), np.float32), np.arange(64.0)))
    perms = dp.shard_members(np.tile(np.arange(64, dtype=np.int32), (8, 1)))
    out, metrics = run(states, x, y, perms, 0)
    assert {s.data.shape for s in out["w"].addressable_shards} == {(2, 1)}
    np.testing.assert_allclose(np.asarray(out["w"])[:, 0], np.arange(8.0) + 64)
    assert metrics["loss"].shape == (1, 8)


def test_population_larger_than_memory_trains_in_chunks(tmp_path, monkeypatch, capsys):
    """With room for 2 members (estimated from shapes), 4 members train as 2 chunks and end
    exactly where the one-piece population ends."""
    from lepton_jax import population

    configs = [with_overrides(_digits(), p) for p in grid_points({"optim.lr": [0.02, 0.05],
                                                                  "seed": [0, 1]})]
    whole = fit_population(configs, [tmp_path / "whole" / str(i) for i in range(4)])
    model = population.build_model(configs[0].model, 10)
    per_member = population.member_bytes(model, (28, 28, 1), configs[0].trainer.batch_size)
    assert per_member > 4 * 4 * (784 * 32 + 32 * 10)  # at least the parameters four times
    monkeypatch.setattr(population, "device_memory", lambda device: 5 * per_member)
    chunked = fit_population(configs, [tmp_path / "chunked" / str(i) for i in range(4)])
    assert "population of 4 trains in chunks of 2" in capsys.readouterr().out
    for i in range(4):
        assert json.loads((tmp_path / "chunked" / str(i) / "run.json").read_text())["population"] == 2
        _assert_member_equals_standalone(tmp_path / "chunked" / str(i), tmp_path / "whole" / str(i),
                                         chunked[i], whole[i], rel_norm=1e-6, rel_loss=1e-6)


def test_cpu_population_fuses_steps_by_a_divisor_of_the_epoch():
    from lepton_jax.parallel import cpu_steps_per_call

    assert [cpu_steps_per_call(n) for n in (78, 22, 468, 37, 64, 3, 1)] == [26, 22, 26, 37, 32, 3, 1]
