"""Our metrics against scikit-learn's on random predictions."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn import metrics as skm

from lepton_jax.metrics import classification_metrics, regression_metrics


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 200), classes=st.integers(2, 12))
def test_classification_matches_sklearn(seed, n, classes):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, n)
    y_pred = rng.integers(0, classes, n)
    ours = classification_metrics(y_true, y_pred, classes)
    kw = dict(average="macro", zero_division=0)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert ours["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, **kw))
    assert ours["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, **kw))
    assert ours["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, **kw))
    expected = skm.confusion_matrix(y_true, y_pred, labels=list(range(classes)))
    np.testing.assert_array_equal(np.asarray(ours["confusion"]), expected)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 200), cols=st.integers(1, 3))
def test_regression_matches_sklearn(seed, n, cols):
    rng = np.random.default_rng(seed)
    y_true = rng.normal(size=(n, cols))
    y_pred = y_true + rng.normal(scale=rng.uniform(0.01, 3), size=(n, cols))
    ours = regression_metrics(y_true, y_pred)
    assert ours["mse"] == pytest.approx(skm.mean_squared_error(y_true, y_pred))
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert ours["r2"] == pytest.approx(skm.r2_score(y_true, y_pred))


@pytest.mark.parametrize("chunk", [64, 97, 180, 4096])
def test_evaluator_chunks_predict_every_row_once(chunk):
    """Whatever the chunking (uneven, one chunk, larger than the split), the split's metrics
    are those of one prediction of all its rows, scored by scikit-learn."""
    import jax

    from lepton_jax.config import DataConfig, ModelConfig
    from lepton_jax.data import load_dataset
    from lepton_jax.loop import Evaluator
    from lepton_jax.models import build_model

    data = load_dataset(DataConfig(name="digits"))  # 180 test rows
    model = build_model(ModelConfig(name="mlp", hidden=[32]), data.num_outputs)
    params = model.init(jax.random.PRNGKey(0), data.x_test[:1])["params"]
    ours = Evaluator(model, data, chunk, jax.device_put)(params, "test")
    outputs = np.asarray(model.apply({"params": params}, data.x_test))
    predicted = outputs.argmax(axis=1)
    assert 0.0 < ours["accuracy"] < 1.0  # an untrained model: the check can tell rows apart
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(data.y_test, predicted))
    assert ours["f1"] == pytest.approx(skm.f1_score(data.y_test, predicted, average="macro"))
    log_probs = outputs - np.log(np.exp(outputs - outputs.max(1, keepdims=True)).sum(
        1, keepdims=True)) - outputs.max(1, keepdims=True)
    assert ours["loss"] == pytest.approx(-log_probs[np.arange(len(predicted)), data.y_test].mean(),
                                         rel=1e-5)


def test_metric_values_keep_their_digits_at_any_scale():
    """Done lines and report tables show 4 decimals, which printed an MSE in squared dollars
    as 107641980.9250 and a near-perfect fit's as 0.0000; those, and values from 10 on, get 4
    significant digits."""
    from pathlib import Path

    from lepton_jax.loop import summary_line
    from lepton_jax.writers import metric_value

    # From 10 on, 4 significant digits too: an MAE of 8064.0882 beside an MSE of 1.076e+08
    # had shown eight.
    assert [metric_value(v) for v in (0.97222, 0.0, 1.0, 2.30259, 12.3456, 8064.0882,
                                      107641980.925, 3.497e-14, -2.5e5, float("nan"))] == \
        ["0.9722", "0.0000", "1.0000", "2.3026", "12.35", "8064", "1.076e+08", "3.497e-14",
         "-2.5e+05", "nan"]
    result = {"test": {"mse": 105230863.894}, "val": {"mse": 3.497e-14}, "steps": 500,
              "seconds": 1.3, "devices": 1}
    assert summary_line(result, "regression", Path("run")).startswith(
        "done: test mse 1.052e+08 | val mse 3.497e-14 | 500 steps in 1.3 s on 1 device | ")


def test_the_metrics_a_monitor_may_name_are_those_an_evaluation_reports():
    """`trainer.monitor` is checked against `REPORTED` before training; an evaluation's own
    names (plus the loss the loop adds) are the truth it must follow."""
    from lepton_jax.metrics import REPORTED, compute_metrics

    logits = np.array([[2.0, 0.1], [0.3, 1.0]])
    assert {*compute_metrics("classification", np.array([0, 1]), logits, 2)} - {"confusion"} \
        == set(REPORTED["classification"]) - {"loss"}
    assert {*compute_metrics("regression", np.array([1.0, 2.0]), np.array([[1.5], [2.5]]), 0)} \
        == set(REPORTED["regression"]) - {"loss"}
