"""Confusion matrices and F1 as the paper defines it (Eq. 2): F1 = 2TP / (2TP + FN + FP).

Small on purpose: the full reports live in :mod:`tomoclass.evaluate`; training only needs
the confusion matrix (which sums across DDP ranks) and macro F1 from it.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C[t, p]`` of samples of true class ``t`` predicted as ``p``.

    Parameters
    ----------
    y_true, y_pred
        Integer class indices, shape (N,).
    num_classes
        Number of classes K.

    Returns
    -------
    numpy.ndarray
        int64, shape (K, K), rows true, columns predicted.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = y_true * num_classes + y_pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2TP / (2TP + FN + FP) from a confusion matrix.

    A class with neither support nor predictions (denominator 0) gets NaN: it is left out
    of the macro mean rather than counted as 0 or 1.

    Returns
    -------
    numpy.ndarray
        float64, shape (K,).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    denom = 2 * tp + fn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over classes with support or predictions."""
    f1 = per_class_f1(cm)
    return float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else float("nan")


def accuracy(cm: np.ndarray) -> float:
    """Fraction of samples on the diagonal."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")
