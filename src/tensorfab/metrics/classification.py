"""Classification scores: confusion matrix, accuracy, precision/recall/F1 (per class and averaged).

Plain numpy, no sklearn: the definitions match sklearn's with ``zero_division=0`` (a ratio whose
denominator is zero counts as 0.0, silently).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _to_numpy(labels: Any, name: str) -> np.ndarray:
    """1-D int64 array from a numpy array, torch tensor or sequence of ints."""
    if hasattr(labels, "detach"):  # torch.Tensor, without importing torch here
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def confusion_matrix(targets: Any, preds: Any, num_classes: int) -> np.ndarray:
    """Counts [C, C]: row = true class, column = predicted class."""
    y_true = _to_numpy(targets, "targets")
    y_pred = _to_numpy(preds, "preds")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"targets and preds differ in length: {y_true.shape[0]} vs {y_pred.shape[0]}"
        )
    for name, array in (("targets", y_true), ("preds", y_pred)):
        if array.size and (array.min() < 0 or array.max() >= num_classes):
            raise ValueError(
                f"{name} holds class ids outside [0, {num_classes}): "
                f"min {array.min()}, max {array.max()}"
            )
    flat = y_true * num_classes + y_pred
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, 0.0 where the denominator is 0 (no warning, no NaN)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _safe_divide(2 * precision * recall, precision + recall)


def scores_from_confusion(cm: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The ``classification_scores`` dict from a confusion matrix already counted."""
    cm = np.asarray(cm, dtype=np.int64)
    true_pos = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # true count per class
    predicted = cm.sum(axis=0)  # predicted count per class
    n = int(cm.sum())
    precision = _safe_divide(true_pos, predicted)
    recall = _safe_divide(true_pos, support)
    f1 = _f1(precision, recall)
    accuracy = float(_safe_divide(true_pos.sum(), n))
    # macro F1 averages the classes that occur in the data or in the predictions, as
    # scikit-learn does without explicit labels: a class with neither (a folder class
    # absent from this test set) has no F1 to speak of and would count as a zero.
    seen = (support > 0) | (predicted > 0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": accuracy,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "weighted_f1": float(_safe_divide((f1 * support).sum(), n)),
        # single-label multiclass: micro precision = micro recall = accuracy, so micro F1 = accuracy
        "micro_f1": accuracy,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "n": n,
    }


def classification_scores(targets: Any, preds: Any, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted/micro F1, per-class precision/recall/F1/support and the matrix.

    Class ids index ``class_names``; every class is reported, also those absent from the data.
    """
    if not class_names:
        raise ValueError("class_names is empty: need at least one class")
    cm = confusion_matrix(targets, preds, len(class_names))
    return scores_from_confusion(cm, list(class_names))
