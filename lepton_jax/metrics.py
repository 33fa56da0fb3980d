"""Classification and regression metrics computed on the host from predictions."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[i, j]: examples of true class i predicted as class j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return counts


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # 0 where the denominator is 0, as scikit-learn's zero_division default reports.
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           num_classes: int) -> dict:
    """Accuracy, macro precision/recall/F1 and the confusion matrix.

    Macro averages run over the classes that occur in y_true or y_pred, as scikit-learn's do.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, actual)
    f1 = _safe_divide(2 * tp, predicted + actual)
    present = (predicted + actual) > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion": cm.tolist(),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MSE, MAE and R² (averaged uniformly over output columns, as scikit-learn does)."""
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    err = y_true - y_pred
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                  np.where(ss_res > 0, 0.0, 1.0))
    return {
        "mse": float((err**2).mean()),
        "mae": float(np.abs(err).mean()),
        "r2": float(r2.mean()),
    }


# What an evaluation reports per split: `compute_metrics`' names (less the confusion matrix)
# and the loss the loop adds.
REPORTED = {"classification": ("accuracy", "precision", "recall", "f1", "loss"),
            "regression": ("mse", "mae", "r2", "loss")}


def compute_metrics(task: str, y_true: np.ndarray, outputs: np.ndarray,
                    num_classes: int) -> dict:
    """Metrics for `task` from model outputs (logits for classification)."""
    if task == "classification":
        return classification_metrics(y_true, np.argmax(outputs, axis=-1), num_classes)
    return regression_metrics(y_true, outputs)
