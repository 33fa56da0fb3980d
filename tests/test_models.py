import jax
import jax.numpy as jnp
import pytest

from lepton_jax.config import ModelConfig
from lepton_jax.errors import UserError
from lepton_jax.models import build_model, count_params


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
