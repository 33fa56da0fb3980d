import dataclasses
import gzip
import os
import re

import numpy as np
import pandas as pd
import pytest

from lepton_jax.config import DataConfig
from lepton_jax.data import digits_arrays, load_dataset
from lepton_jax.data.mnist import load_mnist
from lepton_jax.errors import UserError


def test_digits_resized_to_28x28_and_split_without_overlap():
    x, y = digits_arrays()
    assert x.shape == (1797, 28, 28, 1) and y.shape == (1797,)
    d = load_dataset(DataConfig(name="digits", val_fraction=0.1, test_fraction=0.1))
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    assert len(d.x_test) == 180 and len(d.x_val) == 180
    # Normalization statistics come from the training split alone.
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    assert abs(float(d.x_test.mean())) > 1e-4


def test_digits_are_cached_on_disk_and_equal_a_fresh_build(tmp_path):
    """A second process loads the resized digits from the cache folder without importing
    scikit-learn; the cached arrays equal scikit-learn's, resized again here."""
    import subprocess
    import sys

    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    script = ("import sys, numpy as np; from lepton_jax.data import digits_arrays; "
              "x, y = digits_arrays(); np.savez(sys.argv[1], x=x, y=y); "
              "print('sklearn' in sys.modules, x.flags.writeable)")
    env = {**os.environ, "LEPTON_JAX_CACHE_DIR": str(tmp_path / "cache" / "xla")}
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{i}.npz")], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
            for i in range(2)]
    assert runs == [["True", "False"], ["False", "False"]]
    assert len(list((tmp_path / "cache" / "digits").glob("*.npz"))) == 1
    bunch = load_digits()
    expected = zoom(bunch.images.astype(np.float32) / 16.0, (1, 3.5, 3.5), order=1).clip(0, 1)
    for i in range(2):
        with np.load(tmp_path / f"{i}.npz") as got:
            np.testing.assert_array_equal(got["x"][..., 0], expected.astype(np.float32))
            np.testing.assert_array_equal(got["y"], bunch.target)


def test_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    from lepton_jax.data.cache import disk_cached

    monkeypatch.setenv("LEPTON_JAX_CACHE_DIR", str(tmp_path / "xla"))
    builds = []

    def build():
        builds.append(1)
        return {"a": np.arange(3.0)}

    first = disk_cached("thing", ("k", 1), ["a"], build)
    (entry,) = (tmp_path / "thing").glob("*.npz")
    np.testing.assert_array_equal(disk_cached("thing", ("k", 1), ["a"], build)["a"], first["a"])
    assert len(builds) == 1
    entry.write_bytes(entry.read_bytes()[:20])  # cut short
    np.testing.assert_array_equal(disk_cached("thing", ("k", 1), ["a"], build)["a"], first["a"])
    assert len(builds) == 2
    np.testing.assert_array_equal(np.load(entry)["a"], first["a"])  # replaced whole
    disk_cached("thing", ("k", 2), ["a"], build)  # another key: another entry
    assert len(builds) == 3 and len(list((tmp_path / "thing").glob("*.npz"))) == 2
    monkeypatch.setenv("LEPTON_JAX_DATA_CACHE", "off")
    disk_cached("thing", ("k", 1), ["a"], build)
    assert len(builds) == 4


def test_split_depends_on_seed_only():
    a = load_dataset(DataConfig(name="digits", split_seed=3))
    b = load_dataset(DataConfig(name="digits", split_seed=3))
    c = load_dataset(DataConfig(name="digits", split_seed=4))
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)


def test_limit_keeps_the_first_training_examples_and_the_same_val_and_test():
    full = load_dataset(DataConfig(name="digits", normalize=False))
    cut = load_dataset(DataConfig(name="digits", normalize=False, limit=300))
    np.testing.assert_array_equal(cut.x_train, full.x_train[:300])
    np.testing.assert_array_equal(cut.y_train, full.y_train[:300])
    for split in ("x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(cut, split), getattr(full, split))
    assert len(load_dataset(DataConfig(name="digits", limit=len(full.x_train))).x_train) == 1437
    # A limit above the training split would keep every row; it was taken silently.
    with pytest.raises(UserError, match=r"data.limit \(1500\) is more than the 1,437 training "
                                        r"examples .* use at most 1437, or null to keep all"):
        load_dataset(DataConfig(name="digits", limit=1500))


def test_mnist_real_files(mnist_root):
    (x, y), (xt, yt) = load_mnist(str(mnist_root))
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    # The published label counts of the MNIST training set.
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                       5851, 5949]
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_mnist_splits_scale_only_the_kept_rows_to_the_same_values(mnist_root):
    """data.name=mnist keeps uint8 pixels until the split has picked its rows; the splits
    equal, bitwise, those cut from the whole set scaled first (`load_mnist`)."""
    from lepton_jax.data import RawData, load_raw, make_splits

    config = DataConfig(name="mnist", root=str(mnist_root), val_fraction=0.05, limit=2000)
    raw = load_raw(config)
    assert raw.x.dtype == np.uint8 and raw.x.shape == (60000, 28, 28, 1)
    (x, y), test = load_mnist(str(mnist_root))
    scaled_first = RawData(x, y, "classification", 10, test=test, name="mnist")
    for normalize in (False, True):
        c = dataclasses.replace(config, normalize=normalize)
        got, want = make_splits(raw, c), make_splits(scaled_first, c)
        assert len(got.x_train) == 2000 and len(got.x_val) == 3000 and len(got.x_test) == 10000
        for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            a, b = getattr(got, split), getattr(want, split)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def _copy_mnist(src, dst):
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())


def test_mnist_truncated_file_is_named(mnist_root, tmp_path):
    _copy_mnist(mnist_root, tmp_path)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:5000]))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz is truncated"):
        load_mnist(str(tmp_path))


def test_mnist_wrong_magic_is_named(mnist_root, tmp_path):
    _copy_mnist(mnist_root, tmp_path)
    # Swap the label file in for the images: magic 2049 instead of 2051.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz has magic number 2049"):
        load_mnist(str(tmp_path))


def test_mnist_root_above_the_files_names_the_folder_that_holds_them(tmp_path, mnist_root):
    """data.root at a folder above the files (torchvision keeps them in MNIST/raw): one error
    naming the folder to use, not "train-images-idx3-ubyte.gz is missing"."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in mnist_root.glob("*.gz"):
        (raw / f.name).symlink_to(f)
    with pytest.raises(UserError, match=re.escape(
            f"data.root='{tmp_path}' holds no MNIST files, but {raw} does; set data.root={raw}")):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert load_dataset(DataConfig(name="mnist", root=str(raw), limit=100)).x_train.shape[0] == 100


def test_mnist_missing_root():
    with pytest.raises(UserError, match="does not exist"):
        load_mnist("/nonexistent/mnist")


@pytest.mark.parametrize("column,cell,fix", [
    ("day", lambda i: f"2024-01-{1 + i % 28:02d}",
     "column 'day'; every cell must be a number (it holds dates: convert them to numbers"),
    ("name", lambda i: f"user{i}",
     "(it holds 60 distinct values in 60 rows, like an id or free text: drop the column"),
    ("city", lambda i: f"{'PLN'[i % 3]}city",
     "(or one-hot encode it: data.categorical=[city], or categorical=['city'] from Python)"),
    # Numbers written as text: "1,5" had been called a date, the others one-hot encodable.
    ("w", lambda i: f'"{i},5"', "(its numbers are written with a decimal comma, such as '0,5': "
                                "save them with a decimal point, 1.5)"),
    ("w", lambda i: f'"{i + 1},{i:03d}"', "(its numbers are written with thousands separators, "
                                          "such as '1,000': save them without the commas)"),
    ("w", lambda i: f"{i}%", "(its numbers carry a unit or symbol, such as '0%': save them as "
                             "plain numbers)"),
    # "?" where UCI datasets leave a value out.
    ("w", lambda i: "?" if i % 7 == 3 else str(i),
     "(it holds numbers, and '?' in 9 of 60 rows: marks of missing values? fill those cells or "
     "drop their rows)"),
])
def test_a_column_of_words_gets_the_fix_that_suits_it(tmp_path, column, cell, fix):
    """One-hot encoding was the fix offered for every column of words: for dates it would
    make a column per day, for ids one per row, and numbers written as text need none."""
    path = tmp_path / "d.csv"
    path.write_text(f"{column},x,y\n" + "".join(f"{cell(i)},{i},{i % 2}\n" for i in range(60)))
    with pytest.raises(UserError, match=re.escape(fix)):
        load_dataset(DataConfig(name="csv", root=str(path)))


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("a,b,y\n1,2,3\n4,x,6\n", "non-numeric value 'x' at row 3, column 'b'"),
    ("a,b,y\n1,2,3\n4,5,6,7\n", "ragged rows"),
    ("a,b,y\n", "no data rows"),
    ("a,b,y\n1,2,3\n4,-inf,6\n", "infinite value '-inf' at row 3, column 'b'"),
    (",a,y\n0,2,3\n1,5,6\n2,8,9\n3,1,1\n",
     "has a column without a header name \\(column 1: 0, 1, 2, ...; a DataFrame's index saved "
     "by to_csv\\?\\)"),
    ("a,b,y\n1,2,3\n4,5,inf\n", "infinite value 'inf' at row 3, column 'y'"),
    # pandas renamed the second to x.1: a feature no one named, for serve's named rows.
    ("x,y,x\n1,2,3\n4,5,6\n", "CSV file '.*' names two columns 'x' \\(columns 1 and 3\\); "
                             "give each column its own name"),
    ("a,b,y\n1,2,3\n4,5,6\n7,1e39,9\n",
     "CSV file '.*': an infinite value \\(or a number beyond float32's range, ±3.4e38\\) at "
     "row 4, column 'b' \\(1 row holds"),
])
def test_csv_errors(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_dataset(DataConfig(name="csv", root=str(path)))


def test_arrays_with_nan_or_infinite_values_are_refused_naming_the_first():
    """Training on them would diverge at step 1 and blame the learning rate."""
    from lepton_jax.data import from_table

    x = np.ones((6, 2), np.float64)
    y = np.arange(6) * 0.5
    x[4, 1] = x[5, 0] = np.nan
    with pytest.raises(UserError, match=r"^arrays: NaN at row 4, column 'v' \(2 rows hold NaN "
                                        r"or infinite values\); .*drop or fill those rows$"):
        from_table(x, y, feature_names=("u", "v"))
    x[4, 1] = x[5, 0] = 1.0
    y[2] = 1e300  # beyond float32: an infinite target
    with pytest.raises(UserError, match=r"^arrays, target: an infinite value .* at row 2"):
        from_table(x, y)
    y[2] = 1.0
    assert from_table(x, y).task == "regression"


@pytest.mark.parametrize("x,y,kwargs,message", [
    ([["a", 1], ["b", 2]] * 5, [0, 1] * 5, {},
     r"^arrays: the features must be an array of numbers, one row per example, all rows of one "
     r"length \(could not convert string to float"),
    ([[1, 2], [3]] * 5, [0, 1] * 5, {}, r"all rows of one length \(setting an array element"),
    # A DataFrame's column of words is named, with its fix (numpy's "could not convert string
    # to float: 'Nice'" named no column).
    (pd.DataFrame({"size": [50.0, 70.0] * 5, "city": ["Paris", "Nice"] * 5}), [0, 1] * 5, {},
     r"^arrays: column 'city' holds words \('Paris'\); name it in categorical=\['city'\] to "
     r"one-hot encode it, or encode it as numbers first$"),
    (np.ones((10, 2)), np.ones((10, 3)), {},
     r"^arrays: class labels must be one column, but the target has shape \(10, 3\)"),
    (np.ones((10, 2)), [None, *range(9)], {}, r"^arrays: the target holds None \(at row 0\)"),
    (np.ones((10, 2)), [3] * 10, {}, r"^arrays: the target holds one class only \(3\)"),
    (np.ones((10, 2)), ["cat"] * 10, {}, r"^arrays: the target holds one class only \('cat'\)"),
])
def test_arrays_that_cannot_be_a_dataset_are_refused(x, y, kwargs, message):
    from lepton_jax import Dataset

    with pytest.raises(UserError, match=message):
        Dataset.from_arrays(x, y, **kwargs)


def test_arrays_with_several_regression_targets_and_a_data_frame_s_column_names():
    import pandas as pd

    from lepton_jax import Dataset

    rng = np.random.default_rng(0)
    several = Dataset.from_arrays(rng.normal(size=(20, 2)), rng.normal(size=(20, 3)))
    assert several.task == "regression" and several.raw.y.shape == (20, 3)
    frame = pd.DataFrame({"height": rng.normal(size=20), "age": rng.normal(size=20)})
    named = Dataset.from_arrays(frame, np.arange(20) % 2)
    assert named.raw.feature_names == ("height", "age") and named.raw.num_classes == 2
    assert Dataset.from_arrays(frame, np.arange(20) % 2, feature_names=["h", "a"]
                               ).raw.feature_names == ("h", "a")


def test_arrays_of_grayscale_images_without_a_channel_axis_get_one():
    """(examples, height, width) arrays are single-channel images: LeNet-5 trained on them
    crashed in its padding with a traceback."""
    from lepton_jax import Dataset

    images, labels = digits_arrays()
    flat = Dataset.from_arrays(images[:100, :, :, 0], labels[:100])
    assert flat.raw.x.shape == (100, 28, 28, 1)
    np.testing.assert_array_equal(flat.raw.x, images[:100])


def test_lenet5_trains_and_predicts_on_images_without_a_channel_axis(tmp_path):
    from lepton_jax import Dataset, Model, Trainer

    images, labels = digits_arrays()
    model = Model.lenet5()
    Trainer(model, Dataset.from_arrays(images[:300, :, :, 0], labels[:300]), batch_size=100,
            workdir=tmp_path, progress="off").train(epochs=1)
    np.testing.assert_array_equal(model.predict(images[:4, :, :, 0]), model.predict(images[:4]))


def test_csv_true_false_target_keeps_boolean_classes(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("a,ok\n" + "".join(f"{i},{i % 3 == 0}\n" for i in range(30)))
    data = load_dataset(DataConfig(name="csv", root=str(path)))
    assert data.task == "classification" and data.class_values == (False, True)
    assert all(type(c) is bool for c in data.class_values)  # (0, 1) == (False, True) too


def test_csv_missing_target_lists_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n1,2,3\n")
    with pytest.raises(UserError, match="no target column 'label'; columns: a, b, y"):
        load_dataset(DataConfig(name="csv", root=str(path), target="label"))


def test_csv_task_inference(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    path = tmp_path / "c.csv"
    rows = "\n".join(f"{a},{b},{c},{int(a > 0) + 5}" for a, b, c in x)
    path.write_text("f1,f2,f3,label\n" + rows + "\n")
    d = load_dataset(DataConfig(name="csv", root=str(path)))
    assert d.task == "classification" and d.num_classes == 2 and d.class_values == (5, 6)
    assert d.feature_names == ("f1", "f2", "f3")
    path.write_text("f1,f2,f3,y\n" + "\n".join(f"{a},{b},{c},{a * 0.3}" for a, b, c in x))
    assert load_dataset(DataConfig(name="csv", root=str(path))).task == "regression"


@pytest.fixture
def mirrors(tmp_path, mnist_root):
    """Three MNIST mirrors on 127.0.0.1: one serving damaged files, one serving nothing (404),
    one serving the real files. Stopped when the test ends."""
    import functools
    import http.server
    import threading

    damaged, empty = tmp_path / "damaged", tmp_path / "empty"
    damaged.mkdir()
    empty.mkdir()
    for f in mnist_root.glob("*.gz"):  # a valid gzip of other bytes: the checksum catches it
        (damaged / f.name).write_bytes(gzip.compress(b"not mnist"))
    servers = []
    for folder in (damaged, empty, mnist_root):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [f"http://127.0.0.1:{s.server_address[1]}/" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_download_verifies_each_file_and_falls_back_to_the_next_mirror(tmp_path, mnist_root,
                                                                      mirrors, monkeypatch,
                                                                      capsys):
    from lepton_jax.data import mnist

    for var in ("no_proxy", "NO_PROXY"):  # loopback only, even where a proxy is configured
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.setattr(mnist, "MIRRORS", tuple(mirrors))
    root = tmp_path / "fetched"
    (x, y), (xt, yt) = load_mnist(root, fetch=True)
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    for f in mnist_root.glob("*.gz"):
        assert (root / f.name).read_bytes() == f.read_bytes()
    assert not list(root.glob("*.part"))
    assert f"downloading {mirrors[0]}train-images-idx3-ubyte.gz" in capsys.readouterr().err

    monkeypatch.setattr(mnist, "MIRRORS", tuple(mirrors[:2]))
    with pytest.raises(UserError, match=rf"could not download train-images-idx3-ubyte.gz: "
                                        rf"{mirrors[0]}: checksum mismatch; {mirrors[1]}: "
                                        r"HTTP Error 404"):
        load_mnist(tmp_path / "nowhere", fetch=True)
    assert not list((tmp_path / "nowhere").iterdir())  # nothing half-written


def test_a_first_row_of_numbers_is_data_even_when_it_repeats_a_value(tmp_path):
    """Prediction rows of pixels have no header. pandas renames a repeated column name (a
    second "0" becomes "0.1"), which is not a number, so a first row holding any value twice
    was taken for a header: `lepton-jax predict` wrote 19,999 predictions for 20,000 rows.
    (A repeated "0" becomes "0.1", a number, which hid it in small tests; "0.5.1" is not.)"""
    from lepton_jax.data.tabular import read_features

    rows = np.array([[0.5, 0.5, 0.0, 1.0], [0.25, 0.5, 0.75, 1.0], [1.0, 0.0, 0.0, 0.0]])
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",", fmt="%g")
    np.testing.assert_array_equal(read_features(str(tmp_path / "rows.csv")), rows)
    named = tmp_path / "named.csv"  # a header naming the columns is still a header
    named.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows))
    np.testing.assert_array_equal(read_features(str(named)), rows)
    named.write_text("a,b,a,d\n0,1,2,3\n")
    with pytest.raises(UserError, match="input CSV '.*' names two columns 'a' \\(columns 1 and 3"):
        read_features(str(named))


def test_a_csv_that_is_not_utf8_is_one_error_and_a_byte_order_mark_is_dropped(tmp_path):
    """A Latin-1 export ("Nîmes") raised UnicodeDecodeError's traceback; Excel's UTF-8 CSV
    starts with a byte-order mark, which must not become part of the first column's name."""
    from lepton_jax.data.tabular import read_csv, read_features

    text = "size,city,y\n" + "".join(f"{i},{c},{i % 2}\n" for i, c in
                                     enumerate(["Paris", "Lyon", "Nîmes", "Paris"] * 3))
    (tmp_path / "latin.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(UserError, match=r"CSV file '.*latin.csv' is not UTF-8 text: byte 0xee on "
                                        r"line 4 .* save it as UTF-8"):
        read_csv(str(tmp_path / "latin.csv"), "y", ["city"])
    with pytest.raises(UserError, match="input CSV '.*latin.csv' is not UTF-8 text"):
        read_features(str(tmp_path / "latin.csv"))
    (tmp_path / "bom.csv").write_bytes(text.encode("utf-8-sig"))
    x, y, names, encoding = read_csv(str(tmp_path / "bom.csv"), "y", ["city"])
    assert names[0] == "size" and encoding["columns"][0] == "size" and len(x) == 12
