"""Bounds rules: which coordinates lie outside a tomogram, and when they look mis-scaled.

A coordinate (x, y, z voxels, 0-based) is inside a tomogram of size ``(z, y, x)`` when it lies
in ``[-0.5, n - 0.5)`` on every axis. Coordinates reaching :data:`OVERSHOOT_RATIO` times the
extent are likely in another pixel size (unbinned tilt-series pixels); errors then add
:data:`COORDS_ANGPIX_HINT`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Coordinates reaching this many times a tomogram's extent are likely in another pixel size.
OVERSHOOT_RATIO = 1.5
#: What an out-of-bounds error then adds (after "; ").
COORDS_ANGPIX_HINT = ("if the coordinates are in another pixel size (unbinned tilt-series "
                      "pixels), give it (--coords-angpix)")


def outside_tomogram(xyz: np.ndarray, shape_zyx: Sequence[int]) -> np.ndarray:
    """(N, 3) bool: which coordinates (x, y, z voxels) lie outside ``[-0.5, n - 0.5)``."""
    size = np.asarray(shape_zyx, dtype=np.float64)[::-1]
    xyz = np.asarray(xyz, dtype=np.float64)
    return (xyz < -0.5) | (xyz >= size - 0.5)


def overshoot(xyz: np.ndarray, shape_zyx: Sequence[int]) -> float:
    """Largest coordinate over the tomogram's extent, on the axes ``xyz`` has (x, y[, z])."""
    xyz = np.asarray(xyz, dtype=np.float64)
    size = np.asarray(shape_zyx, dtype=np.float64)[::-1][:xyz.shape[1]]
    return float(np.max(xyz.max(axis=0) / size))

