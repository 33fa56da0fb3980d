"""The notebook API: the five-line example, safe model files, parity with the Hydra app."""

import json
import pickle
import re

import jax
import numpy as np
import pytest

from conftest import InProcess, run_cli
from lepton_jax import Dataset, Model, Trainer
from lepton_jax.errors import UserError


@pytest.fixture
def linear_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = x @ np.array([2.0, -1.0, 0.5]) + 0.3 + rng.normal(scale=0.01, size=400)
    np.savetxt(tmp_path / "data.csv", np.column_stack([x, y]), delimiter=",",
               header="a,b,c,y", comments="", fmt="%.6f")
    return tmp_path / "data.csv", x, y


def test_five_line_example_verbatim(linear_csv):
    dataset = Dataset.load_csv("data.csv")          # target column: named, or the last column
    model = Model.linear_regression()
    trainer = Trainer(model=model, dataset=dataset)
    trainer.train(epochs=10)
    model.save("model.pkl")

    _, x, y = linear_csv
    loaded = Model.load("model.pkl")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert np.abs(model.predict(x) - y).mean() < 0.3 < np.abs(y - y.mean()).mean()
    raw = open("model.pkl", "rb").read()
    assert not raw.startswith(b"\x80")  # not a pickle, whatever the extension
    assert model.evaluate(dataset)["r2"] > 0.95
    with pytest.raises(UserError, match="evaluate\\(split='tset'\\): use 'train', 'val' or 'test'"):
        model.evaluate(dataset, split="tset")
    with pytest.raises(UserError, match="this dataset's val split is empty"):
        model.evaluate(dataset.split(val_fraction=0.0), split="val")


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UserError, match="looks like a Python pickle"):
        Model.load(path)
    assert not marker.exists()


def test_not_a_model_file(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"hello world")
    with pytest.raises(UserError, match="not a lepton_jax model file"):
        Model.load(path)


def test_history_and_plot(tmp_path):
    trainer = Trainer(Model.mlp(hidden=(32,)), Dataset.digits(), workdir=tmp_path / "run",
                      progress="off")
    history = trainer.train(epochs=2)
    assert list(history["epoch"]) == [1.0, 2.0]
    assert {"train/loss", "val/accuracy"} <= set(history.columns)
    fig = trainer.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    for ax in fig.axes:  # two epochs read 1, 2 (not 1.0, 1.2, ...), each point marked
        assert ax.get_xlabel() == "epoch"
        assert all(float(t).is_integer() for t in ax.get_xticks())
        assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
    assert fig.axes[0].get_ylabel() == "loss (cross-entropy)"
    # One evaluation: the axis starts at 0 so that epochs 0 and 1 tick it (it was ticked
    # 0.945, 0.960, ... around the point).
    one = Trainer(Model.mlp(hidden=(32,)), Dataset.digits(), workdir=tmp_path / "one",
                  progress="off")
    one.train(epochs=1)
    for ax in one.plot().axes:
        assert [float(t) for t in ax.get_xticks() if 0 <= t <= ax.get_xlim()[1]] == [0.0, 1.0]


def test_plot_names_the_loss_and_draws_the_monitored_metric(tmp_path):
    """A regression's loss is the MSE on standardized targets (its val/mse is in the
    target's units, so the two differ); a set trainer.monitor is the curve drawn, as
    `lepton-jax report` draws a run's, on a log axis when an error spans over a decade."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = x @ [1.0, 2.0, 3.0] * 1000 + 5000
    trainer = Trainer(Model.linear_regression(), Dataset.from_arrays(x, y), lr=0.1,
                      workdir=tmp_path / "std", progress="off",
                      overrides=["trainer.monitor=val/mae"])
    trainer.train(epochs=8)
    loss, metric = trainer.plot().axes
    assert loss.get_ylabel() == "loss (MSE on standardized targets)"
    assert metric.get_ylabel() == "val/mae" and metric.get_yscale() == "log"
    raw = Trainer(Model.linear_regression(), Dataset.from_arrays(x, y / 1000,
                                                                 normalize_target=False),
                  workdir=tmp_path / "raw", progress="off")
    raw.train(epochs=2)
    assert raw.plot().axes[0].get_ylabel() == "loss (MSE)"


def test_plot_and_the_run_s_report_draw_the_same_metric(tmp_path, figures):
    """A regression with trainer.monitor=auto (val MSE): `Trainer.plot` drew val/r2 while
    `lepton-jax report` on the same run dir drew val/mse. Both now draw what auto monitors."""
    from lepton_jax import report

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    trainer = Trainer(Model.linear_regression(), Dataset.from_arrays(x, x @ [1.0, 2.0, 3.0]),
                      workdir=tmp_path / "run", progress="off")
    trainer.train(epochs=3)
    assert trainer.plot().axes[1].get_ylabel() == "val/mse"
    report(tmp_path / "run", print_table=False)
    assert figures[0].axes[1].get_ylabel() == "val/mse"


def test_trainer_patience_and_restore_best_are_the_config_s(tmp_path):
    import jax

    from lepton_jax import Config, ModelConfig, TrainerConfig, fit

    trainer = Trainer(Model.mlp(hidden=(32,)), Dataset.digits(), batch_size=64, lr=0.05,
                      workdir=tmp_path / "api", progress="off", patience=3, restore_best=True,
                      overrides=["trainer.num_devices=1"])
    history = trainer.train(epochs=20)
    stop = trainer.result["stopped_early"]["step"]
    assert history.index[-1] == stop < 20 * 22
    config = Config(model=ModelConfig(hidden=[32]), trainer=TrainerConfig(
        epochs=20, progress="off", patience=3, restore_best=True, num_devices=1))
    result = fit(config, tmp_path / "fit")
    assert result["stopped_early"] == trainer.result["stopped_early"]
    assert result["best"] == trainer.result["best"] and result["best"]["step"] < stop
    # The trained Model holds the best parameters, as Model.load of the run dir does.
    for a, b in zip(jax.tree.leaves(trainer.model.params),
                    jax.tree.leaves(Model.load(tmp_path / "fit").params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    evaluated = trainer.model.evaluate(Dataset.digits())
    assert evaluated.pop("loss") == pytest.approx(result["test"]["loss"], rel=1e-9)
    assert evaluated == {k: v for k, v in result["test"].items() if k != "loss"}
    # The plot stars the evaluation whose parameters it kept.
    ax = trainer.plot(tmp_path / "curves.png").axes[1]
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    best = history.loc[result["best"]["step"]]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [
        ([best["epoch"]], [best["val/accuracy"]])]


def test_api_matches_hydra_app(tmp_path):
    trainer = Trainer(Model.mlp(hidden=(256, 128)), Dataset.digits(), batch_size=64,
                      workdir=tmp_path / "api", progress="off")
    trainer.train(epochs=2)
    # The CLI process gets this process's 4 simulated devices, and both train on one: XLA:CPU
    # matmuls round differently in a process with 4 devices than in one with 1 (the digits MLP's
    # first-epoch loss 0.72655416 vs 0.72655410).
    proc = run_cli("trainer.epochs=2", "trainer.num_devices=1", f"hydra.run.dir={tmp_path / 'cli'}",
                   env={"JAX_NUM_CPU_DEVICES": "4"})
    assert proc.returncode == 0, proc.stderr
    trainer4 = Trainer(Model.mlp(hidden=(256, 128)), Dataset.digits(), batch_size=64,
                       workdir=tmp_path / "api1", progress="off",
                       overrides=["trainer.num_devices=1"])
    trainer4.train(epochs=2)
    assert (tmp_path / "api1" / "metrics.jsonl").read_text() == \
        (tmp_path / "cli" / "metrics.jsonl").read_text()
    api = json.loads((tmp_path / "api" / "result.json").read_text())
    assert api["val"]["loss"] == pytest.approx(trainer4.result["val"]["loss"], rel=1e-4)


def test_the_header_says_when_whole_batches_leave_much_of_an_epoch_out(tmp_path, capsys):
    """Iris's 150 rows split 120 / 15 / 15: in batches of 64 an epoch was one step on 64
    examples, and the header read "1 steps of 64" with nothing about the other 56. It now
    says how many each epoch leaves out and the nearby batch size that uses them all; a
    remainder under a tenth (digits: 29 of 1,437) is not worth a word."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4))
    data = Dataset.from_arrays(x, (x[:, 0] > 0).astype(int))
    Trainer(Model.logistic_regression(), data, workdir=tmp_path / "iris",
            progress="off").train(epochs=1)
    header = capsys.readouterr().out.splitlines()[0]
    assert re.search(r"\| 1 epoch x 1 step of 64 \(1 per call\) on \d cpu devices?; each epoch "
                     r"leaves out 56 of the 120 training examples \(other ones each time\): a "
                     r"batch of 60 would use them all \| run dir ", header), header
    Trainer(Model.logistic_regression(), data, workdir=tmp_path / "whole", batch_size=60,
            progress="off").train(epochs=1)
    header = capsys.readouterr().out.splitlines()[0]
    assert re.search(r"\| 1 epoch x 2 steps of 60 \(1 per call\) on \d cpu devices? \| run ",
                     header), header


def test_predict_wrong_feature_count(linear_csv):
    dataset = Dataset.load_csv("data.csv")
    model = Model.linear_regression()
    Trainer(model, dataset, progress="off").train(epochs=1)
    with pytest.raises(UserError, match="predict got 2 features per row; this model was "
                                        "trained on 3"):
        model.predict(np.zeros((4, 2)))
    rows = np.zeros((3, 3))
    rows[1, 2] = np.nan
    with pytest.raises(UserError, match=r"^predict input: NaN at row 1, column 'c'"):
        model.predict(rows)


def test_task_mismatch_suggests_the_right_model():
    with pytest.raises(UserError, match="use Model.logistic_regression"):
        Trainer(Model.linear_regression(), Dataset.digits())


def test_trainer_warmup_is_the_config_s(tmp_path):
    """Trainer(warmup_epochs=...) trains as optim.warmup_epochs does through fit."""
    import jax

    from lepton_jax import Config, ModelConfig, OptimConfig, TrainerConfig, fit

    trainer = Trainer(Model.mlp(hidden=(16,)), Dataset.digits(), batch_size=64,
                      schedule="warmup_cosine", warmup_epochs=1, workdir=tmp_path / "api",
                      progress="off", overrides=["trainer.num_devices=1"])
    trainer.train(epochs=2)
    fit(Config(model=ModelConfig(hidden=[16]),
               optim=OptimConfig(schedule="warmup_cosine", warmup_epochs=1),
               trainer=TrainerConfig(epochs=2, progress="off", num_devices=1)), tmp_path / "fit")
    for a, b in zip(jax.tree.leaves(trainer.model.params),
                    jax.tree.leaves(Model.load(tmp_path / "fit").params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserError, match="optim.warmup_epochs=1 has no effect with "
                                        "optim.schedule=cosine"):
        Trainer(Model.mlp(hidden=(16,)), Dataset.digits(), warmup_epochs=1,
                workdir=tmp_path / "refused", progress="off").train(epochs=2)


def test_dataset_describe_and_split():
    d = Dataset.digits()
    table = d.describe()
    assert table.loc["train", "examples"] + table.loc["val", "examples"] + \
        table.loc["test", "examples"] == 1797
    other = d.split(val_fraction=0.2, test_fraction=0.2, seed=1)
    assert other.describe().loc["test", "examples"] == 359
    # An argument left out keeps the dataset's own setting: split(val_fraction=0.2) had reset
    # the test share and the split seed to split()'s defaults.
    set_up = Dataset.digits(test_fraction=0.3, split_seed=5, normalize=False)
    resplit = set_up.split(val_fraction=0.2)
    assert repr(resplit) == ("Dataset(digits, 1797 examples, task=classification, input_shape="
                             "(28, 28, 1), val_fraction=0.2, test_fraction=0.3, split_seed=5)")
    assert resplit.describe()["examples"].tolist() == [899, 359, 539]
    # Class counts by class: a list of ten numbers had said nothing of which was which.
    counts = resplit.describe().loc["test", "class_counts"]
    assert counts == {c: int((resplit.splits().y_test == c).sum()) for c in range(10)}
    words = Dataset.from_arrays(np.arange(40.0)[:, None], ["cat"] * 30 + ["dog"] * 10,
                                val_fraction=0.0, test_fraction=0.0)
    assert words.describe().loc["train", "class_counts"] == {"cat": 30, "dog": 10}
    assert (resplit.config.split_seed, resplit.config.normalize) == (5, False)
    np.testing.assert_array_equal(resplit.splits().y_test, set_up.splits().y_test)


def test_from_arrays_classification(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    y = np.where(x[:, 0] + x[:, 1] > 0, 7, 3)
    model = Model.logistic_regression()
    Trainer(model, Dataset.from_arrays(x, y), workdir=tmp_path, progress="off").train(epochs=5)
    assert set(np.unique(model.predict(x))) <= {3, 7}
    assert (model.predict(x) == y).mean() > 0.95


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # starlette's
def test_text_labels_are_classes_and_come_back_as_text(tmp_path, monkeypatch):
    """A target column of words (cat/dog) is classification: trained on codes, predicted as
    the words, by the notebook API, a saved model file, a run directory and the CLI; the same
    data with the words as integers gives the same model. Regression on words is refused."""
    from lepton_jax.cli import main as cli

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    words = np.where(x[:, 0] + x[:, 1] > 0, "cat", "dog")
    rows = "".join(f"{a},{b},{w}\n" for (a, b), w in zip(x, words, strict=True))
    (tmp_path / "pets.csv").write_text("a,b,kind\n" + rows)
    (tmp_path / "codes.csv").write_text("a,b,kind\n" + rows.replace("cat", "0").replace("dog", "1"))
    pets, codes = Dataset.load_csv("pets.csv"), Dataset.load_csv("codes.csv")
    assert pets.task == "classification" and pets.raw.class_values == ("cat", "dog")
    by_word, by_code = Model.logistic_regression(), Model.logistic_regression()
    Trainer(by_word, pets, workdir="w", progress="off").train(epochs=5)
    Trainer(by_code, codes, workdir="c", progress="off").train(epochs=5)
    np.testing.assert_array_equal(by_word.outputs(x), by_code.outputs(x))
    predicted = by_word.predict(x)
    assert set(predicted) <= {"cat", "dog"} and (predicted == words).mean() > 0.9
    by_word.save("pets.model")
    np.testing.assert_array_equal(Model.load("pets.model").predict(x), predicted)
    np.testing.assert_array_equal(Model.load("w").predict(x), predicted)
    assert cli(["predict", "w", "pets.csv", "--out", "out.csv"]) == 0
    assert (tmp_path / "out.csv").read_text().split() == ["prediction", *predicted]
    from lepton_jax.serve import create_app

    answer = InProcess(create_app(by_word)).post("/predict", json={"rows": x[:4].tolist()})
    assert answer.status_code == 200 and answer.json()["predictions"] == list(predicted[:4])
    with pytest.raises(UserError, match=r"the target holds text \('cat', ...\); regression "
                                         "needs numbers"):
        Dataset.load_csv("pets.csv", task="regression")


def test_categorical_columns_one_hot_encoded_and_replayed_at_prediction(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(2)
    colors = rng.choice(["red", "green", "blue"], size=400)
    size = rng.normal(size=400)
    effect = {"red": 2.0, "green": -1.0, "blue": 0.5}
    price = np.array([effect[c] for c in colors]) + 0.5 * size
    frame = pd.DataFrame({"color": colors, "size": size, "price": price})
    frame.to_csv(tmp_path / "shop.csv", index=False)
    dataset = Dataset.load_csv(tmp_path / "shop.csv", categorical=["color"])
    assert dataset.splits().feature_names == ("color=blue", "color=green", "color=red", "size")
    model = Model.linear_regression()
    Trainer(model, dataset, workdir=tmp_path / "run", progress="off").train(epochs=30)
    predicted = model.predict(frame[["size", "color"]])  # raw columns, any order
    assert np.abs(predicted - price).mean() < 0.1
    model.save(tmp_path / "m.bin")
    assert np.array_equal(Model.load(tmp_path / "m.bin").predict(frame), predicted)
    with pytest.raises(UserError, match=r"column 'color': unknown category \['purple'\]"):
        model.predict(pd.DataFrame({"color": ["purple"], "size": [0.0]}))
    with pytest.raises(UserError, match="data.categorical names \\['colour'\\]"):
        Dataset.load_csv(tmp_path / "shop.csv", categorical=["colour"])


def test_trainer_resumes_from_its_workdir(tmp_path):
    first = Trainer(Model.mlp(hidden=(32,)), Dataset.digits(), workdir=tmp_path / "run",
                    progress="off", overrides=["trainer.checkpoint_every_epochs=1"])
    first.train(epochs=3)
    uninterrupted = (tmp_path / "run" / "metrics.jsonl").read_text()
    # Drop the final checkpoint and the records after epoch 2, as a crash after epoch 2 would.
    import shutil

    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                   if p.name.isdigit())
    shutil.rmtree(tmp_path / "run" / "checkpoints" / str(steps[-1]))
    again = Trainer(Model.mlp(hidden=(32,)), Dataset.digits(), workdir=tmp_path / "run",
                    progress="off", overrides=["trainer.checkpoint_every_epochs=1"])
    again.train(epochs=3)
    assert again.result["resumed_from"] == steps[-2]
    resumed = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
               if "event" not in line]
    assert resumed == uninterrupted.splitlines()


def test_wrong_types_from_python_are_refused_naming_the_field(tmp_path):
    """Python callers skip Hydra's typed schema: a wrong type is one UserError naming the
    field before any file is read or written, not a TypeError from deep inside a split."""
    from lepton_jax import Config, DataConfig, TrainerConfig, fit

    digits = Dataset.digits()
    with pytest.raises(UserError, match="val_fraction='test' is not a number"):
        digits.split("test")
    with pytest.raises(UserError, match=re.escape("split(seed=-1): the seed must be in "
                                                  "[0, 2147483647]")):
        digits.split(seed=-1)  # numpy's generator raised a ValueError
    with pytest.raises(UserError, match="limit=2.5 is not an integer or None"):
        Dataset.digits(limit=2.5)
    with pytest.raises(UserError, match="root=3 is not a string or None"):
        Dataset(digits.raw, DataConfig(root=3))
    # Refused where the Trainer is made (they had been refused only by train()).
    with pytest.raises(UserError, match="optim.lr='0.1' is not a number; pass a number"):
        Trainer(model=Model.mlp(hidden=[16]), dataset=digits, lr="0.1", workdir=tmp_path / "run")
    with pytest.raises(UserError, match=re.escape("trainer.batch_size (0) must be > 0")):
        Trainer(model=Model.mlp(hidden=[16]), dataset=digits, batch_size=0)  # had trained, at 64
    with pytest.raises(UserError, match=r"model.hidden=\['16'\] is not a list of integers"):
        Trainer(model=Model.mlp(hidden=["16"]), dataset=digits, workdir=tmp_path / "run")
    with pytest.raises(UserError, match="trainer.epochs=2.5 is not an integer"):
        Trainer(model=Model.mlp(hidden=[16]), dataset=digits,
                workdir=tmp_path / "run").train(epochs=2.5)
    with pytest.raises(UserError, match="trainer.epochs=2.5 is not an integer"):
        fit(Config(trainer=TrainerConfig(epochs=2.5)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_numpy_numbers_train_like_python_numbers(tmp_path):
    """Values read off numpy (np.float64 lr, np.int64 epochs, an array of widths) are taken
    as the Python numbers they hold: the run equals one given plain numbers, and run.json
    records plain JSON numbers."""
    digits = Dataset.digits()

    def run(name, lr, epochs, hidden, val):
        trainer = Trainer(model=Model.mlp(hidden=hidden), dataset=digits.split(val),
                          lr=lr, workdir=tmp_path / name, progress="off")
        return trainer.train(epochs=epochs)

    plain = run("plain", 0.05, 1, [16], 0.2)
    numpy = run("numpy", np.float64(0.05), np.int64(1), np.array([16]), np.float64(0.2))
    assert plain.equals(numpy)
    config = json.loads((tmp_path / "numpy" / "run.json").read_text())["config"]
    assert config["optim"]["lr"] == 0.05 and config["model"]["hidden"] == [16]
    assert config["data"]["val_fraction"] == 0.2


def test_predict_and_save_never_overwrite_what_is_not_theirs(linear_csv, capsys):
    """`lepton-jax predict --out` refuses an existing file unless --overwrite, and always
    refuses the input CSV itself; `Model.save` replaces an earlier model file but refuses any
    other file. Nothing is written on a refusal."""
    from lepton_jax.cli import main as cli

    csv, x, _ = linear_csv
    model = Model.linear_regression()
    Trainer(model=model, dataset=Dataset.load_csv(csv), progress="off").train(epochs=2)
    model.save("model.msgpack")
    features = csv.parent / "features.csv"
    np.savetxt(features, x[:5], delimiter=",", header="a,b,c", comments="", fmt="%.6f")
    kept = csv.parent / "kept.csv"
    kept.write_text("mine\n")

    assert cli(["predict", "model.msgpack", str(features), "--out", str(kept)]) == 2
    assert "kept.csv already exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert kept.read_text() == "mine\n"
    assert cli(["predict", "model.msgpack", str(features), "--out", str(features),
                "--overwrite"]) == 2
    assert "is the input CSV" in capsys.readouterr().err
    assert features.read_text().startswith("a,b,c\n")
    assert cli(["predict", "model.msgpack", str(features), "--out", "no/such/dir.csv"]) == 2
    assert "the folder no/such does not exist" in capsys.readouterr().err
    assert cli(["predict", "model.msgpack", str(features), "--out", str(kept),
                "--overwrite"]) == 0
    written = np.loadtxt(kept, delimiter=",", skiprows=1)
    np.testing.assert_allclose(written, model.predict(x[:5]), rtol=1e-6)
    assert not list(csv.parent.glob("*.tmp"))

    with pytest.raises(UserError, match="data.csv exists and is not a lepton_jax model file"):
        model.save(csv)
    assert csv.read_text().startswith("a,b,c,y\n")
    again = Model.linear_regression()
    Trainer(model=again, dataset=Dataset.load_csv(csv), lr=0.01, progress="off",
            workdir="run2").train(epochs=1)
    again.save("model.msgpack")  # a newer model replaces the older one
    np.testing.assert_array_equal(Model.load("model.msgpack").predict(x), again.predict(x))
    with pytest.raises(UserError, match="cannot save the model to no/such/model.bin: the folder "
                                        "no/such does not exist; create it first"):
        again.save("no/such/model.bin")
    # A write that fails (no permission, a full disk; here the temporary file's name is taken
    # by a folder, which fails even for root) is one error, and the earlier model is kept.
    (csv.parent / "model.msgpack.tmp").mkdir()
    with pytest.raises(UserError, match=r"cannot save the model to model.msgpack \(Is a "
                                        r"directory: model.msgpack.tmp\); nothing was written"):
        model.save("model.msgpack")
    np.testing.assert_array_equal(Model.load("model.msgpack").predict(x), again.predict(x))


def test_image_models_take_raw_pixels_or_say_how_to_scale_them(tmp_path, monkeypatch, capsys):
    """A digits model predicts scikit-learn's own 8x8 rows (resized as data=digits does) as it
    does their 28x28 form, from a CSV with or without a header row; values outside the
    [0, 1] its pixels were scaled to (MNIST's 0-255) are refused with the fix."""
    from sklearn.datasets import load_digits

    from lepton_jax.api import _check_pixels
    from lepton_jax.cli import main as cli
    from lepton_jax.data import digits_arrays, digits_images

    monkeypatch.chdir(tmp_path)
    raw = load_digits()
    images, _ = digits_arrays()
    np.testing.assert_array_equal(digits_images(raw.data), images)  # the dataset's own form
    model = Model.mlp([32])
    Trainer(model=model, dataset=Dataset.digits(), workdir=tmp_path / "run").train(epochs=2)
    wide = model.predict(images.reshape(len(images), -1))
    np.testing.assert_array_equal(model.predict(raw.data), wide)
    assert (wide == raw.target).mean() > 0.9
    with pytest.raises(UserError, match=r"8x8 digits with values from 0 to 1; give them as "
                                        r"scikit-learn does \(0 to 16\)"):
        model.predict(raw.data / 16)
    with pytest.raises(UserError, match=r"got values from 0 to 255; this model was trained on "
                                        r"data=mnist's pixels scaled to \[0, 1\].*divide "
                                        r"MNIST's 0-255 pixels by 255"):
        _check_pixels(np.arange(256, dtype=np.float32)[None], "mnist", (16, 16, 1))
    rows = raw.data[:6]
    np.savetxt("plain.csv", rows, delimiter=",", fmt="%g")
    np.savetxt("named.csv", rows, delimiter=",", fmt="%g", comments="",
               header=",".join(f"p{i}" for i in range(64)))
    capsys.readouterr()
    for name in ("plain.csv", "named.csv"):
        assert cli(["predict", str(tmp_path / "run"), name]) == 0
        lines = capsys.readouterr().out.split()
        assert lines == ["prediction", *map(str, wide[:6])], name


def test_a_model_trained_on_a_data_frame_predicts_data_frames_by_column_name(tmp_path, capsys):
    """Its columns named the features: a DataFrame to predict is read by those names, in any
    order (positionally, swapped columns would predict silently wrong values); a missing one
    is refused naming it. Arrays are still taken positionally. So is `lepton-jax predict`'s
    CSV: by its header's names when they include the features, else in order."""
    from lepton_jax.cli import main as cli

    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    model = Model.linear_regression()
    Trainer(model, Dataset.from_arrays(frame, 3 * frame.a - frame.b), workdir=tmp_path,
            progress="off").train(epochs=10)
    rows = frame.head(5)
    expected = model.predict(rows.to_numpy())
    np.testing.assert_array_equal(model.predict(rows[["b", "a"]]), expected)
    np.testing.assert_array_equal(Model.load(tmp_path).predict(rows[["b", "a"]]), expected)
    assert not np.allclose(model.predict(rows[["b", "a"]].to_numpy()), expected)
    with pytest.raises(UserError, match=re.escape(
            "input 'DataFrame' lacks column(s) ['b']; expected a, b")):
        model.predict(rows[["a"]].assign(c=1.0))
    with pytest.raises(UserError, match=re.escape(  # a near name is named as a likely typo
            "input 'DataFrame' lacks column(s) ['b'] (it has 'B' for 'b': misspelt?); "
            "expected a, b")):
        model.predict(rows.rename(columns={"b": "B"}))
    capsys.readouterr()  # the training's lines
    for name, table, header in (("swapped", rows[["b", "a"]], True), ("plain", rows, False)):
        rows_csv = tmp_path / f"{name}.csv"
        table.to_csv(rows_csv, index=False, header=header)
        assert cli(["predict", str(tmp_path), str(rows_csv)]) == 0
        printed = capsys.readouterr().out.split()
        assert printed[0] == "prediction"
        np.testing.assert_allclose(np.asarray(printed[1:], float), expected, rtol=1e-6)
    rows[["a"]].assign(c=1.0).to_csv(tmp_path / "partial.csv", index=False)
    assert cli(["predict", str(tmp_path), str(tmp_path / "partial.csv")]) == 2
    assert (f"input CSV '{tmp_path / 'partial.csv'}' lacks column(s) ['b']; expected a, b"
            in capsys.readouterr().err)


def test_predict_takes_a_dataset_s_split(tmp_path):
    """`model.predict(dataset, split)` predicts the split's rows as the data holds them, as
    evaluate scores them; the standardized rows `splits()` gives by default are refused with
    that way out (the message had said only to take them unstandardized)."""
    dataset = Dataset.digits()
    model = Model.mlp([32])
    Trainer(model=model, dataset=dataset, workdir=tmp_path, progress="off").train(epochs=2)
    raw = dataset.splits(normalized=False)
    predicted = model.predict(dataset)
    np.testing.assert_array_equal(predicted, model.predict(raw.x_test))
    assert (predicted == raw.y_test).mean() == model.evaluate(dataset)["accuracy"]
    np.testing.assert_array_equal(model.predict_proba(dataset, split="val"),
                                  model.predict_proba(raw.x_val))
    with pytest.raises(UserError, match=re.escape(
            "give rows as Dataset.digits().splits(normalized=False) holds them, or pass the "
            "Dataset itself (model.predict(dataset, split='test'))")):
        model.predict(dataset.splits().x_test)
    with pytest.raises(UserError, match=re.escape("predict(split='tst'): use 'train', 'val'")):
        model.predict(dataset, split="tst")
    with pytest.raises(UserError, match=re.escape("predict(split='val') picks a Dataset's "
                                                  "split; these rows are a numpy.ndarray")):
        model.predict(raw.x_val, split="val")


def test_from_arrays_takes_the_target_by_its_column_name():
    """`from_arrays(frame, "price")` takes the target column off a DataFrame (it had failed
    with a TypeError, len() of unsized object): the same dataset as passing the columns
    apart; several names are several targets; a misspelt name, a name with arrays, a
    single number as y, and a frame of nothing but the target are refused."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, 100),
                          "city": rng.choice(["Paris", "Nice"], 100)})
    frame["price"] = frame["size"] * 3 + (frame.city == "Paris") * 50
    frame["rent"] = frame["price"] / 10
    named = Dataset.from_arrays(frame.drop(columns="rent"), "price", categorical=["city"])
    apart = Dataset.from_arrays(frame[["size", "city"]], frame["price"], categorical=["city"])
    assert named.splits().feature_names == apart.splits().feature_names == (
        "size", "city=Nice", "city=Paris")
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(named.splits(), field),
                                      getattr(apart.splits(), field))
    both = Dataset.from_arrays(frame, ["price", "rent"], categorical=["city"])
    assert both.splits().y_train.shape == (80, 2) and both.task == "regression"
    # A list of words that are not its columns is a list of class labels, as before.
    labels = ["small" if s < 100 else "large" for s in frame["size"]]
    assert Dataset.from_arrays(frame[["size"]], labels).raw.class_values == ("large", "small")
    for x, y, message in (
            (frame, "prise", "x has no column 'prise' to take the target from (price, "
                             "misspelt?); its columns: size, city, price, rent"),
            (frame.to_numpy(), "price", "names the target column of a DataFrame, but x is a "
                                        "numpy.ndarray"),
            (frame[["size"]], 3, "from_arrays' y is a single value (3); pass one target per "
                                 "row of x"),
            (frame[["price"]], "price", "from_arrays(x, 'price') leaves x no feature column")):
        with pytest.raises(UserError, match=re.escape(message)):
            Dataset.from_arrays(x, y)


def test_python_arguments_of_the_wrong_kind_are_one_error_naming_them(tmp_path):
    """Each of these had ended in a TypeError, IndexError, KeyError or FileExistsError from
    deep inside (an int is not iterable, expected str, bytes or os.PathLike, tuple index out
    of range), in an error about a string of overrides' first character, or in Hydra's
    refusal of a misspelt launcher option after the sweep's files were written."""
    from lepton_jax import Config, TrainerConfig, fit, report, sweep

    digits = Dataset.digits()
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    one_epoch = Config(trainer=TrainerConfig(epochs=1, progress="off"))
    for call, message in (
            (lambda: Model.mlp(hidden=64), "Model.mlp(hidden=64): hidden is the list of hidden "
                                           "layer widths, e.g. hidden=[64] for one layer"),
            (lambda: Model.load(123), "Model.load's path is 123 (int); pass a path"),
            (lambda: Trainer(Model.mlp(), digits, workdir=5),
             "Trainer's workdir is 5 (int); pass a path"),
            (lambda: report(None), "report's sweep_dir is None (NoneType); pass a path"),
            (lambda: sweep(Config(), {"seed": [0]}, workdir=1.5),
             "sweep's workdir is 1.5 (float); pass a path"),
            (lambda: Dataset.from_arrays(np.zeros((0, 2)), np.zeros(0)),
             "arrays: no examples (0 rows)"),
            (lambda: Trainer(Model.mlp(), digits, overrides="optim.clip_norm=1.0"),
             "overrides='optim.clip_norm=1.0' is a string; pass a list of them, "
             "overrides=['optim.clip_norm=1.0']"),
            (lambda: sweep(one_epoch, {"seed": [0, 1]}, vectorize=True, max_population=-1),
             "sweep(max_population=-1): use 0 (no limit) or a positive number of members"),
            (lambda: fit(one_epoch, tmp_path / "data.csv"),
             f"run directory {tmp_path / 'data.csv'} is a file; choose a folder"),
            (lambda: sweep(one_epoch, {"seed": [0]}, launcher="pool", workdir=tmp_path / "s",
                           launcher_options={"slotz": 1}),
             "launcher_options key 'slotz' is not a pool launcher option (slots, misspelt?)")):
        with pytest.raises(UserError, match=re.escape(message)):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # nothing written


def test_predict_takes_one_row_as_a_notebook_holds_it(tmp_path):
    """A tabular model predicts a dict of columns, a list of them, and a DataFrame's row
    (`frame.iloc[0]`, a Series) as the one-row frame they are; an image model one 28x28
    image. These had ended in TypeError or ValueError tracebacks (or, for the image,
    "predict got 28 features per row"); words, None and another model's width are one
    UserError each, the width named before the pixel range."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, 200),
                          "city": rng.choice(["Paris", "Nice"], 200)})
    frame["price"] = frame["size"] * 3 + (frame.city == "Paris") * 50
    houses = Dataset.from_arrays(frame, "price", categorical=["city"])
    model = Model.linear_regression()
    Trainer(model, houses, workdir=tmp_path / "houses", progress="off").train(epochs=2)
    rows = frame[["size", "city"]]
    expected = model.predict(rows.iloc[:2])
    assert model.predict(rows.iloc[0]) == pytest.approx(expected[:1])
    assert model.predict({"city": rows.city[0], "size": rows["size"][0]}) == \
        pytest.approx(expected[:1])
    assert model.predict(rows.iloc[:2].to_dict("records")) == pytest.approx(expected)
    digits = Dataset.digits()
    image = Model.mlp([16])
    Trainer(image, digits, workdir=tmp_path / "digits", progress="off").train(epochs=1)
    pictures = digits.splits(normalized=False).x_test[:3, ..., 0]  # (3, 28, 28)
    assert image.predict(pictures[0]) == image.predict(pictures)[:1]
    for call, message in (
            (lambda: model.predict(None), "predict got None; pass rows"),
            (lambda: image.predict([["a"] * 784]), "predict input must be rows of numbers, "
                                                   "all of one length (could not convert"),
            (lambda: image.predict({"a": 1.0}), "predict got rows by column name, but this "
                                                "model's features have no names"),
            (lambda: image.evaluate(houses), "predict got 3 features per row; this model was "
                                             "trained on 784")):
        with pytest.raises(UserError, match=re.escape(message)):
            call()


def test_evaluate_reads_a_dataset_s_features_in_the_model_s_order(tmp_path):
    """A dataset whose columns come in another order is evaluated as the model's own (before,
    positionally: wrong metrics without a word); other features are refused."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    target = 3 * frame.a - frame.b
    model = Model.linear_regression()
    Trainer(model, Dataset.from_arrays(frame, target), workdir=tmp_path,
            progress="off").train(epochs=10)
    same = model.evaluate(Dataset.from_arrays(frame, target))
    assert model.evaluate(Dataset.from_arrays(frame[["b", "a"]], target)) == same
    with pytest.raises(UserError, match=re.escape(
            "evaluate: the dataset's features (a, c) are not the model's (a, b)")):
        model.evaluate(Dataset.from_arrays(frame.rename(columns={"b": "c"}), target))


def test_several_regression_targets_train_one_output_each(tmp_path):
    """Targets as columns of `y`: the model has one output per target (it had one in all,
    broadcast against every column), its metrics are scikit-learn's averaged over the
    targets, and the saved model and the run dir predict every target."""
    import pandas as pd
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = np.column_stack([x @ [1.0, 2.0, 3.0], x @ [-1.0, 0.0, 1.0] + 0.5])
    dataset = Dataset.from_arrays(x, y)
    model = Model.linear_regression()
    Trainer(model, dataset, lr=0.05, workdir=tmp_path / "run", progress="off").train(epochs=20)
    assert sum(np.size(p) for p in jax.tree.leaves(model.params)) == 3 * 2 + 2
    raw = dataset.splits(normalized=False)
    predicted = model.predict(raw.x_test)
    assert predicted.shape == (len(raw.x_test), 2)
    metrics = model.evaluate(dataset)
    assert metrics["mse"] == pytest.approx(mean_squared_error(raw.y_test, predicted), rel=1e-5)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(raw.y_test, predicted), rel=1e-5)
    assert metrics["r2"] == pytest.approx(r2_score(raw.y_test, predicted), rel=1e-5)
    assert metrics["r2"] > 0.99
    # Each target column trains standardized by its own training mean and std.
    info = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert info["target_mean"] == pytest.approx(raw.y_train.mean(axis=0), rel=1e-5)
    assert info["target_std"] == pytest.approx(raw.y_train.std(axis=0), rel=1e-5)
    described = dataset.describe()  # per target column, in the target's own units
    assert described.loc["test", "target_mean"] == pytest.approx(raw.y_test.mean(axis=0),
                                                                 rel=1e-5)
    assert described.loc["train", "target_std"] == pytest.approx(raw.y_train.std(axis=0),
                                                                 rel=1e-5)
    model.save(tmp_path / "m.bin")
    for loaded in (Model.load(tmp_path / "m.bin"), Model.load(tmp_path / "run")):
        np.testing.assert_array_equal(loaded.predict(raw.x_test), predicted)
    from lepton_jax.cli import main as cli

    np.savetxt(tmp_path / "rows.csv", raw.x_test[:4], delimiter=",")
    assert cli(["predict", str(tmp_path / "run"), str(tmp_path / "rows.csv"),
                "--out", str(tmp_path / "out.csv")]) == 0
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written.columns) == ["prediction_0", "prediction_1"]
    np.testing.assert_allclose(written.to_numpy(), predicted[:4], rtol=1e-6)


def test_trainer_given_something_else_than_a_model_and_a_dataset_says_what_to_pass():
    """Arrays for the dataset, `Model.mlp` uncalled, or the two swapped raised AttributeError
    from deep inside (`'numpy.ndarray' object has no attribute 'splits'`); so did arrays for
    `evaluate`, and a dict for `fit`'s or `sweep`'s config a TypeError."""
    x, y = np.zeros((10, 2)), np.arange(10) % 2
    data = Dataset.from_arrays(x, y)
    for args, message in [
            ((Model.mlp(), x), "Trainer's dataset is a numpy.ndarray; pass "
                               "Dataset.from_arrays(x, y), Dataset.load_csv(path)"),
            ((Model.mlp, data), "Trainer's model is Model.mlp itself; call it: Model.mlp(...)"),
            ((data, Model.mlp()), "Trainer's model is a Dataset: the arguments are "
                                  "Trainer(model, dataset)"),
            (("mlp", data), "Trainer's model is a str; pass Model.mlp(), Model.lenet5()")]:
        with pytest.raises(UserError, match=re.escape(message)):
            Trainer(*args)
    from lepton_jax import Config, fit, sweep

    with pytest.raises(UserError, match=re.escape("evaluate's dataset is a numpy.ndarray; pass a "
                                                  "Dataset (Dataset.from_arrays(x, y)")):
        Model.mlp().evaluate(x)
    with pytest.raises(UserError, match=re.escape("fit's config is a dict; pass a "
                                                  "lepton_jax.Config, e.g. Config(optim=")):
        fit({"optim": {"lr": 0.1}}, "unused")
    with pytest.raises(UserError, match=re.escape("sweep's config is a dict; pass a lepton_jax."
                                                  "Config, e.g. Config(optim=OptimConfig(lr=0.1)"
                                                  ") (a dict of dotted keys is the grid")):
        sweep({"optim.lr": [0.1]}, Config())
    with pytest.raises(UserError, match="sweep's grid is a list; pass a dict of dotted keys"):
        sweep(Config(), [0.1, 0.2])


def test_a_sweep_dir_given_for_a_run_names_its_best_job(tmp_path):
    """`lepton-jax predict SWEEP_DIR` (or serve, or Model.load) said only "no run.json"; it
    now names the best finished job to pass, by the metric the jobs were ranked on."""
    for job, monitor, value in [("0", "auto", 0.91), ("1", "auto", 0.97), ("2", "auto", None),
                                ("3", "auto", 0.95)]:
        (tmp_path / job).mkdir()
        (tmp_path / job / "run.json").write_text(json.dumps(
            {"config": {"trainer": {"monitor": monitor}}}))
        if value is not None:  # job 2 did not finish
            (tmp_path / job / "result.json").write_text(json.dumps(
                {"monitor": value, "val": {"accuracy": value}, "test": {"accuracy": value}}))
    with pytest.raises(UserError, match=re.escape(
            f"{tmp_path} is not a lepton_jax run directory (no run.json); it holds 3 finished "
            f"runs (a sweep's jobs?): pass one of them, such as the best by val/accuracy, "
            f"{tmp_path / '1'} (0.97)")):
        Model.load(tmp_path)
    for job in "013":  # a loss is lowest at its best
        (tmp_path / job / "run.json").write_text(json.dumps(
            {"config": {"trainer": {"monitor": "val/loss"}}}))
    with pytest.raises(UserError, match=re.escape(f"best by val/loss, {tmp_path / '0'} (0.91)")):
        Model.load(tmp_path)


def test_a_dataframes_categorical_columns_are_one_hot_encoded_as_a_csvs(tmp_path):
    """`from_arrays(frame, y)` refused a column of words with "Dataset.load_csv one-hot
    encodes ..."; `categorical=` now encodes it as `load_csv` encodes the same CSV (the same
    arrays, names and categories), and the model predicts a DataFrame of raw columns."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.normal(size=200),
                          "city": rng.choice(["Paris", "Lyon", "Nice"], 200)})
    frame["y"] = np.where((frame.city == "Paris") | (frame["size"] > 1), "yes", "no")
    frame.to_csv(tmp_path / "d.csv", index=False)
    arrays = Dataset.from_arrays(frame[["size", "city"]], frame.y, categorical=["city"])
    csv = Dataset.load_csv(tmp_path / "d.csv", target="y", categorical=["city"])
    for name in ("x_train", "y_train", "x_test"):
        np.testing.assert_array_equal(getattr(arrays.splits(), name), getattr(csv.splits(), name))
    assert arrays.splits().feature_names == ("size", "city=Lyon", "city=Nice", "city=Paris")
    model = Model.logistic_regression()
    Trainer(model, arrays, lr=0.5, workdir=tmp_path / "run", progress="off").train(epochs=10)
    rows = frame[["city", "size"]].head(20)  # raw columns, in any order
    encoded = np.column_stack([rows["size"], *(rows.city == c for c in ("Lyon", "Nice", "Paris"))])
    np.testing.assert_array_equal(model.predict(rows), model.predict(encoded))
    assert model.evaluate(arrays)["accuracy"] > 0.8
    with pytest.raises(UserError, match=r"names \['town'\], which are not columns of x; it has: "
                                        r"size, city"):
        Dataset.from_arrays(frame[["size", "city"]], frame.y, categorical=["town"])
    with pytest.raises(UserError, match="names DataFrame columns, but x is a numpy.ndarray"):
        Dataset.from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], categorical=["city"])


def test_trainer_overrides_cannot_change_the_model_or_the_data():
    """The Model and Dataset objects define `model.*` and `data.*`: an override of them
    trained (and recorded) a hidden-8 MLP, or "mnist", while the objects said otherwise, and
    the model's predict then failed on its own parameters."""
    model, digits = Model.mlp(hidden=[64]), Dataset.digits()
    with pytest.raises(UserError, match=re.escape(
            "override 'model.hidden=[8]': the Model object defines model.hidden; set it there "
            "(Model.mlp(hidden=...)")):
        Trainer(model, digits, overrides=["model.hidden=[8]"])
    with pytest.raises(UserError, match=re.escape(
            "override 'data.val_fraction=0.3': the Dataset object defines data.val_fraction; "
            "set it there (Dataset.split(...), or another Dataset)")):
        Trainer(model, digits, overrides=["data.val_fraction=0.3"])
    assert Trainer(model, digits, overrides=["optim.clip_norm=1.0"]).config.optim.clip_norm == 1.0


def test_boolean_labels_are_predicted_as_booleans(tmp_path):
    """`y = x[:, 0] > 0` trains a 2-class model whose predictions are True/False, as given
    (they were 0/1), from the model, its run dir and its saved file alike."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x[:, 0] > 0
    dataset = Dataset.from_arrays(x, y)
    assert [type(c) for c in dataset.raw.class_values] == [bool, bool]
    model = Model.logistic_regression()
    Trainer(model, dataset, workdir=tmp_path / "run", progress="off").train(epochs=10)
    predicted = model.predict(x)
    assert predicted.dtype == bool and (predicted == y).mean() > 0.9
    model.save(tmp_path / "m.bin")
    for loaded in (Model.load(tmp_path / "run"), Model.load(tmp_path / "m.bin")):
        np.testing.assert_array_equal(loaded.predict(x), predicted)


def test_reprs_say_what_the_objects_hold(tmp_path):
    """A notebook shows a Model, a Trainer and the package by their reprs and `dir`: the
    model's architecture and, once trained, its size and what it maps to what; the
    trainer's settings and workdir; the package's public names only."""
    import lepton_jax

    model = Model.mlp(hidden=[16])
    dataset = Dataset.digits()
    trainer = Trainer(model, dataset, lr=0.1, workdir=tmp_path / "run", progress="off")
    assert repr(model) == "Model(mlp 16 relu, untrained)"
    assert repr(Model.logistic_regression()) == "Model(logistic regression, untrained)"
    assert repr(trainer) == (
        f"Trainer(Model(mlp 16 relu, untrained), {dataset!r}, lr=0.1, momentum=0.9, "
        f"schedule='cosine', epochs=20, batch_size=64, seed=0, workdir='{tmp_path / 'run'}')")
    trainer.train(epochs=1)
    size = sum(np.size(p) for p in jax.tree.leaves(model.params))
    assert repr(model) == f"Model(mlp 16 relu, {size:,} params, trained: 28x28x1 images -> 10 classes)"
    assert repr(Model.load(tmp_path / "run")) == repr(model)
    assert repr(trainer).endswith(", trained)") and "epochs=1," in repr(trainer)
    assert dir(lepton_jax) == sorted([*lepton_jax.__all__, "__version__"])
    assert "importlib" not in dir(lepton_jax) and "Trainer" in dir(lepton_jax)


def test_a_regression_without_a_validation_split_trains(tmp_path):
    """`val_fraction=0` left a regression's validation targets empty, and standardizing
    them crashed (`cannot reshape array of size 0`) before training; `describe` shows the
    empty split's target statistics as NaN."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    dataset = Dataset.from_arrays(x, x @ [1.0, 2.0, 3.0] * 1000 + 5000).split(val_fraction=0.0)
    described = dataset.describe()
    assert described.loc["val", "examples"] == 0 and np.isnan(described.loc["val", "target_std"])
    trainer = Trainer(Model.linear_regression(), dataset, workdir=tmp_path, progress="off")
    trainer.train(epochs=5)
    assert "val" not in trainer.result and trainer.result["test"]["r2"] > 0.5


def test_trainers_and_sweeps_made_in_the_same_second_get_their_own_folders(tmp_path,
                                                                          monkeypatch):
    """Default folders are `lepton_runs/<date>-<time>`: two Trainers made in the same
    second (one per lr in a notebook loop) shared one, and the second resumed the first's
    run or was refused. A folder already on disk (from an earlier process) is skipped too."""
    import time

    from lepton_jax.sweep import fresh_dir

    monkeypatch.chdir(tmp_path)
    real = time.strftime
    monkeypatch.setattr(time, "strftime",  # the current time's stamp only; logging's as is
                        lambda fmt, *when: real(fmt, *when) if when else "20261129-101500")
    (tmp_path / "lepton_runs" / "20261129-101500").mkdir(parents=True)
    dataset = Dataset.digits()
    first, second = (Trainer(Model.mlp(hidden=(16,)), dataset, lr=lr, progress="off")
                     for lr in (0.05, 0.1))
    assert [str(t.workdir) for t in (first, second)] == [
        "lepton_runs/20261129-101500-2", "lepton_runs/20261129-101500-3"]
    first.train(epochs=1)
    second.train(epochs=1)  # refused before: "has trained all 22 steps, so optim.lr ..."
    assert second.result["resumed_from"] is None
    assert fresh_dir("lepton_sweeps") != fresh_dir("lepton_sweeps")
