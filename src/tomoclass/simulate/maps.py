"""Checks and masks for density-map inputs (before they become a template).

Maps come from other programs with headers that are sometimes wrong (1 Å written for 10 Å,
or 0), with the sign of a tomogram (protein dark), or, for in-cell subtomogram averages,
with membrane slabs and neighbours around the particle. The functions here catch those cases
with a message that names the map and the fix, and cut the particle out with a soft mask.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from tomoclass.errors import InputError

__all__ = [
    "RG_PLAUSIBLE_ANGSTROM", "MAP_VOXEL_SIZE_HINT", "MAP_VOXEL_SIZE_OPTION",
    "map_radius_of_gyration_angstrom", "check_map_size", "check_map_not_inverted",
    "soft_sphere_mask", "map_mask",
]

log = logging.getLogger(__name__)

#: Radii of gyration (Å) a macromolecule can have: ~11 Å is a 10 kDa globular protein,
#: ~90 Å a ribosome, a few hundred Å the largest viruses.
RG_PLAUSIBLE_ANGSTROM = (11.0, 600.0)

#: How a user gives a map's voxel size (there is no ``--voxel-size`` for maps).
MAP_VOXEL_SIZE_OPTION = "--map-voxel-size (or map_voxel_size_angstrom in the config's class)"
MAP_VOXEL_SIZE_HINT = f"give the map's voxel size with {MAP_VOXEL_SIZE_OPTION}"

#: Fraction of the maximum above which a map voxel counts as particle for the size check.
_SUPPORT = 0.2


def map_radius_of_gyration_angstrom(density: np.ndarray, voxel_size_angstrom: float) -> float:
    """Radius of gyration (Å) of a background-subtracted map's particle.

    Only voxels above 20 % of the maximum count (so noise and solvent over the whole box do
    not inflate it), weighted by their density, about their centre of mass.
    """
    d = np.asarray(density, dtype=np.float64)
    w = np.where(d > _SUPPORT * float(d.max()), d, 0.0)
    total = float(w.sum())
    if total <= 0:
        return 0.0
    idx = np.indices(d.shape, dtype=np.float64)
    com = [(idx[a] * w).sum() / total for a in range(3)]
    r2 = sum((idx[a] - com[a]) ** 2 for a in range(3))
    return float(np.sqrt((r2 * w).sum() / total)) * float(voxel_size_angstrom)


def check_map_size(density: np.ndarray, voxel_size_angstrom: float, *,
                   path: str | os.PathLike, given: bool) -> float:
    """Warn when a map's particle is implausibly small or large at its voxel size.

    A 10 Å map with a 1 Å header holds a particle ten times too small (a ribosome's
    radius of gyration of ~90 Å becomes 9 Å, smaller than any protein).

    Parameters
    ----------
    density
        Background-subtracted map (protein positive), in its own voxels.
    voxel_size_angstrom
        The voxel size used (header or override).
    path
        The map (for the message).
    given
        Whether the voxel size came from the user (``--map-voxel-size``) or the header.

    Returns
    -------
    float
        The radius of gyration in Å.
    """
    rg = map_radius_of_gyration_angstrom(density, voxel_size_angstrom)
    lo, hi = RG_PLAUSIBLE_ANGSTROM
    if not lo <= rg <= hi:
        what = "smaller than any protein" if rg < lo else "larger than any macromolecule"
        origin = "given" if given else "header's"
        log.warning("%s: the particle's radius of gyration is %.1f Å at the %s voxel size of "
                    "%g Å, %s (plausible %g-%g Å): is the voxel size right? If not, %s",
                    path, rg, origin, voxel_size_angstrom, what, lo, hi, MAP_VOXEL_SIZE_HINT)
    return rg


def check_map_not_inverted(density: np.ndarray, voxel_size_angstrom: float,
                           resolution_angstrom: float, *, path: str | os.PathLike) -> None:
    """Raise :class:`InputError` if a map looks inverted (protein darker than the solvent).

    After background subtraction and a low-pass at the simulation's resolution (at least
    two voxels, so single noisy voxels do not decide), a map with protein positive reaches
    further above its background than below it; an inverted one (a subtomogram average
    written with tomogram contrast) the other way round. Simulating it as it is would render
    the solvent as the particle (and ask for an absurd box).
    """
    res = max(float(resolution_angstrom), 2.0 * float(voxel_size_angstrom))
    sigma = 0.225 * res / float(voxel_size_angstrom)
    low = ndimage.gaussian_filter(np.asarray(density, dtype=np.float32), sigma, mode="nearest")
    top, bottom = float(low.max()), float(-low.min())
    if bottom > top:
        raise InputError(
            f"this map looks inverted: its density reaches {bottom:.3g} below the background "
            f"but only {top:.3g} above it (protein must be positive, as in a subtomogram "
            "average with protein white); invert it (e.g. relion_image_handler "
            "--multiply_constant -1) and give the inverted copy", path=path, field="data",
        )


def soft_sphere_mask(shape: tuple[int, int, int], radius_voxels: float,
                     edge_voxels: float) -> np.ndarray:
    """A sphere about the box centre (voxel ``n // 2``), 1 inside, with a raised-cosine edge.

    Returns
    -------
    numpy.ndarray
        float32 of ``shape``: 1 within ``radius_voxels``, falling to 0 over ``edge_voxels``.
    """
    idx = np.indices(shape, dtype=np.float32)
    r = np.sqrt(sum((idx[a] - (shape[a] // 2)) ** 2 for a in range(3)))
    if edge_voxels <= 0:
        return (r <= radius_voxels).astype(np.float32)
    t = np.clip((r - radius_voxels) / edge_voxels, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def map_mask(shape: tuple[int, int, int], voxel_size_angstrom: float, *,
             radius_angstrom: float | None = None, edge_angstrom: float = 20.0,
             mask_path: str | os.PathLike | None = None) -> np.ndarray | None:
    """The mask to multiply a map with before it becomes a template, or ``None``.

    Parameters
    ----------
    shape
        The map's shape (z, y, x).
    voxel_size_angstrom
        The map's voxel size (Å).
    radius_angstrom, edge_angstrom
        A soft sphere about the box centre (:func:`soft_sphere_mask`), in Å.
    mask_path
        A mask MRC on the map's grid (values 0-1, e.g. RELION's soft masks); multiplied with
        the sphere when both are given.

    Raises
    ------
    InputError
        Unreadable mask, a mask of another shape than the map, values outside 0-1, an empty
        mask, or a radius that is not positive.
    """
    mask = None
    if mask_path is not None:
        from tomoclass.io import read_volume

        mask_path = Path(mask_path)
        vol = read_volume(mask_path, voxel_size_angstrom=voxel_size_angstrom, mmap=False,
                          check="none")
        if tuple(vol.shape) != tuple(shape):
            raise InputError(f"mask is {vol.shape} voxels (z, y, x) but the map is {tuple(shape)}; "
                             "a mask must be on the map's grid", path=mask_path, field="shape")
        mask = np.asarray(vol.data, dtype=np.float32)
        if not np.all(np.isfinite(mask)) or mask.min() < -1e-3 or mask.max() > 1.001:
            raise InputError(f"mask values span {np.nanmin(mask):.3g}-{np.nanmax(mask):.3g}; a "
                             "mask holds 0 (out) to 1 (in)", path=mask_path, field="data")
        if float(mask.max()) <= 0:
            raise InputError("mask is empty (all 0)", path=mask_path, field="data")
        mask = np.clip(mask, 0.0, 1.0)
    if radius_angstrom is not None:
        if not radius_angstrom > 0:
            raise InputError(f"mask radius must be > 0 Å, got {radius_angstrom:g}",
                             field="map_mask_radius_angstrom")
        sphere = soft_sphere_mask(tuple(shape), radius_angstrom / voxel_size_angstrom,
                                  max(edge_angstrom, 0.0) / voxel_size_angstrom)
        mask = sphere if mask is None else mask * sphere
    return mask
