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
