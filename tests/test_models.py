import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lepton_jax.config import ModelConfig
from lepton_jax.errors import UserError
from lepton_jax.models import LeNet5, build_model, count_params


def init(model, shape):
    return model.init(jax.random.PRNGKey(0), jnp.zeros(shape))["params"]


@pytest.mark.parametrize("name,outputs", [("mlp", 10), ("lenet5", 10), ("linear", 3),
                                          ("linear", 1)])
def test_output_shapes(name, outputs):
    model = build_model(ModelConfig(name=name, hidden=[32, 16]), outputs)
    x = jnp.ones((5, 28, 28, 1))
    out = model.apply({"params": init(model, x.shape)}, x)
    assert out.shape == (5, outputs)


def test_lenet5_parameter_count_is_classic():
    model = build_model(ModelConfig(name="lenet5"), 10)
    assert count_params(init(model, (1, 28, 28, 1))) == 61_706


def test_mlp_widths_follow_config():
    model = build_model(ModelConfig(name="mlp", hidden=[7, 5], activation="tanh"), 3)
    params = init(model, (1, 4))
    shapes = [params[f"Dense_{i}"]["kernel"].shape for i in range(3)]
    assert shapes == [(4, 7), (7, 5), (5, 3)]


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError, match="valid models: mlp, lenet5, linear"):
        build_model(ModelConfig(name="resnet"), 10)


class _ReferenceLeNet5(nn.Module):
    """LeNet-5 from Flax's own layers, as the Flax examples write it (independent reference)."""

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = nn.relu(nn.Dense(120)(x.reshape((x.shape[0], -1))))
        x = nn.relu(nn.Dense(84)(x))
        return nn.Dense(10)(x)


def _digit_like_images(n: int) -> jax.Array:
    """MNIST-like inputs: a normalized constant background (exactly tied pooling windows, the
    case that broke training once) around a random 8x8 patch."""
    blob = jax.random.uniform(jax.random.PRNGKey(4), (n, 8, 8, 1)) * 3.0
    return jnp.zeros((n, 28, 28, 1)).at[:, 10:18, 10:18].set(blob) - 0.42


@pytest.mark.parametrize("inputs", ["gaussian", "digit_like"])
def test_lenet5_convolutions_match_flax_conv_values_and_gradients(inputs):
    """The CPU lowering of the first block (convolution by shifts, hand-written gradient)
    gives Flax's nn.Conv + max_pool results and gradients, on the same parameters."""
    model = build_model(ModelConfig(name="lenet5"), 10)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 28, 28, 1)) if inputs == "gaussian" \
        else _digit_like_images(16)
    y = jnp.arange(16) % 10
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    # The output layer starts at zero (no gradient reaches the layers below at init): a
    # random one makes every gradient compared here nonzero.
    out = jax.random.normal(jax.random.PRNGKey(2), params["Dense_2"]["kernel"].shape) * 0.1
    params = {**params, "Dense_2": {**params["Dense_2"], "kernel": out}}
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(
        jax.grad(lambda p: model.apply({"params": p}, x).sum())(params)))
    reference = _ReferenceLeNet5()
    ref_params = reference.init(jax.random.PRNGKey(1), x)["params"]
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)  # checkpoints carry over

    def loss(module, p):
        logits = module.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    np.testing.assert_allclose(model.apply({"params": params}, x),
                               reference.apply({"params": params}, x), rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda p: loss(model, p))(params)
    ref_grads = jax.grad(lambda p: loss(reference, p))(params)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("hidden,outputs", [([64, 16], 10), ([48], 1)])
def test_narrow_dense_gradients_match_plain_dense(hidden, outputs, monkeypatch):
    """The MLP's narrow layers (at most 32 outputs) take the transposed kernel gradient on
    CPU; gradients and outputs equal the plain `nn.Dense` (same parameters), alone and
    vmapped over a population of parameter sets."""
    import lepton_jax.models as models

    model = build_model(ModelConfig(name="mlp", hidden=hidden), outputs)
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 8, 8, 1))
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape),
                          params)  # a nonzero output layer, so every gradient is nonzero

    def grads_and_path(p):
        def loss(p):  # a new function each time: make_jaxpr caches traces per function
            return jnp.sum(jnp.tanh(model.apply({"params": p}, x)) ** 2)

        narrow = "custom_vjp_call" in str(jax.make_jaxpr(loss)(p))
        return jax.grad(loss)(p), jax.vmap(jax.grad(loss))(jax.tree.map(
            lambda a: jnp.stack([a, 2 * a]), p)), narrow

    got, got_pop, narrow = grads_and_path(params)
    monkeypatch.setattr(models, "_NARROW_MAX", 0)  # every layer through lax.dot_general
    want, want_pop, plain_narrow = grads_and_path(params)
    assert narrow and not plain_narrow
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(got))
    for a, b in zip(jax.tree.leaves((got, got_pop)), jax.tree.leaves((want, want_pop)),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("inputs", ["gaussian", "constant"])
def test_conv_block_gradient_wrt_input_matches_autodiff(padding, inputs):
    """The block's gradients, the input's included (unused by LeNet-5's first layer, but part
    of the layer); `constant` inputs make every pooling window a 4-way tie."""
    from lepton_jax.models import _conv_relu_pool_by_shifts, _max_pool_2x2, _xla_conv

    x = jax.random.normal(jax.random.PRNGKey(2), (4, 12, 12, 2)) if inputs == "gaussian" \
        else jnp.full((4, 12, 12, 2), 0.5)
    kernel = jax.random.normal(jax.random.PRNGKey(3), (5, 5, 2, 3)) * 0.3
    bias = jnp.array([0.1, -0.2, 0.0])

    def ours(a, k, b):
        return jnp.sum(_conv_relu_pool_by_shifts(a, k, b, padding) ** 2)

    def plain(a, k, b):
        return jnp.sum(_max_pool_2x2(jax.nn.relu(_xla_conv(a, k, padding) + b)) ** 2)

    for got, want in zip(jax.grad(ours, (0, 1, 2))(x, kernel, bias),
                         jax.grad(plain, (0, 1, 2))(x, kernel, bias), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("band_max", [None, 0], ids=["band", "too-wide"])
@pytest.mark.parametrize("x_shape,k_shape", [((3, 14, 14, 6), (5, 5, 6, 16)),
                                             ((2, 9, 7, 4), (3, 2, 4, 5))])
def test_conv_input_gradient_by_band_matmul_matches_autodiff(x_shape, k_shape, band_max,
                                                              monkeypatch):
    """The CPU convolution whose input gradient is a band matmul plus row-shifted adds
    (LeNet-5's second layer) gives XLA's convolution and JAX's gradients, non-square kernels
    included."""
    from lepton_jax import models
    from lepton_jax.models import _conv_valid_band_grad, _xla_conv

    if band_max is not None:  # a band larger than this falls back to XLA's own gradient
        monkeypatch.setattr(models, "_BAND_MAX", band_max)
    x = jax.random.normal(jax.random.PRNGKey(7), x_shape)
    kernel = jax.random.normal(jax.random.PRNGKey(8), k_shape) * 0.3
    weights = jax.random.normal(jax.random.PRNGKey(9), _xla_conv(x, kernel, "VALID").shape)

    def ours(a, k):
        return jnp.sum(_conv_valid_band_grad(a, k) * weights)

    def plain(a, k):
        return jnp.sum(_xla_conv(a, k, "VALID") * weights)

    np.testing.assert_allclose(ours(x, kernel), plain(x, kernel), rtol=1e-5)
    for got, want in zip(jax.grad(ours, (0, 1))(x, kernel), jax.grad(plain, (0, 1))(x, kernel),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_lenet5_starts_from_uniform_predictions():
    """The output layer starts at zero: every seed's initial loss is ln(10), whatever the
    He-normal layers below give (random ones left some seeds at chance on MNIST)."""
    model = build_model(ModelConfig(name="lenet5"), 10)
    x = _digit_like_images(8)
    for seed in range(3):
        params = model.init(jax.random.PRNGKey(seed), x)["params"]
        logits = model.apply({"params": params}, x)
        np.testing.assert_array_equal(logits, np.zeros((8, 10), np.float32))
        assert float(jnp.abs(params["Dense_1"]["kernel"]).max()) > 0  # the rest stays random


@pytest.mark.parametrize("inputs", ["gaussian", "digit_like"])
def test_conv_block_inference_and_training_forwards_agree(inputs):
    """The block computes its forward two ways (strided maximum when only predicting,
    reshape + max when differentiating): both give the plain convolution's pooled output."""
    from lepton_jax.models import _conv_relu_pool_by_shifts, _max_pool_2x2, _xla_conv

    x = jax.random.normal(jax.random.PRNGKey(5), (8, 28, 28, 1)) if inputs == "gaussian" \
        else _digit_like_images(8)
    kernel = jax.random.normal(jax.random.PRNGKey(6), (5, 5, 1, 6)) * 0.3
    bias = jnp.array([0.1, -0.2, 0.0, 0.3, -0.05, 0.2])
    block = jax.jit(lambda a, k, b: _conv_relu_pool_by_shifts(a, k, b, "SAME"))
    predicted = block(x, kernel, bias)
    trained, _ = jax.vjp(lambda k: _conv_relu_pool_by_shifts(x, k, bias, "SAME"), kernel)
    plain = _max_pool_2x2(jax.nn.relu(_xla_conv(x, kernel, "SAME") + bias))
    assert predicted.shape == (8, 14, 14, 6)
    np.testing.assert_allclose(predicted, trained, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(predicted, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(s, s, 1) for s in range(8, 34)] + [(28, 28, 3), (32, 28, 1),
                                   (28, 30, 1), (144,), (196,), (784,), (100,), (3,), (785,)])
def test_lenet5_input_check_agrees_with_the_model(shape):
    """`check_data` refuses exactly the input shapes LeNet-5 cannot run on."""
    from lepton_jax.models import check_data

    try:
        jax.eval_shape(LeNet5(num_outputs=10).init, jax.random.key(0), jnp.ones((2, *shape)))
        runs = True
    except (TypeError, ZeroDivisionError):  # a pool or reshape that does not fit, no features
        runs = False
    try:
        check_data(ModelConfig(name="lenet5"), "classification", shape)
        accepted = True
    except UserError as e:
        assert "model=lenet5 needs images whose sides are multiples of 4" in str(e)
        accepted = False
    assert accepted == runs
