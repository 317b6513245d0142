"""SHREC-style scoring of particle picks: localization and classification together.

A *pick* (a row of a particle table with a predicted class and a score) is a **hit** when it
lies inside a true particle's hit region. SHREC'19 and SHREC'21 took the hit region from the
ground-truth occupancy volume (the voxels the particle's density occupies); without that
volume tomoclass uses the particle's radius:

``region="sphere"`` (default)
    ``|pick - centre| <= radius`` (Euclidean, voxels): the radius-sized ball that the
    SHREC'21 ``sizes.txt`` radii describe.
``region="box"``
    ``max(|dx|, |dy|, |dz|) <= radius``: an axis-aligned cube of edge ``2 * radius``
    centred on the particle (the "hit box").

Each true particle is matched to at most one pick, and each pick to at most one particle:

``matching="greedy"`` (default)
    Picks in order of decreasing score (ties and NaN scores: table order, NaN last) each take
    the nearest still-unmatched particle whose region holds them. This is what the SHREC
    scripts do in effect: a pick inside an already found particle is a *duplicate* and
    counts as a false positive.
``matching="hungarian"``
    The matching with the most hits and, among those, the least total distance
    (:func:`scipy.optimize.linear_sum_assignment` per connected group of overlapping
    candidates). It can only find more hits than ``greedy`` in crowded regions.

Counts (Eq. 2 of the paper for F1)::

    localization   TP = hits, FP = picks - hits, FN = particles - hits
                   precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN)
    classification among hits only: the confusion matrix of (true class, predicted class)
                   over matched pairs; per class c, TP = hits true c predicted c,
                   FP = hits predicted c but true another, FN = hits true c predicted another
    detection      per class c end to end: TP = particles of c hit by a pick predicted c,
                   FP = picks predicted c that are not such a hit, FN = particles of c not so hit

An undefined ratio (0 / 0) is NaN. Class names compare case-insensitively (SHREC'21 writes
``1QVR``, SHREC'19 ``1qvr``); tables report the ground truth's spelling. Ground-truth rows
flagged ``is_protein == False`` (SHREC'21 vesicles and fiducials) and picks of the class
``"background"`` are left out. When each table holds a single tomogram the tomogram names
are not compared; otherwise picks are matched only to particles of the same tomogram name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from tomoclass.errors import InputError
from tomoclass.io import schema
from tomoclass.metrics import json_number

log = logging.getLogger(__name__)

#: Class name of non-particle picks; such picks are not scored.
BACKGROUND = schema.BACKGROUND

REGIONS = ("sphere", "box")
MATCHINGS = ("greedy", "hungarian")


@dataclass(frozen=True)
class PickScore:
    """Result of :func:`score_picks`.

    Attributes
    ----------
    n_true, n_picks
        Scored ground-truth particles and picks.
    tp, fp, fn
        Localization counts (a hit is a true positive whatever its class).
    n_duplicates
        Picks inside the region of a particle already matched (included in ``fp``).
    precision, recall, f1
        Localization precision, recall and F1 (NaN when undefined).
    classification_accuracy
        Fraction of hits whose predicted class is the true one (NaN without hits).
    per_class
        One row per class (index: class name) with columns ``n_true``, ``n_picked``,
        ``found``, ``loc_recall``, ``cls_tp``, ``cls_fp``, ``cls_fn``, ``cls_precision``,
        ``cls_recall``, ``cls_f1`` (classification among hits), ``det_tp``, ``det_fp``,
        ``det_fn``, ``det_f1`` (localization and class both right).
    confusion
        Counts over hits: rows true class, columns predicted class.
    matches
        One row per hit: ``pick`` and ``truth`` (0-based row positions in the input
        tables, counting the rows left out too),
        ``distance`` (voxels), ``true_class``, ``pred_class``.
    region, matching
        The hit-region shape and matching rule used.
    """

    n_true: int
    n_picks: int
    tp: int
    fp: int
    fn: int
    n_duplicates: int
    precision: float
    recall: float
    f1: float
    classification_accuracy: float
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    matches: pd.DataFrame
    region: str
    matching: str

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN becomes None)."""
        return {
            "n_true": self.n_true,
            "n_picks": self.n_picks,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "n_duplicates": self.n_duplicates,
            "precision": json_number(self.precision),
            "recall": json_number(self.recall),
            "f1": json_number(self.f1),
            "classification_accuracy": json_number(self.classification_accuracy),
            "region": self.region,
            "matching": self.matching,
            "per_class": {
                str(name): {k: json_number(v) for k, v in row.items()}
                for name, row in self.per_class.to_dict(orient="index").items()
            },
            "confusion": {
                "classes_true": [str(c) for c in self.confusion.index],
                "classes_pred": [str(c) for c in self.confusion.columns],
                "counts": self.confusion.to_numpy().astype(int).tolist(),
            },
        }

    def to_markdown(self) -> str:
        """Human-readable report: localization summary, per-class table, confusion matrix."""
        lines = [
            f"Localization ({self.region} hit region, {self.matching} matching): "
            f"{self.n_picks} picks, {self.n_true} particles",
            f"  TP {self.tp}  FP {self.fp} (duplicates {self.n_duplicates})  FN {self.fn}",
            f"  precision {_fmt(self.precision)}  recall {_fmt(self.recall)}  F1 {_fmt(self.f1)}",
            f"Classification among hits: accuracy {_fmt(self.classification_accuracy)}",
            "",
            "| class | n_true | n_picked | found | loc_recall | cls_precision | cls_recall "
            "| cls_f1 | det_f1 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in self.per_class.iterrows():
            lines.append(
                f"| {name} | {int(r.n_true)} | {int(r.n_picked)} | {int(r.found)} "
                f"| {_fmt(r.loc_recall)} | {_fmt(r.cls_precision)} | {_fmt(r.cls_recall)} "
                f"| {_fmt(r.cls_f1)} | {_fmt(r.det_f1)} |"
            )
        lines += ["", "Confusion among hits (rows true, columns predicted):", ""]
        cols = [str(c) for c in self.confusion.columns]
        lines.append("| true \\ pred | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for name, row in self.confusion.iterrows():
            lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
        return "\n".join(lines) + "\n"


def score_picks(
    truth_df: pd.DataFrame,
    picks_df: pd.DataFrame,
    radii: float | Mapping[str, float],
    *,
    region: str = "sphere",
    matching: str = "greedy",
) -> PickScore:
    """Score picks against ground truth as SHREC'19/'21 did (see the module docstring).

    Parameters
    ----------
    truth_df
        Ground-truth particle table in the schema of :mod:`tomoclass.io.schema`
        (``tomogram``, ``x``, ``y``, ``z`` in voxels, ``class_name``; ``is_protein`` optional).
    picks_df
        Picks in the same schema; ``score`` orders them for greedy matching (NaN last).
    radii
        Hit radius in voxels of the tomogram: one number for every class, or a mapping
        class name -> radius (case-insensitive) that covers every ground-truth class
        (the key ``"*"`` stands for every class not named).
    region
        ``"sphere"`` or ``"box"``.
    matching
        ``"greedy"`` or ``"hungarian"``.

    Returns
    -------
    PickScore

    Raises
    ------
    InputError
        A required column is missing, a coordinate is not finite, a radius is missing or
        not positive, or the option values are unknown.
    """
    if region not in REGIONS:
        raise InputError(f"unknown hit region {region!r}; use one of {REGIONS}", field="region")
    if matching not in MATCHINGS:
        raise InputError(f"unknown matching {matching!r}; use one of {MATCHINGS}", field="matching")
    truth = prepare_table(truth_df, "ground truth")
    picks = prepare_table(picks_df, "picks")
    if schema.IS_PROTEIN in truth.columns:
        truth = truth[truth[schema.IS_PROTEIN].fillna(True).astype(bool)]
    picks = picks[picks["_key"] != BACKGROUND]

    truth_radius = radii_for(truth, radii)
    spelling = _spelling(truth, picks)
    mismatch = class_mismatch(truth, picks)
    if mismatch:
        log.warning("%s", mismatch)
    matched_pick, matched_truth, distances, n_duplicates = _match_all(
        truth, picks, truth_radius, region, matching)
    tp = len(matched_pick)
    n_true, n_picks = len(truth), len(picks)
    fp, fn = n_picks - tp, n_true - tp
    matches = pd.DataFrame(
        {
            "pick": matched_pick,
            "truth": matched_truth,
            "distance": np.asarray(distances, float),
            "true_class": truth.loc[matched_truth, "_key"].map(spelling).to_numpy(),
            "pred_class": picks.loc[matched_pick, "_key"].map(spelling).to_numpy(),
        }
    )
    per_class, confusion = _class_tables(truth, picks, matches, spelling)
    correct = int((matches["true_class"] == matches["pred_class"]).sum())
    return PickScore(
        n_true=n_true,
        n_picks=n_picks,
        tp=tp,
        fp=fp,
        fn=fn,
        n_duplicates=n_duplicates,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        classification_accuracy=_ratio(correct, tp),
        per_class=per_class,
        confusion=confusion,
        matches=matches,
        region=region,
        matching=matching,
    )


def _tomogram_groups(truth: pd.DataFrame, picks: pd.DataFrame) -> list[tuple[Any, Any, Any]]:
    """(tomogram, truth index, picks index) per tomogram; one group when both hold one."""
    same_tomogram = truth[schema.TOMOGRAM].nunique() <= 1 and picks[schema.TOMOGRAM].nunique() <= 1
    if same_tomogram:
        return [(None, truth.index, picks.index)]
    return [
        (
            name,
            truth.index[truth[schema.TOMOGRAM] == name],
            picks.index[picks[schema.TOMOGRAM] == name],
        )
        for name in sorted(set(truth[schema.TOMOGRAM]) | set(picks[schema.TOMOGRAM]))
    ]


def _match_all(truth: pd.DataFrame, picks: pd.DataFrame, truth_radius: pd.Series, region: str,
               matching: str) -> tuple[list, list, list[float], int]:
    """Hits of every tomogram: (pick labels, truth labels, distances, duplicate picks)."""
    matched_pick: list = []
    matched_truth: list = []
    distances: list[float] = []
    n_duplicates = 0
    for _, t_idx, p_idx in _tomogram_groups(truth, picks):
        if len(t_idx) == 0 or len(p_idx) == 0:
            continue
        t_xyz = truth.loc[t_idx, list(schema.COORDS)].to_numpy(float)
        p_xyz = picks.loc[p_idx, list(schema.COORDS)].to_numpy(float)
        r = truth_radius.loc[t_idx].to_numpy(float)
        pairs, dist = _candidate_pairs(p_xyz, t_xyz, r, region)
        if matching == "greedy":
            order = _score_order(picks.loc[p_idx, schema.SCORE].to_numpy(float))
            pi, ti, dd, dup = _match_greedy(pairs, dist, order, len(p_idx))
        else:
            pi, ti, dd = _match_hungarian(pairs, dist, len(p_idx), len(t_idx))
            covered = np.zeros(len(p_idx), bool)
            covered[pairs[:, 0]] = True
            hit = np.zeros(len(p_idx), bool)
            hit[pi] = True
            dup = int(np.count_nonzero(covered & ~hit))
        matched_pick += list(p_idx[pi])
        matched_truth += list(t_idx[ti])
        distances += list(dd)
        n_duplicates += dup
    return matched_pick, matched_truth, distances, n_duplicates


def class_mismatch(truth: pd.DataFrame, picks: pd.DataFrame) -> str | None:
    """One line when picks carry class names the ground truth does not have, else None.

    Names are compared case-insensitively; picks without a class and background picks are
    not counted. Such picks can be localization hits but never correctly classified.
    """
    t_keys = set(truth[schema.CLASS_NAME].fillna("").astype(str).str.casefold()) - {""}
    p_names = picks[schema.CLASS_NAME].fillna("").astype(str)
    p_names = p_names[(p_names != "") & (p_names.str.casefold() != BACKGROUND)]
    foreign = sorted({n for n in p_names if n.casefold() not in t_keys})
    if not foreign or not t_keys:
        return None
    n_rows = int(p_names.str.casefold().isin({f.casefold() for f in foreign}).sum())

    def show(names: Sequence[str]) -> str:
        return ", ".join(list(names)[:5]) + (", ..." if len(names) > 5 else "")

    return (f"{n_rows} of {len(p_names)} picks have class names the ground truth does not have "
            f"({show(foreign)}; truth: {show(sorted(set(truth[schema.CLASS_NAME].astype(str))))}"
            "): they can never count as correctly classified; rename the classes to match")


def prepare_table(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """``df`` as the scoring reads it: checked coordinates, tomogram, score and class columns.

    Adds ``_key``, the case-folded class name. Raises :class:`InputError` naming the column when
    a coordinate or the class name is missing, or a coordinate is not a finite number.
    """
    required = (*schema.COORDS, schema.CLASS_NAME)
    for col in required:
        if col not in df.columns:
            raise InputError(f"{what} table has no column '{col}'", field=col)
    out = df.reset_index(drop=True)
    if schema.TOMOGRAM not in out.columns:
        out[schema.TOMOGRAM] = ""
    if schema.SCORE not in out.columns:
        out[schema.SCORE] = np.nan
    out[schema.TOMOGRAM] = out[schema.TOMOGRAM].fillna("").astype(str)
    for col in schema.COORDS:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(float))
        if bad.any():
            row = out.index[np.flatnonzero(bad)[0]]
            raise InputError(f"{what} row {row}: coordinate is not a finite number", field=col)
        out[col] = values.astype(float)
    out[schema.SCORE] = pd.to_numeric(out[schema.SCORE], errors="coerce")
    out[schema.CLASS_NAME] = out[schema.CLASS_NAME].fillna("").astype(str)
    out["_key"] = out[schema.CLASS_NAME].str.casefold()
    return out


def radii_for(truth: pd.DataFrame, radii: float | Mapping[str, float]) -> pd.Series:
    """Each row's radius from one number or ``{class: radius}`` (``"*"``: any other class).

    ``truth`` is a :func:`prepare_table` table (its ``_key`` column). Raises
    :class:`InputError` for a class without a radius or a radius that is not positive.
    """
    if isinstance(radii, Mapping):
        table = {str(k).casefold(): float(v) for k, v in radii.items()}
        if "*" in table:
            table.update({k: table["*"] for k in set(truth["_key"]) - set(table)})
        missing = sorted(set(truth["_key"]) - set(table))
        if missing:
            raise InputError(
                f"no hit radius for class(es) {', '.join(missing)}; give one per class "
                "or a single radius",
                field="radius",
            )
        r = truth["_key"].map(table).astype(float)
    else:
        r = pd.Series(float(radii), index=truth.index)
    if len(r) and not (np.isfinite(r.to_numpy()).all() and (r.to_numpy() > 0).all()):
        raise InputError("hit radii must be positive numbers of voxels", field="radius")
    return r


def _spelling(truth: pd.DataFrame, picks: pd.DataFrame) -> dict[str, str]:
    """Map case-folded class key -> display name (the ground truth's spelling first)."""
    names: dict[str, str] = {}
    for df in (truth, picks):
        for key, name in zip(df["_key"], df[schema.CLASS_NAME], strict=True):
            names.setdefault(key, name)
    return names


def _candidate_pairs(
    p_xyz: np.ndarray, t_xyz: np.ndarray, r: np.ndarray, region: str
) -> tuple[np.ndarray, np.ndarray]:
    """All (pick, truth) index pairs with the pick inside the truth's region.

    Returns ``pairs`` (M, 2) int and their Euclidean distances (M,).
    """
    r_max = float(r.max())
    # A box of half-edge r reaches sqrt(3) r from its centre.
    reach = r_max * (math.sqrt(3.0) if region == "box" else 1.0)
    tree = cKDTree(t_xyz)
    hits = tree.query_ball_point(p_xyz, reach + 1e-9)
    pi = np.fromiter((i for i, h in enumerate(hits) for _ in h), int)
    ti = np.fromiter((j for h in hits for j in h), int)
    delta = p_xyz[pi] - t_xyz[ti]
    dist = np.sqrt((delta**2).sum(axis=1)) if len(pi) else np.zeros(0)
    if region == "sphere":
        inside = dist <= r[ti] + 1e-9
    else:
        inside = np.abs(delta).max(axis=1, initial=0.0) <= r[ti] + 1e-9
    return np.stack([pi[inside], ti[inside]], axis=1), dist[inside]


def _score_order(scores: np.ndarray) -> np.ndarray:
    key = np.where(np.isnan(scores), -np.inf, -scores)
    return np.argsort(key, kind="stable")


def _match_greedy(
    pairs: np.ndarray, dist: np.ndarray, order: np.ndarray, n_picks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    by_pick: list[list[tuple[float, int]]] = [[] for _ in range(n_picks)]
    for (p, t), d in zip(pairs, dist, strict=True):
        by_pick[p].append((float(d), int(t)))
    taken: set[int] = set()
    pi, ti, dd = [], [], []
    duplicates = 0
    for p in order:
        cands = sorted(by_pick[p])
        free = [(d, t) for d, t in cands if t not in taken]
        if free:
            d, t = free[0]
            taken.add(t)
            pi.append(p)
            ti.append(t)
            dd.append(d)
        elif cands:
            duplicates += 1
    return np.asarray(pi, int), np.asarray(ti, int), np.asarray(dd, float), duplicates


def _match_hungarian(
    pairs: np.ndarray, dist: np.ndarray, n_picks: int, n_truth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(pairs) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    # Bipartite graph: nodes 0..n_picks-1 are picks, n_picks.. are particles.
    n = n_picks + n_truth
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], n_picks + pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    pi_all, ti_all, dd_all = [], [], []
    edge_label = label[pairs[:, 0]]
    for comp in np.unique(edge_label):
        sel = edge_label == comp
        p_nodes = np.unique(pairs[sel, 0])
        t_nodes = np.unique(pairs[sel, 1])
        p_pos = {p: i for i, p in enumerate(p_nodes)}
        t_pos = {t: j for j, t in enumerate(t_nodes)}
        # A non-edge costs more than any full set of edges, so the assignment first
        # maximises the number of real edges, then minimises their total distance.
        big = 1.0 + float(dist[sel].sum()) + 1.0
        cost = np.full((len(p_nodes), len(t_nodes)), big)
        for (p, t), d in zip(pairs[sel], dist[sel], strict=True):
            cost[p_pos[p], t_pos[t]] = d
        rows, cols = linear_sum_assignment(cost)
        real = cost[rows, cols] < big
        pi_all += list(p_nodes[rows[real]])
        ti_all += list(t_nodes[cols[real]])
        dd_all += list(cost[rows[real], cols[real]])
    return np.asarray(pi_all, int), np.asarray(ti_all, int), np.asarray(dd_all, float)


def _class_tables(
    truth: pd.DataFrame, picks: pd.DataFrame, matches: pd.DataFrame, spelling: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    true_keys = list(dict.fromkeys(sorted(truth["_key"])))
    pick_keys = [k for k in dict.fromkeys(sorted(picks["_key"])) if k not in true_keys]
    keys = true_keys + pick_keys
    names = [spelling[k] for k in keys]
    mt = matches["true_class"].map(lambda s: s.casefold()).to_numpy()
    mp = matches["pred_class"].map(lambda s: s.casefold()).to_numpy()
    rows = []
    for k in keys:
        n_true = int((truth["_key"] == k).sum())
        n_picked = int((picks["_key"] == k).sum())
        found = int((mt == k).sum())
        cls_tp = int(((mt == k) & (mp == k)).sum())
        cls_fp = int(((mt != k) & (mp == k)).sum())
        cls_fn = int(((mt == k) & (mp != k)).sum())
        det_tp = cls_tp
        det_fp = n_picked - cls_tp
        det_fn = n_true - cls_tp
        rows.append(
            {
                "n_true": n_true,
                "n_picked": n_picked,
                "found": found,
                "loc_recall": _ratio(found, n_true),
                "cls_tp": cls_tp,
                "cls_fp": cls_fp,
                "cls_fn": cls_fn,
                "cls_precision": _ratio(cls_tp, cls_tp + cls_fp),
                "cls_recall": _ratio(cls_tp, cls_tp + cls_fn),
                "cls_f1": _ratio(2 * cls_tp, 2 * cls_tp + cls_fp + cls_fn),
                "det_tp": det_tp,
                "det_fp": det_fp,
                "det_fn": det_fn,
                "det_f1": _ratio(2 * det_tp, 2 * det_tp + det_fp + det_fn),
            }
        )
    per_class = pd.DataFrame(rows, index=pd.Index(names, name="class"))
    confusion = pd.DataFrame(
        0, index=pd.Index(names, name="true"), columns=pd.Index(names, name="pred"), dtype=int
    )
    for t, p in zip(matches["true_class"], matches["pred_class"], strict=True):
        confusion.loc[spelling[t.casefold()], spelling[p.casefold()]] += 1
    return per_class, confusion


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
