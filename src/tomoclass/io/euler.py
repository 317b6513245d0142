"""Euler-angle conventions of the table formats tomoclass reads, converted to RELION ZYZ.

tomoclass stores orientations as RELION's ``(rot, tilt, psi)`` in degrees: the *active* rotation
that turns the reference into the particle is ``R = Rz(rot) @ Ry(tilt) @ Rz(psi)`` (intrinsic
z-y'-z'': rot about z first, then tilt about the new y, then psi about the new z), acting on
``(x, y, z)`` column vectors. See ``docs/io.md`` for what is assumed per source format.

The SHREC'19/'21 and DeepFinder tables use PyTom's ZXZ triple ``(phi, psi, theta)``: the active
rotation ``R = Rz(phi) @ Rx(theta) @ Rz(psi)`` (phi about z, theta about the new x, psi about the
new z). Note the column order: the file stores phi, psi, theta, not phi, theta, psi.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation


def _convert(angles: np.ndarray, src: str, dst: str) -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    out = np.full_like(angles, np.nan)
    ok = np.all(np.isfinite(angles), axis=1)
    if ok.any():
        with warnings.catch_warnings():
            # Gimbal lock (tilt 0 or 180) has many equivalent triples: scipy picks one and warns.
            warnings.simplefilter("ignore", UserWarning)
            out[ok] = Rotation.from_euler(src, angles[ok], degrees=True).as_euler(dst, degrees=True)
    return out


def zxz_pytom_to_relion(phi: np.ndarray, psi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Convert PyTom ZXZ ``(phi, psi, theta)`` (degrees) to RELION ``(rot, tilt, psi)``.

    Parameters
    ----------
    phi, psi, theta
        Arrays of shape ``(n,)`` in degrees, as stored in SHREC / DeepFinder tables. Rows with
        any NaN give NaN.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 3)``: rot, tilt, psi in degrees (tilt in [0, 180]).
    """
    zxz = np.stack([np.asarray(phi, float), np.asarray(theta, float), np.asarray(psi, float)], 1)
    return _convert(zxz, "ZXZ", "ZYZ")


def relion_to_zxz_pytom(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zxz_pytom_to_relion`: returns ``(n, 3)`` columns ``phi, psi, theta``."""
    zyz = np.stack([np.asarray(rot, float), np.asarray(tilt, float), np.asarray(psi, float)], 1)
    zxz = _convert(zyz, "ZYZ", "ZXZ")  # (phi, theta, psi)
    return zxz[:, [0, 2, 1]]


def relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """The 3x3 active rotation (acting on ``(x, y, z)``) of RELION angles in degrees."""
    return Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix()
