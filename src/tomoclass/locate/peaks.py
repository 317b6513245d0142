"""Turn per-class score maps into a particle table: peaks, non-maximum suppression, classes.

Rules (all distances in voxels of the tomogram):

1. *Objectness* at each grid point is ``1 - P(background)``: the probability that the box
   centred there holds a particle of any class. Localising on it rather than on each class
   map keeps a particle whose probability is split between similar classes.
2. Candidates are the grid points that are local maxima of objectness over their 3x3x3
   neighbourhood and reach ``threshold``.
3. Each candidate takes the class with the highest probability there (background excluded)
   and that class's radius.
4. Greedy non-maximum suppression: candidates in order of decreasing objectness; one is
   kept unless a kept pick lies closer than ``separation * max(r_candidate, r_kept)``
   (``separation`` 1 by default). Touching particles (centres ``r_a + r_b`` apart) both
   survive; a second maximum within a radius of the first does not. Two maxima on opposite
   sides of one particle's centre can lie more than a radius apart and both survive: a
   ``separation`` above 1 removes them where particles are sparse, at the cost of real
   neighbours closer than that (``docs/locate.md`` measures both).
5. Sub-grid position: the objectness-weighted centroid of the connected region around the
   peak where objectness exceeds halfway between the threshold and the peak, within the
   class radius. On a symmetric peak or plateau this is its centre.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from tomoclass.errors import InputError
from tomoclass.io import schema
from tomoclass.locate.geometry import ScoreMaps

#: Name of the non-particle class the classifier must have.
BACKGROUND = schema.BACKGROUND


def find_peaks(
    maps: ScoreMaps,
    radii: float | Mapping[str, float],
    *,
    threshold: float = 0.5,
    background: str = BACKGROUND,
    tomogram_name: str = "",
    separation: float = 1.0,
) -> pd.DataFrame:
    """Pick particles from score maps (see the module docstring for the rules).

    Parameters
    ----------
    maps
        Score maps from :func:`tomoclass.locate.score_tomogram`.
    radii
        Particle radius in voxels: one number for all classes, or a mapping class name ->
        radius (case-insensitive) covering every non-background class.
    threshold
        Minimum objectness ``1 - P(background)`` of a pick, in [0, 1].
    background
        Name of the background class (case-insensitive).
    tomogram_name
        Value of the ``tomogram`` column.
    separation
        Rule 4: a pick closer than ``separation * max(r_a, r_b)`` to a stronger one is
        suppressed; positive.

    Returns
    -------
    pandas.DataFrame
        Particle table in the :mod:`tomoclass.io.schema` schema, best first: ``x, y, z`` in
        voxels (sub-voxel), ``class_name``, ``score`` (objectness), angles NaN,
        ``is_protein`` True, plus ``class_score`` (the class's probability at the peak).

    Raises
    ------
    InputError
        No background class, a missing or non-positive radius, a threshold outside [0, 1].
    """
    bg, particle_idx, class_radius = _classes(maps.class_names, radii, threshold, background,
                                              separation)
    probs = maps.probabilities
    objectness = 1.0 - probs[bg]
    stride = np.array(maps.stride, float)
    is_max = ndimage.maximum_filter(objectness, size=3, mode="nearest") == objectness
    cand = np.argwhere(is_max & (objectness >= threshold))
    idx, cls, score, class_score = _select(
        cand * stride, probs[(slice(None), *cand.T)].T, bg, particle_idx, class_radius,
        threshold, separation)
    zyx = [_refine(objectness, cand[i], s, threshold, class_radius[c] / stride) * stride
           for i, c, s in zip(idx, cls, score, strict=True)]
    return _table(zyx, [maps.class_names[c] for c in cls], score, class_score, tomogram_name)


def picks_from_boxes(
    zyx: np.ndarray,
    probabilities: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    radii: float | Mapping[str, float],
    *,
    threshold: float = 0.5,
    background: str = BACKGROUND,
    tomogram_name: str = "",
    separation: float = 1.0,
) -> pd.DataFrame:
    """Pick particles among classified boxes at arbitrary centres (``method="candidates"``).

    Rules 1, 3 and 4 of the module docstring on the boxes instead of grid maxima: a box
    whose objectness ``1 - P(background)`` reaches ``threshold`` is a candidate, takes its
    most probable particle class and that class's radius, and greedy non-maximum suppression
    keeps it unless a stronger kept pick lies closer than
    ``separation * max(r_candidate, r_kept)``.
    Positions are ``zyx`` as given (:attr:`Candidates.centres` in :func:`locate`: sub-voxel).

    Parameters
    ----------
    zyx
        (N, 3) box centres, voxels (z, y, x).
    probabilities
        (N, K) softmax of the classifier on those boxes.
    class_names, radii, threshold, background, tomogram_name, separation
        As for :func:`find_peaks`.

    Returns
    -------
    pandas.DataFrame
        As :func:`find_peaks`.
    """
    names = tuple(str(n) for n in class_names)
    bg, particle_idx, class_radius = _classes(names, radii, threshold, background, separation)
    zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
    probs = np.asarray(probabilities, dtype=np.float32).reshape(len(zyx), len(names))
    idx, cls, score, class_score = _select(zyx, probs, bg, particle_idx, class_radius,
                                           threshold, separation)
    return _table(zyx[idx], [names[c] for c in cls], score, class_score, tomogram_name)


def suppress_picks(
    picks: pd.DataFrame,
    radii: float | Mapping[str, float],
    *,
    separation: float = 1.0,
) -> pd.DataFrame:
    """Rule 4 again on an existing particle table: the picks non-maximum suppression keeps.

    Picks in order of decreasing ``score`` (ties in table order) are kept unless a kept pick
    of the same tomogram lies closer than ``separation * max(r_a, r_b)``, the radii of the
    two picks' classes. Try another ``separation`` on picks already made without locating
    again; picks of the class ``background`` are left out, as scoring leaves them out. On
    picks made at separation 1, a larger separation here removes what it would have removed
    while locating, except that a candidate separation 1 dropped is not brought back.

    Returns
    -------
    pandas.DataFrame
        The kept rows of ``picks``, best first, with their original index.

    Raises
    ------
    InputError
        A table without coordinates, ``class_name`` or ``score``, a class without a radius, a
        separation that is not positive.
    """
    for col in (*schema.COORDS, schema.CLASS_NAME, schema.SCORE):
        if col not in picks.columns:
            raise InputError(f"picks table has no column '{col}'", field=col)
    particles = picks[picks[schema.CLASS_NAME].astype(str).str.casefold()
                      != BACKGROUND.casefold()]
    _check_separation(separation)
    if particles.empty:
        return particles
    names = sorted({str(c) for c in particles[schema.CLASS_NAME]})
    _, _, class_radius = _classes((*names, BACKGROUND), radii, 0.0, BACKGROUND, separation)
    order = np.argsort(-pd.to_numeric(particles[schema.SCORE], errors="coerce")
                       .fillna(-np.inf).to_numpy(float), kind="stable")
    ordered = particles.iloc[order]
    cls = ordered[schema.CLASS_NAME].astype(str).map({n: i for i, n in enumerate(names)}
                                                     ).to_numpy(int)
    zyx = ordered[[schema.Z, schema.Y, schema.X]].to_numpy(float)
    tomograms = (ordered[schema.TOMOGRAM].astype(str).to_numpy()
                 if schema.TOMOGRAM in ordered.columns else np.full(len(ordered), ""))
    keep = np.zeros(len(ordered), bool)
    for t in dict.fromkeys(tomograms):
        rows = np.flatnonzero(tomograms == t)
        kept = _nms(zyx[rows], separation * class_radius[cls[rows]])
        keep[rows[kept]] = True
    return ordered[keep]


def _check_separation(separation: float) -> None:
    if not (math.isfinite(separation) and separation > 0):
        raise InputError(f"separation must be a positive number, got {separation}",
                         field="separation")


def _classes(names: tuple[str, ...], radii: float | Mapping[str, float], threshold: float,
             background: str, separation: float = 1.0) -> tuple[int, np.ndarray, np.ndarray]:
    """Check the threshold, separation and background class; return class indices and radii.

    Returns the background's index, the particle classes' indices and each class's radius
    (NaN for the background).
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must lie in [0, 1], got {threshold}", field="threshold")
    _check_separation(separation)
    keys = [n.casefold() for n in names]
    if background.casefold() not in keys:
        raise InputError(
            f"the classifier has no '{background}' class (classes: {', '.join(names)}); train "
            "one on a dataset with background boxes (tomoclass extract ... --background N "
            "--background-offcentre N) to locate particles",
            field="class_names",
        )
    bg = keys.index(background.casefold())
    particle_idx = np.array([i for i in range(len(keys)) if i != bg])
    return bg, particle_idx, _class_radii(names, particle_idx, radii)


def _select(positions: np.ndarray, probs: np.ndarray, bg: int, particle_idx: np.ndarray,
            class_radius: np.ndarray, threshold: float, separation: float = 1.0):
    """Rules 1, 3 and 4 over candidates at ``positions`` (M, 3) with probabilities (M, K).

    Returns the kept candidates' indices (best first), their class indices, objectness and
    class probability.
    """
    objectness = 1.0 - probs[:, bg]
    sel = np.flatnonzero(objectness >= threshold)
    # best first; equal scores in input order (stable), so the result never depends on ties
    sel = sel[np.argsort(-objectness[sel], kind="stable")]
    particle_probs = probs[sel][:, particle_idx]
    best = particle_probs.argmax(axis=1)
    cls = particle_idx[best]
    kept = _nms(positions[sel], separation * class_radius[cls]) if len(sel) else []
    return (sel[kept], cls[kept], objectness[sel][kept],
            particle_probs[np.arange(len(sel)), best][kept])


def _table(zyx, class_names, scores, class_scores, tomogram_name: str) -> pd.DataFrame:
    columns = [*schema.PARTICLE_COLUMNS, "class_score"]
    if len(class_names) == 0:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
    zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
    n = len(zyx)
    return pd.DataFrame(
        {
            schema.TOMOGRAM: [tomogram_name] * n,
            schema.X: zyx[:, 2],
            schema.Y: zyx[:, 1],
            schema.Z: zyx[:, 0],
            schema.CLASS_NAME: list(class_names),
            schema.ROT: np.full(n, np.nan),
            schema.TILT: np.full(n, np.nan),
            schema.PSI: np.full(n, np.nan),
            schema.SCORE: np.asarray(scores, dtype=np.float64),
            schema.IS_PROTEIN: np.ones(n, bool),
            "class_score": np.asarray(class_scores, dtype=np.float64),
        },
        columns=columns,
    )


def _class_radii(
    names: tuple[str, ...], particle_idx: np.ndarray, radii: float | Mapping[str, float]
) -> np.ndarray:
    out = np.full(len(names), np.nan)
    if isinstance(radii, Mapping):
        table = {str(k).casefold(): float(v) for k, v in radii.items()}
        missing = [names[i] for i in particle_idx if names[i].casefold() not in table]
        if missing:
            raise InputError(
                f"no particle radius for class(es) {', '.join(missing)}", field="radius"
            )
        for i in particle_idx:
            out[i] = table[names[i].casefold()]
    else:
        out[particle_idx] = float(radii)
    if not (np.isfinite(out[particle_idx]).all() and (out[particle_idx] > 0).all()):
        raise InputError("particle radii must be positive numbers of voxels", field="radius")
    return out


def _nms(positions: np.ndarray, radius: np.ndarray) -> list[int]:
    """Greedy NMS over candidates already sorted best first; returns kept indices.

    ``i`` suppresses a later ``j`` when ``|p_i - p_j| < max(r_i, r_j)``.
    """
    tree = cKDTree(positions)
    r_max = float(radius.max())
    suppressed = np.zeros(len(positions), bool)
    kept = []
    for i in range(len(positions)):
        if suppressed[i]:
            continue
        kept.append(i)
        for j in tree.query_ball_point(positions[i], r_max):
            if j > i and not suppressed[j]:
                d = float(np.linalg.norm(positions[j] - positions[i]))
                if d < max(radius[i], radius[j]):
                    suppressed[j] = True
    return kept


def _refine(
    objectness: np.ndarray,
    peak: np.ndarray,
    peak_value: float,
    threshold: float,
    r_cells: np.ndarray,
) -> np.ndarray:
    """Objectness-weighted centroid (grid units) of the peak's region; see module rule 5."""
    lo = np.maximum(peak - np.ceil(r_cells).astype(int), 0)
    hi = np.minimum(peak + np.ceil(r_cells).astype(int) + 1, objectness.shape)
    sub = objectness[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    grids = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    inside = sum(((g - p) / r) ** 2 for g, p, r in zip(grids, peak, r_cells, strict=True)) <= 1.0
    cut = 0.5 * (peak_value + threshold)
    mask = inside & (sub >= cut)
    labels, _ = ndimage.label(mask)
    mask = labels == labels[tuple(peak - lo)]
    weight = np.where(mask, sub - cut, 0.0)
    if weight.sum() <= 0:
        return peak.astype(float)
    return np.array([(g * weight).sum() / weight.sum() for g in grids])


def _dtype(col: str) -> str:
    if col in (schema.TOMOGRAM, schema.CLASS_NAME):
        return "object"
    if col == schema.IS_PROTEIN:
        return "bool"
    return "float64"
