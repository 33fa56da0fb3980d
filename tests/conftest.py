"""Test setup: 4 simulated CPU devices before JAX initializes, shared helpers and fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

# Multi-device code paths run on every test run, on any machine.
jax.config.update("jax_num_cpu_devices", 4)

REPO = Path(__file__).resolve().parents[1]
# The real MNIST files: $LEPTON_MNIST_ROOT, else ../shared/data/mnist beside the checkout.
_MNIST_CANDIDATES = [os.environ.get("LEPTON_MNIST_ROOT"), REPO.parent / "shared" / "data" / "mnist",
                     "/work/shared/data/mnist"]
MNIST = next((Path(p) for p in _MNIST_CANDIDATES
              if p and (Path(p) / "train-images-idx3-ubyte.gz").exists()),
             REPO.parent / "shared" / "data" / "mnist")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `python -m lepton_jax.train ARGS` in a fresh process (one CPU device)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("XLA_FLAGS", None)
    flags = [a for a in args if a.startswith("-")]  # argparse wants -m before overrides
    overrides = [a for a in args if not a.startswith("-")]
    return subprocess.run([sys.executable, "-m", "lepton_jax.train", *flags,
                           "trainer.progress=plain", *overrides], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real MNIST files expected at {MNIST} (set LEPTON_MNIST_ROOT)")
    return MNIST


class StopAfterCalls:
    """A `stopping.StopRequest` as Ctrl-C would set it after `calls` + 1 device calls."""

    def __init__(self, calls: int):
        self.calls = calls

    @property
    def requested(self) -> bool:  # drive() asks once after each call
        self.calls -= 1
        return self.calls < 0


class InProcess:
    """Requests to the app in this process, through httpx's ASGI transport (no socket)."""

    def __init__(self, app):
        self.app = app

    def _request(self, method: str, path: str, **kwargs):
        import asyncio

        import httpx

        async def send():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs):
        return self._request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self._request("POST", path, **kwargs)


@pytest.fixture
def figures(monkeypatch):
    """The figures report() draws, kept as it closes each one."""
    import matplotlib.pyplot as plt

    kept = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (kept.append(fig), close(fig)))
    return kept
