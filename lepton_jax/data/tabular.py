"""CSV files: numeric feature columns (plus one-hot encoded categorical ones) and a target."""

from __future__ import annotations

import csv
import difflib
import io
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from lepton_jax.errors import UserError

# An integer target with at most this many distinct values is taken as class labels.
MAX_AUTO_CLASSES = 20


def _read_frame(path: str | None, what: str, stdin_ok: bool = False,
                header_optional: bool = False) -> pd.DataFrame:
    """`stdin_ok`: `-` reads standard input (prediction rows piped in). `header_optional`: a
    first row of numbers only is data, not a header (prediction rows of pixels); the columns
    are then numbered from 0."""
    if not path:
        raise UserError("data.root is not set; point it at the CSV file, e.g. data.root=data.csv")
    file = sys.stdin if stdin_ok and path == "-" else Path(path).expanduser()
    if file is not sys.stdin:
        if file.is_dir():
            raise UserError(f"{what} {path!r} is a folder; point it at the CSV file inside it")
        if not file.exists():  # a pipe (`<(...)`, /dev/stdin) exists without being a file
            raise UserError(f"{what} {path!r} does not exist; check the path")
    file = io.StringIO(_text(file, path, what))  # read once: parsed again where need be
    try:
        frame = pd.read_csv(file, skipinitialspace=True)
        # Judged from the line as written: pandas renames a repeated name (a second "0.5"
        # becomes "0.5.1"), and a row of pixels, which repeat, was taken for a header and lost.
        first = _first_row(file)
        if header_optional and all(_is_number(c) for c in first):
            file.seek(0)
            frame = pd.read_csv(file, skipinitialspace=True, header=None)
            frame.columns = range(frame.shape[1])
            frame.attrs["first_line"] = 1  # the file's line of the first data row
    except pd.errors.EmptyDataError:
        raise UserError(f"{what} {path!r} is empty; it needs a header row and data rows") from None
    except pd.errors.ParserError as e:
        detail = str(e).strip().splitlines()[-1]
        raise UserError(f"{what} {path!r} has ragged rows: {detail}; every row needs the "
                        "same number of fields as the header") from None
    if len(frame) == 0:
        raise UserError(f"{what} {path!r} has a header but no data rows")
    if "first_line" not in frame.attrs:  # a header: pandas renames a repeated name (x.1)
        repeated = next((name for i, name in enumerate(first) if name in first[:i]), None)
        if repeated is not None:
            at = [i + 1 for i, name in enumerate(first) if name == repeated]
            raise UserError(f"{what} {path!r} names two columns {repeated!r} (columns "
                            f"{at[0]} and {at[1]}); give each column its own name")
    frame.columns = [str(c) for c in frame.columns]
    if frame.isna().any().any():
        row, col = np.argwhere(frame.isna().to_numpy())[0]
        raise UserError(f"{what} {path!r} has an empty cell at row "
                        f"{row + frame.attrs.get('first_line', 2)}, column "
                        f"{frame.columns[col]!r}; fill it or drop the row")
    return frame


def _first_row(file: io.StringIO) -> list[str]:
    file.seek(0)
    return next(csv.reader(file, skipinitialspace=True), [])


def _text(file, path: str, what: str) -> str:
    """The file (or standard input) as UTF-8 text, a byte-order mark dropped. Another
    encoding (a Latin-1 export's "Nîmes") raised UnicodeDecodeError's traceback."""
    if file is sys.stdin and not hasattr(sys.stdin, "buffer"):
        return sys.stdin.read()  # already text (a notebook's or a test's stdin)
    raw = sys.stdin.buffer.read() if file is sys.stdin else file.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"{what} {path!r} is not UTF-8 text: byte 0x{raw[e.start]:02x} on line "
                        f"{line} is not valid there (a Latin-1 or Windows-1252 export?); save "
                        f"it as UTF-8 (Excel: \"CSV UTF-8\"; pandas: to_csv(..., "
                        f"encoding=\"utf-8\"))") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_column_fix(values: pd.Series) -> str:
    """The fix for a column of words: one-hot encoding suits categories, not dates or ids,
    which it was suggested for too (a date column would become a column per day)."""
    import warnings

    # A thousand are enough to tell, and parsing mixed date formats is slow.
    words = values[pd.to_numeric(values, errors="coerce").isna()].astype(str).head(1000)
    # Numbers written with a comma, which pandas' date parser had taken for dates ("1,5").
    stripped = words.str.strip()
    if len(words) and stripped.str.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?").mean() >= 0.9:
        return ("(its numbers are written with thousands separators, such as "
                f"{stripped.iloc[0]!r}: save them without the commas)")
    if len(words) and stripped.str.fullmatch(r"[-+]?\d*,\d+").mean() >= 0.9:
        return (f"(its numbers are written with a decimal comma, such as {stripped.iloc[0]!r}: "
                "save them with a decimal point, 1.5)")
    if len(words) and stripped.str.fullmatch(r"[$€£¥]\s*[-+]?[\d.]+|[-+]?[\d.]+\s*[%$€£¥]"
                                             ).mean() >= 0.9:
        return (f"(its numbers carry a unit or symbol, such as {stripped.iloc[0]!r}: save them "
                "as plain numbers)")
    markers = sorted(set(stripped))
    if len(markers) <= 3 and len(words) <= len(values) // 2:
        # Mostly numbers, and a few words among them: "?" as UCI datasets mark missing values.
        return (f"(it holds numbers, and {', '.join(map(repr, markers))} in {len(words)} of "
                f"{len(values)} rows: marks of missing values? fill those cells or drop their "
                "rows)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dates = pd.to_datetime(words, errors="coerce", format="mixed").notna().mean()
    if dates >= 0.9:
        return ("(it holds dates: convert them to numbers, such as days since the first or the "
                "day of the week, or drop the column)")
    distinct = values.nunique()
    if distinct > max(20, len(values) // 2):
        return (f"(it holds {distinct:,} distinct values in {len(values):,} rows, like an id or "
                "free text: drop the column; one-hot encoding it would give most rows a "
                "column of their own)")
    # Named as each face takes it: the command line's list, and load_csv's keyword.
    return (f"(or one-hot encode it: data.categorical=[{values.name}], or "
            f"categorical=[{str(values.name)!r}] from Python)")


def _numeric(frame: pd.DataFrame, column: str, path: str, what: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise UserError(f"{what} {path!r} has a non-numeric value {frame[column].iloc[row]!r} "
                        f"at row {row + frame.attrs.get('first_line', 2)}, column {column!r}; "
                        f"every cell must be a number {_text_column_fix(frame[column])}")
    values = values.to_numpy(np.float64)
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise UserError(f"{what} {path!r} has an infinite value {str(frame[column].iloc[row])!r} at "
                        f"row {row + frame.attrs.get('first_line', 2)}, column {column!r}; "
                        "every cell must be a finite number")
    return values


def require_columns(frame: pd.DataFrame, names: Sequence[str], path: str, what: str) -> None:
    """Refuses `frame` without each of `names`, naming the missing ones."""
    missing = [c for c in names if c not in frame.columns]
    if missing:
        # A missing column next to an unknown one of a similar name is most often a typo.
        unknown = {str(c).lower(): str(c) for c in frame.columns if c not in names}
        near = [f"{unknown[close[0]]!r} for {c!r}" for c in missing if (
            close := difflib.get_close_matches(str(c).lower(), list(unknown), n=1, cutoff=0.6))]
        raise UserError(f"{what} {path!r} lacks column(s) {missing}"
                        + (f" (it has {', '.join(near)}: misspelt?)" if near else "")
                        + f"; expected {', '.join(names)}")


def encode_features(frame: pd.DataFrame, encoding: dict, path: str, what: str) -> np.ndarray:
    """Feature matrix from raw columns: numeric as is, categorical one-hot in recorded order.

    Raises:
        UserError: for a missing column, a non-numeric cell or an unseen category.
    """
    require_columns(frame, encoding["columns"], path, what)
    parts = []
    for column in encoding["columns"]:
        categories = encoding["categories"].get(column)
        if categories is None:
            parts.append(_numeric(frame, column, path, what)[:, None])
            continue
        values = frame[column].astype(str).str.strip()
        unknown = sorted(set(values) - set(categories))
        if unknown:
            raise UserError(f"{what} {path!r}, column {column!r}: unknown categor"
                            f"{'y' if len(unknown) == 1 else 'ies'} {unknown[:5]}; "
                            f"known: {categories}")
        parts.append((values.to_numpy()[:, None] == np.asarray(categories)[None]).astype(float))
    with np.errstate(over="ignore"):  # a number beyond float32 becomes inf: refused by name later
        return np.concatenate(parts, axis=1).astype(np.float32)


def categorical_encoding(frame: pd.DataFrame, features: Sequence[str],
                         categorical: Sequence[str]) -> dict:
    """How `encode_features` turns the raw `features` columns into numbers: the
    `categorical` ones one-hot, over their categories (sorted, as text)."""
    return {"columns": list(features),
            "categories": {c: sorted(frame[c].astype(str).str.strip().unique().tolist())
                           for c in categorical}}


def encoded_names(encoding: dict) -> tuple:
    names = []
    for column in encoding["columns"]:
        cats = encoding["categories"].get(column)
        names.extend([f"{column}={c}" for c in cats] if cats is not None else [column])
    return tuple(names)


def read_csv(path: str | None, target: Optional[str] = None, categorical: Sequence[str] = ()):
    """Reads a CSV into (features, target, feature names, encoding).

    `categorical` columns are one-hot encoded; the encoding (raw columns, categories) is
    returned so prediction can repeat it.

    Raises:
        UserError: for a missing or empty file, ragged rows, a missing target column or a
            non-numeric cell (naming its row and column).
    """
    frame = _read_frame(path, "CSV file")
    columns = list(frame.columns)
    nameless = [i for i, c in enumerate(columns) if re.fullmatch(r"Unnamed: \d+", c)]
    if nameless:  # pandas' name for an empty header cell
        i = nameless[0]
        first = ", ".join(str(v) for v in frame.iloc[:3, i])
        raise UserError(f"CSV file {path!r} has a column without a header name (column {i + 1}: "
                        f"{first}, ...; a DataFrame's index saved by to_csv?); name it in the "
                        "header, or drop it (to_csv(..., index=False))")
    target = columns[-1] if target is None else target
    if target not in columns:
        raise UserError(f"CSV file {path!r} has no target column {target!r}; columns: "
                        f"{', '.join(columns)}. Set data.target to one of them")
    unknown = [c for c in categorical if c not in columns or c == target]
    if unknown:
        raise UserError(f"data.categorical names {unknown}, which are not feature columns of "
                        f"{path!r}; columns: {', '.join(c for c in columns if c != target)}")
    features = [c for c in columns if c != target]
    if not features:
        # One column whose name holds another separator: a file from a locale (or a tool)
        # that writes `;` or tabs.
        other = next((sep for sep in (";", "\t", "|") if sep in str(columns[0])), None)
        hint = (f": its header {columns[0]!r} looks separated by {other!r}; save it with "
                "commas" if other else "; it needs features")
        raise UserError(f"CSV file {path!r} has only one column{hint}")
    encoding = categorical_encoding(frame, features, categorical)
    x = encode_features(frame, encoding, path, "CSV file")
    if frame[target].dtype == bool:  # True/False: labels given back as booleans
        y = frame[target].to_numpy(bool)
    elif pd.to_numeric(frame[target], errors="coerce").notna().all():
        y = _numeric(frame, target, path, "CSV file")
    else:  # words (cat, dog, setosa): class labels, kept as text for prediction
        y = frame[target].astype(str).str.strip().to_numpy(object)
    return x, y, encoded_names(encoding), encoding


def infer_task(y: np.ndarray, task: str) -> str:
    """'classification' for few integer values, else 'regression', unless `task` says so."""
    if y.dtype == object:  # text labels are classes whatever the task says
        return "classification"
    if task != "auto":
        return task
    integral = np.all(np.equal(np.mod(y, 1), 0))
    return "classification" if integral and len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"


def encode_labels(y: np.ndarray, path: str) -> tuple[np.ndarray, tuple]:
    """Maps class values (integers, or words) to 0..C-1; returns (codes, class values)."""
    if y.dtype == object:
        values, codes = np.unique(y.astype(str), return_inverse=True)
        return codes.astype(np.int32), tuple(str(v) for v in values)
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise UserError(f"CSV file {path!r}: classification needs integer class labels in the "
                        "target column; use data.task=regression for real-valued targets")
    values, codes = np.unique(y.astype(np.int64), return_inverse=True)
    return codes.astype(np.int32), tuple(int(v) for v in values)


def read_features(path: str, encoding: Optional[dict] = None,
                  feature_names: Sequence[str] = (), widths: Sequence[int] = ()) -> np.ndarray:
    """Feature rows of a CSV for prediction. With the training `encoding`, its columns are
    picked by name (extra columns such as the target are ignored) and categorical ones
    one-hot encoded the same way; without one, a header row that holds every one of the
    model's `feature_names` picks them by name (one naming only some of them is refused,
    naming the others), and otherwise every column is taken as a number, in order: then a
    CSV of another count of columns than `widths` (the ones the model takes) is refused
    first, rather than for a cell of words in a file meant for another model."""
    frame = _read_frame(path, "input CSV", stdin_ok=True, header_optional=not encoding)
    if not encoding and feature_names and "first_line" not in frame.attrs \
            and set(feature_names) & set(frame.columns):  # a header naming (some of) them
        require_columns(frame, feature_names, path, "input CSV")
        frame = frame[list(feature_names)]
    from lepton_jax.data import check_finite

    # By name (refusing missing columns) when the header names any of the raw columns, or
    # when some are categorical, which cannot be taken as numbers in order.
    if encoding and (encoding["categories"] or set(encoding["columns"]) & set(frame.columns)):
        x, names = encode_features(frame, encoding, path, "input CSV"), encoded_names(encoding)
    else:
        if widths and len(frame.columns) not in widths:
            raise UserError(f"input CSV {path!r} has {len(frame.columns)} columns; this model "
                            f"takes {' or '.join(map(str, widths))} features per row")
        x = np.column_stack([_numeric(frame, c, path, "input CSV") for c in frame.columns]
                            ).astype(np.float32)
        names = tuple(frame.columns)
    check_finite(x, f"input CSV {path!r}", names, frame.attrs.get("first_line", 2))
    return x
