"""Evaluate a trained run on a split of a dataset (:func:`evaluate_run`), or its baseline.

:func:`evaluate_baseline` scores the floor a run must beat, the nearest class mean.

A workflow (above ``train``, ``evaluate`` and ``cam``): it loads the run, opens the dataset,
and composes :mod:`tomoclass.evaluate`'s metrics and report with :mod:`tomoclass.cam`'s score.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tomoclass.cam.score import DEFAULT_MASK_LEVEL, cam_score
from tomoclass.data import SubtomogramDataset, open_dataset
from tomoclass.data.extract import VOXEL_SIZE_TOLERANCE
from tomoclass.data.finite import refuse_nonfinite
from tomoclass.errors import InputError
from tomoclass.evaluate import baseline
from tomoclass.evaluate.baseline import class_mean_baseline
from tomoclass.evaluate.compare import MACRO, EpochCurve
from tomoclass.evaluate.report import (
    EVALUATION_KIND,
    EvaluationReport,
    predict_logits,
    write_report,
)
from tomoclass.infer import load_run, select_device
from tomoclass.io.lock import folder_lock
from tomoclass.io.outputs import check_output_dir
from tomoclass.metrics import metrics_from_labels

log = logging.getLogger(__name__)

#: Largest relative voxel-size difference between training and evaluation data accepted:
#: the one predict and locate apply to tomograms.
VOXEL_TOLERANCE = VOXEL_SIZE_TOLERANCE


class SplitInputs:
    """Indexable view of a split's subtomograms as the model sees them, plus their rows.

    Wraps :class:`tomoclass.data.SubtomogramDataset` (no augmentation), so evaluation reads
    exactly what validation during training read.

    Attributes
    ----------
    dataset
        The ``SubtomogramDataset`` of the split.
    rows
        int64 (N,): row of each item in the store's arrays (``particles.star`` ``index``).
    labels
        int64 (N,): the dataset's class index of each item.
    """

    def __init__(self, store: Any, split: str) -> None:
        table_rows = split_rows(store, split)  # clear error for an empty/unknown split first
        self.dataset = SubtomogramDataset(store, split=split, augment=False)
        self.labels = np.asarray(self.dataset.labels, dtype=np.int64)
        # the dataset's own row list when it exposes one (tomoclass.data does: .indices)
        rows = getattr(self.dataset, "indices", None)
        self.rows = table_rows if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) != len(self.labels):
            raise InputError(
                f"split '{split}' has {len(self.rows)} rows but the dataset yields "
                f"{len(self.labels)} subtomograms", field="split")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> np.ndarray:
        x = self.dataset[i][0]
        return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def split_rows(store: Any, split: str) -> np.ndarray:
    """Rows (``index`` column) of the store's arrays that belong to ``split``, in table order.

    Raises
    ------
    InputError
        No particle in that split (the message lists the splits present).
    """
    table = store.table
    sel = table["split"].astype(str) == split
    if not sel.any():
        have = sorted(set(table["split"].astype(str)))
        raise InputError(f"no particles in split '{split}' (have: {', '.join(have)})",
                         field="split")
    return table.loc[sel, "index"].to_numpy(dtype=np.int64)


def class_remap(dataset_names: Sequence[str], run_names: Sequence[str]) -> np.ndarray:
    """int64 (C_data,): run class index of each dataset class, matched by name.

    Raises
    ------
    InputError
        A dataset class the run was not trained on.
    """
    pos = {n: i for i, n in enumerate(run_names)}
    missing = [n for n in dataset_names if n not in pos]
    if missing:
        raise InputError(
            f"dataset classes {missing} are not among the run's classes {list(run_names)}",
            field="classes")
    return np.array([pos[n] for n in dataset_names], dtype=np.int64)


def check_voxel_size(run_voxel: float | None, data_voxel: float | None) -> None:
    """Refuse data whose voxel size differs from the training data's by more than 5%."""
    if run_voxel and data_voxel and abs(data_voxel - run_voxel) > VOXEL_TOLERANCE * run_voxel:
        raise InputError(
            f"dataset voxel size {data_voxel:g} Å differs from the training data's "
            f"{run_voxel:g} Å by more than {VOXEL_TOLERANCE:.0%}", field="voxel_size_angstrom")


def evaluate_model(
    model: nn.Module,
    class_names: Sequence[str],
    size_groups: Sequence[str],
    store: Any,
    split: str = "test",
    *,
    cam: bool = True,
    mask_level: float = DEFAULT_MASK_LEVEL,
    batch_size: int = 32,
) -> tuple[Any, Any]:
    """Metrics (and CAM score) of ``model`` on one split of an opened dataset.

    Parameters
    ----------
    model
        Trained classifier, on the device it should run on.
    class_names, size_groups
        The model's class map (its output order).
    store
        An opened dataset (:func:`tomoclass.data.open_dataset`).
    split
        "train", "val" or "test".
    cam
        Also compute the CAM score when the dataset has clean volumes.
    mask_level
        Particle-mask threshold of the CAM score (see :func:`tomoclass.cam.particle_mask`).
    batch_size
        Subtomograms per forward pass.

    Returns
    -------
    (ClassificationMetrics, CamScore or None)
    """
    inputs = SplitInputs(store, split)
    remap = class_remap(list(store.class_map.names), list(class_names))
    y_true = remap[inputs.labels]
    logits = predict_logits(model, inputs, batch_size=batch_size)
    if logits.shape[1] != len(class_names):
        raise InputError(f"model gives {logits.shape[1]} logits for {len(class_names)} classes")
    metrics = metrics_from_labels(y_true, logits.argmax(axis=1), class_names, size_groups)
    score = None
    if cam and getattr(store, "clean", None) is not None:
        clean = _RowView(store.clean, inputs.rows)
        score = cam_score(model, inputs, clean, y_true, class_names, mask_level=mask_level,
                          batch_size=batch_size)
    elif cam:
        log.info("dataset has no clean volumes: no CAM score")
    return metrics, score


class _RowView:
    """``arr[rows[i]]`` for i in range(len(rows)), without copying the array."""

    def __init__(self, arr: Any, rows: np.ndarray) -> None:
        self.arr, self.rows = arr, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.arr[int(self.rows[i])])


def evaluate_run(
    run_dir: str | Path,
    dataset_dir: str | Path,
    split: str = "test",
    *,
    out_dir: str | Path | None = None,
    which: str = "best",
    cam: bool = True,
    mask_level: float = DEFAULT_MASK_LEVEL,
    batch_size: int = 32,
    device: str = "auto",
) -> EvaluationReport:
    """Evaluate a run's checkpoint on a dataset split and write the report.

    Parameters
    ----------
    run_dir
        Run folder written by ``tomoclass train``.
    dataset_dir
        Dataset folder (``tomoclass dataset``/``extract`` output).
    split
        Split to evaluate.
    out_dir
        Report folder; default ``<run_dir>/evaluation_<split>`` (where ``tomoclass compare``
        looks), where a previous evaluation is replaced atomically. Any other existing folder
        is refused before anything runs unless it is a previous evaluation and ``--overwrite``
        was given (:mod:`tomoclass.io.outputs`). While a report is written inside the run,
        the run is locked (:mod:`tomoclass.io.lock`).
    which
        Checkpoint: "best", "last", "epoch_005", ...
    cam
        Add the CAM score when the dataset has clean volumes (``clean.npy``).
    mask_level
        Particle-mask threshold of the CAM score.
    batch_size
        Subtomograms per forward pass.
    device
        "auto", "cpu", "cuda", "cuda:1", ...

    Returns
    -------
    EvaluationReport
        With ``out_dir`` set to where it was written.

    Raises
    ------
    InputError
        Unknown run/checkpoint/split, dataset classes the run lacks, or a voxel size more
        than 5% off the training data's.
    """
    if out_dir is None and not Path(run_dir).is_dir():  # a .pt file or a pretrained name
        raise InputError("the run is a checkpoint file or pretrained name, not a run directory "
                         "to write the report into: give --out", path=run_dir, field="--out")
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / f"evaluation_{split}"
    overwrite = True if out_dir is None else None
    check_output_dir(out, EVALUATION_KIND, overwrite=overwrite)
    inside = Path(run_dir).is_dir() and Path(run_dir).resolve() in out.resolve().parents
    with folder_lock(run_dir, "evaluation") if inside else contextlib.nullcontext():
        dev = select_device(device)
        model, class_map, info = load_run(run_dir, which, map_location=dev)
        store = open_dataset(dataset_dir)
        refuse_nonfinite(store, split, what="evaluate on")
        check_voxel_size(info.get("voxel_size_angstrom"),
                         getattr(store, "voxel_size_angstrom", None))
        metrics, score = evaluate_model(
            model, list(class_map.names), list(class_map.size_groups), store, split,
            cam=cam, mask_level=mask_level, batch_size=batch_size)
        report = EvaluationReport(
            model_name=str(info.get("model_name", getattr(model, "model_name", ""))),
            metrics=metrics,
            split=split,
            run_dir=str(run_dir),
            dataset_dir=str(dataset_dir),
            checkpoint=Path(info.get("checkpoint", which)).stem,
            cam=None if score is None else score.to_dict(),
            info={"epoch": info.get("epoch"), "device": str(dev)},
        )
        return write_report(report, out, overwrite=overwrite)


def checkpoint_curve(
    run_dir: str | Path,
    store: Any,
    split: str = "val",
    *,
    group: str = "tiny",
    label: str = "",
    batch_size: int = 32,
    device: str = "auto",
) -> Any:
    """Fig. 4B from the periodic checkpoints: evaluate every ``checkpoints/epoch_XXX.pt``.

    Parameters
    ----------
    run_dir
        Run folder with periodic checkpoints.
    store
        Opened dataset to evaluate on.
    split
        Split to evaluate each checkpoint on.
    group
        Size group to average ("tiny" as in the paper) or "macro".
    label
        Curve label.
    batch_size, device
        As for :func:`evaluate_run`.

    Returns
    -------
    tomoclass.evaluate.compare.EpochCurve
        Empty when the run has no periodic checkpoints.
    """
    dev = select_device(device)
    epochs, values, used = [], [], group
    for ck in sorted((Path(run_dir) / "checkpoints").glob("epoch_*.pt")):
        model, class_map, info = load_run(run_dir, ck.stem, map_location=dev)
        metrics, _ = evaluate_model(model, list(class_map.names), list(class_map.size_groups),
                                    store, split, cam=False, batch_size=batch_size)
        groups = metrics.group_f1()
        used = group if group in groups else MACRO
        epochs.append(int(info.get("epoch", int(ck.stem.split("_")[1]))))
        values.append(groups[used] if used != MACRO else metrics.macro_f1)
    return EpochCurve(label=label, epochs=np.asarray(epochs, dtype=np.int64),
                      f1=np.asarray(values, dtype=np.float64), group=used, split=split)


#: ``model_name`` of the nearest-class-mean baseline's reports.
BASELINE_NAME = baseline.NAME


def evaluate_baseline(
    dataset_dir: str | Path,
    out_dir: str | Path,
    split: str = "test",
    *,
    train_split: str = "train",
    clean: bool = False,
) -> EvaluationReport:
    """Score the nearest-class-mean baseline on a split and write its report.

    The class means come from ``train_split`` (:mod:`tomoclass.evaluate.baseline`); the
    report has the layout of :func:`evaluate_run`'s (``model_name``
    ``"class_mean_correlation"``), so it can stand beside the trained nets. ``clean`` scores
    the noise-free boxes of a simulated dataset instead: how far the mean shapes alone
    separate the classes.

    Raises
    ------
    InputError
        An unknown or empty split, non-finite boxes in either split, an ``out_dir`` that is
        not a previous evaluation.
    """
    out = Path(out_dir)
    check_output_dir(out, EVALUATION_KIND)
    store = open_dataset(dataset_dir)
    for s in (train_split, split):
        refuse_nonfinite(store, s, what="score the baseline on")
    metrics = class_mean_baseline(store, train_split=train_split, split=split, clean=clean)
    report = EvaluationReport(model_name=BASELINE_NAME, metrics=metrics, split=split,
                              dataset_dir=str(dataset_dir), checkpoint="",
                              info={"method": "nearest class mean by correlation",
                                    "class_means_from": f"the {train_split} split",
                                    "boxes": "clean (noise-free)" if clean else "as measured"})
    return write_report(report, out)

