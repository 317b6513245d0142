"""Euler-angle conventions of the table formats tomoclass reads, converted to RELION ZYZ.

tomoclass stores orientations as RELION's ``(rot, tilt, psi)`` in degrees, meaning what RELION
means by them. RELION's matrix of the angles is ``Euler_angles2matrix(rot, tilt, psi)``
(3dem/relion ``src/euler.cpp``; ``Euler::anglesToMatrix3`` of ``src/jaz/math/
Euler_angles_relion.h`` is the same matrix), ``A = Rz(-psi) @ Ry(-tilt) @ Rz(-rot)`` on
``(x, y, z)`` column vectors, i.e. ``Rotation.from_euler("ZYZ", [rot, tilt, psi]).inv()``.
``A`` is the *active* rotation that turns the reference into the particle: RELION's
tomography ``ParticleSet::getMatrix4x4`` (``src/jaz/tomography/particle_set.cpp``) "maps
coordinates from particle space to tomogram space" as ``pos + A @ (p - c)``, and RELION's
conventions page says the angles "rotate the reference into observations". A reference
feature at ``v`` (from the box centre) is at ``A @ v`` in the particle:
``particle(x) = reference(A.T @ x)``. copick's object-to-tomogram rotation of a pick is the
same matrix (``copick.util.relion.relion_rows_to_poses``). See ``docs/io.md``.

The SHREC'19/'21 and DeepFinder tables use PyTom's ZXZ triple ``(phi, psi, theta)``: phi about
z, theta about the new x, psi about the new z. Note the column order: the file stores phi, psi,
theta, not phi, theta, psi. They are converted assuming PyTom's triple describes the rotation
the way RELION's does (``Rotation.from_euler("ZXZ", [phi, theta, psi])`` and
``Rotation.from_euler("ZYZ", [rot, tilt, psi])`` are the same rotation); this is not checked
against PyTom's source.
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


def relion_matrix(rot, tilt, psi) -> np.ndarray:
    """RELION's matrix of its angles (degrees): the active reference -> particle rotation.

    ``Euler_angles2matrix(rot, tilt, psi)`` of RELION's ``src/euler.cpp``, equal to
    ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv().as_matrix()``.

    Parameters
    ----------
    rot, tilt, psi
        Degrees: scalars, or arrays of one shape ``(...)``.

    Returns
    -------
    numpy.ndarray
        ``(..., 3, 3)`` acting on ``(x, y, z)`` column vectors: a reference feature at ``v``
        (from the box centre) is at ``A @ v`` in the particle.
    """
    rot, tilt, psi = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                           for v in (rot, tilt, psi)))
    zyz = np.stack([rot.ravel(), tilt.ravel(), psi.ravel()], 1)
    m = Rotation.from_euler("ZYZ", zyz, degrees=True).inv().as_matrix()
    return m.reshape(rot.shape + (3, 3))


def relion_angles(matrices: np.ndarray) -> np.ndarray:
    """RELION ``(rot, tilt, psi)`` in degrees of active reference -> particle rotations.

    The inverse of :func:`relion_matrix` (RELION's ``Euler_matrix2angles``): tilt in [0, 180];
    at gimbal lock (tilt 0 or 180) one of the equivalent triples, without a warning.

    Parameters
    ----------
    matrices
        ``(..., 3, 3)`` rotations on ``(x, y, z)`` vectors.

    Returns
    -------
    numpy.ndarray
        ``(..., 3)`` degrees.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    flat = matrices.reshape(-1, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eul = Rotation.from_matrix(flat).inv().as_euler("ZYZ", degrees=True)
    return eul.reshape(matrices.shape[:-2] + (3,))
