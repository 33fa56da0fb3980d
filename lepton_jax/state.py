"""The training state: one immutable pytree of arrays (step, params, opt_state, rngs)."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    # Per-step randomness: fold_in(rng, step), so a resumed run draws the same numbers.
    rng: jax.Array
    # Data order: the epoch-e permutation is drawn from fold_in(data_rng, e).
    data_rng: jax.Array


def create_state(model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple,
                 seed: int | jax.Array) -> TrainState:
    """Initializes params and optimizer state from `seed` (an int or a traced scalar)."""
    root = jax.random.PRNGKey(seed)
    init_key, rng, data_rng = jax.random.split(root, 3)
    params = model.init(init_key, jnp.zeros((1, *input_shape), jnp.float32))["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), rng=rng, data_rng=data_rng)

