"""The training loop's view of the paper's metric (Eq. 2: F1 = 2TP / (2TP + FN + FP)).

Training needs only the confusion matrix (it sums across DDP ranks) and macro F1 from it.
The rule itself, including undefined ratios (a class with neither support nor predictions
has F1 NaN and is left out of the macro mean), lives in one place,
:mod:`tomoclass.metrics` (below both ``train`` and ``evaluate``), so validation during
training and ``tomoclass evaluate`` can never disagree.
"""

from __future__ import annotations

import numpy as np

from tomoclass.metrics import classification_metrics, confusion_matrix

__all__ = ["accuracy", "confusion_matrix", "macro_f1", "per_class_f1"]


def _metrics(cm: np.ndarray):
    cm = np.asarray(cm, dtype=np.int64)
    return classification_metrics(cm, [str(k) for k in range(cm.shape[0])])


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 from a confusion matrix (rows true, columns predicted); float64 (K,)."""
    return np.asarray(_metrics(cm).f1, dtype=np.float64)


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over classes with support or predictions."""
    return float(_metrics(cm).macro_f1)


def accuracy(cm: np.ndarray) -> float:
    """Fraction of samples on the diagonal (NaN for an empty matrix)."""
    return float(_metrics(cm).accuracy)
