"""Splitting arrays into train/validation/test and normalizing with training statistics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class DataSplits:
    """A dataset as arrays, split and normalized; the task decides the loss and metrics."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "classification" or "regression"
    num_classes: int = 0
    # Normalization applied to every split (x - mean) / std, computed on x_train only.
    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None
    feature_names: tuple = field(default_factory=tuple)
    # Original label values for classification (index i <-> class_values[i]).
    class_values: tuple = field(default_factory=tuple)
    # Tabular data: raw feature columns and one-hot categories (see data.tabular).
    encoding: Optional[dict] = None
    # Image datasets whose inputs are pixels scaled to [0, 1] ("digits", "mnist"): prediction
    # checks raw rows against that range.
    pixels: Optional[str] = None

    @property
    def num_outputs(self) -> int:
        if self.task == "classification":
            return self.num_classes
        # One output per regression target (`Dataset.from_arrays` takes several as columns).
        return int(np.prod(self.y_train.shape[1:])) if self.y_train.ndim > 1 else 1

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])


def split_arrays(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                 seed: int, limit: Optional[int] = None):
    """Shuffles with `seed` and cuts (train, val, test) by the given fractions; `limit` keeps
    the first `limit` training examples of that order (val and test do not change)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    # Cut the indices, not the gathered rows: a 10,000-image limit on MNIST then copies 10,000
    # images instead of 57,000 (~150 MB less to allocate and touch).
    train = train[:limit]
    return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])


def normalize(splits: DataSplits, per_feature: bool) -> DataSplits:
    """Standardizes every split with the training split's mean and std only."""
    axis = 0 if per_feature else None
    mean = splits.x_train.mean(axis=axis, keepdims=per_feature, dtype=np.float64)
    std = splits.x_train.std(axis=axis, keepdims=per_feature, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    mean = np.asarray(mean, np.float32).reshape(splits.x_train.shape[1:] if per_feature else ())
    std = np.asarray(std, np.float32).reshape(mean.shape)

    def apply(x):
        return ((x - mean) / std).astype(np.float32)

    return replace(splits, x_train=apply(splits.x_train), x_val=apply(splits.x_val),
                   x_test=apply(splits.x_test), mean=mean, std=std)
