"""A floor every trained classifier must beat: the nearest class mean by correlation.

Every box is normalised to zero mean and unit standard deviation over its voxels. A class's
*mean box* is the mean of its normalised training boxes, normalised again. A box then takes
the class whose mean box it correlates with most (Pearson correlation over the voxels).

There is no rotation search and no training beyond one pass over the boxes. With particles
in random orientations the class means are rotationally blurred blobs, so the baseline sees
little more than each class's size, mass and blur (missing wedge, CTF). A net that scores
near it has learned little beyond that. On a CPU it takes seconds where training takes
hours, so it belongs beside every benchmark table (``tomoclass baseline``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomoclass.errors import InputError
from tomoclass.metrics import ClassificationMetrics, metrics_from_labels

__all__ = ["baseline_record", "class_mean_baseline", "class_mean_boxes", "nearest_class_mean"]

#: ``model_name`` of the baseline's reports and its row in tier tables.
NAME = "class_mean_correlation"

#: Boxes normalised at a time (memory: ``CHUNK * D**3 * 8`` bytes).
CHUNK = 256


def _normalised(boxes: np.ndarray) -> np.ndarray:
    """(n, V) float64 rows with zero mean and unit s.d. (a constant box: all zeros)."""
    flat = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    sd = flat.std(axis=1, keepdims=True)
    return np.divide(flat, sd, out=np.zeros_like(flat), where=sd > 0)


def class_mean_boxes(volumes: np.ndarray, labels: np.ndarray, n_classes: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The normalised mean box of every class, and how many boxes made it.

    Parameters
    ----------
    volumes
        (N, D, D, D) boxes (a memory map is read in chunks).
    labels
        (N,) class indices in ``[0, n_classes)``.
    n_classes
        Number of classes.

    Returns
    -------
    means, counts
        ``means`` (n_classes, D**3) float64, rows normalised like the boxes; a class without
        boxes has a row of NaN. ``counts`` (n_classes,) int.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(volumes):
        raise InputError(f"{len(labels)} labels for {len(volumes)} boxes", field="labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputError(f"labels must lie in [0, {n_classes})", field="labels")
    n_vox = int(np.prod(volumes.shape[1:]))
    sums = np.zeros((n_classes, n_vox))
    for start in range(0, len(labels), CHUNK):
        rows = _normalised(volumes[start:start + CHUNK])
        np.add.at(sums, labels[start:start + CHUNK], rows)
    counts = np.bincount(labels, minlength=n_classes)
    means = np.full((n_classes, n_vox), np.nan)
    have = counts > 0
    means[have] = _normalised(sums[have] / counts[have, None])
    return means, counts


def nearest_class_mean(volumes: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each box's class by the highest correlation with the class means.

    Returns
    -------
    predicted, correlation
        (N,) class indices and (N, K) Pearson correlations (NaN for a class without a mean,
        which is never predicted).
    """
    usable = np.isfinite(means).all(axis=1)
    if not usable.any():
        raise InputError("no class has training boxes to average", field="train split")
    n_vox = means.shape[1]
    corr = np.full((len(volumes), len(means)), np.nan)
    for start in range(0, len(volumes), CHUNK):
        rows = _normalised(volumes[start:start + CHUNK])
        corr[start:start + len(rows), usable] = rows @ means[usable].T / n_vox
    scored = np.where(np.isfinite(corr), corr, -np.inf)
    return scored.argmax(axis=1), corr


def class_mean_baseline(store: Any, *, train_split: str = "train", split: str = "test",
                        clean: bool = False) -> ClassificationMetrics:
    """Per-class F1 (Eq. 2) of the nearest-class-mean baseline on a dataset split.

    Parameters
    ----------
    store
        An opened dataset (:func:`tomoclass.data.open_dataset`).
    train_split
        The split whose boxes make the class means.
    split
        The split scored, with the dataset's classes and size groups.
    clean
        Use the noise-free boxes a simulator recorded (``clean.npy``) for both the means and
        the scored boxes: how far the classes' mean shapes alone separate them. Classes that
        stay confused there are hard for any classifier that does not resolve orientation.

    Raises
    ------
    InputError
        An unknown or empty split, or no class with training boxes.
    """
    train = store.split_indices(train_split)
    test = store.split_indices(split)
    for name, rows in ((train_split, train), (split, test)):
        if len(rows) == 0:
            raise InputError(f"the dataset has no boxes in split {name!r}", path=store.path,
                             field="split")
    volumes = store.volumes
    if clean:
        if store.clean is None:
            raise InputError("the dataset has no clean (noise-free) boxes", path=store.path,
                             field="clean")
        volumes = store.clean
    names, groups = list(store.class_map.names), list(store.class_map.size_groups)
    labels = store.table["class_id"].to_numpy(np.int64)
    means, _ = class_mean_boxes(_Rows(volumes, train), labels[train], len(names))
    predicted, _ = nearest_class_mean(_Rows(volumes, test), means)
    return metrics_from_labels(labels[test], predicted, names, groups)


class _Rows:
    """Rows ``index`` of a (memory-mapped) array, read only when sliced."""

    def __init__(self, array: np.ndarray, index: np.ndarray):
        self.array, self.index = array, np.asarray(index)
        self.shape = (len(self.index), *array.shape[1:])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.array[self.index[sl]])


def baseline_record(metrics: ClassificationMetrics, *, train_split: str = "train",
                    split: str = "test", clean: bool = False) -> dict[str, Any]:
    """The baseline's scores as a benchmark records them (JSON-ready; undefined F1 None).

    Keys: ``method``, ``class_means_from``, ``split``, ``boxes`` (``"noisy"`` or
    ``"clean"``), ``n``, ``f1`` ({class: F1}), ``group_f1``, ``macro_f1``, ``accuracy``.
    """
    s = metrics.summary()
    return {"method": "nearest class mean by correlation", "class_means_from": train_split,
            "split": split, "boxes": "clean" if clean else "noisy", "n": s["n"],
            "f1": {r["class"]: r["f1"] for r in metrics.per_class()},
            "group_f1": s["group_f1"], "macro_f1": s["macro_f1"], "accuracy": s["accuracy"]}

