"""Decoded datasets kept in the user cache folder, so that a fresh process loads arrays
instead of decoding files (MNIST's gzip) or importing libraries (scikit-learn for digits)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from typing import Callable, Sequence

import numpy as np


def disk_cached(kind: str, key: tuple, names: Sequence[str],
                build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays `build()` returns (named `names`), kept in `<cache>/<kind>/<hash of key>.npz`:
    a later call with the same `key` loads them instead. `key` must change whenever the arrays
    would (file stamps, library versions, a version tag of the decoding).

    A damaged entry is rebuilt and replaced; a read-only cache folder only costs the rebuild.
    `LEPTON_JAX_DATA_CACHE=off` always builds.
    """
    path = None
    if os.environ.get("LEPTON_JAX_DATA_CACHE", "on") != "off":
        from lepton_jax.compile_cache import default_cache_dir

        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
        path = default_cache_dir().parent / kind / f"{digest}.npz"
        if path.exists():
            try:
                with np.load(path) as saved:
                    return {name: saved[name] for name in names}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # damaged: build it again
    arrays = build()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, **{name: arrays[name] for name in names})
            os.replace(tmp, path)  # whole or not at all, also with sweep jobs writing at once
        except OSError:
            pass
    return arrays
