"""The notebook API: Dataset, Model, Trainer on the same core as the Hydra app."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lepton_jax.config import (MAX_SEED, Config, DataConfig, ModelConfig, OptimConfig,
                               TrainerConfig, validate, validate_data)
from lepton_jax.data import DataSplits, RawData, check_finite, from_table, load_raw, make_splits
from lepton_jax.data.splits import inputs_label, target_label, to_target_units
from lepton_jax.errors import UserError, as_path
from lepton_jax.modelfile import jsonable

SPLITS = ("train", "val", "test")  # a dataset's splits, as DataSplits names them (x_train, ...)


class Dataset:
    """Examples plus how to split and preprocess them (recorded, so prediction repeats it)."""

    def __init__(self, raw: RawData, config: DataConfig):
        self.raw = raw
        self.config = validate_data(config, prefix="")
        self._splits: dict[bool, DataSplits] = {}

    @classmethod
    def _load(cls, config: DataConfig) -> "Dataset":
        """Reads a named dataset, its split settings checked before any file is read."""
        config = validate_data(config, prefix="")
        return cls(load_raw(config), config)

    @classmethod
    def load_csv(cls, path: str | os.PathLike, target: Optional[str] = None, task: str = "auto",
                 categorical: Sequence[str] = (), **split) -> "Dataset":
        """A CSV of numeric columns; `target` names the label column (default: the last);
        `categorical` columns are one-hot encoded (the categories are recorded)."""
        config = DataConfig(name="csv", root=str(path), target=target, task=task,
                            categorical=list(categorical), **split)
        return cls._load(config)

    @classmethod
    def mnist(cls, root: str | os.PathLike, download: bool = False, **split) -> "Dataset":
        config = DataConfig(name="mnist", root=str(root), download=download,
                            **{"val_fraction": 0.05, **split})
        return cls._load(config)

    @classmethod
    def digits(cls, **split) -> "Dataset":
        """scikit-learn's bundled 8x8 digits, resized to 28x28."""
        config = DataConfig(name="digits", **split)
        return cls._load(config)

    @classmethod
    def from_arrays(cls, x, y, task: str = "auto", feature_names: Sequence[str] = (),
                    categorical: Sequence[str] = (), **split) -> "Dataset":
        """Feature rows `x` and targets `y`; integer targets with few values are classes.
        A DataFrame's column names are the feature names unless `feature_names` are given;
        its `categorical` columns are one-hot encoded as `load_csv` encodes a CSV's (and
        `Model.predict` of a DataFrame of raw columns repeats it). `y` may name the target
        column(s) of a DataFrame `x` instead (`from_arrays(frame, "price")`): the other
        columns are the features."""
        # A list of strings is several target columns only where each one names a column of
        # x (once); otherwise it is a list of class labels.
        if isinstance(y, str) or (
                isinstance(y, (list, tuple)) and hasattr(x, "columns") and y
                and len(set(y)) == len(y) and set(map(str, y)) <= set(map(str, x.columns))):
            x, y = _target_columns(x, y)
        if np.ndim(y) == 0:  # a number: len() had failed deep in the split
            raise UserError(f"from_arrays' y is a single value ({y!r}); pass one target per "
                            "row of x (an array, a list, a Series), or a DataFrame x's target "
                            "column name")
        if not feature_names and hasattr(x, "columns"):
            feature_names = [str(c) for c in x.columns]
        encoding = None
        if categorical:
            from lepton_jax.data.tabular import (categorical_encoding, encode_features,
                                                 encoded_names)

            if not hasattr(x, "columns"):
                raise UserError(f"from_arrays(categorical={list(categorical)}) names DataFrame "
                                f"columns, but x is a {_type_name(x)}; pass a DataFrame")
            frame = x.rename(columns=str)
            unknown = [c for c in categorical if c not in frame.columns]
            if unknown:
                raise UserError(f"from_arrays(categorical=...) names {unknown}, which are not "
                                f"columns of x; it has: {', '.join(frame.columns)}")
            encoding = categorical_encoding(frame, list(frame.columns), categorical)
            frame.attrs["first_line"] = 0  # a bad cell's row is the frame's own position
            x = encode_features(frame, encoding, "DataFrame", "from_arrays")
            feature_names = encoded_names(encoding)
        # from_table refuses what is not numbers
        raw = from_table(x, y, task, tuple(feature_names), encoding=encoding)
        return cls(raw, DataConfig(name="arrays", task=raw.task, **split))

    def split(self, val_fraction: Optional[float] = None, test_fraction: Optional[float] = None,
              seed: Optional[int] = None, standardize: Optional[bool] = None) -> "Dataset":
        """A copy split with other fractions/seed (standardization from the train split); an
        argument left out keeps this dataset's setting."""
        if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:  # its field is split_seed
            raise UserError(f"split(seed={seed}): the seed must be in [0, {MAX_SEED}]")
        # Defaults of 0.1 and seed 0 had undone what `Dataset.digits(test_fraction=0.3,
        # split_seed=5)` set, when only val_fraction was given.
        given = {"val_fraction": val_fraction, "test_fraction": test_fraction,
                 "split_seed": seed, "normalize": standardize}
        config = dataclasses.replace(self.config, **{k: v for k, v in given.items()
                                                     if v is not None})
        return Dataset(self.raw, config)

    def splits(self, normalized: bool = True) -> DataSplits:
        """The arrays training sees: inputs (and regression targets) standardized with the
        training split's statistics; `normalized=False`: as the data holds them."""
        if normalized not in self._splits:
            config = dataclasses.replace(
                self.config, normalize=normalized and self.config.normalize,
                normalize_target=normalized and self.config.normalize_target)
            self._splits[normalized] = make_splits(self.raw, config)
        return self._splits[normalized]

    @property
    def task(self) -> str:
        return self.raw.task

    def describe(self):
        """One row per split: examples, input shape, task, and the classes and their
        counts (`{class: count}`), or the targets' mean and std (a pandas DataFrame)."""
        import pandas as pd

        s = self.splits()
        rows = []
        for name in SPLITS:
            x, y = getattr(s, f"x_{name}"), getattr(s, f"y_{name}")
            row = {"split": name, "examples": len(x), "input_shape": tuple(x.shape[1:]),
                   "task": s.task}
            if s.task == "classification":
                row["classes"] = s.num_classes
                # By class, as predictions name them: a bare list said nothing of which
                # count was setosa's.
                counts = np.bincount(y, minlength=s.num_classes).tolist()
                row["class_counts"] = dict(zip(s.class_values or range(s.num_classes), counts,
                                               strict=True))
            else:  # per target column: a number for one target, a list for several
                values = s.target_units(y).reshape(len(y), s.num_outputs)
                for stat, f in (("target_mean", np.mean), ("target_std", np.std)):
                    per = f(values, axis=0) if len(y) else np.full(s.num_outputs, np.nan)
                    row[stat] = float(per[0]) if len(per) == 1 else per.tolist()
            rows.append(row)
        return pd.DataFrame(rows).set_index("split")

    def __repr__(self) -> str:
        # How it splits, which `split()` and the keyword arguments change: the examples alone
        # did not say what `split(val_fraction=0.2)` or `limit=5000` had done.
        c = self.config
        test = "test=official" if self.raw.test is not None else \
            f"test_fraction={c.test_fraction:g}"
        limit = f", limit={c.limit}" if c.limit is not None else ""
        return (f"Dataset({self.raw.name}, {len(self.raw.x)} examples, task={self.task}, "
                f"input_shape={tuple(self.raw.x.shape[1:])}, val_fraction={c.val_fraction:g}, "
                f"{test}, split_seed={c.split_seed}{limit})")


def input_widths(info: dict) -> tuple:
    """The features per row a model takes: its input's size, and for a digits image model
    also scikit-learn's own 8x8 rows (64), which `_check_pixels` resizes."""
    width = int(np.prod(info["input_shape"]))
    return (width, 64) if info.get("pixels") == "digits" and width == 784 else (width,)


def _check_pixels(x: np.ndarray, pixels: Optional[str], shape: tuple) -> np.ndarray:
    """Raw rows for a model trained on an image dataset (`pixels`: "digits" or "mnist"), whose
    pixels it saw in [0, 1]: scikit-learn's 8x8 digits (0 to 16) are resized as `data=digits`
    does; values outside [0, 1] (MNIST's 0-255, or standardized rows) are refused, as they
    would predict with the wrong scale without a word."""
    if pixels is None or not x.size:
        return x
    features = int(np.prod(x.shape[1:]))
    if pixels == "digits" and features == 64 and int(np.prod(shape)) == 784:
        if x.min() < 0 or x.max() > 16 or x.max() <= 1:
            raise UserError(f"predict got 8x8 digits with values from {x.min():g} to "
                            f"{x.max():g}; give them as scikit-learn does (0 to 16), or as "
                            "28x28 rows in [0, 1] (lepton_jax.data.digits_images)")
        from lepton_jax.data import digits_images

        return digits_images(x)
    if x.min() < 0 or x.max() > 1:
        # Below 0: standardized already, as Dataset.splits() gives them by default.
        fix = ("divide MNIST's 0-255 pixels by 255" if pixels == "mnist" and x.min() >= 0
               else f"give rows as Dataset.{pixels}().splits(normalized=False) holds them, or "
                    "pass the Dataset itself (model.predict(dataset, split='test'))")
        raise UserError(f"predict got values from {x.min():g} to {x.max():g}; this model was "
                        f"trained on data={pixels}'s pixels scaled to [0, 1] (the recorded "
                        f"standardization is applied after); {fix}")
    return x


class Model:
    """A model by short name; after training (or `Model.load`) it predicts and evaluates."""

    def __init__(self, config: ModelConfig, task: Optional[str] = None):
        self.config = config
        self.task = task
        self.params = None
        self.data_info: Optional[dict] = None
        self._apply = None

    @classmethod
    def linear_regression(cls) -> "Model":
        return cls(ModelConfig(name="linear"), task="regression")

    @classmethod
    def logistic_regression(cls) -> "Model":
        return cls(ModelConfig(name="linear"), task="classification")

    @classmethod
    def mlp(cls, hidden: Sequence[int] = (256, 128), activation: str = "relu",
            dropout: float = 0.0) -> "Model":
        if np.ndim(hidden) != 1:  # mlp(hidden=64) had failed on iterating an int
            raise UserError(f"Model.mlp(hidden={hidden!r}): hidden is the list of hidden "
                            f"layer widths, e.g. hidden=[{hidden!r}] for one layer"
                            if np.ndim(hidden) == 0 else
                            "Model.mlp(hidden=...) takes a flat list of widths, e.g. [256, 128]")
        return cls(ModelConfig(name="mlp", hidden=list(hidden), activation=activation,
                               dropout=dropout))

    @classmethod
    def lenet5(cls) -> "Model":
        return cls(ModelConfig(name="lenet5"))

    def _module(self):
        from lepton_jax.models import build_model

        info = self._trained()
        outputs = (info["num_classes"] if info["task"] == "classification"
                   else info.get("num_outputs", 1))  # recorded since several targets train
        return build_model(self.config, outputs)

    def _trained(self) -> dict:
        if self.params is None or self.data_info is None:
            raise UserError("this model has no trained parameters yet; train it with "
                            "Trainer(model, dataset).train() or load one with Model.load(path)")
        return self.data_info

    def _prepare(self, x) -> np.ndarray:
        import pandas as pd

        info = self._trained()
        encoding = info.get("encoding")
        if x is None or isinstance(x, (str, bytes)):
            raise UserError(f"predict got {x!r}; pass rows: an array or a list of rows, a "
                            "DataFrame, or a Dataset")
        # One row by name: a dict of columns, a list of them, or a DataFrame's row (a Series).
        rows = [x] if isinstance(x, dict) else x
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            if not (encoding or info.get("feature_names")):
                raise UserError("predict got rows by column name, but this model's features "
                                "have no names; pass each row as a list of "
                                f"{int(np.prod(info['input_shape']))} numbers")
            x = pd.DataFrame(rows)
        elif isinstance(x, pd.Series) and (encoding or info.get("feature_names")):
            x = x.to_frame().T.infer_objects()  # df.iloc[0]: one row, its index the columns
        if encoding and hasattr(x, "columns"):  # a DataFrame of raw columns: encode as trained
            from lepton_jax.data.tabular import encode_features

            x = x.copy(deep=False)
            x.attrs["first_line"] = 0  # a bad cell's row is the frame's own position
            x = encode_features(x, encoding, x.attrs.get("source", "DataFrame"), "input")
        elif hasattr(x, "columns") and info.get("feature_names"):  # columns picked by name
            from lepton_jax.data.tabular import require_columns

            source = x.attrs.get("source", "DataFrame")
            x = x.rename(columns=str)  # feature names are strings; a frame's may be numbers
            require_columns(x, info["feature_names"], source, "input")
            x = x[list(info["feature_names"])]
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused by check_finite
                x = np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x, np.float32)
        except (ValueError, TypeError) as e:  # words, or rows of different lengths
            raise UserError(f"predict input must be rows of numbers, all of one length "
                            f"({str(e).split('. ')[0]})") from None
        shape = tuple(info["input_shape"])
        if x.ndim == 1 or x.shape == shape or (x.shape == shape[:-1] and shape[-1] == 1):
            x = x[None]  # one example: a flat row, or one image (28x28 read as 28 rows of 28)
        check_finite(x, "predict input", tuple(info.get("feature_names") or ()))
        got = int(np.prod(x.shape[1:]))
        if got not in input_widths(info):
            raise UserError(f"predict got {got} features per row; this model was trained on "
                            f"{int(np.prod(shape))} (input shape {shape})")
        x = _check_pixels(x, info.get("pixels"), shape)
        x = x.reshape((len(x), *shape))
        if info.get("mean") is not None:
            x = (x - np.asarray(info["mean"], np.float32)) / np.asarray(info["std"], np.float32)
        return x.astype(np.float32)

    def _split_rows(self, dataset: Dataset, split: str, caller: str) -> tuple:
        """A split's raw inputs, in the model's column order, and its targets."""
        if split not in SPLITS:
            raise UserError(f"{caller}(split={split!r}): use 'train', 'val' or 'test'")
        raw = dataset.splits(normalized=False)
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if len(y) == 0:
            raise UserError(f"{caller}(split={split!r}): this dataset's {split} split is empty")
        info = self._trained()
        ours, theirs = list(info.get("feature_names") or ()), list(raw.feature_names)
        if ours and theirs and ours != theirs:
            if sorted(ours) != sorted(theirs):
                raise UserError(f"{caller}: the dataset's features ({', '.join(theirs)}) are "
                                f"not the model's ({', '.join(ours)})")
            x = x[:, [theirs.index(name) for name in ours]]  # the model's column order
        return x, y

    def outputs(self, x, split: str = "test") -> np.ndarray:
        """Model outputs for raw input rows (or a Dataset's `split`): logits, or regression
        values in the target's own units."""
        import jax

        from lepton_jax.parallel import compiler_options

        if isinstance(x, Dataset):
            x, _ = self._split_rows(x, split, "predict")
        elif split != "test":
            raise UserError(f"predict(split={split!r}) picks a Dataset's split; these rows "
                            f"are a {_type_name(x)}, predicted as they are")
        if getattr(self, "_apply", None) is None:
            module = self._module()
            self._apply = jax.jit(lambda p, v: module.apply({"params": p}, v),
                                  compiler_options=compiler_options(jax.default_backend()))
        x = self._prepare(x)
        # Pad the row count to a power of two: a server sees many batch sizes, and each
        # distinct shape would otherwise compile anew.
        rows = len(x)
        padded = 1 << max(rows - 1, 0).bit_length()
        x = np.concatenate([x, np.zeros((padded - rows, *x.shape[1:]), x.dtype)])
        out = np.asarray(self._apply(self.params, x))[:rows]
        info = self._trained()
        if info["task"] == "regression" and info.get("target_std") is not None:
            # Trained on standardized targets: back to the target's own units.
            out = to_target_units(out, info["target_mean"], info["target_std"]).astype(np.float32)
        return out

    def predict(self, x, split: str = "test") -> np.ndarray:
        """Class labels (original values) or regression values for raw input rows: an array,
        a list or a DataFrame, as the data holds them (the recorded standardization is applied
        here); or a Dataset, whose `split` rows it predicts."""
        out = self.outputs(x, split)
        if self._trained()["task"] == "classification":
            return self._most_probable(out)
        return out[:, 0] if out.shape[1] == 1 else out

    def _most_probable(self, scores: np.ndarray) -> np.ndarray:
        """A classifier's label of the highest of each row's `scores` (logits, or
        `predict_proba`'s probabilities: the same class), as `predict` gives it."""
        return np.asarray(self.classes)[scores.argmax(axis=-1)]

    @property
    def classes(self) -> Optional[list]:
        """A classifier's class labels (original values), in the order of `predict_proba`'s
        columns; None for regression."""
        info = self._trained()
        if info["task"] != "classification":
            return None
        values = info["class_values"] or range(info["num_classes"])
        return [v.item() if isinstance(v, np.generic) else v for v in values]  # plain Python

    def predict_proba(self, x, split: str = "test") -> np.ndarray:
        """A classifier's probability of each class (columns in `classes` order; float64,
        each row summing to 1) for raw input rows or a Dataset's `split`, as `predict` takes
        them: the softmax of the outputs, whose mean log-loss over a split is the split's
        reported loss."""
        if self._trained()["task"] != "classification":
            raise UserError("predict_proba is for classifiers; this model does regression, "
                            "use predict")
        logits = self.outputs(x, split).astype(np.float64)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    def evaluate(self, dataset: Dataset, split: str = "test") -> dict:
        """The foundation's metrics on a split of `dataset` (raw inputs, our preprocessing)."""
        from lepton_jax.metrics import compute_metrics

        if split not in SPLITS:
            raise UserError(f"evaluate(split={split!r}): use 'train', 'val' or 'test'")
        if not isinstance(dataset, Dataset):  # arrays raised AttributeError ('splits')
            raise UserError(f"evaluate's dataset is a {_type_name(dataset)}; pass a Dataset "
                            "(Dataset.from_arrays(x, y) for arrays)")
        x, y = self._split_rows(dataset, split, "evaluate")
        info = self._trained()
        outputs = self.outputs(x)
        metrics = compute_metrics(info["task"], y, outputs, info["num_classes"])
        metrics["loss"] = self._loss(y, outputs)
        return metrics

    def _loss(self, y: np.ndarray, outputs: np.ndarray) -> float:
        """The loss as the run reported it: cross-entropy, or a regression's MSE on the
        standardized scale it trained on (`outputs` and `y` are in the target's units)."""
        from lepton_jax.loop import host_loss

        info = self._trained()
        if info["task"] == "regression" and info.get("target_std") is not None:
            mean = np.asarray(info["target_mean"], np.float64)
            std = np.asarray(info["target_std"], np.float64)
            y = (np.asarray(y, np.float64).reshape(len(y), -1) - mean) / std
            outputs = (outputs.astype(np.float64) - mean) / std
        return host_loss(info["task"], np.asarray(y), outputs)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes params and metadata in lepton_jax's non-executable format (any extension)."""
        from lepton_jax.modelfile import save_model

        info = self._trained()
        return save_model(path, self.params, dataclasses.asdict(self.config), info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Model":
        """Reads a file written by `save`, or a run directory (its latest checkpoint, or the
        best evaluation's parameters kept with it under `trainer.restore_best`).

        Pickles are refused without being opened as pickles: nothing in the file runs.
        """
        path = as_path(path, "Model.load's path")
        if path.is_dir():
            return cls._from_run(path)
        from lepton_jax.modelfile import load_model

        params, config, info = load_model(path)
        model = cls(ModelConfig(**config), task=info["task"])
        model.params, model.data_info = params, info
        return model

    @classmethod
    def _from_run(cls, run_dir: Path) -> "Model":
        run_file = run_dir / "run.json"
        if not run_file.exists():
            raise UserError(f"{run_dir} is not a lepton_jax run directory (no run.json)"
                            + _sweep_hint(run_dir))
        run = json.loads(run_file.read_text())
        from lepton_jax.checkpoint import Checkpointer

        ckpt = Checkpointer(run_dir / "checkpoints", keep=1)
        step = ckpt.latest_step()
        # A run that diverged (its last record; a member's result.json says so too) has
        # only the parameters of a checkpoint before it: say so, rather than load them as
        # the run's or call it unfinished.
        from lepton_jax.writers import read_records

        records = read_records(run_dir)
        diverged = records[-1] if records and records[-1].get("event") == "diverged" else None
        if step is None:
            raise UserError(
                f"run directory {run_dir} diverged at step {diverged['step']} before any "
                "checkpoint was saved, so it has no parameters to load; rerun it with a lower "
                "optim.lr or with optim.clip_norm" if diverged else
                f"run directory {run_dir} has no checkpoint yet")
        # trainer.restore_best: the best evaluation's parameters, kept with the checkpoint.
        best = ckpt.best(step) or {}
        if best.get("params") is not None:
            params, which = best["params"], f"the best parameters so far (step {best['step']})"
        else:
            params, which = ckpt.restore_arrays(step)["params"], f"its checkpoint at step {step}"
        if diverged:
            print(f"note: {run_dir} diverged at step {diverged['step']}; using {which}, the "
                  "last before it", file=sys.stderr, flush=True)
        elif not (run_dir / "result.json").exists():  # stopped, killed or still training
            trainer = run["config"]["trainer"]
            total = run["data"]["sizes"]["train"] // trainer["batch_size"] * trainer["epochs"]
            print(f"note: {run_dir} has not finished training (step {step} of {total}); "
                  f"using {which}", file=sys.stderr, flush=True)
        model = cls(ModelConfig(**run["config"]["model"]), task=run["data"]["task"])
        model.params, model.data_info = params, run["data"]
        return model

    def __repr__(self) -> str:
        from lepton_jax.config import model_label

        label = model_label(self.config)
        if self.config.name == "linear" and self.task:
            label = "logistic regression" if self.task == "classification" else "linear regression"
        info = self.data_info if self.params is not None else None
        if info is None:
            return f"Model({label}, untrained)"
        import jax

        size = sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(self.params))
        target = target_label(info["task"], info["num_classes"], info.get("num_outputs", 1))
        return (f"Model({label}, {size:,} params, trained: {inputs_label(info['input_shape'])}"
                f" -> {target})")


class Trainer:
    """Trains a Model on a Dataset with `fit`, the loop the Hydra app runs.

    Args:
        model, dataset: what to train on what.
        optimizer: an optimizer name from the config registry ("sgd").
        lr, momentum, nesterov, weight_decay, schedule, batch_size, seed: the usual knobs.
        warmup_epochs: a linear rise of the lr from 0 over this many epochs first (schedule
            "constant" or "warmup_cosine"; `optim.warmup_epochs`).
        patience: early stopping, after this many evaluations (one per epoch) without a better
            validation score (0: off; `trainer.patience`).
        restore_best: end with the parameters of the best validation score instead of the
            last step's (`trainer.restore_best`).
        workdir: the run directory (default: ./lepton_runs/<time>); rerunning `train` into a
            directory with checkpoints resumes from them.
        overrides: Hydra-style dotted overrides, e.g. ["optim.clip_norm=1.0",
            "trainer.eval_every_steps=50"].
    """

    def __init__(self, model: Model, dataset: Dataset, optimizer: str = "sgd", lr: float = 0.05,
                 batch_size: Optional[int] = None, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: str = "cosine", seed: int = 0,
                 workdir: Optional[str | os.PathLike] = None, progress: str = "auto",
                 patience: int = 0, restore_best: bool = False, overrides: Sequence[str] = (),
                 warmup_epochs: float = 0.0):
        _check_arguments(model, dataset)
        if model.task and model.task != dataset.task:
            hint = ("Model.logistic_regression()" if dataset.task == "classification"
                    else "Model.linear_regression()")
            raise UserError(f"{model!r} is for {model.task} but the dataset's task is "
                            f"{dataset.task}; use {hint}")
        self.model, self.dataset = model, dataset
        n_train = len(dataset.splits().x_train)
        self.config = Config(
            model=model.config, data=dataset.config,
            optim=OptimConfig(name=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                              weight_decay=weight_decay, schedule=schedule,
                              warmup_epochs=warmup_epochs),
            trainer=TrainerConfig(batch_size=(_default_batch(n_train) if batch_size is None
                                              else batch_size),
                                  progress=progress, patience=patience,
                                  restore_best=restore_best),
            seed=seed)
        # Checked here, where a notebook's bad value was typed (lr="fast", batch_size=0),
        # not only when train() is called.
        self.config = validate(_apply_overrides(self.config, overrides), data_given=True)
        if workdir:
            self.workdir = as_path(workdir, "Trainer's workdir")
        else:
            from lepton_jax.sweep import fresh_dir

            self.workdir = fresh_dir("lepton_runs")
        self.result: Optional[dict] = None

    def __repr__(self) -> str:
        o, t = self.config.optim, self.config.trainer
        optim = [f"lr={o.lr:g}", f"momentum={o.momentum:g}", f"schedule={o.schedule!r}"]
        optim += [f"{name}={value:g}" for name, value in
                  (("weight_decay", o.weight_decay), ("warmup_epochs", o.warmup_epochs)) if value]
        done = "" if self.result is None else ", trained"
        return (f"Trainer({self.model!r}, {self.dataset!r}, {', '.join(optim)}, "
                f"epochs={t.epochs}, batch_size={t.batch_size}, seed={self.config.seed}, "
                f"workdir='{self.workdir}'{done})")

    def train(self, epochs: Optional[int] = None):
        """Trains (resuming from `workdir`'s checkpoints); returns the history DataFrame."""
        from lepton_jax.loop import data_info, fit_with_state

        if epochs is not None:
            self.config.trainer.epochs = epochs
        splits = self.dataset.splits()
        self.result, state = fit_with_state(self.config, self.workdir, data=splits)
        self.model.params = state.params
        self.model._apply = None  # new params may come with a new output size
        self.model.data_info = json.loads(json.dumps(data_info(splits), default=jsonable))
        return self.history()

    def history(self):
        """Evaluation records of metrics.jsonl as a DataFrame indexed by step."""
        import pandas as pd

        from lepton_jax.writers import read_records

        rows = [r for r in read_records(self.workdir) if "train/loss" in r]
        return pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()

    def plot(self, path: Optional[str | os.PathLike] = None):
        """Loss curves and the validation metric per epoch (matplotlib), a star at the
        evaluation `restore_best` kept; saved if `path`."""
        import matplotlib

        if path is not None and not _in_notebook():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from lepton_jax.report import epoch_axis, error_axis, log_axis, loss_label, mark_kept

        h = self.history()
        if h.empty:
            raise UserError("nothing to plot yet: call train() first")
        fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
        ax_loss.plot(h["epoch"], h["train/loss"], label="train loss")
        if "val/loss" in h:
            ax_loss.plot(h["epoch"], h["val/loss"], label="val loss")
        kind = loss_label(self.dataset.task, self.config.data.normalize_target)
        ax_loss.set_ylabel(f"loss ({kind})")
        log_axis(ax_loss)
        ax_loss.legend()
        # The run's trainer.monitor first, then what `auto` monitors (val accuracy, or a
        # regression's val MSE), as `lepton-jax report` on its run dir draws it (a regression
        # with `auto` had drawn val/r2 here and val/mse there).
        metric = next((m for m in (self.config.trainer.monitor, "val/accuracy", "val/mse",
                                   "val/loss") if m in h), None)
        if metric:
            ax_metric.plot(h["epoch"], h[metric], marker="o", color="tab:green")
            ax_metric.set_ylabel(metric)
            error_axis(ax_metric, metric)
            kept = (self.result or {}).get("best", {}).get("step")
            if mark_kept(ax_metric, h.reset_index().to_dict("records"), metric, kept,
                         "tab:green", f"kept (step {kept})", 14):
                ax_metric.legend()
        for ax in (ax_loss, ax_metric):
            epoch_axis(ax, len(h))  # whole-epoch ticks; points marked on short runs
        fig.suptitle(f"{self.model.config.name} on {self.dataset.raw.name}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _check_arguments(model, dataset) -> None:
    """Trainer(model, dataset) given something else: arrays, `Model.mlp` uncalled, or the two
    swapped, raised AttributeError from deep inside (`'numpy.ndarray' object has no
    attribute 'splits'`)."""
    for name, value, kind, how in (
            ("model", model, Model, "Model.mlp(), Model.lenet5(), Model.linear_regression() "
                                    "or Model.logistic_regression()"),
            ("dataset", dataset, Dataset, "Dataset.from_arrays(x, y), Dataset.load_csv(path), "
                                          "Dataset.digits() or Dataset.mnist(root)")):
        if isinstance(value, kind):
            continue
        if callable(value) and getattr(value, "__self__", None) is kind:
            got = f"{kind.__name__}.{value.__name__} itself; call it: {kind.__name__}." \
                  f"{value.__name__}(...)"
        elif isinstance(value, Model if kind is Dataset else Dataset):
            got = f"a {type(value).__name__}: the arguments are Trainer(model, dataset)"
        else:
            got = f"a {_type_name(value)}; pass {how}"
        raise UserError(f"Trainer's {name} is {got}")


def _sweep_hint(folder: Path) -> str:
    """For a sweep directory given where a run's is wanted: its best finished job, by the
    metric the jobs were ranked on, to pass instead."""
    from lepton_jax.config import maximized, monitored_name

    scores = []
    for result_file in folder.glob("*/result.json"):
        try:
            result = json.loads(result_file.read_text())
            run = json.loads((result_file.parent / "run.json").read_text())
            name = monitored_name(result, run["config"]["trainer"]["monitor"],
                                  run.get("data", {}).get("task"))
            scores.append((float(result["monitor"]), name, result_file.parent))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unfinished or diverged
    if not scores:
        return ""
    name = scores[0][1]
    value, _, best = (max if maximized(name) else min)(
        (s for s in scores if s[1] == name), key=lambda s: s[0])
    return (f"; it holds {len(scores)} finished runs (a sweep's jobs?): pass one of them, such "
            f"as the best by {name}, {best} ({value:.4g})")


def _target_columns(x, names):
    """A DataFrame's features and its target column(s) `names`, for from_arrays(frame, "y")."""
    from lepton_jax.errors import misspelt

    if not hasattr(x, "columns"):
        raise UserError(f"from_arrays(x, {names!r}) names the target column of a DataFrame, "
                        f"but x is a {_type_name(x)}; pass a DataFrame, or y as an array")
    wanted = [names] if isinstance(names, str) else list(names)
    columns = [str(c) for c in x.columns]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise UserError(f"from_arrays: x has no column {missing[0]!r} to take the target from"
                        f"{misspelt(missing[0], columns)}; its columns: {', '.join(columns)}")
    frame = x.rename(columns=str)
    if len(wanted) == len(columns):
        raise UserError(f"from_arrays(x, {names!r}) leaves x no feature column")
    return frame.drop(columns=wanted), frame[names]


def _type_name(value) -> str:
    """`numpy.ndarray`, `pandas.DataFrame`; a builtin type by its own name (`str`)."""
    module = type(value).__module__.split(".")[0]
    return type(value).__name__ if module == "builtins" else f"{module}.{type(value).__name__}"


def _default_batch(n_train: int) -> int:
    import jax

    devices = jax.local_device_count()
    batch = min(64, n_train)
    return max(devices, batch - batch % devices)


def _apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Hydra-style `key=value` overrides, type-checked against the schema."""
    if not overrides:
        return config
    if isinstance(overrides, str):  # its characters had been read as overrides ('o', ...)
        raise UserError(f"overrides={overrides!r} is a string; pass a list of them, "
                        f"overrides=[{overrides!r}]")
    from lepton_jax.sweep import with_overrides

    pairs = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"override {item!r} must look like key=value, e.g. optim.lr=0.1")
        key = key.strip()
        # The Model and Dataset objects define these: an override would train, and record, a
        # model or data other than the objects' (whose predict then fails, or misleads).
        owner = {"model": ("Model", "Model.mlp(hidden=...), Model.lenet5(), ..."),
                 "data": ("Dataset", "Dataset.split(...), or another Dataset")}.get(
                     key.split(".")[0])
        if owner:
            raise UserError(f"override {item!r}: the {owner[0]} object defines {key}; set it "
                            f"there ({owner[1]})")
        pairs[key] = value.strip()
    return with_overrides(config, pairs, source="override")


def _in_notebook() -> bool:
    from lepton_jax.progress import is_interactive

    return is_interactive() and not sys.stdout.isatty()
