"""Metrics, reports, comparisons and plots of trained classifiers.

- :mod:`~tomoclass.evaluate.metrics`: confusion matrix, per-class TP/FN/FP, precision,
  recall, F1 (the paper's Eq. 2) and their macro, support-weighted and size-group means;
- :mod:`~tomoclass.evaluate.report`: :class:`EvaluationReport` (Markdown, JSON, confusion
  CSV and heatmap), :func:`load_report`;
- :mod:`~tomoclass.evaluate.compare`: :func:`compare_runs` / :func:`write_comparison` (the
  paper's Table 2, Fig. 4A and Fig. 4B, CAM scores side by side).

- :mod:`~tomoclass.evaluate.picks`: :func:`score_picks` (SHREC hit-box scoring of picks:
  localization P/R/F1, per-class F1 among hits);
- :mod:`~tomoclass.evaluate.thresholds`: :func:`threshold_sweep` (scores at each pick
  threshold), :func:`choose_threshold` (the pick threshold with the best F1 on a labelled
  tomogram);
- :mod:`~tomoclass.evaluate.localization`: :func:`neighbour_separation` (how closely the
  true particles pack, in the unit of ``locate``'s ``separation``),
  :func:`per_class_localization` (found, missed and
  false picks per ground-truth class, from a pick score);
- :mod:`~tomoclass.evaluate.baseline`: :func:`class_mean_baseline` (the nearest-class-mean
  correlation floor a trained net must beat);
- :mod:`~tomoclass.evaluate.seeds`: the multi-seed Table 2 / Fig. 4 (mean ± s.d. over seeds
  beside the paper's values, the paired dilated-minus-plain difference).

Evaluating a trained run on a dataset (loading the run, the CAM score) is a workflow:
:func:`tomoclass.workflows.evaluate.evaluate_run`.
"""

from tomoclass.evaluate.baseline import class_mean_baseline
from tomoclass.evaluate.compare import Comparison, EpochCurve, compare_runs, write_comparison
from tomoclass.evaluate.localization import neighbour_separation, per_class_localization
from tomoclass.evaluate.metrics import (
    SIZE_GROUPS,
    ClassificationMetrics,
    classification_metrics,
    confusion_matrix,
    metrics_from_labels,
)
from tomoclass.evaluate.picks import PickScore, score_picks
from tomoclass.evaluate.report import EvaluationReport, load_report, write_report
from tomoclass.evaluate.thresholds import ThresholdChoice, choose_threshold, threshold_sweep

__all__ = [
    "SIZE_GROUPS",
    "ClassificationMetrics",
    "Comparison",
    "EpochCurve",
    "EvaluationReport",
    "PickScore",
    "ThresholdChoice",
    "choose_threshold",
    "class_mean_baseline",
    "classification_metrics",
    "compare_runs",
    "confusion_matrix",
    "load_report",
    "metrics_from_labels",
    "neighbour_separation",
    "per_class_localization",
    "score_picks",
    "threshold_sweep",
    "write_comparison",
    "write_report",
]
