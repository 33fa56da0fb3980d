"""optax optimizers built from the config, with sweepable hyperparameters injected as arrays."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import optax

from lepton_jax.config import OptimConfig
from lepton_jax.errors import UserError

OPTIMIZERS = ("sgd",)
# Schedules that warm up over `optim.warmup_epochs`. The warm-up length is an injected
# hyperparameter (`warmup_steps`, 0 for the others), so population members can differ in it.
WARMUP_SCHEDULES = ("constant", "warmup_cosine")


def warmup_steps(config: OptimConfig, total_steps: int, steps_per_epoch: int) -> int:
    """`optim.warmup_epochs` in steps (rounded).

    Raises:
        UserError: when a warmup_cosine warm-up leaves no step to decay over.
    """
    steps = int(round(config.warmup_epochs * steps_per_epoch))
    if config.schedule == "warmup_cosine" and steps >= total_steps:
        raise UserError(f"optim.warmup_epochs={config.warmup_epochs:g} is {steps} steps, and "
                        f"training has {total_steps}: warmup_cosine needs steps left to decay "
                        "over; warm up for fewer epochs or train for more")
    return steps


def hyperparameters(config: OptimConfig, total_steps: int, steps_per_epoch: int) -> dict:
    """The values `make_optimizer` injects into the optimizer state, by their names there:
    what a population member sets in its own state. Every schedule's state holds the same
    names (`warmup_steps` is 0 where the schedule takes no warm-up), so a run can resume
    under another schedule."""
    return {"learning_rate": config.lr, "momentum": config.momentum,
            "weight_decay": config.weight_decay,
            "warmup_steps": float(warmup_steps(config, total_steps, steps_per_epoch))}


def schedule_shape(schedule: str, total_steps: int) -> Callable:
    """The learning-rate schedule with peak 1.0, as `shape(count, warmup)`; the injected
    `learning_rate` scales it.

    Keeping the peak out of the schedule lets `learning_rate` live in the optimizer state as an
    array, and taking the warm-up length as an argument lets `warmup_steps` live there too, so
    a population sweep can vmap over both. The warm-up schedules equal optax's
    `linear_schedule(0, 1, warmup)` (then 1) and `warmup_cosine_decay_schedule(0, 1, warmup,
    total)`; `cosine` and `one_cycle` are optax's and take no warm-up.
    """
    total = max(total_steps, 1)

    def ramp(count, warmup):  # 0 -> 1 over `warmup` steps
        return count / jnp.maximum(warmup, 1.0)

    if schedule == "constant":
        return lambda count, warmup: jnp.where(count < warmup, ramp(count, warmup), 1.0)
    if schedule == "warmup_cosine":
        def warmup_cosine(count, warmup):
            decay = total - warmup
            done = jnp.clip(count - warmup, 0, decay) / decay
            return jnp.where(count < warmup, ramp(count, warmup),
                             0.5 * (1.0 + jnp.cos(jnp.pi * done)))
        return warmup_cosine
    if schedule == "cosine":
        cosine = optax.cosine_decay_schedule(1.0, total)
        return lambda count, warmup: cosine(count)
    if schedule == "one_cycle":
        one_cycle = optax.cosine_onecycle_schedule(total, 1.0)
        return lambda count, warmup: one_cycle(count)
    raise UserError(f"optim.schedule={schedule!r} is not known")


def _sgd(learning_rate, momentum, weight_decay, warmup_steps, *, nesterov: bool, clip_norm,
         shape):
    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    # Decay before momentum, as torch.optim.SGD does: the decay term is part of the gradient.
    parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    parts.append(optax.scale_by_schedule(lambda count: shape(count, warmup_steps)))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


def make_optimizer(config: OptimConfig, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
    """Builds the optimizer named by `config.name`.

    `learning_rate`, `momentum`, `weight_decay` and `warmup_steps` are held in
    `opt_state.hyperparams` as float32 arrays (`optax.inject_hyperparams`; see
    `hyperparameters`).
    """
    if config.name != "sgd":
        raise UserError(f"optim.name={config.name!r} is not known; valid optimizers: "
                        f"{', '.join(OPTIMIZERS)}")
    shape = schedule_shape(config.schedule, total_steps)
    factory = optax.inject_hyperparams(_sgd, static_args=("nesterov", "clip_norm", "shape"))
    return factory(**hyperparameters(config, total_steps, steps_per_epoch),
                   nesterov=config.nesterov, clip_norm=config.clip_norm, shape=shape)
