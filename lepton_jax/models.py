"""Flax models chosen by short name: mlp, lenet5, linear."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lepton_jax.config import ModelConfig
from lepton_jax.errors import UserError

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "silu": nn.silu,
}


class MLP(nn.Module):
    """Fully connected network on flattened inputs."""

    hidden: Sequence[int]
    num_outputs: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.num_outputs)(x)


def _max_pool_2x2(x: jax.Array) -> jax.Array:
    # A reshape + max instead of reduce_window: its gradient avoids select_and_scatter,
    # which is slow on both XLA:CPU and GPU (PERF_NOTES: +3-5 % on an H100).
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class LeNet5(nn.Module):
    """Classic LeNet-5: conv6@5x5(same) - pool - conv16@5x5(valid) - pool - 120 - 84 - out."""

    num_outputs: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 2:  # flat 784-pixel rows, e.g. from a CSV
            side = int(round(x.shape[1] ** 0.5))
            x = x.reshape(x.shape[0], side, side, 1)
        he = nn.initializers.he_normal()
        x = nn.relu(nn.Conv(6, (5, 5), padding="SAME", kernel_init=he)(x))
        x = _max_pool_2x2(x)
        x = nn.relu(nn.Conv(16, (5, 5), padding="VALID", kernel_init=he)(x))
        x = _max_pool_2x2(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(120, kernel_init=he)(x))
        x = nn.relu(nn.Dense(84, kernel_init=he)(x))
        return nn.Dense(self.num_outputs)(x)


class Linear(nn.Module):
    """One dense layer: linear regression (MSE) or softmax regression (cross-entropy)."""

    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_outputs)(x.reshape((x.shape[0], -1)))


MODELS = ("mlp", "lenet5", "linear")


def build_model(config: ModelConfig, num_outputs: int) -> nn.Module:
    """Builds the model named by `config.name` with `num_outputs` outputs.

    Raises:
        UserError: for an unknown name, listing the valid ones.
    """
    if config.name == "mlp":
        return MLP(hidden=tuple(config.hidden), num_outputs=num_outputs,
                   activation=config.activation)
    if config.name == "lenet5":
        return LeNet5(num_outputs=num_outputs)
    if config.name == "linear":
        return Linear(num_outputs=num_outputs)
    raise UserError(f"model.name={config.name!r} is not known; valid models: {', '.join(MODELS)}")


def count_params(params) -> int:
    """Total number of scalar parameters in a pytree."""
    return sum(int(jnp.size(p)) for p in jax.tree_util.tree_leaves(params))
