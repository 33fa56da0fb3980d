"""End-to-end training: the default job, the MNIST preset, determinism, regression, Hydra."""

import contextlib
import json
import re

import jax
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from conftest import StopAfterCalls, run_cli
from lepton_jax import (Config, DataConfig, Model, ModelConfig, OptimConfig, TrainerConfig, fit,
                        loop)
from lepton_jax.checkpoint import Checkpointer
from lepton_jax.data import DataSplits
from lepton_jax.errors import DivergedError, Interrupted, UserError


def _accuracy(stdout: str, split: str = "test") -> float:
    match = re.search(rf"done: .*{split} accuracy ([0-9.]+)", stdout)
    assert match, stdout
    return float(match.group(1))


@pytest.mark.slow
def test_default_job_on_digits(tmp_path):
    proc = run_cli(f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert _accuracy(proc.stdout) >= 0.95
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["test"]["accuracy"] == pytest.approx(_accuracy(proc.stdout), abs=1e-4)
    assert np.asarray(result["test"]["confusion"]).sum() == 180
    assert "warning" not in proc.stdout  # it learned: no chance-level warning
    # Hydra's job log keeps the run's lines with timestamps; JAX's start-up INFO stays out.
    log = (tmp_path / "train.log").read_text()
    assert re.search(r"\]\[lepton_jax.run\]\[INFO\] - step \d+ \| epoch 1 \|", log), log
    assert "done: test accuracy" in log
    assert "libtpu" not in log + proc.stdout + proc.stderr
    assert re.search(r"^step \d+ \| epoch 1 \|", proc.stdout, re.M), proc.stdout  # no prefix
    # The first line says what trains: the MLP's 784*256+256 + 256*128+128 + 128*10+10
    # parameters, the split sizes run.json records, and the schedule of steps.
    sizes = json.loads((tmp_path / "run.json").read_text())["data"]["sizes"]
    header = (f"mlp 256-128 relu (235,146 params) | digits: {sizes['train']:,} train / "
              f"{sizes['val']} val / {sizes['test']} test, 28x28x1 images -> 10 classes | sgd "
              f"lr 0.05 momentum 0.9 cosine | 20 epochs x {sizes['train'] // 64} steps of 64 (")
    assert proc.stdout.startswith(header), proc.stdout[:300]
    assert f"on 1 cpu device | run dir {tmp_path}\n" in proc.stdout
    assert "][lepton_jax.run][INFO] - " + header in log


def test_run_lines_print_whatever_job_logging_hydra_is_given(tmp_path):
    """The console lines are prints, so `hydra/job_logging=disabled` silences Hydra's logging
    but not the run's results (nor does it leave a train.log)."""
    proc = run_cli("hydra/job_logging=disabled", "trainer.epochs=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert _accuracy(proc.stdout) > 0.5
    assert re.search(r"^step \d+ \| epoch 1 \|", proc.stdout, re.M), proc.stdout
    assert not (tmp_path / "train.log").exists()


@pytest.mark.slow
def test_run_lines_print_above_the_progress_bar_on_a_terminal(tmp_path):
    """On a terminal the rich bar redraws its line; a run's lines must start on their own
    line (rich clears the bar's line first) instead of being glued to the bar."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    from conftest import REPO

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 300, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen([sys.executable, "-m", "lepton_jax.train", "trainer.epochs=2",
                             f"hydra.run.dir={tmp_path}"], cwd=REPO, env={**env, "TERM": "xterm"},
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "━" in text, text  # the bar was drawn
    for epoch in (1, 2):
        at = text.index(f"| epoch {epoch} | train/loss")
        line_start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at),
                         text.rfind("\x1b[2K", 0, at) + len("\x1b[2K") - 1)
        assert re.fullmatch(r"step \d+ ", text[line_start + 1:at]), repr(text[line_start - 80:at])


@pytest.mark.slow
def test_mnist_lenet5_preset_one_epoch(tmp_path, mnist_root):
    proc = run_cli("experiment=mnist_lenet5", "trainer.epochs=1", f"data.root={mnist_root}",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert _accuracy(proc.stdout) >= 0.98


@pytest.mark.slow
def test_mnist_mlp_preset(tmp_path, mnist_root):
    """The benchmarks' MLP with the preset's recipe, on 10,000 images for one epoch."""
    proc = run_cli("experiment=mnist_mlp", "trainer.epochs=1", "data.limit=10000",
                   f"data.root={mnist_root}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "run.json").read_text())["config"]
    assert config["model"]["hidden"] == [512, 512] and config["data"]["name"] == "mnist"
    assert (config["optim"]["schedule"], config["optim"]["nesterov"]) == ("one_cycle", True)
    assert _accuracy(proc.stdout) >= 0.9


@pytest.mark.slow
def test_sweep_preset_runs_its_grid_as_populations_on_the_pool(tmp_path):
    """`-m experiment=digits_lr_sweep` alone is a 4 lr x 3 seed sweep, vectorized on the pool
    launcher; a sweep value given on the command line replaces the preset's."""
    proc = run_cli("-m", "experiment=digits_lr_sweep", "trainer.epochs=1",
                   f"hydra.sweep.dir={tmp_path / 'grid'}")
    assert proc.returncode == 0, proc.stderr
    assert "is launching 12 jobs as 2 populations" in proc.stdout + proc.stderr
    summary = pd.read_csv(tmp_path / "grid" / "summary.csv")
    assert (summary["status"] == "COMPLETED").all() and len(summary) == 12
    grid = {tuple(sorted(t for t in o.split() if t.startswith(("optim.lr=", "seed="))))
            for o in summary["overrides"]}
    assert grid == {(f"optim.lr={lr}", f"seed={seed}") for lr in (0.003, 0.01, 0.03, 0.1)
                    for seed in (0, 1, 2)}
    proc = run_cli("-m", "experiment=digits_lr_sweep", "trainer.epochs=1", "seed=7",
                   f"hydra.sweep.dir={tmp_path / 'seed7'}")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "seed7" / "summary.csv")) == 4


def _small(**trainer) -> Config:
    return Config(model=ModelConfig(name="mlp", hidden=[64]),
                  data=DataConfig(name="digits"),
                  trainer=TrainerConfig(epochs=2, batch_size=64, progress="off", **trainer))


def test_same_seed_gives_identical_metrics(tmp_path):
    fit(_small(), tmp_path / "a")
    fit(_small(), tmp_path / "b")
    a = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert a == (tmp_path / "b" / "metrics.jsonl").read_text()
    assert a.count("val/accuracy") >= 2


def test_final_evaluation_reuses_the_last_periodic_predictions(tmp_path, monkeypatch):
    """Validating at the last step and then finishing predicts the validation split once,
    not twice; the final metrics are those of that prediction (plus the confusion matrix)."""
    from lepton_jax import loop
    from lepton_jax.population import fit_population

    calls = []
    original = loop.Evaluator.__init__

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        jitted = self._jitted

        def predict(params, x, size):
            calls.append(len(x))
            return jitted(params, x, size)
        self._jitted = predict

    monkeypatch.setattr(loop.Evaluator, "__init__", counting)
    config = _small()
    for run in ("alone", "population"):
        calls.clear()
        if run == "alone":
            result = fit(config, tmp_path / run)
        else:
            result, = fit_population([config], [tmp_path / run])
        val_rows = int(np.sum(result["val"]["confusion"]))
        test_rows = int(np.sum(result["test"]["confusion"]))
        # Padded to whole chunks, so compare counts: epochs 1 and 2, then the test split.
        assert len(calls) == 3, (run, calls)
        assert calls[0] == calls[1] >= val_rows and calls[2] >= test_rows
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()]
        last_val = [r for r in records if "val/accuracy" in r][-1]
        final = records[-1]
        assert final["final/val/accuracy"] == last_val["val/accuracy"] == result["val"]["accuracy"]
        assert final["final/val/loss"] == last_val["val/loss"]


def test_different_seed_differs(tmp_path):
    config = _small()
    fit(config, tmp_path / "a")
    config.seed = 1
    fit(config, tmp_path / "b")
    assert (tmp_path / "a" / "metrics.jsonl").read_text() != \
        (tmp_path / "b" / "metrics.jsonl").read_text()


def test_linear_regression_recovers_coefficients(tmp_path):
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3))
    coef, intercept = np.array([1.5, -2.0, 0.5]), 0.25
    y = x @ coef + intercept
    path = tmp_path / "lin.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,c,y", comments="")
    config = Config(model=ModelConfig(name="linear"),
                    data=DataConfig(name="csv", root=str(path), normalize=False,
                                    normalize_target=False),
                    optim=OptimConfig(lr=0.05, momentum=0.9, schedule="constant"),
                    trainer=TrainerConfig(epochs=30, batch_size=32, progress="off"))
    result = fit(config, tmp_path / "run")
    assert result["test"]["r2"] > 0.9999
    from lepton_jax.checkpoint import Checkpointer

    params = Checkpointer(tmp_path / "run" / "checkpoints", keep=1).restore_arrays()["params"]
    kernel = np.asarray(params["Dense_0"]["kernel"]).ravel()
    bias = float(np.asarray(params["Dense_0"]["bias"])[0])
    reference = LinearRegression().fit(x, y)
    np.testing.assert_allclose(kernel, coef, atol=1e-3)
    np.testing.assert_allclose(kernel, reference.coef_, atol=1e-3)
    assert bias == pytest.approx(intercept, abs=1e-3)


def test_logistic_is_the_linear_model_held_to_classes(tmp_path):
    """`model=logistic` trains the same softmax regression as `model=linear` on class
    labels (same init, same result); on regression data it is refused (test_cli_errors)."""
    from lepton_jax import Config, ModelConfig, TrainerConfig, fit

    results = [fit(Config(model=ModelConfig(name=name),
                          trainer=TrainerConfig(epochs=2, progress="off")), tmp_path / name)
               for name in ("logistic", "linear")]
    assert results[0]["val"] == results[1]["val"] and results[0]["test"] == results[1]["test"]
    assert results[0]["val"]["accuracy"] > 0.8


def test_divergence_stops_with_step_and_keeps_good_checkpoint(tmp_path, capsys):
    config = _small(checkpoint_every_steps=5, eval_every_steps=5)
    config.optim = OptimConfig(lr=5e4, momentum=0.9, schedule="constant")
    with pytest.raises(DivergedError, match=r"diverged at step \d+") as info:
        fit(config, tmp_path)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert all(s < info.value.step for s in steps)
    # The message names the checkpoint kept, or says there was none yet (it had said "the
    # last good checkpoint was kept" of runs that had none).
    assert info.value.kept == (steps[-1] if steps else None)
    assert (f"the last good checkpoint (step {steps[-1]}) was kept" if steps else
            "no checkpoint had been saved before it") in str(info.value)
    # metrics.jsonl says so last, as a population member's does (reports read it).
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["step"] == info.value.step
    assert not np.isfinite(last["loss"])
    # Loading the run says whose parameters it gets; without a checkpoint, why there are none
    # (it had loaded them as an unfinished run's, or said "has no checkpoint yet").
    capsys.readouterr()
    if steps:
        Model.load(tmp_path)
        assert (f"note: {tmp_path} diverged at step {info.value.step}; using its checkpoint at "
                f"step {steps[-1]}, the last before it") in capsys.readouterr().err
    config.trainer.checkpoint_every_steps = 0
    with pytest.raises(DivergedError):
        fit(config, tmp_path / "none")
    with pytest.raises(UserError, match=r"diverged at step \d+ before any checkpoint was saved, "
                                        "so it has no parameters to load"):
        Model.load(tmp_path / "none")


def test_regression_targets_train_standardized_and_report_in_their_own_units(tmp_path):
    """Prices in the 100,000s train at the default lr: the targets are standardized with the
    training split's statistics (`data.normalize_target`, on by default), and metrics,
    predictions and saved models are back in dollars, against scikit-learn's least squares
    and metrics on the raw data. The loss stays the standardized one that training uses."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from lepton_jax import Dataset, Model, Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    price = x @ [1.0, 2.0, 3.0] * 30_000 + 250_000 + rng.normal(size=400) * 5_000
    dataset = Dataset.from_arrays(x, price)
    model = Model.linear_regression()
    trainer = Trainer(model, dataset, workdir=tmp_path / "run", progress="off")
    trainer.train(epochs=40)  # the cosine schedule's end settles SGD's noise
    raw = dataset.splits(normalized=False)
    predicted = model.predict(raw.x_test)
    reference = LinearRegression().fit(raw.x_train, raw.y_train.ravel()).predict(raw.x_test)
    np.testing.assert_allclose(predicted, reference, rtol=1e-3)
    test = trainer.result["test"]
    assert test["mse"] == pytest.approx(mean_squared_error(raw.y_test, predicted), rel=1e-4)
    assert test["mae"] == pytest.approx(mean_absolute_error(raw.y_test, predicted), rel=1e-4)
    assert test["r2"] == pytest.approx(r2_score(raw.y_test, predicted), abs=1e-5)
    std = float(np.std(raw.y_train))
    assert test["loss"] == pytest.approx(test["mse"] / std**2, rel=1e-4)
    info = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert info["target_mean"] == pytest.approx([raw.y_train.mean()], rel=1e-6)
    assert info["target_std"] == pytest.approx([std], rel=1e-6)
    # Model.evaluate reports what the run did, the standardized loss included.
    assert model.evaluate(dataset) == pytest.approx(test, rel=1e-4)
    model.save(tmp_path / "model.bin")
    for source in (tmp_path / "model.bin", tmp_path / "run"):
        np.testing.assert_allclose(Model.load(source).predict(raw.x_test), predicted, rtol=1e-6)
    # An MLP, which diverged at step 3 on these targets before they were standardized.
    mlp = Trainer(Model.mlp(hidden=[16]), dataset, workdir=tmp_path / "mlp", progress="off")
    mlp.train(epochs=10)
    assert mlp.result["test"]["r2"] > 0.95


def test_resuming_with_another_data_scale_is_refused(tmp_path):
    """A run's parameters learned inputs and (for regression) targets on the scale its
    standardization gave them: resuming with `data.normalize` or `data.normalize_target`
    flipped is refused naming it, with nothing rewritten. A classifier's labels are never
    standardized, so flipping `normalize_target` for it changes nothing and goes on; a run
    from before the setting existed (no such key in run.json) trained on raw targets."""
    from lepton_jax import Dataset, Model, Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ [1.0, 2.0, 3.0] * 1_000 + 5_000
    run = tmp_path / "reg"
    Trainer(Model.linear_regression(), Dataset.from_arrays(x, y), workdir=run,
            progress="off").train(epochs=2)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for flipped, key in ((dict(normalize_target=False), "data.normalize_target"),
                         (dict(normalize=False), "data.normalize")):
        with pytest.raises(UserError) as info:
            Trainer(Model.linear_regression(), Dataset.from_arrays(x, y, **flipped),
                    workdir=run, progress="off").train(epochs=4)
        learned = "targets" if key.endswith("target") else "inputs"
        assert str(info.value).startswith(
            f"run directory {run} was trained with {key}=true, and its parameters learned "
            f"{learned} on that scale: resuming it with {key}=false would train them on "
            "another. Resume with the run's own settings"), str(info.value)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # As a run from before `data.normalize_target` existed, which trained on raw targets.
    record = json.loads((run / "run.json").read_text())
    del record["config"]["data"]["normalize_target"]
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="data.normalize_target=false, and its parameters"):
        Trainer(Model.linear_regression(), Dataset.from_arrays(x, y), workdir=run,
                progress="off").train(epochs=4)
    Trainer(Model.linear_regression(), Dataset.from_arrays(x, y, normalize_target=False),
            workdir=run, progress="off").train(epochs=4)
    # A classifier's labels are not standardized either way.
    labels = (x[:, 0] > 0).astype(int)
    clf = tmp_path / "clf"
    Trainer(Model.logistic_regression(), Dataset.from_arrays(x, labels), workdir=clf,
            progress="off").train(epochs=2)
    Trainer(Model.logistic_regression(), Dataset.from_arrays(x, labels, normalize_target=False),
            workdir=clf, progress="off").train(epochs=4)
    # ... and is not even named as a change (nor, for a run from before it existed, its
    # absence: `null -> true`).
    record = json.loads((clf / "run.json").read_text())
    assert [r["changed"] for r in record["resumed_with_changes"]] == [{"trainer.epochs": [2, 4]}]
    del record["config"]["data"]["normalize_target"]
    (clf / "run.json").write_text(json.dumps(record))
    Trainer(Model.logistic_regression(), Dataset.from_arrays(x, labels), workdir=clf,
            progress="off").train(epochs=5)
    assert [r["changed"] for r in json.loads((clf / "run.json").read_text())[
        "resumed_with_changes"]] == [{"trainer.epochs": [2, 4]}, {"trainer.epochs": [4, 5]}]
    with pytest.raises(UserError, match="data.normalize=true, and its parameters learned inputs"):
        Trainer(Model.logistic_regression(), Dataset.from_arrays(x, labels, normalize=False),
                workdir=clf, progress="off").train(epochs=6)


def test_a_run_ending_at_chance_is_warned_about(tmp_path, capsys):
    """A learning rate too high for the batch collapses an MLP to one class without a NaN:
    the run ends at chance and says so, naming the class it predicts and the lr. A model no
    better than always predicting the most common validation class (too low a rate) is
    warned about too (`loop.chance_warning`, on results made up to be so); a run that
    learned is not."""
    def trained(**optim):
        config = _small()
        config.trainer.batch_size = 16
        config.optim = OptimConfig(**optim)
        result = fit(config, tmp_path / str(len(list(tmp_path.iterdir()))))
        return result, capsys.readouterr().out

    result, out = trained(lr=2.0)
    # result.json keeps it (for report and the pool's summary), as the console says it.
    assert result["warnings"] == [line for line in out.splitlines() if "warning" in line]
    folder = tmp_path / str(len(list(tmp_path.iterdir())) - 1)
    assert json.loads((folder / "result.json").read_text())["warnings"] == result["warnings"]
    confusion = np.asarray(result["val"]["confusion"])
    assert (confusion.sum(axis=0) > 0).sum() == 1  # one class for every example
    predicted = int(np.argmax(confusion.sum(axis=0)))
    assert re.search(rf"^warning: the final model predicts class {predicted} for all 180 val "
                     r"examples \(val accuracy 0\.\d+\)\. Check optim\.lr \(now 2, batch 16\)",
                     out, re.MULTILINE), out

    result, out = trained(lr=0.05)
    assert result["val"]["accuracy"] > 0.8 and "warning" not in out, out
    assert "warnings" not in result

    data = DataSplits(*[np.zeros((6, 2))] * 6, task="classification", num_classes=3,
                      class_values=("cat", "dog", "eel"))
    confusion = [[1, 1, 2], [0, 0, 1], [0, 1, 0]]  # 4 of 6 are cats; 1 of 6 right
    says = loop.chance_warning({"val": {"accuracy": 1 / 6, "confusion": confusion}}, data,
                               config=_small())
    assert says.startswith("warning: the final model does no better than always predicting "
                           "class 'cat' would (val accuracy 0.1667 vs 0.6667). Check optim.lr "
                           "(now 0.05, batch 64)"), says
    right = [[3, 1, 0], [0, 1, 0], [0, 0, 1]]  # 5 of 6 right: better than cats (4 of 6)
    assert loop.chance_warning({"val": {"accuracy": 5 / 6, "confusion": right}}, data,
                               config=_small()) is None
    one_class = {"val": {"accuracy": 1.0, "confusion": [[2, 0, 0], [0, 0, 0], [0, 0, 0]]}}
    assert loop.chance_warning(one_class, data, config=_small()) is None  # all right
    only_test = {"test": {"accuracy": 4 / 6, "confusion": [[4, 0, 0], [1, 0, 0], [1, 0, 0]]}}
    assert "predicts class 'cat' for all 6 test examples" in loop.chance_warning(
        only_test, data, config=_small())


def test_the_chance_warning_names_the_clip_that_lets_a_high_rate_train(tmp_path, capsys):
    """`model=lenet5 optim.lr=0.1`, the README's first example, ended at chance on digits for
    3 of 4 seeds (momentum 0.9 overshoots in the first steps and the ReLUs die). The warning
    now names the fix measured to work, optim.clip_norm=1.0, which trains the same run."""
    def run(clip_norm):
        config = Config(model=ModelConfig(name="lenet5"), data=DataConfig(name="digits"),
                        optim=OptimConfig(lr=0.1, clip_norm=clip_norm),
                        trainer=TrainerConfig(epochs=2, progress="off", num_devices=1))
        result = fit(config, tmp_path / str(clip_norm))
        return result, capsys.readouterr().out

    result, out = run(None)
    assert result["val"]["accuracy"] < 0.2
    assert ("a rate too high for the batch collapses training to one class (lower it, or cap "
            "each step with optim.clip_norm=1.0)") in out, out
    result, out = run(1.0)
    assert result["val"]["accuracy"] > 0.9 and "warning:" not in out, out


def test_divergence_on_large_regression_targets_says_to_scale_them(tmp_path):
    """With `normalize_target=False` the targets train as they are: an MLP on prices in the
    100,000s diverges at the default lr. The message says why and what to do; for a
    classifier, or targets of ordinary size, it keeps to the learning rate. The hint
    survives a trip between processes (sweep workers pickle errors)."""
    import pickle

    from lepton_jax import Dataset, Model, Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    price = x @ [1.0, 2.0, 3.0] * 30_000 + 250_000
    with pytest.raises(DivergedError) as info:
        Trainer(Model.mlp(hidden=[16]), Dataset.from_arrays(x, price, normalize_target=False),
                workdir=tmp_path / "big", progress="off").train(epochs=5)
    assert re.search(
        r"Lower optim.lr or set optim.clip_norm. The regression targets are large \(standard "
        r"deviation 1\.\d+e\+05\) and data.normalize_target=false: set it to true \(the "
        r"default\) to train on standardized targets, or scale them down \(e.g. divide them by "
        r"100000\), or lower optim.lr by orders of magnitude.$", str(info.value)), str(info.value)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)
    with pytest.raises(DivergedError) as small:
        Trainer(Model.mlp(hidden=[16]), Dataset.from_arrays(x, price / 1e5), lr=1e4,
                workdir=tmp_path / "small", progress="off").train(epochs=5)
    assert str(small.value).endswith("Lower optim.lr or set optim.clip_norm.")


def test_hydra_job_returns_monitored_metric(tmp_path):
    import lepton_jax.train as train_app

    with initialize_config_module("lepton_jax.conf", version_base="1.3"):
        cfg = compose("config", overrides=["trainer.epochs=1", "trainer.progress=off"],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    value = train_app.main(cfg)
    result = json.loads((tmp_path / "result.json").read_text())
    assert value == result["val"]["accuracy"] == result["monitor"]
    assert result["monitored"] == "val/accuracy"


@pytest.mark.slow
def test_multirun_with_basic_launcher(tmp_path):
    """Two jobs with their own results; the multirun's last line names the command that
    compares them (Hydra's basic launcher had ended with the last job's done line)."""
    proc = run_cli("-m", "optim.lr=0.02,0.05", "trainer.epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads((tmp_path / str(i) / "result.json").read_text()) for i in (0, 1)]
    assert results[0]["val"] != results[1]["val"]
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    assert last.endswith(f"2 finished jobs in {tmp_path}; `lepton-jax report {tmp_path}` groups "
                         "them over seeds, names the best config and plots them"), last


def test_entry_point_and_package_load_jax_only_when_training():
    """A multirun's launcher process and `--cfg` never train: they must not pay JAX's import.
    The package's public names still resolve to the modules that define them."""
    import subprocess
    import sys

    code = ("import sys, lepton_jax, lepton_jax.train, lepton_jax.launch, lepton_jax.report; "
            "assert 'jax' not in sys.modules; "
            "from lepton_jax import fit, Trainer, sweep, report; "
            "from lepton_jax.loop import fit as f; from lepton_jax.sweep import sweep as s; "
            "assert fit is f and sweep is s and callable(report) and 'jax' in sys.modules; "
            "assert set(lepton_jax.__all__) <= set(dir(lepton_jax)); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    import lepton_jax

    with pytest.raises(AttributeError, match="no attribute 'Fit'"):
        lepton_jax.Fit  # noqa: B018


def test_help_names_the_defaults_and_shows_examples():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("lepton_jax: trains one model"), proc.stdout[:200]
    assert "model: lenet5, linear, logistic, mlp" in proc.stdout  # Hydra's groups, still listed
    assert "Examples:\n  python -m lepton_jax.train model=lenet5" in proc.stdout


def _dropout_run(tmp_path, name, dropout, **trainer):
    config = Config(model=ModelConfig(hidden=[64, 32], dropout=dropout),
                    trainer=TrainerConfig(**{"epochs": 3, "progress": "off", "num_devices": 1,
                                             "checkpoint_every_epochs": 1, "steps_per_call": 11,
                                             **trainer}))
    return fit(config, tmp_path / name), tmp_path / name


def test_mlp_dropout_drops_units_in_training_only(tmp_path):
    """model.dropout: training draws masks from the seed (a second run is identical, and
    differs from the run without dropout); evaluation and predictions use no mask: the
    trained model's outputs are a plain forward pass of its parameters."""
    plain, _ = _dropout_run(tmp_path, "plain", 0.0)
    dropped, run = _dropout_run(tmp_path, "dropped", 0.5)
    again, run_again = _dropout_run(tmp_path, "again", 0.5)
    records = (run / "metrics.jsonl").read_text()
    assert records == (run_again / "metrics.jsonl").read_text()
    assert _evaluations(run)[0]["train/loss"] != _evaluations(tmp_path / "plain")[0]["train/loss"]
    assert dropped["test"] == again["test"] and dropped["test"] != plain["test"]
    model = Model.load(run)
    x = np.random.default_rng(0).uniform(0, 1, (5, 784)).astype(np.float32)
    h = model._prepare(x).reshape(5, -1).astype(np.float64)
    p = model.params
    for layer in ("Dense_0", "Dense_1"):
        h = np.maximum(h @ np.asarray(p[layer]["kernel"], np.float64) + p[layer]["bias"], 0)
    reference = h @ np.asarray(p["Dense_2"]["kernel"], np.float64) + p["Dense_2"]["bias"]
    np.testing.assert_allclose(model.outputs(x), reference, rtol=1e-4, atol=1e-5)


def test_mlp_dropout_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """The masks come from the state's key and step, so a resumed run draws the same ones."""
    full, full_dir = _dropout_run(tmp_path, "full", 0.3)
    monkeypatch.setattr(loop, "stop_on_interrupt",
                        lambda: contextlib.nullcontext(StopAfterCalls(2)))
    with pytest.raises(Interrupted):
        _dropout_run(tmp_path, "run", 0.3)
    monkeypatch.undo()
    resumed, run_dir = _dropout_run(tmp_path, "run", 0.3)
    assert resumed["resumed_from"] == 33
    _same_params(Model.load(run_dir).params, Model.load(full_dir).params)
    assert resumed["test"] == full["test"]


def test_a_checkpoint_older_than_the_injected_warmup_resumes(tmp_path, monkeypatch):
    """Checkpoints written before the warm-up length entered the optimizer state
    (`opt_state.hyperparams.warmup_steps`) lack it: such a run resumes, the length coming
    from the config as it did then, and ends as the uninterrupted run."""
    import shutil

    import orbax.checkpoint as ocp

    from lepton_jax.checkpoint import Checkpointer

    config = Config(model=ModelConfig(hidden=[32]), optim=OptimConfig(
        lr=0.1, momentum=0.9, schedule="warmup_cosine", warmup_epochs=1.5),
        trainer=TrainerConfig(epochs=3, progress="off", num_devices=1, steps_per_call=1))
    full = fit(config, tmp_path / "full")
    monkeypatch.setattr(loop, "stop_on_interrupt",
                        lambda: contextlib.nullcontext(StopAfterCalls(30)))
    with pytest.raises(Interrupted):
        fit(config, tmp_path / "run")
    monkeypatch.undo()
    ckpts = Checkpointer(tmp_path / "run" / "checkpoints", keep=3)
    step = ckpts.latest_step()
    assert step == 31
    old = ckpts.restore_arrays(step)
    assert float(old["opt_state"]["hyperparams"].pop("warmup_steps")) == 33.0
    ckpts.close()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / str(step))
    with ocp.CheckpointManager(tmp_path / "run" / "checkpoints") as manager:
        manager.save(step, args=ocp.args.StandardSave(old))
    resumed = fit(config, tmp_path / "run")
    assert resumed["resumed_from"] == step
    _same_params(Model.load(tmp_path / "run").params, Model.load(tmp_path / "full").params)
    assert resumed["test"] == full["test"]


def test_a_run_resumed_with_another_lr_trains_on_with_it(tmp_path, monkeypatch):
    """The learning rate lives in the checkpointed optimizer state; resumed with another
    `optim.lr`, a run must step with the new one, as its header and run.json say. Plain SGD
    with a constant schedule: from the same checkpoint, one step at twice the lr moves every
    parameter twice as far."""
    import shutil

    from lepton_jax.checkpoint import Checkpointer

    def config(lr, epochs):
        return Config(model=ModelConfig(hidden=[32]),
                      optim=OptimConfig(lr=lr, momentum=0.0, schedule="constant"),
                      trainer=TrainerConfig(epochs=epochs, progress="off", num_devices=1,
                                            steps_per_call=1, checkpoint_every_epochs=1))

    fit(config(0.05, 2), tmp_path / "base")
    moved = {}
    for lr in (0.01, 0.02):
        run = tmp_path / f"lr{lr}"
        shutil.copytree(tmp_path / "base", run)
        monkeypatch.setattr(loop, "stop_on_interrupt",
                            lambda: contextlib.nullcontext(StopAfterCalls(0)))
        with pytest.raises(Interrupted):
            fit(config(lr, 4), run)  # one step, then saved as Ctrl-C would
        monkeypatch.undo()
        ckpts = Checkpointer(run / "checkpoints", keep=3)
        assert ckpts.latest_step() == 45
        after, before = ckpts.restore_arrays(45), ckpts.restore_arrays(44)
        assert float(after["opt_state"]["hyperparams"]["learning_rate"]) == pytest.approx(lr)
        moved[lr] = [np.asarray(a, np.float64) - b for a, b in
                     zip(jax.tree.leaves(after["params"]), jax.tree.leaves(before["params"]),
                         strict=True)]
        ckpts.close()
    for small, big in zip(moved[0.01], moved[0.02], strict=True):
        np.testing.assert_allclose(big, 2 * small, rtol=1e-4, atol=5e-8)  # float32 params
    assert max(np.abs(m).max() for m in moved[0.01]) > 1e-6


def test_resume_refuses_changes_that_would_only_change_the_record(tmp_path):
    """A run's seed is in its checkpoints (data order, random draws), a finished run has no
    step left to train with a new optimizer setting, and a run is not shortened: rerun into
    its directory with any of these, it is one error, with nothing rewritten. With more
    epochs the new lr trains on; another schedule resumes too (every schedule's optimizer
    state holds the same hyperparameters)."""
    def config(seed=0, lr=0.05, schedule="constant", epochs=2):
        return Config(seed=seed, model=ModelConfig(hidden=[32]),
                      optim=OptimConfig(lr=lr, schedule=schedule),
                      trainer=TrainerConfig(epochs=epochs, progress="off", num_devices=1,
                                            checkpoint_every_epochs=1))

    run = tmp_path / "run"
    fit(config(), run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(UserError, match=re.escape(
            f"run directory {run} was trained with seed=0, and its checkpoints carry that "
            "seed's data order and random draws: resuming it with seed=1 would change only "
            "the record. Resume with the run's own settings")):
        fit(config(seed=1), run)
    with pytest.raises(UserError, match=re.escape(
            f"run directory {run} has trained all 44 steps, so optim.lr 0.05 -> 0.01 would "
            "change none of them and its results would stay the old setting's. Raise "
            "trainer.epochs to train on with the new setting.")):
        fit(config(lr=0.01), run)
    with pytest.raises(UserError, match=re.escape(
            f"run directory {run} has trained 44 steps, more than the 22 this config makes "
            "with trainer.epochs 2 -> 1: a run cannot be shortened")):
        fit(config(epochs=1), run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    for schedule, epochs in (("cosine", 3), ("constant", 4)):
        result = fit(config(lr=0.01, schedule=schedule, epochs=epochs), run)
        assert result["resumed_from"] == 22 * (epochs - 1)
        assert result["steps"] == 22 * epochs


def test_a_finished_run_started_again_keeps_one_final_record(tmp_path):
    """Rerun into its directory, a finished run only evaluates its last checkpoint: its
    metrics.jsonl gains a `resumed` event, and its final metrics are written once, anew
    (they had been appended a second time)."""
    config = _small()
    first = fit(config, tmp_path)
    before = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    again = fit(config, tmp_path)
    after = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert again["test"] == first["test"]
    assert after == [*before[:-1], {"event": "resumed", "step": first["steps"]}, before[-1]]
    assert sum(any(k.startswith("final/") for k in r) for r in after) == 1


def _early(patience=0, **trainer):
    return Config(model=ModelConfig(hidden=[32]), optim=OptimConfig(lr=0.05),
                  trainer=TrainerConfig(epochs=20, progress="off", num_devices=1,
                                        patience=patience, **trainer))


def _evaluations(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val/accuracy" in r]


def test_early_stopping_stops_where_its_rule_says_and_stays_stopped(tmp_path):
    full = fit(_early(), tmp_path / "full")
    records = _evaluations(tmp_path / "full")
    # The rule, on the uninterrupted run's evaluations: stop at the 3rd in a row that does
    # not beat the best so far.
    best, waited, expected = -1.0, 0, None
    for r in records[:-1]:  # the last evaluation ends the run anyway
        best, waited = (r["val/accuracy"], 0) if r["val/accuracy"] > best else (best, waited + 1)
        if waited == 3:
            expected = r["step"]
            break
    assert expected is not None and expected < full["steps"]

    early = fit(_early(patience=3), tmp_path / "early")
    assert early["steps"] == expected
    assert early["stopped_early"]["step"] == expected
    assert early["stopped_early"]["best"] == max(r["val/accuracy"] for r in records
                                                 if r["step"] <= expected)
    stopped_records = _evaluations(tmp_path / "early")
    assert stopped_records == [r for r in records if r["step"] <= expected]
    assert early["val"]["accuracy"] == stopped_records[-1]["val/accuracy"]
    steps = sorted(int(p.name) for p in (tmp_path / "early" / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps[-1] == expected
    # Run again into the same dir: it stays stopped instead of training on.
    again = fit(_early(patience=3), tmp_path / "early")
    assert again["steps"] == expected and again["resumed_from"] == expected
    assert again["val"] == early["val"] and again["test"] == early["test"]


def _best(**trainer):
    """A constant lr (a shorter run then takes the same steps); digits' validation loss is
    lowest at epoch 7 of 12 and higher at every later evaluation."""
    return Config(model=ModelConfig(hidden=[32]), optim=OptimConfig(lr=0.05, schedule="constant"),
                  trainer=TrainerConfig(**{"epochs": 12, "progress": "off", "num_devices": 1,
                                           "monitor": "val/loss", "checkpoint_every_epochs": 1,
                                           "steps_per_call": 11, "restore_best": True,
                                           **trainer}))


def _same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_restore_best_ends_with_the_best_evaluations_parameters(tmp_path):
    result = fit(_best(), tmp_path / "run")
    records = _evaluations(tmp_path / "run")
    best = min(records, key=lambda r: r["val/loss"])
    assert best["step"] < result["steps"] == records[-1]["step"]
    assert result["best"] == {"step": best["step"], "metric": "val/loss", "value": best["val/loss"]}
    # The reference: the same run ended at that epoch.
    short = fit(_best(epochs=int(best["epoch"]), restore_best=False), tmp_path / "short")
    assert short["steps"] == best["step"]
    assert result["val"] == short["val"] and result["test"] == short["test"]
    assert result["monitor"] == best["val/loss"] and result["monitored"] == "val/loss"
    # Model.load(run dir) predicts with them; the checkpoints keep the last step's state.
    _same_params(Model.load(tmp_path / "run").params, Model.load(tmp_path / "short").params)
    assert Checkpointer(tmp_path / "run" / "checkpoints", 3).latest_step() == result["steps"]


def test_restore_best_resumes_with_the_best_parameters_it_had_kept(tmp_path, monkeypatch):
    """Stopped at epoch 9, after its best (epoch 7) and two more checkpoints: the resumed run
    takes the best parameters from its checkpoint and ends as the uninterrupted run."""
    full = fit(_best(), tmp_path / "full")
    monkeypatch.setattr(loop, "stop_on_interrupt",
                        lambda: contextlib.nullcontext(StopAfterCalls(17)))
    with pytest.raises(Interrupted):
        fit(_best(), tmp_path / "run")
    monkeypatch.undo()
    assert Checkpointer(tmp_path / "run" / "checkpoints", 3).all_steps() == [154, 176, 198]
    resumed = fit(_best(), tmp_path / "run")
    assert resumed["resumed_from"] == 198
    for key in ("best", "val", "test", "monitor"):
        assert resumed[key] == full[key], key
    _same_params(Model.load(tmp_path / "run").params, Model.load(tmp_path / "full").params)


@pytest.mark.parametrize("change,message", [
    ({"patience": -1}, "trainer.patience (-1) must be >= 0"),
    ({"patience": 3, "eval_every_epochs": 0}, "trainer.patience counts evaluations, but "
                                              "trainer.eval_every_epochs and"),
    ({"patience": 3, "monitor": "test/accuracy"}, "trainer.patience watches trainer.monitor, "
                                                  "which must be a validation metric"),
    ({"patience": 0, "restore_best": True, "eval_every_epochs": 0},
     "trainer.restore_best keeps the best evaluation's parameters, but"),
    ({"patience": 0, "restore_best": True, "monitor": "test/loss"},
     "trainer.restore_best watches trainer.monitor, which must be a validation metric"),
])
def test_early_stopping_settings_that_cannot_work_are_refused(tmp_path, change, message):
    config = _early(**{k: v for k, v in change.items() if k != "patience"},
                    patience=change["patience"])
    with pytest.raises(UserError, match=re.escape(message)):
        fit(config, tmp_path / "run")
    config = _early(patience=3)
    config.data.val_fraction = 0.0
    with pytest.raises(UserError, match="trainer.patience watches the validation split"):
        fit(config, tmp_path / "run")
    config.trainer.patience, config.trainer.restore_best = 0, True
    with pytest.raises(UserError, match="trainer.restore_best watches the validation split"):
        fit(config, tmp_path / "run")


def test_relative_paths_mean_the_launch_folder_with_hydra_job_chdir(tmp_path):
    """hydra.job.chdir=true runs the job in its output dir; data.root=data.csv still names
    the file in the folder the command ran in, as without it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    np.savetxt(tmp_path / "data.csv", np.column_stack([x, x @ [1.0, 2.0, 3.0]]), delimiter=",",
               header="a,b,c,y", comments="", fmt="%.5f")
    proc = run_cli("data=csv", "data.root=data.csv", "model=linear", "trainer.epochs=2",
                   "hydra.job.chdir=true", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["data"]["root"] == str(tmp_path / "data.csv")
    assert (tmp_path / "run" / "result.json").exists()


def test_an_integer_target_says_how_auto_took_it_and_how_to_take_it_otherwise(tmp_path, capsys):
    """data.task=auto takes an integer target of more than 20 values as numbers: the run's
    header says so, and how to train them as classes; it says nothing for real numbers, nor
    once data.task=classification trains 30 classes."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["label"] = rng.integers(0, 30, 300)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    frame.assign(label=frame.a * 3.5).to_csv(tmp_path / "reals.csv", index=False)

    def header(name, task="auto"):
        config = Config(model=ModelConfig(hidden=[8]),
                        data=DataConfig(name="csv", root=str(tmp_path / name), task=task),
                        trainer=TrainerConfig(epochs=1, progress="off"))
        fit(config, tmp_path / f"{name}-{task}")
        return capsys.readouterr().out.splitlines()[0]

    assert "3 features -> regression (data.task=auto: an integer target of 30 values; " \
           "data.task=classification for classes) | sgd" in header("labels.csv")
    assert "3 features -> regression | sgd" in header("reals.csv")
    assert "3 features -> 30 classes | sgd" in header("labels.csv", "classification")
    # The other way: a rating of 1 to 5 trains as 5 classes, and the header says how to
    # predict it as a number; two classes (0/1 labels) need no word.
    frame.assign(label=rng.integers(1, 6, 300)).to_csv(tmp_path / "ratings.csv", index=False)
    frame.assign(label=rng.integers(0, 2, 300)).to_csv(tmp_path / "binary.csv", index=False)
    assert "3 features -> 5 classes (data.task=auto: an integer target of 5 values; " \
           "data.task=regression for a quantity) | sgd" in header("ratings.csv")
    assert "3 features -> 2 classes | sgd" in header("binary.csv")
    assert "3 features -> regression | sgd" in header("ratings.csv", "regression")


def test_keep_checkpoints_keeps_that_many_and_nothing_of_the_others(tmp_path):
    """trainer.keep_checkpoints=2 with a checkpoint every 5 steps: the last two remain, with
    the losses kept beside a step between evaluations; the files kept beside removed steps
    go too (those of the step the last save removed had stayed)."""
    fit(_small(checkpoint_every_steps=5, checkpoint_every_epochs=0, keep_checkpoints=2),
        tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "40", "40.train_losses.json", "44"]
    assert json.loads((tmp_path / "checkpoints" / "40.train_losses.json").read_text())
