"""Choosing the score threshold of picks: localization scores at each threshold, and the best.

:func:`threshold_sweep` scores the picks kept at each of a list of thresholds;
:func:`choose_threshold` finds the threshold with the best localization F1 against a labelled
tomogram (``tomoclass score-picks --calibrate``). Both score with
:func:`tomoclass.evaluate.picks.score_picks` and its hit regions and matching rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.evaluate.picks import BACKGROUND, prepare_table, score_picks
from tomoclass.io import schema
from tomoclass.metrics import json_number


def threshold_sweep(
    truth_df: pd.DataFrame,
    picks_df: pd.DataFrame,
    radii: float | Mapping[str, float],
    thresholds: Sequence[float],
    *,
    region: str = "sphere",
    matching: str = "greedy",
) -> pd.DataFrame:
    """Localization precision, recall and F1 of the picks scoring at least each threshold.

    For picks from :func:`tomoclass.locate.locate`, the picks kept at a threshold are those
    that locating again at it would keep, for thresholds not below the one they were made
    with (non-maximum suppression keeps picks in decreasing score order, so a weaker candidate
    never removes a stronger one); their positions may differ below the grid spacing, since
    the sub-voxel refinement uses the threshold. Choose the threshold on a tomogram that is
    not the test tomogram.

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``threshold``, ``n_picks``, ``tp``, ``fp``, ``fn``,
        ``precision``, ``recall``, ``f1``, ``classification_accuracy``.

    Raises
    ------
    InputError
        No thresholds, a threshold that is not a finite number, picks without ``score``, or
        what :func:`score_picks` refuses.
    """
    if len(thresholds) == 0:
        raise InputError("no thresholds to sweep", field="thresholds")
    if schema.SCORE not in picks_df.columns:
        raise InputError("picks have no score column to threshold", field=schema.SCORE)
    scores = pd.to_numeric(picks_df[schema.SCORE], errors="coerce").to_numpy(dtype=float)
    rows = []
    for t in thresholds:
        if not math.isfinite(float(t)):
            raise InputError(f"threshold {t!r} is not a finite number", field="thresholds")
        s = score_picks(truth_df, picks_df[scores >= float(t)], radii, region=region,
                        matching=matching)
        rows.append({"threshold": float(t), "n_picks": s.n_picks, "tp": s.tp, "fp": s.fp,
                     "fn": s.fn, "precision": s.precision, "recall": s.recall, "f1": s.f1,
                     "classification_accuracy": s.classification_accuracy})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ThresholdChoice:
    """Result of :func:`choose_threshold`.

    Attributes
    ----------
    threshold
        The chosen score threshold (keep picks with ``score >= threshold``).
    n_picks, tp, precision, recall, f1
        Localization counts and scores of the picks kept at it.
    n_true
        Scored ground-truth particles.
    sweep
        Every threshold tried, one row each (``threshold``, ``n_picks``, ``tp``, ``fp``,
        ``fn``, ``precision``, ``recall``, ``f1``), in increasing threshold.
    region, matching
        The hit-region shape and matching rule used.
    """

    threshold: float
    n_picks: int
    tp: int
    n_true: int
    precision: float
    recall: float
    f1: float
    sweep: pd.DataFrame
    region: str
    matching: str

    def to_dict(self) -> dict:
        """JSON-ready summary (without the whole sweep)."""
        return {
            "threshold": self.threshold,
            "n_picks": self.n_picks,
            "tp": self.tp,
            "n_true": self.n_true,
            "precision": json_number(self.precision),
            "recall": json_number(self.recall),
            "f1": json_number(self.f1),
            "thresholds_tried": len(self.sweep),
            "region": self.region,
            "matching": self.matching,
        }


def choose_threshold(
    truth_df: pd.DataFrame,
    picks_df: pd.DataFrame,
    radii: float | Mapping[str, float],
    *,
    region: str = "sphere",
    matching: str = "greedy",
) -> ThresholdChoice:
    """The score threshold at which the picks' localization F1 against the truth is highest.

    Use it on a labelled tomogram that is not the test tomogram (a simulated one, or one a
    person annotated), with picks made at a low threshold; then locate the other tomograms
    at the chosen threshold (``tomoclass score-picks --calibrate RUN`` stores it with the run
    and :func:`tomoclass.locate.locate` uses it by default).

    Every distinct finite pick score is tried (F1 changes only there). With greedy matching
    all of them come from one matching: picks are matched in decreasing score order, so the
    picks scoring at least ``t`` are matched exactly as they would be alone. With Hungarian
    matching at most 200 thresholds (score quantiles) are scored one by one. Among equal F1
    the lowest threshold (most recall) is chosen.

    Raises
    ------
    InputError
        Picks without a finite score, or what :func:`score_picks` refuses.
    """
    if schema.SCORE not in picks_df.columns:
        raise InputError("picks have no score column to threshold", field=schema.SCORE)
    picks = prepare_table(picks_df, "picks")
    keep = (picks["_key"] != BACKGROUND).to_numpy()
    scores = picks[schema.SCORE].to_numpy(float)
    finite = np.isfinite(scores) & keep
    if not finite.any():
        raise InputError("no pick has a finite score to choose a threshold from",
                         field=schema.SCORE)
    candidates = np.unique(scores[finite])
    if matching == "greedy":
        full = score_picks(truth_df, picks_df, radii, region=region, matching=matching)
        hit = np.zeros(len(picks), bool)
        hit[full.matches["pick"].to_numpy(int)] = True
        # counts of kept picks and hits with score >= each candidate threshold
        s_keep, s_hit = np.sort(scores[finite]), np.sort(scores[finite & hit])
        n_picks = len(s_keep) - np.searchsorted(s_keep, candidates, side="left")
        tp = len(s_hit) - np.searchsorted(s_hit, candidates, side="left")
        n_true = full.n_true
        sweep = pd.DataFrame({"threshold": candidates, "n_picks": n_picks, "tp": tp})
        sweep["fp"] = sweep["n_picks"] - sweep["tp"]
        sweep["fn"] = n_true - sweep["tp"]
        with np.errstate(divide="ignore", invalid="ignore"):
            sweep["precision"] = sweep["tp"] / sweep["n_picks"]
            sweep["recall"] = sweep["tp"] / n_true if n_true else np.nan
            sweep["f1"] = 2 * sweep["tp"] / (sweep["n_picks"] + n_true)
    else:
        if len(candidates) > 200:
            candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, 200)))
        sweep = threshold_sweep(truth_df, picks_df, radii, list(candidates), region=region,
                                matching=matching).drop(columns="classification_accuracy")
        n_true = int(sweep["tp"].iloc[0] + sweep["fn"].iloc[0])
    f1 = sweep["f1"].fillna(-1.0).to_numpy()
    best = int(np.argmax(f1))  # first maximum = lowest threshold
    row = sweep.iloc[best]
    return ThresholdChoice(
        threshold=float(row["threshold"]),
        n_picks=int(row["n_picks"]),
        tp=int(row["tp"]),
        n_true=int(n_true),
        precision=float(row["precision"]),
        recall=float(row["recall"]),
        f1=float(row["f1"]),
        sweep=sweep.reset_index(drop=True),
        region=region,
        matching=matching,
    )
