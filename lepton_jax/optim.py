"""optax optimizers built from the config, with sweepable hyperparameters injected as arrays."""

from __future__ import annotations

from typing import Callable

import optax

from lepton_jax.config import OptimConfig
from lepton_jax.errors import UserError

OPTIMIZERS = ("sgd",)


def schedule_shape(config: OptimConfig, total_steps: int, steps_per_epoch: int) -> Callable:
    """The learning-rate schedule with peak 1.0; the injected `learning_rate` scales it.

    Keeping the peak out of the schedule lets `learning_rate` live in the optimizer state as
    an array, so a population sweep can vmap over it.
    """
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    total = max(total_steps, 1)
    if config.schedule == "constant":
        if warmup:
            return optax.linear_schedule(0.0, 1.0, warmup)
        return optax.constant_schedule(1.0)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, total)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total)
    if config.schedule == "one_cycle":
        return optax.cosine_onecycle_schedule(total, 1.0)
    raise UserError(f"optim.schedule={config.schedule!r} is not known")


def _sgd(learning_rate, momentum, weight_decay, *, nesterov: bool, clip_norm, shape):
    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    # Decay before momentum, as torch.optim.SGD does: the decay term is part of the gradient.
    parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    parts.append(optax.scale_by_schedule(shape))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


def make_optimizer(config: OptimConfig, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
    """Builds the optimizer named by `config.name`.

    `learning_rate`, `momentum` and `weight_decay` are held in
    `opt_state.hyperparams` as float32 arrays (`optax.inject_hyperparams`).
    """
    if config.name != "sgd":
        raise UserError(f"optim.name={config.name!r} is not known; valid optimizers: "
                        f"{', '.join(OPTIMIZERS)}")
    shape = schedule_shape(config, total_steps, steps_per_epoch)
    factory = optax.inject_hyperparams(_sgd, static_args=("nesterov", "clip_norm", "shape"))
    return factory(learning_rate=config.lr, momentum=config.momentum,
                   weight_decay=config.weight_decay, nesterov=config.nesterov,
                   clip_norm=config.clip_norm, shape=shape)
