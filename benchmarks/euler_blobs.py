"""Shared by the Euler-convention checks (``pytom_euler_check.py``, ``deepfinder_euler_check.py``).

An asymmetric test object (four Gaussian blobs of different mass), the blobs' centroids after
another program has turned it, and the rotation that fits them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

#: Blob offsets from the box centre (x-first voxels) and their masses (1, 2, 3, 4).
BLOBS = np.array([(14, 0, 0), (0, 10, 0), (0, 0, 6), (-8, -8, 0)], dtype=float)


def blob_volume(n: int = 48) -> np.ndarray:
    """An x-first ``n``^3 volume of four Gaussian blobs of masses 1..4 (sigma 1 voxel)."""
    c = n // 2
    vol = np.zeros((n, n, n), np.float32)
    for mass, (dx, dy, dz) in enumerate(BLOBS.astype(int), 1):
        point = np.zeros_like(vol)
        point[c + dx, c + dy, c + dz] = mass
        vol += ndimage.gaussian_filter(point, 1.0)
    return vol


def blob_centroids(vol: np.ndarray) -> np.ndarray:
    """Centroids of the four blobs, ordered by mass (lightest first); raises if not four."""
    labels, count = ndimage.label(vol > vol.max() * 0.05)
    if count != len(BLOBS):
        raise RuntimeError(f"found {count} blobs, not {len(BLOBS)}")
    found = []
    for k in range(1, count + 1):
        w = vol * (labels == k)
        found.append((float(w.sum()), ndimage.center_of_mass(w)))
    return np.array([c for _, c in sorted(found)], dtype=float)


def fitted_rotation(before: np.ndarray, after: np.ndarray) -> Rotation:
    """The rotation taking the ``before`` points to ``after`` (centred: shift left free)."""
    rot, _ = Rotation.align_vectors(after - after.mean(0), before - before.mean(0))
    return rot


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) of the rotation ``a @ b.T``."""
    return float(np.degrees(Rotation.from_matrix(a @ b.T).magnitude()))
