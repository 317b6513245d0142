"""The paper's classification metrics, as the evaluate stage publishes them.

The computation lives one layer down, in :mod:`tomoclass.metrics`, so that training's
validation (:mod:`tomoclass.train.metrics`) and ``tomoclass evaluate`` share one rule without
``train`` importing ``evaluate``. This module re-exports it under its documented name.
"""

from tomoclass.metrics import (
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
