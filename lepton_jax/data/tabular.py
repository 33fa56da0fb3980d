"""CSV files: numeric feature columns and a named target column."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from lepton_jax.errors import UserError

# An integer target with at most this many distinct values is taken as class labels.
MAX_AUTO_CLASSES = 20


def read_csv(path: str | None, target: Optional[str] = None):
    """Reads a CSV into (features, target, feature names, target name).

    Raises:
        UserError: for a missing or empty file, ragged rows, a missing target column or a
            non-numeric cell (naming its row and column).
    """
    if not path:
        raise UserError("data.root is not set; point it at the CSV file, e.g. data.root=data.csv")
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"CSV file {path!r} does not exist; check data.root")
    try:
        frame = pd.read_csv(file, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"CSV file {path!r} is empty; it needs a header row and data rows") from None
    except pd.errors.ParserError as e:
        detail = str(e).strip().splitlines()[-1]
        raise UserError(f"CSV file {path!r} has ragged rows: {detail}; every row needs the "
                        "same number of fields as the header") from None
    if len(frame) == 0:
        raise UserError(f"CSV file {path!r} has a header but no data rows")
    columns = [str(c) for c in frame.columns]
    target = columns[-1] if target is None else target
    if target not in columns:
        raise UserError(f"CSV file {path!r} has no target column {target!r}; columns: "
                        f"{', '.join(columns)}. Set data.target to one of them")
    if frame.isna().any().any():
        row, col = np.argwhere(frame.isna().to_numpy())[0]
        raise UserError(f"CSV file {path!r} has an empty cell at row {row + 2}, column "
                        f"{columns[col]!r}; fill it or drop the row")
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise UserError(f"CSV file {path!r} has a non-numeric value {frame[col].iloc[row]!r} "
                            f"at row {row + 2}, column {col!r}; every cell must be a number")
        frame[col] = values
    features = [c for c in columns if c != target]
    if not features:
        raise UserError(f"CSV file {path!r} has only the target column; it needs features")
    x = frame[features].to_numpy(np.float32)
    y = frame[target].to_numpy(np.float64)
    return x, y, tuple(features), target


def infer_task(y: np.ndarray, task: str) -> str:
    """'classification' for few integer values, else 'regression', unless `task` says so."""
    if task != "auto":
        return task
    integral = np.all(np.equal(np.mod(y, 1), 0))
    return "classification" if integral and len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"


def encode_labels(y: np.ndarray, path: str) -> tuple[np.ndarray, tuple]:
    """Maps class values to 0..C-1; returns (codes, class values)."""
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise UserError(f"CSV file {path!r}: classification needs integer class labels in the "
                        "target column; use data.task=regression for real-valued targets")
    values, codes = np.unique(y.astype(np.int64), return_inverse=True)
    return codes.astype(np.int32), tuple(int(v) for v in values)


def read_features(path: str, feature_names: Optional[list] = None) -> np.ndarray:
    """Feature rows of a CSV for prediction: the named training features when the header has
    them (extra columns such as the target are ignored), else every column."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"input CSV {path!r} does not exist")
    try:
        frame = pd.read_csv(file, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"input CSV {path!r} is empty") from None
    except pd.errors.ParserError as e:
        raise UserError(f"input CSV {path!r} has ragged rows: "
                        f"{str(e).strip().splitlines()[-1]}") from None
    columns = [str(c) for c in frame.columns]
    if feature_names and set(feature_names) <= set(columns):
        frame = frame[list(feature_names)]
    for col in frame.columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise UserError(f"input CSV {path!r} has a non-numeric value "
                            f"{frame[col].iloc[row]!r} at row {row + 2}, column {col!r}")
        frame[col] = values
    return frame.to_numpy(np.float32)
