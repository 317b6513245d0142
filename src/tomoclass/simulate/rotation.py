"""Rotations: RELION ZYZ Euler angles, Haar-uniform sampling, rotating volumes.

Conventions
-----------
* Coordinates are column vectors ``(x, y, z)`` in voxels about the box centre; arrays are
  indexed ``(z, y, x)``. The centre of a box of size ``n`` is voxel ``n // 2`` along each axis
  (the FFT centre, as in RELION).
* Euler angles ``(rot, tilt, psi)`` in degrees are the project's RELION ZYZ convention
  (:mod:`tomoclass.io.schema`, :mod:`tomoclass.io.euler`): the *active* rotation that turns the
  reference (template) into the particle is RELION's own matrix of the angles,
  ``Euler_angles2matrix(rot, tilt, psi)`` (``src/euler.cpp``) =
  ``A = Rz(-psi) @ Ry(-tilt) @ Rz(-rot)`` =
  ``scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv()``,
  as RELION's tomography ``ParticleSet::getMatrix4x4`` maps particle (reference) coordinates
  into the tomogram. A feature at ``v`` (x, y, z) in the reference is at ``A @ v`` in the
  particle: ``particle(x) = reference(A.T @ x)``, so that RELION averaging the particle with
  these angles re-aligns it to the reference.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

__all__ = [
    "particle_matrix",
    "matrix_to_euler",
    "random_euler",
    "rotate_volume",
    "zyx_matrix",
    "paste_add",
]


def particle_matrix(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """Active rotation matrix taking the reference onto a particle with RELION angles.

    RELION's ``Euler_angles2matrix(rot, tilt, psi)``: ``A = Rz(-psi) @ Ry(-tilt) @ Rz(-rot)``,
    equal to ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv().as_matrix()``
    and to :func:`tomoclass.io.euler.relion_matrix`, written out so that it is cheap for single
    particles.

    Parameters
    ----------
    rot_deg, tilt_deg, psi_deg
        RELION Euler angles in degrees (scalars or arrays of equal shape ``(...)``).

    Returns
    -------
    numpy.ndarray
        ``(..., 3, 3)`` float64 matrices acting on ``(x, y, z)`` column vectors.
    """
    a, b, g = (np.deg2rad(np.asarray(v, dtype=float)) for v in np.broadcast_arrays(
        rot_deg, tilt_deg, psi_deg))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    m = np.empty(a.shape + (3, 3))
    m[..., 0, 0] = ca * cb * cg - sa * sg
    m[..., 0, 1] = sa * cb * cg + ca * sg
    m[..., 0, 2] = -sb * cg
    m[..., 1, 0] = -ca * cb * sg - sa * cg
    m[..., 1, 1] = -sa * cb * sg + ca * cg
    m[..., 1, 2] = sb * sg
    m[..., 2, 0] = ca * sb
    m[..., 2, 1] = sa * sb
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(matrix: np.ndarray) -> np.ndarray:
    """RELION ``(rot, tilt, psi)`` in degrees of an active reference->particle matrix.

    Parameters
    ----------
    matrix
        ``(..., 3, 3)`` rotation matrices on ``(x, y, z)`` vectors (see :func:`particle_matrix`).

    Returns
    -------
    numpy.ndarray
        ``(..., 3)`` angles in degrees, tilt in [0, 180].
    """
    matrix = np.asarray(matrix, dtype=float)
    flat = matrix.reshape(-1, 3, 3)
    eul = Rotation.from_matrix(flat).inv().as_euler("ZYZ", degrees=True)
    return eul.reshape(matrix.shape[:-2] + (3,))


def random_euler(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` orientations uniformly on SO(3) (Haar measure) as RELION angles.

    For ZYZ angles the Haar measure is ``sin(tilt) d(rot) d(tilt) d(psi)``, so ``rot`` and
    ``psi`` are uniform in [-180, 180) and ``cos(tilt)`` is uniform in [-1, 1].

    Returns
    -------
    numpy.ndarray
        ``(n, 3)`` float64 ``(rot, tilt, psi)`` in degrees, tilt in [0, 180].
    """
    u = rng.random((int(n), 3))
    rot = 360.0 * u[:, 0] - 180.0
    tilt = np.degrees(np.arccos(1.0 - 2.0 * u[:, 1]))
    psi = 360.0 * u[:, 2] - 180.0
    return np.stack([rot, tilt, psi], axis=1)


def zyx_matrix(matrix_xyz: np.ndarray) -> np.ndarray:
    """Re-express an ``(x, y, z)`` matrix for ``(z, y, x)`` index vectors (reverse both axes)."""
    return np.asarray(matrix_xyz)[..., ::-1, ::-1]


def rotate_volume(
    volume: np.ndarray,
    matrix_xyz: np.ndarray,
    *,
    output_shape: tuple[int, int, int] | None = None,
    shift_voxels_zyx=(0.0, 0.0, 0.0),
    order: int = 3,
    prefiltered: bool = False,
    output: np.ndarray | None = None,
) -> np.ndarray:
    """Rotate a volume about its centre voxel and place it, shifted, in an output box.

    ``out[p] = volume[c_in + M.T @ (p - c_out - shift)]`` in (z, y, x) index space, where
    ``M`` is ``matrix_xyz`` re-expressed for (z, y, x) and ``c = shape // 2``: a feature
    at offset ``v`` (x, y, z) from the input centre lands at ``matrix_xyz @ v + shift``
    from the output centre.

    Parameters
    ----------
    volume
        ``(d, h, w)`` input, float. For ``order > 1`` pass spline coefficients
        (:func:`scipy.ndimage.spline_filter`) with ``prefiltered=True`` to reuse them.
    matrix_xyz
        ``(3, 3)`` active rotation on ``(x, y, z)`` vectors (:func:`particle_matrix`).
    output_shape
        ``(D, H, W)`` of the result; default the input shape.
    shift_voxels_zyx
        Translation of the rotated volume in voxels, (z, y, x) order.
    order
        Spline interpolation order (1 = trilinear, 3 = cubic).
    prefiltered
        Whether ``volume`` already holds spline coefficients.
    output
        Optional preallocated float32 array of ``output_shape`` to write into.

    Returns
    -------
    numpy.ndarray
        ``output_shape`` float32, zero outside the input's support.
    """
    volume = np.asarray(volume)
    out_shape = tuple(volume.shape) if output_shape is None else tuple(int(s) for s in output_shape)
    m = zyx_matrix(matrix_xyz)
    inv = m.T
    c_in = np.array([s // 2 for s in volume.shape], dtype=float)
    c_out = np.array([s // 2 for s in out_shape], dtype=float)
    offset = c_in - inv @ (c_out + np.asarray(shift_voxels_zyx, dtype=float))
    if output is None:
        output = np.empty(out_shape, dtype=np.float32)
    ndimage.affine_transform(
        volume, inv, offset=offset, output_shape=out_shape, output=output, order=order,
        mode="constant", cval=0.0, prefilter=not prefiltered and order > 1,
    )
    return output


def paste_add(dst: np.ndarray, src: np.ndarray, corner_zyx) -> None:
    """Add ``src`` into ``dst`` with its first voxel at integer ``corner_zyx``, clipped to fit."""
    sl_d, sl_s = [], []
    for c, n_s, n_d in zip(corner_zyx, src.shape, dst.shape, strict=True):
        c = int(c)
        lo, hi = max(c, 0), min(c + n_s, n_d)
        if hi <= lo:
            return
        sl_d.append(slice(lo, hi))
        sl_s.append(slice(lo - c, hi - c))
    dst[tuple(sl_d)] += src[tuple(sl_s)]
