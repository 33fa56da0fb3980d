"""Datasets by short name (digits, mnist, csv) as split, normalized arrays."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from lepton_jax.config import DataConfig
from lepton_jax.data.splits import DataSplits, normalize, normalize_targets, split_arrays
from lepton_jax.errors import UserError

DATASETS = ("digits", "mnist", "csv")

__all__ = ["DATASETS", "DataSplits", "RawData", "from_table", "load_dataset", "load_raw", "make_splits",
           "digits_arrays", "digits_images"]


@dataclass(frozen=True)
class RawData:
    """Examples before splitting and normalization; `test` is an official test split if any."""

    x: np.ndarray
    y: np.ndarray
    task: str
    num_classes: int = 0
    feature_names: tuple = ()
    class_values: tuple = ()
    test: Optional[tuple] = None
    # Images share one mean/std over all pixels; tabular features get one each.
    per_feature: bool = False
    name: str = "arrays"
    # Tabular data: raw feature columns and one-hot categories, repeated at prediction.
    encoding: Optional[dict] = None
    # Turns stored rows into inputs (MNIST's uint8 pixels into float32), applied only to the
    # rows a split keeps; None: `x` already holds the inputs.
    decode_rows: Optional[Callable[[np.ndarray], np.ndarray]] = None


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, resized to 28x28 in [0, 1] so image models accept them.

    Read-only arrays, kept in the user cache folder (importing scikit-learn and SciPy took
    ~1.5 s of every digits run's start-up) and shared within a process."""
    arrays = _digits_cached()
    return arrays["images"], arrays["labels"]


def digits_images(rows) -> np.ndarray:
    """scikit-learn's 8x8 digits (rows of 64 pixels from 0 to 16, or 8x8 images) as
    `data=digits` gives them to models: 28x28x1 images in [0, 1] (float32)."""
    from scipy.ndimage import zoom

    images = np.asarray(rows, np.float32).reshape(-1, 8, 8) / 16.0
    # order=1: bilinear; 8 * 3.5 = 28.
    resized = zoom(images, (1, 3.5, 3.5), order=1).clip(0.0, 1.0)
    return resized[..., None].astype(np.float32)


def _build_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return {"images": digits_images(bunch.images), "labels": bunch.target.astype(np.int32)}


@functools.lru_cache(maxsize=1)
def _digits_cached() -> dict[str, np.ndarray]:
    from importlib.metadata import version

    from lepton_jax.data.cache import disk_cached

    # A new scikit-learn or SciPy, or a change to _build_digits ("v1"), makes a new entry.
    key = ("digits 28x28 bilinear v1", version("scikit-learn"), version("scipy"))
    arrays = disk_cached("digits", key, ("images", "labels"), _build_digits)
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def _words(x, feature_names: tuple) -> Optional[tuple[str, object]]:
    """The first named column holding a cell that is not a number, and that cell, or None
    (unnamed features, or rows of different lengths)."""
    table = np.asarray(x, dtype=object) if feature_names else None
    if table is None or table.ndim != 2 or table.shape[1] != len(feature_names):
        return None
    import pandas as pd

    for j, name in enumerate(feature_names):  # a column at a time, vectorized
        column = pd.Series(table[:, j])
        failed = pd.to_numeric(column, errors="coerce").isna() & column.notna()
        if failed.any():
            return name, column[failed.idxmax()]
    return None


def from_table(x: np.ndarray, y: np.ndarray, task: str = "auto", feature_names: tuple = (),
            source: str = "arrays", encoding: Optional[dict] = None) -> RawData:
    """Feature rows and targets: the task inferred from `y` unless given; labels encoded."""
    from lepton_jax.data.tabular import encode_labels, infer_task

    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by check_finite below
            x = np.asarray(x, np.float32)
    except (ValueError, TypeError) as e:  # text cells, or rows of different lengths
        words = _words(x, feature_names)
        if words:  # a DataFrame's column of words: named, with the fix for it
            name, value = words
            raise UserError(f"{source}: column {name!r} holds words ({value!r}); name it in "
                            f"categorical=[{name!r}] to one-hot encode it, or encode it as "
                            "numbers first") from None
        raise UserError(f"{source}: the features must be an array of numbers, one row per "
                        f"example, all rows of one length ({str(e).split('. ')[0]}); encode "
                        "text columns as numbers first, or name them in categorical= (of "
                        "Dataset.from_arrays with a DataFrame, or Dataset.load_csv) to one-hot "
                        "encode them") from None
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 3:  # (examples, height, width): grayscale images, given their channel axis
        x = x[..., None]
    y = np.asarray(y)
    flags = y.dtype == bool
    if y.dtype == object and any(v is None for v in y.ravel()):
        raise UserError(f"{source}: the target holds None (at row "
                        f"{next(i for i, v in enumerate(y.ravel()) if v is None)}); every "
                        "example needs a target: drop or fill those rows")
    if y.dtype.kind in "OUS":  # words as labels (a CSV's "cat"/"dog" column, a list of str)
        y = y.astype(str).astype(object)
        if task == "regression":
            raise UserError(f"{source}: the target holds text ({y[0]!r}, ...); regression needs "
                            "numbers. Use data.task=auto or classification for class labels")
    else:
        y = y.astype(np.float64)
    if len(x) != len(y):
        raise UserError(f"{source}: {len(x)} feature rows but {len(y)} targets; they must match")
    if not len(x):  # had failed with an IndexError further on
        raise UserError(f"{source}: no examples (0 rows); pass at least a few rows of features "
                        "and their targets")
    # A CSV's messages number rows by file line, the header being line 1.
    where, first_line = (f"CSV file {source!r}", 2) if encoding is not None else (source, None)
    check_finite(x, where, feature_names, first_line)
    task = infer_task(y, task)
    if task == "classification":
        if y.ndim > 1 and int(np.prod(y.shape[1:])) > 1:
            raise UserError(f"{source}: class labels must be one column, but the target has "
                            f"shape {y.shape}; for several regression targets pass "
                            "task='regression'")
        codes, classes = encode_labels(y.ravel(), source)
        if flags:  # True/False labels: predictions give them back as booleans, not 0/1
            classes = tuple(bool(c) for c in classes)
        if len(classes) < 2:
            raise UserError(f"{source}: the target holds one class only ({classes[0]!r}); "
                            "classification needs examples of at least two (for real-valued "
                            "targets, use task='regression')")
        return RawData(x, codes, task, len(classes), tuple(feature_names), classes,
                       per_feature=True, name=source, encoding=encoding)
    with np.errstate(over="ignore"):
        y = y.astype(np.float32).reshape(len(y), -1)
    check_finite(y, f"{where}, target", (), first_line)
    return RawData(x, y, task, 0, tuple(feature_names), per_feature=True, name=source,
                   encoding=encoding)


def check_finite(x: np.ndarray, source: str, names: tuple = (),
                 first_line: Optional[int] = None) -> None:
    """Refuses NaN and infinite float32 values (a number beyond float32's range becomes one),
    naming the first one's row and column: training on them diverges at once, and predicting
    gives NaN. `first_line`: the number of row 0 in a CSV's messages (its file line), else
    rows are counted from 0."""
    if not x.size:
        return
    flat = x.reshape(len(x), -1)
    bad = ~np.isfinite(flat)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    column = repr(names[col]) if len(names) == flat.shape[1] else str(col)
    value = ("NaN" if np.isnan(flat[row, col])
             else "an infinite value (or a number beyond float32's range, ±3.4e38)")
    rows = int(bad.any(axis=1).sum())
    raise UserError(f"{source}: {value} at row {row + (first_line or 0)}, column {column} "
                    f"({rows} row{'s hold' if rows != 1 else ' holds'} NaN or infinite values); "
                    "every value must be a finite number: drop or fill those rows")


def load_raw(config: DataConfig) -> RawData:
    """Reads the dataset named by `config.name`, unsplit.

    Raises:
        UserError: for an unknown name or unreadable files.
    """
    if config.name == "digits":
        x, y = digits_arrays()
        return RawData(x, y, "classification", 10, class_values=tuple(range(10)), name="digits")
    if config.name == "mnist":
        from lepton_jax.data.mnist import load_mnist_pixels, scale_pixels

        (x, y), test = load_mnist_pixels(config.root, fetch=config.download)
        return RawData(x, y, "classification", 10, class_values=tuple(range(10)), test=test,
                       name="mnist", decode_rows=scale_pixels)
    if config.name == "csv":
        from lepton_jax.data.tabular import read_csv

        x, y, names, encoding = read_csv(config.root, config.target, config.categorical)
        return from_table(x, y, config.task, names, source=str(config.root), encoding=encoding)
    raise UserError(f"data.name={config.name!r} is not known; valid datasets: "
                    f"{', '.join(DATASETS)}")


def make_splits(raw: RawData, config: DataConfig) -> DataSplits:
    """Seeded train/val/test split (the official test split when there is one), an optional
    limit on training examples, and normalization with training statistics (inputs, and
    regression targets)."""
    if raw.test is not None:
        train, val, _ = split_arrays(raw.x, raw.y, config.val_fraction, 0.0, config.split_seed,
                                     config.limit)
        test = raw.test
    else:
        train, val, test = split_arrays(raw.x, raw.y, config.val_fraction, config.test_fraction,
                                        config.split_seed, config.limit)
    if raw.decode_rows is not None:
        train, val, test = ((raw.decode_rows(x), y) for x, y in (train, val, test))
    if len(train[0]) == 0:
        raise UserError(f"dataset {raw.name!r} has no training examples after splitting; "
                        "lower data.val_fraction/test_fraction or add rows")
    splits = DataSplits(*train, *val, *test, task=raw.task, num_classes=raw.num_classes,
                        feature_names=raw.feature_names, class_values=raw.class_values,
                        encoding=raw.encoding,
                        pixels=raw.name if raw.name in ("digits", "mnist") else None)
    if config.normalize_target:
        splits = normalize_targets(splits)
    return normalize(splits, per_feature=raw.per_feature) if config.normalize else splits


def load_dataset(config: DataConfig) -> DataSplits:
    """Loads, splits and normalizes the dataset named by `config.name`."""
    return make_splits(load_raw(config), config)
