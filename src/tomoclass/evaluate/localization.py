"""Localization per ground-truth class, and how closely the true particles pack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from tomoclass.evaluate.picks import prepare_table, radii_for
from tomoclass.io import schema as S
from tomoclass.metrics import json_number

__all__ = ["neighbour_separation", "per_class_localization"]


def per_class_localization(score: Any, picks: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per ground-truth class: found, missed, false picks labelled with it, localization P/R/F1.

    Parameters
    ----------
    score
        :class:`tomoclass.evaluate.PickScore` of ``picks`` (its ``matches`` and ``per_class``).
    picks
        The scored picks, index 0..n-1 in the order they were scored (``class_name`` column);
        a pick that hit no particle counts as a false pick of the class it names, unless
        that is ``background``.

    Returns
    -------
    dict
        ``{class: {"n_true", "found", "missed", "false_picks", "loc_precision",
        "loc_recall", "loc_f1", "cls_f1", "det_f1"}}``; ratios None where undefined.
    """
    hit_rows = set(int(i) for i in score.matches["pick"]) if len(score.matches) else set()
    pred = picks[S.CLASS_NAME].astype(str).str.casefold().to_numpy()
    false_by_class: dict[str, int] = {}
    for i, c in enumerate(pred):
        if i not in hit_rows and c != S.BACKGROUND:
            false_by_class[c] = false_by_class.get(c, 0) + 1
    out = {}
    for name, r in score.per_class.iterrows():
        tp, n = int(r["found"]), int(r["n_true"])
        fn, fp = n - tp, false_by_class.get(str(name).casefold(), 0)
        out[str(name)] = {
            "n_true": n, "found": tp, "missed": fn, "false_picks": fp,
            "loc_precision": tp / (tp + fp) if tp + fp else None,
            "loc_recall": tp / n if n else None,
            "loc_f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None,
            "cls_f1": json_number(r["cls_f1"]),
            "det_f1": json_number(r["det_f1"]),
        }
    return out


def neighbour_separation(truth: pd.DataFrame, radii: float | Mapping[str, float]) -> pd.Series:
    """Per true particle: its nearest neighbour's distance over the larger of their two radii.

    The same measure as ``separation`` of :func:`tomoclass.locate.find_peaks` (a pick closer
    than ``separation * max(r_a, r_b)`` to a stronger one is suppressed). The share of
    particles below a separation is the share that locating at it would lose even if every
    particle were picked at its centre with its class. Neighbours are looked for within the
    same ``tomogram`` (all rows are one tomogram when the column is absent); rows flagged
    ``is_protein == False`` are left out.

    Parameters
    ----------
    truth
        Ground-truth particle table (:mod:`tomoclass.io.schema`), coordinates in voxels.
    radii
        Radius in voxels: one number, or class name -> radius (case-insensitive) for every
        class in ``truth``.

    Returns
    -------
    pandas.Series
        Indexed like the kept rows of ``truth``; NaN for a particle alone in its tomogram.

    Raises
    ------
    InputError
        A missing column or non-finite coordinate, a class without a radius, a radius that
        is not positive (the checks :func:`tomoclass.evaluate.score_picks` makes).
    """
    if S.IS_PROTEIN in truth.columns:
        truth = truth[truth[S.IS_PROTEIN].astype(bool)]
    index = truth.index
    truth = prepare_table(truth, "ground truth")  # checked columns and coordinates
    r = radii_for(truth, radii).to_numpy(float)
    zyx = truth[[S.Z, S.Y, S.X]].to_numpy(float)
    tomograms = (truth[S.TOMOGRAM].astype(str).to_numpy() if S.TOMOGRAM in truth.columns
                 else np.full(len(truth), ""))
    out = np.full(len(truth), np.nan)
    for t in dict.fromkeys(tomograms):
        rows = np.flatnonzero(tomograms == t)
        if len(rows) < 2:
            continue
        d, j = cKDTree(zyx[rows]).query(zyx[rows], k=2)
        out[rows] = d[:, 1] / np.maximum(r[rows], r[rows[j[:, 1]]])
    return pd.Series(out, index=index, name="separation")
