"""Classification metrics as the paper reports them: per-class F1 (Eq. 2) and its means.

A core module below every stage (it imports only :mod:`tomoclass.errors`): training's
validation (:mod:`tomoclass.train.metrics`) and evaluation (:mod:`tomoclass.evaluate.metrics`,
which re-exports it) apply this one rule, so they can never disagree.

Rows of a confusion matrix are the true class, columns the predicted class, so
``confusion[i, j]`` counts particles of class ``i`` predicted as class ``j``.

Undefined ratios
----------------
Every ratio here is a count over a count. When the denominator is zero the ratio is
**undefined and reported as NaN**, and NaN values are **left out of every mean** (macro,
support-weighted and per size group):

- precision ``TP / (TP + FP)`` is NaN for a class that was never predicted;
- recall ``TP / (TP + FN)`` is NaN for a class with no support (no true particles);
- F1 ``2TP / (2TP + FN + FP)`` (Eq. 2) is NaN only for a class that has no support *and*
  was never predicted. A class with support but no predictions has F1 = 0, and a class
  with no support that was predicted (only false positives) has F1 = 0: both are real
  failures and count in the macro mean.

A class absent from both the truth and the predictions of a split says nothing about the
classifier, which is why its F1 does not drag the macro mean to zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tomoclass.errors import InputError

#: Size groups of the SHREC'19 classes (paper Table 1), smallest first.
SIZE_GROUPS = ("tiny", "small", "medium", "large")


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Count (true, predicted) class pairs.

    Parameters
    ----------
    y_true, y_pred
        Integer class indices, shape (N,), each in ``[0, num_classes)``.
    num_classes
        Number of classes C of the class map.

    Returns
    -------
    numpy.ndarray
        int64 array (C, C); ``[i, j]`` counts true class ``i`` predicted as ``j``.

    Raises
    ------
    InputError
        If the arrays differ in length or hold an index outside ``[0, num_classes)``.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise InputError(
            f"labels and predictions must be 1-D of equal length, got {t.shape} and {p.shape}"
        )
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (
            not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= num_classes
        ):
            raise InputError(
                f"class indices must be integers in [0, {num_classes}), "
                f"got values from {arr.min()} to {arr.max()}",
                field=name,
            )
    flat = t.astype(np.int64) * num_classes + p.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise num / den, NaN where den == 0 (no division warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _weighted(values: np.ndarray, weights: np.ndarray) -> float:
    """Support-weighted mean of the finite entries; NaN when their weights sum to zero."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v) & (w > 0)
    total = w[ok].sum()
    return float((v[ok] * w[ok]).sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class ClassificationMetrics:
    """Per-class counts and scores of one classifier on one split, and their means.

    Attributes
    ----------
    class_names
        Class names in class-map order, length C.
    size_groups
        Size group per class ("tiny", "small", "medium", "large" or ""), length C.
    confusion
        int64 (C, C), rows true class, columns predicted class.
    tp, fn, fp, support
        int64 (C,): true positives, false negatives, false positives, and
        ``support = tp + fn`` (true particles per class).
    precision, recall, f1
        float64 (C,); NaN where undefined (see the module docstring).
    """

    class_names: tuple[str, ...]
    size_groups: tuple[str, ...]
    confusion: np.ndarray
    tp: np.ndarray = field(repr=False)
    fn: np.ndarray = field(repr=False)
    fp: np.ndarray = field(repr=False)
    support: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    f1: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        """Number of particles evaluated."""
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        """Fraction of particles whose predicted class is the true one (NaN when N = 0)."""
        return float(np.trace(self.confusion) / self.n) if self.n else float("nan")

    @property
    def macro_f1(self) -> float:
        """Unweighted mean F1 over the classes where F1 is defined."""
        return _nanmean(self.f1)

    @property
    def macro_precision(self) -> float:
        """Unweighted mean precision over the classes that were predicted at least once."""
        return _nanmean(self.precision)

    @property
    def macro_recall(self) -> float:
        """Unweighted mean recall over the classes with support."""
        return _nanmean(self.recall)

    @property
    def weighted_f1(self) -> float:
        """Mean F1 weighted by support (classes without support weigh nothing)."""
        return _weighted(self.f1, self.support)

    @property
    def weighted_precision(self) -> float:
        """Mean precision weighted by support."""
        return _weighted(self.precision, self.support)

    @property
    def weighted_recall(self) -> float:
        """Mean recall weighted by support (equals accuracy when every class is predicted)."""
        return _weighted(self.recall, self.support)

    def group_f1(self) -> dict[str, float]:
        """Mean F1 per size group, groups in :data:`SIZE_GROUPS` order, only those present.

        This is the quantity of the paper's Fig. 4A: the unweighted mean of the F1 of the
        classes of one size group (undefined F1 left out).
        """
        groups = np.asarray(self.size_groups)
        return {g: _nanmean(self.f1[groups == g]) for g in SIZE_GROUPS if np.any(groups == g)}

    def group_confusion(self) -> dict[str, dict[str, Any]]:
        """Per size group: how often a particle is put in its group, and in its own class there.

        A group's F1 mixes two failures: a tiny particle called small (its size missed) and a
        tiny particle called another tiny class (its size found, its identity not). For every
        group with true particles (:data:`SIZE_GROUPS` order, classes without a group left
        out): ``n`` true particles, ``in_group`` the fraction predicted as any class of the
        group, ``within`` the fraction of those predicted as their own class, and ``chance``
        = 1 / (classes in the group), what ``within`` is when the group's classes are told
        apart no better than a guess among them (balanced classes).
        """
        groups = np.asarray(self.size_groups)
        out: dict[str, dict[str, Any]] = {}
        for g in SIZE_GROUPS:
            idx = np.flatnonzero(groups == g)
            n = int(self.confusion[idx].sum())
            if not n:
                continue
            block = self.confusion[np.ix_(idx, idx)]
            inside = int(block.sum())
            out[g] = {"n": n, "classes": len(idx), "in_group": inside / n,
                      "within": json_number(np.trace(block) / inside if inside else np.nan),
                      "chance": 1.0 / len(idx)}
        return out

    def per_class(self) -> list[dict[str, Any]]:
        """One record per class: name, size group, counts and scores (NaN -> None)."""
        rows = []
        for i, name in enumerate(self.class_names):
            rows.append(
                {
                    "class": name,
                    "size_group": self.size_groups[i],
                    "tp": int(self.tp[i]),
                    "fn": int(self.fn[i]),
                    "fp": int(self.fp[i]),
                    "support": int(self.support[i]),
                    "precision": json_number(self.precision[i]),
                    "recall": json_number(self.recall[i]),
                    "f1": json_number(self.f1[i]),
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        """The means as a flat dict (NaN -> None), JSON-ready."""
        return {
            "n": self.n,
            "accuracy": json_number(self.accuracy),
            "macro_f1": json_number(self.macro_f1),
            "macro_precision": json_number(self.macro_precision),
            "macro_recall": json_number(self.macro_recall),
            "weighted_f1": json_number(self.weighted_f1),
            "weighted_precision": json_number(self.weighted_precision),
            "weighted_recall": json_number(self.weighted_recall),
            "group_f1": {k: json_number(v) for k, v in self.group_f1().items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: summary, per-class records and the confusion matrix."""
        return {
            "summary": self.summary(),
            "per_class": self.per_class(),
            "class_names": list(self.class_names),
            "size_groups": list(self.size_groups),
            "confusion": self.confusion.tolist(),
            "group_confusion": self.group_confusion(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassificationMetrics:
        """Rebuild from :meth:`to_dict` output (all scores recomputed from the confusion)."""
        return classification_metrics(
            np.asarray(d["confusion"], dtype=np.int64), d["class_names"], d["size_groups"]
        )


def json_number(x: Any) -> Any:
    """``x`` ready for JSON: NaN (an undefined ratio) becomes None, numpy scalars Python numbers.

    Anything that is not a number (a string, None) is returned unchanged.
    """
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        return None if np.isnan(x) else x
    return x


def classification_metrics(
    confusion: np.ndarray,
    class_names: Sequence[str],
    size_groups: Sequence[str] | None = None,
) -> ClassificationMetrics:
    """Per-class TP, FN, FP, precision, recall and F1 (Eq. 2) from a confusion matrix.

    Parameters
    ----------
    confusion
        Non-negative integer counts (C, C), rows true class, columns predicted class.
    class_names
        C class names in the matrix's order.
    size_groups
        C size groups ("tiny"/"small"/"medium"/"large" or ""); default all "".

    Returns
    -------
    ClassificationMetrics
        See the module docstring for how undefined ratios are handled.

    Raises
    ------
    InputError
        If the matrix is not square, has negative entries, or the name lists do not match it.
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise InputError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.integer) or (cm.size and cm.min() < 0):
        raise InputError("confusion matrix must hold non-negative integer counts")
    c = cm.shape[0]
    names = tuple(str(n) for n in class_names)
    groups = tuple("" for _ in range(c)) if size_groups is None else tuple(
        str(g) for g in size_groups
    )
    if len(names) != c or len(groups) != c:
        raise InputError(
            f"{len(names)} class names and {len(groups)} size groups for a {c}-class matrix"
        )
    bad = sorted({g for g in groups if g and g not in SIZE_GROUPS})
    if bad:
        raise InputError(f"unknown size group(s) {bad}; expected one of {SIZE_GROUPS} or ''")
    cm = cm.astype(np.int64)
    tp = np.diag(cm).copy()
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    return ClassificationMetrics(
        class_names=names,
        size_groups=groups,
        confusion=cm,
        tp=tp,
        fn=fn,
        fp=fp,
        support=tp + fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fn + fp),
    )


def metrics_from_labels(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    size_groups: Sequence[str] | None = None,
) -> ClassificationMetrics:
    """:func:`classification_metrics` of :func:`confusion_matrix` of the labels, shape (N,)."""
    return classification_metrics(
        confusion_matrix(y_true, y_pred, len(class_names)), class_names, size_groups
    )
