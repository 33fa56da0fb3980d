"""Model files that never execute code: a magic header, then msgpack of JSON text and arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flax import serialization

from lepton_jax.errors import UserError, as_path, os_reason

MAGIC = b"LEPTONJAX-MODEL\x00"
VERSION = 1
# First bytes of a pickle (protocol 2+ starts with 0x80; protocols 0/1 with '(' or ']' etc.),
# of a zip (torch.save) and of numpy's .npy: all formats that can carry code or that we refuse.
_PICKLE_PREFIXES = (b"\x80", b"(", b"]", b"}", b"c", b"PK\x03\x04", b"\x93NUMPY")


def save_model(path: str | os.PathLike, params, config: dict, data: dict) -> Path:
    """Writes params (arrays only) and JSON metadata; atomic (temp file + rename)."""
    payload = {
        "format": "lepton-jax-model", "version": VERSION,
        "meta": json.dumps({"config": config, "data": data}, default=jsonable),
        "params": serialization.to_state_dict(_to_numpy(params)),
    }
    path = as_path(path, "Model.save's path")
    if path.is_dir():
        raise UserError(f"{path} is a folder; name a model file, e.g. {path / 'model.msgpack'}")
    if path.exists():
        with path.open("rb") as f:
            replaces_a_model = f.read(len(MAGIC)) == MAGIC
        if not replaces_a_model:  # re-saving a model replaces it; anything else is kept
            raise UserError(f"{path} exists and is not a lepton_jax model file; save the "
                            "model under another name (nothing was written)")
    if not path.parent.is_dir():
        raise UserError(f"cannot save the model to {path}: the folder {path.parent} does not "
                        "exist; create it first (nothing was written)")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(MAGIC + serialization.msgpack_serialize(payload))
        os.replace(tmp, path)
    except OSError as e:  # no permission, a full disk: the earlier file, if any, is kept
        if tmp.is_file():
            tmp.unlink()
        raise UserError(f"cannot save the model to {path} ({os_reason(e, path)}); nothing "
                        "was written") from None
    return path


def load_model(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Returns (params, config, data info). Reads data only: nothing in the file is executed.

    Raises:
        UserError: for a pickle (refused, never unpickled) or any file not written by save.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"model file {path} does not exist") from None
    if not raw.startswith(MAGIC):
        if raw.startswith(_PICKLE_PREFIXES):
            raise UserError(
                f"{path} looks like a Python pickle (or another code-carrying format); "
                "lepton_jax never unpickles files, since loading a pickle can run arbitrary "
                "code. Load models saved with Model.save / lepton-jax instead")
        raise UserError(f"{path} is not a lepton_jax model file (missing header); "
                        "save models with Model.save")
    try:
        payload = serialization.msgpack_restore(raw[len(MAGIC):])
        meta = json.loads(payload["meta"])
        params = payload["params"]
    except Exception as e:  # msgpack/json raise many types on damaged input
        raise UserError(f"model file {path} is damaged ({type(e).__name__}); re-save it") from None
    if payload.get("version") != VERSION:
        raise UserError(f"model file {path} has format version {payload.get('version')}; "
                        f"this lepton_jax reads version {VERSION}")
    return params, meta["config"], meta["data"]


def _to_numpy(tree):
    import jax

    return jax.tree.map(np.asarray, tree)


def jsonable(value):
    """`json.dumps(default=...)` for numpy arrays and scalars."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(type(value))
