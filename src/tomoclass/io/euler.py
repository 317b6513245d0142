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

Three simulator conventions feed the text tables tomoclass reads:

- **SHREC'21 text** (and PyTom's MicrographModeller, which wrote it; also tomoclass's own
  ``*_gt.txt``): ``class x y z a1 a2 a3`` where ``(a1, a2, a3)`` are the angles the simulator
  passed to ``voltools.transform(particle, rotation=(a1, a2, a3), rotation_order="szxz")``
  on an x-first array (``pytom/simulation/MicrographModeller.py``: ``p_angles = [theta, phi,
  psi]``, so the first column is the one in [0, 180]). Measured with voltools (whose
  ``rotation_matrix`` PyTom vendors unchanged; ``benchmarks/pytom_euler_check.py``): the
  reference feature at ``v`` lands at ``R @ v`` with ``R = Rotation.from_euler("ZXZ", [a1,
  a2, a3])``, i.e. ``R`` is RELION's ``A``. :func:`shrec21_to_relion` / :func:`relion_to_shrec21`.
- **SHREC'19 text**: ``pdb z y x a1 a2 a3`` (z first: the official evaluation script reads
  ``pdb_id, Z, Y, X, rot_1, rot_2, rot_3``), integers, written by a simulator that called
  PyTom's ``rotate(volume, a1, x=a2, z2=a3)`` (ZXZ: z1, x, z2; the middle column is the one in
  [0, 180]) on an array whose first axis is the tomogram's z. That frame and the sense of
  PyTom's rotate are not checked: :func:`shrec19_to_relion` reads ``(a1, a2, a3)`` as
  ``(phi, theta, psi)`` of :func:`zxz_pytom_to_relion`, an assumption.
- **DeepFinder XML**: ``phi psi the``, the angles DeepFinder gives its own
  ``deepfinder.utils.common.rotate_array(ref, (phi, psi, the))`` to turn a class's reference
  into the object it stamps at ``(x, y, z)`` (its target generation; z-first arrays).
  Measured with cryoet-deepfinder 0.2.1 (``benchmarks/deepfinder_euler_check.py``): the
  reference feature at ``v`` lands at ``R @ v`` with ``R = Rotation.from_euler("zxz", [phi,
  the, psi])`` (lower case: about the fixed axes; TOM's and PyTom's convention, phi about z,
  then the about x, then psi about z), i.e. ``R`` is RELION's ``A``.
  :func:`deepfinder_to_relion` / :func:`relion_to_deepfinder`. Before 2026-12-05 tomoclass read
  them by :func:`zxz_pytom_to_relion`, which the same check puts 9-178 degrees off (median 109).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation


def _convert(angles: np.ndarray, src: str, dst: str, invert: bool = False) -> np.ndarray:
    """``(n, 3)`` triples of scipy sequence ``src`` as ``dst``, in degrees.

    With ``invert``, the triples of the inverse rotation. Rows with a NaN give NaN.
    """
    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    out = np.full_like(angles, np.nan)
    ok = np.all(np.isfinite(angles), axis=1)
    if ok.any():
        with warnings.catch_warnings():
            # Gimbal lock (tilt 0 or 180) has many equivalent triples: scipy picks one and warns.
            warnings.simplefilter("ignore", UserWarning)
            r = Rotation.from_euler(src, angles[ok], degrees=True)
            out[ok] = (r.inv() if invert else r).as_euler(dst, degrees=True)
    return out


def _stack(*cols: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(c, dtype=np.float64).ravel() for c in cols], 1)


def zxz_pytom_to_relion(phi: np.ndarray, psi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Convert a ZXZ ``(phi, psi, theta)`` (degrees) to RELION ``(rot, tilt, psi)``.

    Read as RELION reads its triple: ``Rotation.from_euler("ZXZ", [phi, theta, psi])`` is the
    rotation of ``Rotation.from_euler("ZYZ", [rot, tilt, psi])``.

    The reading of SHREC'19 tables (:func:`shrec19_to_relion`, unverified). DeepFinder's
    ``phi psi the`` do not mean this (:func:`deepfinder_to_relion`, measured).

    Parameters
    ----------
    phi, psi, theta
        Arrays of shape ``(n,)`` in degrees. Rows with any NaN give NaN.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 3)``: rot, tilt, psi in degrees (tilt in [0, 180]).
    """
    return _convert(_stack(phi, theta, psi), "ZXZ", "ZYZ")


def relion_to_zxz_pytom(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zxz_pytom_to_relion`: returns ``(n, 3)`` columns ``phi, psi, theta``."""
    zxz = _convert(_stack(rot, tilt, psi), "ZYZ", "ZXZ")  # (phi, theta, psi)
    return zxz[:, [0, 2, 1]]


def shrec21_to_relion(a1: np.ndarray, a2: np.ndarray, a3: np.ndarray) -> np.ndarray:
    """SHREC'21 text angles (the three columns in file order, degrees) -> RELION ``(n, 3)``.

    The columns are the angles PyTom's simulator gave ``voltools.transform(...,
    rotation_order="szxz")``; the particle is the reference turned by ``R =
    Rotation.from_euler("ZXZ", [a1, a2, a3])`` (measured, see the module docstring), which is
    RELION's active matrix :func:`relion_matrix`. Rows with a NaN give NaN; tilt in [0, 180].
    """
    return _convert(_stack(a1, a2, a3), "ZXZ", "ZYZ", invert=True)


def relion_to_shrec21(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`shrec21_to_relion`: ``(n, 3)`` SHREC'21 columns ``a1, a2, a3``."""
    return _convert(_stack(rot, tilt, psi), "ZYZ", "ZXZ", invert=True)


def deepfinder_to_relion(phi: np.ndarray, psi: np.ndarray, the: np.ndarray) -> np.ndarray:
    """DeepFinder XML ``phi psi the`` (degrees) -> RELION ``(rot, tilt, psi)``, ``(n, 3)``.

    DeepFinder turns the reference into the object by ``rotate_array(ref, (phi, psi, the))``;
    measured (module docstring), that puts the reference feature at ``v`` at
    ``Rotation.from_euler("zxz", [phi, the, psi]) @ v`` (about the fixed axes), which is
    RELION's active matrix :func:`relion_matrix`. Rows with a NaN give NaN; tilt in [0, 180].
    """
    return _convert(_stack(phi, the, psi), "zxz", "ZYZ", invert=True)


def relion_to_deepfinder(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`deepfinder_to_relion`: ``(n, 3)`` columns ``phi, psi, the``."""
    zxz = _convert(_stack(rot, tilt, psi), "ZYZ", "zxz", invert=True)  # (phi, the, psi)
    return zxz[:, [0, 2, 1]]


def shrec19_to_relion(a1: np.ndarray, a2: np.ndarray, a3: np.ndarray) -> np.ndarray:
    """SHREC'19 text angles (file order: z1, x, z2 of PyTom's rotate) -> RELION ``(n, 3)``.

    The columns are PyTom's ``(phi, theta, psi)`` in scipy's ``ZXZ`` order, read as
    :func:`zxz_pytom_to_relion` reads that triple; the frame and sense are an assumption
    (module docstring).
    """
    return _convert(_stack(a1, a2, a3), "ZXZ", "ZYZ")


def relion_to_shrec19(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`shrec19_to_relion`: ``(n, 3)`` SHREC'19 columns ``a1, a2, a3``."""
    return _convert(_stack(rot, tilt, psi), "ZYZ", "ZXZ")


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
