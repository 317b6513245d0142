"""The CAM score: how much of a class activation map falls on the particle itself.

For one subtomogram with activation map ``A`` (upsampled to the input size) and the
particle's ground-truth mask ``M`` (from the noise-free simulated volume),

    score = sum(relu(A)[M]) / sum(relu(A))

the share of the map's positive energy that lies inside the particle (the
"energy-based pointing game" measure of Wang et al., Score-CAM, 2020). 1 means all the
evidence the net uses sits on the particle; a map spread evenly over the box scores the
mask's volume fraction. A map with no positive value has no score (NaN, left out of means).

The mask (:func:`particle_mask`)
--------------------------------
1. Background level ``b``: the median of the box's outer one-voxel shell.
2. Contrast: ``d = clean - b``, sign-flipped if its largest excursion is negative, so the
   particle is positive whichever contrast convention the simulator used.
3. Peak: the maximum of ``d`` inside the central ball of radius ``D / 4`` (the particle is
   centred; a neighbour reaching into the box does not set the level).
4. ``M = d >= level * peak``, reduced to the 26-connected component that holds the centre
   voxel, or the component nearest the centre when the centre itself is below the level
   (hollow particles). Neighbours are thereby excluded.

The default ``level`` = 0.025 is calibrated on real data: for the ten SHREC'19 proteins
with both a noise-free 10 Å map and a SHREC'19 reference mask, it gives masks of the
reference masks' volume (ratio median 1.00, range 0.96-1.02; 0.2 would give 0.55).
See ``benchmarks/cam_mask_level.py`` and ``benchmarks/results/cam_mask_level.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from torch import nn

from tomoclass.cam.maps import class_activation_maps
from tomoclass.errors import InputError

#: Default mask threshold, as a fraction of the particle's peak (background-subtracted)
#: density; matches the volume of the SHREC'19 reference masks (see the module docstring).
DEFAULT_MASK_LEVEL = 0.025


def particle_mask(clean: np.ndarray, level: float = DEFAULT_MASK_LEVEL) -> np.ndarray:
    """Binary mask of the centred particle in a noise-free subtomogram.

    Parameters
    ----------
    clean
        Noise-free density (D, H, W), (z, y, x), any contrast sign and offset.
    level
        Threshold as a fraction of the peak density above background, in (0, 1).

    Returns
    -------
    numpy.ndarray
        bool (D, H, W); all False when the volume is flat (no particle).
    """
    c = np.asarray(clean, dtype=np.float64)
    if c.ndim != 3:
        raise InputError(f"clean volume must be (D, H, W), got shape {c.shape}")
    if not 0.0 < level < 1.0:
        raise InputError(f"mask level must be in (0, 1), got {level}", field="level")
    shell = np.concatenate(
        [c[[0, -1]].ravel(), c[:, [0, -1]].ravel(), c[:, :, [0, -1]].ravel()]
    )
    d = c - np.median(shell)
    if -d.min() > d.max():
        d = -d
    centre = np.array(c.shape) // 2
    zz, yy, xx = np.indices(c.shape, sparse=True)
    r2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    inner = r2 <= (min(c.shape) / 4.0) ** 2
    peak = d[inner].max()
    if not peak > 0:
        return np.zeros(c.shape, dtype=bool)
    above = d >= level * peak
    labels, count = ndimage.label(above, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return above
    keep = labels[tuple(centre)]
    if keep == 0:
        dist = np.where(labels > 0, r2, np.iinfo(np.int64).max)
        keep = labels.flat[int(np.argmin(dist))]
    return labels == keep


def energy_fraction(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive CAM energy inside ``mask``: sum(relu(cam)[mask]) / sum(relu(cam)).

    Parameters
    ----------
    cam
        Activation map (D, H, W) at the mask's resolution.
    mask
        bool (D, H, W).

    Returns
    -------
    float
        In [0, 1]; NaN when the map has no positive value.
    """
    a = np.asarray(cam, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if a.shape != m.shape:
        raise InputError(f"CAM shape {a.shape} differs from mask shape {m.shape}")
    pos = np.maximum(a, 0.0)
    total = pos.sum()
    return float(pos[m].sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class CamScore:
    """CAM scores of one model on a set of particles.

    Attributes
    ----------
    per_particle
        float64 (N,): energy fraction inside the mask (NaN: no positive CAM or empty mask).
    mask_fraction
        float64 (N,): the mask's volume fraction of the box (the score of a uniform map).
    labels
        int64 (N,): the true class of each particle.
    class_names
        Names of the C classes.
    method
        "cam" or "grad-cam".
    target
        "true" (map of the true class) or "predicted" (map of the predicted class).
    mask_level
        The threshold used by :func:`particle_mask`.
    """

    per_particle: np.ndarray
    mask_fraction: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    method: str
    target: str
    mask_level: float

    def per_class(self) -> np.ndarray:
        """float64 (C,): mean score of each class's particles (NaN when it has none scored)."""
        out = np.full(len(self.class_names), np.nan)
        for c in range(len(self.class_names)):
            v = self.per_particle[(self.labels == c) & np.isfinite(self.per_particle)]
            if v.size:
                out[c] = v.mean()
        return out

    @property
    def mean(self) -> float:
        """Unweighted mean of :meth:`per_class` over the classes that have a score."""
        v = self.per_class()
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")

    @property
    def mean_mask_fraction(self) -> float:
        """Mean mask volume fraction: what a map spread evenly over the box would score."""
        v = self.mask_fraction[np.isfinite(self.mask_fraction)]
        return float(v.mean()) if v.size else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN -> None); per-particle values are not included."""

        def f(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {
            "method": self.method,
            "target": self.target,
            "mask_level": self.mask_level,
            "n": int(len(self.per_particle)),
            "n_scored": int(np.isfinite(self.per_particle).sum()),
            "mean": f(self.mean),
            "mean_mask_fraction": f(self.mean_mask_fraction),
            "per_class": {
                name: f(v) for name, v in zip(self.class_names, self.per_class(), strict=True)
            },
        }


def cam_score(
    model: nn.Module,
    inputs: Sequence[np.ndarray] | np.ndarray,
    clean: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    *,
    target: str = "true",
    mask_level: float = DEFAULT_MASK_LEVEL,
    batch_size: int = 16,
) -> CamScore:
    """Score where ``model`` looks on particles whose noise-free volumes are known.

    Parameters
    ----------
    model
        A tomoclass model (see :func:`tomoclass.cam.class_activation_maps`).
    inputs
        N subtomograms (D, H, W) as the model sees them; anything indexable by int
        (a memory-mapped array, a list).
    clean
        N noise-free volumes (D, H, W) of the same particles (``clean.npy`` of a dataset).
    labels
        int (N,): true class indices.
    class_names
        C class names.
    target
        "true": score the map of the true class (does the evidence for the right answer lie
        on the particle?); "predicted": the map of the predicted class.
    mask_level
        See :func:`particle_mask`.
    batch_size
        Particles per forward pass.

    Returns
    -------
    CamScore
    """
    if target not in ("true", "predicted"):
        raise InputError(f"target must be 'true' or 'predicted', got {target!r}")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if len(inputs) != n or len(clean) != n:
        raise InputError(
            f"{len(inputs)} inputs, {len(clean)} clean volumes and {n} labels: must be equal"
        )
    scores = np.full(n, np.nan)
    fractions = np.full(n, np.nan)
    method = None
    for start in range(0, n, max(1, batch_size)):
        idx = range(start, min(n, start + batch_size))
        xb = np.stack([np.asarray(inputs[i], dtype=np.float32).reshape(
            np.shape(inputs[i])[-3:]) for i in idx])
        cls = labels[start : start + len(idx)] if target == "true" else None
        res = class_activation_maps(model, xb, cls, batch_size=batch_size)
        method = res.method
        for j, i in enumerate(idx):
            mask = particle_mask(np.asarray(clean[i]), mask_level)
            if mask.shape != res.cam[j].shape:
                raise InputError(
                    f"clean volume {i} has shape {mask.shape}, input has {res.cam[j].shape}"
                )
            if mask.any():
                fractions[i] = mask.mean()
                scores[i] = energy_fraction(res.cam[j], mask)
    return CamScore(
        per_particle=scores,
        mask_fraction=fractions,
        labels=labels,
        class_names=tuple(class_names),
        method=method or "",
        target=target,
        mask_level=mask_level,
    )
