"""Datasets by short name (digits, mnist, csv) as split, normalized arrays."""

from __future__ import annotations

import numpy as np

from lepton_jax.config import DataConfig
from lepton_jax.data.splits import DataSplits, normalize, split_arrays
from lepton_jax.errors import UserError

DATASETS = ("digits", "mnist", "csv")

__all__ = ["DATASETS", "DataSplits", "load_dataset", "digits_arrays"]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, resized to 28x28 in [0, 1] so image models accept them."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    # order=1: bilinear; 8 * 3.5 = 28.
    resized = zoom(images, (1, 3.5, 3.5), order=1).clip(0.0, 1.0)
    return resized[..., None].astype(np.float32), bunch.target.astype(np.int32)


def load_dataset(config: DataConfig) -> DataSplits:
    """Loads, splits and normalizes the dataset named by `config.name`.

    Raises:
        UserError: for an unknown name or unreadable files.
    """
    if config.name == "digits":
        x, y = digits_arrays()
        train, val, test = split_arrays(x, y, config.val_fraction, config.test_fraction,
                                        config.split_seed)
        task, num_classes, names, classes = "classification", 10, (), tuple(range(10))
    elif config.name == "mnist":
        from lepton_jax.data.mnist import load_mnist

        (x, y), test = load_mnist(config.root, fetch=config.download)
        train, val, _ = split_arrays(x, y, config.val_fraction, 0.0, config.split_seed)
        task, num_classes, names, classes = "classification", 10, (), tuple(range(10))
    elif config.name == "csv":
        from lepton_jax.data.tabular import encode_labels, infer_task, read_csv

        x, y, names, _ = read_csv(config.root, config.target)
        task = infer_task(y, config.task)
        if task == "classification":
            y, classes = encode_labels(y, config.root)
            num_classes = len(classes)
        else:
            y, classes, num_classes = y.astype(np.float32)[:, None], (), 0
        train, val, test = split_arrays(x, y, config.val_fraction, config.test_fraction,
                                        config.split_seed)
    else:
        raise UserError(f"data.name={config.name!r} is not known; valid datasets: "
                        f"{', '.join(DATASETS)}")
    if config.limit is not None:
        train = (train[0][: config.limit], train[1][: config.limit])
    if len(train[0]) == 0:
        raise UserError(f"dataset {config.name!r} has no training examples after splitting; "
                        "lower data.val_fraction/test_fraction or add rows")
    splits = DataSplits(*train, *val, *test, task=task, num_classes=num_classes,
                        feature_names=names, class_values=classes)
    if config.normalize:
        # Images share one mean/std over all pixels; tabular features get one each.
        splits = normalize(splits, per_feature=(config.name == "csv"))
    return splits
