"""Localization per ground-truth class, from a SHREC hit-box score of picks."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tomoclass.io import schema as S
from tomoclass.metrics import json_number

__all__ = ["per_class_localization"]


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
