"""Learning-rate schedules: the warm-up schedules, whose length is an array in the optimizer
state (so population members can differ in it), equal optax's own schedules."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lepton_jax.config import OptimConfig
from lepton_jax.errors import UserError
from lepton_jax.optim import hyperparameters, make_optimizer, schedule_shape, warmup_steps

TOTAL = 40


def _reference(schedule, warmup):
    if schedule == "constant":
        return optax.linear_schedule(0.0, 1.0, warmup) if warmup else optax.constant_schedule(1.0)
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, TOTAL)


@pytest.mark.parametrize("schedule", ["constant", "warmup_cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 7, TOTAL - 1])
def test_warmup_schedules_equal_optax(schedule, warmup):
    shape = schedule_shape(schedule, TOTAL)
    counts = jnp.arange(TOTAL + 3, dtype=jnp.int32)  # past the end too
    ours = np.asarray([shape(c, jnp.float32(warmup)) for c in counts])
    theirs = np.asarray([_reference(schedule, warmup)(c) for c in counts])
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    assert ours.max() == pytest.approx(1.0)


def test_warmup_length_is_an_injected_hyperparameter():
    """One optimizer, its state's warmup_steps set per run: the scale of the first updates
    follows the value in the state, as a population member's would."""
    config = OptimConfig(lr=1.0, momentum=0.0, schedule="warmup_cosine", warmup_epochs=1)
    tx = make_optimizer(config, TOTAL, 10)
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    assert float(state.hyperparams["warmup_steps"]) == 10.0
    for warmup, expected in ((10.0, 0.0), (0.0, 1.0)):  # step 0: 0 / 10, or the peak
        s = state._replace(hyperparams={**state.hyperparams, "warmup_steps": jnp.float32(warmup)})
        update, _ = tx.update({"w": jnp.ones(())}, s, params)
        assert float(update["w"]) == pytest.approx(-expected)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "one_cycle"])
def test_every_schedule_injects_the_same_hyperparameters(schedule):
    """The same names in every schedule's state (a warm-up length of 0 where it takes none),
    so a run resumes under another schedule."""
    config = OptimConfig(schedule=schedule)
    state = make_optimizer(config, TOTAL, 10).init({"w": jnp.zeros(())})
    assert sorted(state.hyperparams) == sorted(hyperparameters(config, TOTAL, 10)) == [
        "learning_rate", "momentum", "warmup_steps", "weight_decay"]
    assert float(state.hyperparams["warmup_steps"]) == 0.0


def test_a_warmup_that_leaves_nothing_to_decay_is_refused():
    """Rounded to steps, 1.97 of 2 epochs of 13 steps is all 26: one error naming the field."""
    config = OptimConfig(schedule="warmup_cosine", warmup_epochs=1.97)
    with pytest.raises(UserError, match=r"optim.warmup_epochs=1.97 is 26 steps, and training "
                                        r"has 26"):
        warmup_steps(config, 26, 13)
    assert warmup_steps(OptimConfig(schedule="constant", warmup_epochs=3), 26, 13) == 39
