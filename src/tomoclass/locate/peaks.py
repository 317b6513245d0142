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
   kept unless a kept pick lies closer than ``max(r_candidate, r_kept)``. Touching particles
   (centres ``r_a + r_b`` apart) both survive; a second maximum inside one particle does not.
5. Sub-grid position: the objectness-weighted centroid of the connected region around the
   peak where objectness exceeds halfway between the threshold and the peak, within the
   class radius. On a symmetric peak or plateau this is its centre.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from tomoclass.errors import InputError
from tomoclass.io import schema
from tomoclass.locate.scoring import ScoreMaps

#: Name of the non-particle class the classifier must have.
BACKGROUND = schema.BACKGROUND


def find_peaks(
    maps: ScoreMaps,
    radii: float | Mapping[str, float],
    *,
    threshold: float = 0.5,
    background: str = BACKGROUND,
    tomogram_name: str = "",
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
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must lie in [0, 1], got {threshold}", field="threshold")
    keys = [n.casefold() for n in maps.class_names]
    if background.casefold() not in keys:
        raise InputError(
            f"the classifier has no '{background}' class (classes: "
            f"{', '.join(maps.class_names)}); train it with background boxes "
            "(tomoclass.locate.background_boxes) to locate particles",
            field="class_names",
        )
    bg = keys.index(background.casefold())
    particle_idx = np.array([i for i in range(len(keys)) if i != bg])
    class_radius = _class_radii(maps.class_names, particle_idx, radii)

    probs = maps.probabilities
    objectness = 1.0 - probs[bg]
    stride = np.array(maps.stride, float)
    is_max = ndimage.maximum_filter(objectness, size=3, mode="nearest") == objectness
    cand = np.argwhere(is_max & (objectness >= threshold))
    columns = [*schema.PARTICLE_COLUMNS, "class_score"]
    if len(cand) == 0:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})

    cand_score = objectness[tuple(cand.T)]
    order = np.argsort(-cand_score, kind="stable")
    cand, cand_score = cand[order], cand_score[order]
    particle_probs = probs[particle_idx][(slice(None), *cand.T)]  # (K - 1, M)
    best = particle_probs.argmax(axis=0)
    cand_class = particle_idx[best]
    cand_class_score = particle_probs[best, np.arange(len(cand))]
    cand_r = class_radius[cand_class]
    kept = _nms(cand * stride, cand_r)

    rows = []
    for i in kept:
        zyx = _refine(objectness, cand[i], cand_score[i], threshold, cand_r[i] / stride) * stride
        rows.append(
            {
                schema.TOMOGRAM: tomogram_name,
                schema.X: float(zyx[2]),
                schema.Y: float(zyx[1]),
                schema.Z: float(zyx[0]),
                schema.CLASS_NAME: maps.class_names[cand_class[i]],
                schema.ROT: np.nan,
                schema.TILT: np.nan,
                schema.PSI: np.nan,
                schema.SCORE: float(cand_score[i]),
                schema.IS_PROTEIN: True,
                "class_score": float(cand_class_score[i]),
            }
        )
    return pd.DataFrame(rows, columns=columns)


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
