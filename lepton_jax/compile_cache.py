"""JAX's persistent compilation cache, on by default, so repeat runs and sweep jobs skip compiling."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import jax

from lepton_jax.errors import UserError, os_reason


_warned: set[Path] = set()  # folders already reported unusable in this process


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("LEPTON_JAX_CACHE_DIR", Path(base) / "lepton_jax" / "xla"))


def enable_compilation_cache(setting: str = "auto") -> Optional[Path]:
    """Turns the cache on in `setting` ("auto": the user cache folder; "off": disabled).

    The minimum compile time and entry size are 0, so even the small programs of a small
    model are cached: for them compiling, not running, dominates a cold start.
    """
    if setting == "off":
        return None
    folder = default_cache_dir() if setting == "auto" else Path(setting).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = os_reason(e, folder)
        if setting != "auto":
            raise UserError(f"trainer.compilation_cache={setting!r} cannot be created ({reason}); "
                            "point it at a writable folder or set it to off") from None
        # The cache only saves time: a read-only home (some clusters) must not stop a run.
        if folder not in _warned:
            _warned.add(folder)
            print(f"warning: compilation cache off: {folder} cannot be created ({reason}); "
                  "set trainer.compilation_cache (or LEPTON_JAX_CACHE_DIR) to a writable folder",
                  file=sys.stderr, flush=True)
        return None
    if jax.config.jax_compilation_cache_dir != str(folder):
        jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
