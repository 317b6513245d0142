"""The :class:`Template`: a clean particle density at a voxel size, and helpers on it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "Template", "SIZE_GROUPS", "lowpass_gaussian", "center_and_crop", "size_group_for_mass",
]

SIZE_GROUPS = ("tiny", "small", "medium", "large")

#: Fraction of the template maximum above which a voxel counts as "inside" the particle
#: (label volumes, radii).
MASK_THRESHOLD = 0.2


@dataclass(frozen=True)
class Template:
    """A particle's clean density.

    Attributes
    ----------
    name
        Class name (phantom name, PDB id or map stem).
    density
        ``(n, n, n)`` float32, (z, y, x), ``n`` odd, centre of mass at voxel ``n // 2``;
        1.0 is the density of protein (mass density 1.35 g/cm³), solvent is 0.
    voxel_size_angstrom
        Sampling in Å.
    size_group
        ``tiny``/``small``/``medium``/``large`` (or ``""``).
    source
        Where it came from: ``phantom:<name>``, or the file path.
    symmetry
        Point group (``C1``, ``C6``, ``D7``, ``O``, ...), ``""`` if unknown.
    mass_kda
        Mass in kDa when known (atomic models, phantoms from their volume), else NaN.
    n_chains
        Chains in the atomic model used (assembly copies included); 0 if not from a model.
    source_voxel_size_angstrom
        For maps: the map's voxel size used (header or override, Å); NaN otherwise.
    """

    name: str
    density: np.ndarray
    voxel_size_angstrom: float
    size_group: str = ""
    source: str = ""
    symmetry: str = ""
    mass_kda: float = float("nan")
    n_chains: int = 0
    source_voxel_size_angstrom: float = float("nan")
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def box(self) -> int:
        """Edge length of the template box in voxels."""
        return int(self.density.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``(n, n, n)`` support: density above 20 % of its maximum."""
        if "mask" not in self._cache:
            self._cache["mask"] = self.density > MASK_THRESHOLD * float(self.density.max())
        return self._cache["mask"]

    @property
    def radius_voxels(self) -> float:
        """Bounding radius of :attr:`mask` about the box centre, in voxels (+0.5 voxel)."""
        if "radius" not in self._cache:
            idx = np.argwhere(self.mask)
            c = self.box // 2
            r = float(np.sqrt(((idx - c) ** 2).sum(axis=1)).max()) + 0.5 if idx.size else 0.0
            self._cache["radius"] = r
        return self._cache["radius"]

    @property
    def radius_angstrom(self) -> float:
        """Bounding radius in Å."""
        return self.radius_voxels * self.voxel_size_angstrom

    @property
    def radius_of_gyration_angstrom(self) -> float:
        """Density-weighted radius of gyration in Å."""
        d = np.clip(self.density, 0, None).astype(np.float64)
        c = self.box // 2
        zz, yy, xx = np.indices(d.shape) - c
        r2 = (zz**2 + yy**2 + xx**2) * d
        return float(np.sqrt(r2.sum() / d.sum())) * self.voxel_size_angstrom

    def support_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Voxels of the box within the density's support sphere (cached).

        The sphere holds every voxel whose density exceeds 0.1 % of the maximum, plus one
        voxel, so rotating only these voxels loses nothing visible.

        Returns
        -------
        offsets : numpy.ndarray
            ``(3, K)`` float64 (z, y, x) offsets from the centre voxel.
        flat : numpy.ndarray
            ``(K,)`` int64 flat indices into the ``(n, n, n)`` box.
        """
        if "support" not in self._cache:
            n, c = self.box, self.box // 2
            grid = np.indices((n, n, n)).reshape(3, -1) - c
            r2 = (grid**2).sum(axis=0)
            strong = self.density.ravel() > 1e-3 * float(self.density.max())
            radius = np.sqrt(r2[strong].max()) + 1.0 if strong.any() else 0.0
            inside = np.flatnonzero(r2 <= radius**2)
            self._cache["support"] = (grid[:, inside].astype(np.float64), inside)
        return self._cache["support"]

    def rotated(self, matrix_xyz: np.ndarray, shift_voxels_zyx=(0.0, 0.0, 0.0), *,
                order: int = 1) -> np.ndarray:
        """The template rotated about its centre (and shifted) in a box of its own size.

        ``out[c + p] = density[c + M.T @ (p - shift)]`` for offsets ``p`` (z, y, x) within the
        support sphere (:meth:`support_offsets`), zero elsewhere; ``M`` is ``matrix_xyz``
        (an active rotation on (x, y, z), see :mod:`tomoclass.simulate.rotation`) re-expressed
        for (z, y, x). Only the sphere is interpolated, which is what makes this fast.

        Parameters
        ----------
        matrix_xyz
            ``(3, 3)`` rotation, e.g. :func:`~tomoclass.simulate.rotation.particle_matrix`.
        shift_voxels_zyx
            Sub-voxel shift (voxels, z, y, x); keep it small (within the box margin).
        order
            Spline order (1 trilinear, 3 cubic on cached coefficients).

        Returns
        -------
        numpy.ndarray
            ``(n, n, n)`` float32.
        """
        m = self.box
        offsets, flat = self.support_offsets()
        inv = np.asarray(matrix_xyz, dtype=float)[::-1, ::-1].T
        shift = np.asarray(shift_voxels_zyx, dtype=float)[:, None]
        coords = inv @ (offsets - shift) + float(m // 2)
        cube = np.zeros((m, m, m), dtype=np.float32)
        cube.ravel()[flat] = ndimage.map_coordinates(
            self.spline_coefficients(order), coords, order=order, mode="constant", cval=0.0,
            prefilter=False, output=np.float32)
        return cube

    def spline_coefficients(self, order: int = 3) -> np.ndarray:
        """Cached :func:`scipy.ndimage.spline_filter` of the density (for fast rotations)."""
        key = ("spline", order)
        if key not in self._cache:
            self._cache[key] = (
                ndimage.spline_filter(self.density, order=order, output=np.float32)
                if order > 1 else self.density
            )
        return self._cache[key]


def size_group_for_mass(mass_kda: float) -> str:
    """Size group by mass, as SHREC'19 groups its classes.

    < 100 kDa tiny, < 300 kDa small, < 600 kDa medium, else large.
    """
    if mass_kda < 100:
        return "tiny"
    if mass_kda < 300:
        return "small"
    if mass_kda < 600:
        return "medium"
    return "large"


def lowpass_gaussian(
    volume: np.ndarray, *, resolution_angstrom: float, voxel_size_angstrom: float
) -> np.ndarray:
    """Gaussian low-pass to a resolution (sigma = 0.225 x resolution, as Chimera's molmap).

    Parameters
    ----------
    volume
        ``(d, h, w)`` density.
    resolution_angstrom
        Target resolution in Å (0: no filtering).
    voxel_size_angstrom
        Sampling of ``volume``.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    if resolution_angstrom <= 0:
        return np.asarray(volume, dtype=np.float32)
    sigma = 0.225 * resolution_angstrom / voxel_size_angstrom
    return ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma, mode="constant")


def center_and_crop(density: np.ndarray, *, margin_voxels: int = 2) -> np.ndarray:
    """Shift a density so its centre of mass sits at the centre voxel and crop to an odd cube.

    The box is the smallest odd cube holding every voxel above 1 % of the maximum plus
    ``margin_voxels`` on each side.

    Returns
    -------
    numpy.ndarray
        ``(n, n, n)`` float32 with ``n`` odd and the centre of mass at ``n // 2``.
    """
    d = np.clip(np.asarray(density, dtype=np.float32), 0, None)
    total = float(d.sum())
    if total <= 0:
        raise ValueError("density is empty")
    com = np.array(ndimage.center_of_mass(d))
    support = np.argwhere(d > 0.01 * d.max())
    half = int(np.ceil(np.abs(support - com).max())) + margin_voxels
    n = 2 * half + 1
    # resample so that the centre of mass lands exactly on the centre voxel (sub-voxel shift)
    start = com - half
    coords = np.indices((n, n, n), dtype=np.float32)
    for ax in range(3):
        coords[ax] += np.float32(start[ax])
    out = ndimage.map_coordinates(d, coords, order=3, mode="constant", cval=0.0)
    return np.clip(out, 0, None).astype(np.float32)
