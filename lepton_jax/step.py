"""Pure train and predict steps: no logging, no config lookups, no side effects."""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lepton_jax.state import TrainState


def loss_value(task: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy (classification, integer labels) or mean squared error."""
    if task == "classification":
        return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()
    return jnp.mean((outputs - targets) ** 2)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, task: str,
                    axis_name: Optional[str] = None) -> Callable:
    """Returns `train_step(state, (x, y)) -> (state, {"loss": ...})`.

    With `axis_name`, gradients and the loss are averaged over that mapped axis (the
    per-device strategy); otherwise the step sees the whole global batch.
    """

    def loss_fn(params, x, y, rng):
        outputs = model.apply({"params": params}, x, train=True, rngs={"dropout": rng})
        return loss_value(task, outputs, y)

    def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
        x, y = batch
        rng = jax.random.fold_in(state.rng, state.step)
        params = state.params
        if axis_name is not None:
            # Each device draws its own dropout masks (the same key would repeat one mask
            # on every shard); `jit` draws the global batch's, as one device does.
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
            # Differentiate per-device copies: the gradient of replicated (invariant) params
            # would already be summed over devices; pmean below is the explicit all-reduce.
            params = jax.lax.pcast(params, axis_name, to="varying")
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, rng)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            loss = jax.lax.pmean(loss, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, {"loss": loss}

    return train_step


def make_predict(model: nn.Module) -> Callable:
    """Returns `predict(params, x) -> outputs` (logits or regression values)."""

    def predict(params, x):
        return model.apply({"params": params}, x)

    return predict


def epoch_permutation(data_rng: jax.Array, epoch: jax.Array | int, n: int) -> jax.Array:
    """The order of the `n` training examples in `epoch`, drawn on the device."""
    return jax.random.permutation(jax.random.fold_in(data_rng, epoch), n)
