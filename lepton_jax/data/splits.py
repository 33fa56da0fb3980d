"""Splitting arrays into train/validation/test and normalizing with training statistics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from lepton_jax.errors import UserError


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
    # Regression targets standardized the same way, one mean/std per target column
    # (`data.normalize_target`); `target_units` maps outputs and targets back.
    target_mean: Optional[np.ndarray] = None
    target_std: Optional[np.ndarray] = None
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

    def target_units(self, values: np.ndarray) -> np.ndarray:
        """Regression outputs or targets on the standardized scale, back in the target's own
        units (float64); unchanged when the targets were not standardized."""
        return to_target_units(values, self.target_mean, self.target_std)


def target_label(task: str, num_classes: int, num_outputs: int) -> str:
    """What a model predicts, as run headers and reprs say it: `10 classes`, `regression`."""
    if task == "classification":
        return f"{num_classes} classes"
    return "regression" if num_outputs == 1 else f"regression of {num_outputs} targets"


def inputs_label(input_shape) -> str:
    """`5 features` or `28x28x1 images`."""
    shape = tuple(input_shape)
    return f"{shape[0]} features" if len(shape) == 1 else "x".join(map(str, shape)) + " images"


def to_target_units(values, mean, std) -> np.ndarray:
    """`values * std + mean` per target column (a single target's values may be 1-D)."""
    if std is None:
        return values
    values = np.asarray(values, np.float64)
    return values * np.asarray(std, np.float64) + np.asarray(mean, np.float64)


def split_arrays(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                 seed: int, limit: Optional[int] = None):
    """Shuffles with `seed` and cuts (train, val, test) by the given fractions; `limit` keeps
    the first `limit` training examples of that order (val and test do not change)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    if limit is not None and limit > len(train):
        # It would keep them all: a user who read it as the whole dataset's size (1,500 of
        # digits' 1,797 rows) would train on every row believing otherwise.
        raise UserError(f"data.limit ({limit}) is more than the {len(train):,} training examples "
                        f"left after the validation and test splits; it counts training "
                        f"examples only (validation and test stay whole): use at most "
                        f"{len(train)}, or null to keep all")
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


def normalize_targets(splits: DataSplits) -> DataSplits:
    """Standardizes regression targets with the training split's mean and std per column, so
    that SGD at the usual learning rates trains on targets of any scale (prices in the
    100,000s diverged at step 3); metrics and predictions map them back (`target_units`)."""
    if splits.task != "regression" or not len(splits.y_train):
        return splits
    y = splits.y_train.reshape(len(splits.y_train), -1).astype(np.float64)
    std = y.std(axis=0)
    mean = y.mean(axis=0).astype(np.float32)
    std = np.where(std > 0, std, 1.0).astype(np.float32)

    def apply(v):  # an empty split too (data.val_fraction=0): -1 cannot size 0 rows
        return ((v.reshape(len(v), mean.size) - mean) / std).reshape(v.shape).astype(np.float32)

    return replace(splits, y_train=apply(splits.y_train), y_val=apply(splits.y_val),
                   y_test=apply(splits.y_test), target_mean=mean, target_std=std)
