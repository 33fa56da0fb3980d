"""The training state: one immutable pytree of arrays (step, params, opt_state, rngs)."""

from __future__ import annotations

from functools import partial
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


@partial(jax.jit, static_argnums=(0, 1, 2))
def create_state(model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple,
                 seed: int | jax.Array) -> TrainState:
    """Initializes params and optimizer state from `seed` (an int32 scalar).

    One compiled program per model and optimizer, so a standalone run and every member of a
    population start from the same executable. It is also faster than initializing op by
    op: with the compilation cache warm, 0.29 vs 0.60 s for one MLP 784-512-512-10 state
    and 0.73 vs 1.5-1.9 s for 64 of them (LeNet-5: 0.4 vs 1.0 s, 0.45 vs 3.6-3.9 s).
    """
    root = jax.random.PRNGKey(seed)
    init_key, rng, data_rng = jax.random.split(root, 3)
    params = model.init(init_key, jnp.zeros((1, *input_shape), jnp.float32))["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), rng=rng, data_rng=data_rng)

