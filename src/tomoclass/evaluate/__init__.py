"""Metrics, reports, comparisons and plots of trained classifiers.

- :mod:`tomoclass.evaluate.metrics`: confusion matrix, per-class TP/FN/FP, precision,
  recall, F1 (the paper's Eq. 2) and their macro, support-weighted and size-group means.
"""

from tomoclass.evaluate.metrics import (
    SIZE_GROUPS,
    ClassificationMetrics,
    classification_metrics,
    confusion_matrix,
    metrics_from_labels,
)

__all__ = [
    "SIZE_GROUPS",
    "ClassificationMetrics",
    "classification_metrics",
    "confusion_matrix",
    "metrics_from_labels",
]
