"""A built-in library of procedural macromolecule phantoms (no files needed).

Each phantom is a union of soft-edged ellipsoids and capsules (lengths in Å, so it renders
at any voxel size), replicated by a point group, then low-passed. The library spans tiny
(~5 nm) to large (~25 nm) particles and has pairs of similar size but different shape, so
a classifier must see shape, not just size:

======================  ======  ==========  ===================================================
name                    group   symmetry    shape
======================  ======  ==========  ===================================================
globule                 tiny    C1          lumpy ellipsoid with a knob (~5 nm)
dimer                   tiny    C2          two lobes side by side (~5.5 nm)
trimer                  small   C3          three lobes in a flat triangle (~9 nm)
tetramer                small   D2          four lobes, tetrahedral-like (~9 nm)
rod                     small   C1          bent rod (~12 nm long)
dumbbell                small   C1          two unequal balls and a neck (~11 nm)
ring6                   medium  C6          flat hexameric ring with a hole (~15 nm, p97-like)
capped_ring5            medium  C5          pentameric ring closed by a cap (~15 nm)
cube8                   medium  D4          two stacked tetrameric rings (~13 nm, RuBisCO-like)
tetrahedral12           medium  T           12 subunits on a tetrahedral shell (~14 nm)
barrel28                large   D7          four stacked heptameric rings (~20 nm, proteasome-like)
ribosome_like           large   C1          large and small subunit with a cleft (~24 nm)
cage24                  large   O           24 subunits on an octahedral cage (~22 nm)
shell60                 large   I           12 pentameric knobs on an icosahedral shell (~25 nm)
======================  ======  ==========  ===================================================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tomoclass.simulate.template import Template, center_and_crop, lowpass_gaussian

__all__ = ["PHANTOMS", "blob_volumes", "list_phantoms", "phantom", "phantom_library"]

#: Protein mass density, Da per Å³ (1.35 g/cm³).
PROTEIN_DA_PER_A3 = 0.813


@dataclass(frozen=True)
class _Ellipsoid:
    center: tuple[float, float, float]  # (x, y, z) Å
    semi_axes: tuple[float, float, float]  # (a, b, c) Å along the body x, y, z
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)  # body orientation, extrinsic xyz deg


@dataclass(frozen=True)
class _Capsule:
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    radius: float


@dataclass(frozen=True)
class _Spec:
    size_group: str
    symmetry: str
    parts: tuple  # the asymmetric unit
    description: str


def _ring(n, radius, z, semi, tilt=0.0, knob=None):
    """An asymmetric unit for a ring: one ellipsoid (and a knob) at angle 0."""
    parts = [_Ellipsoid((radius, 0.0, z), semi, (0.0, tilt, 0.0))]
    if knob is not None:
        parts.append(knob)
    return tuple(parts)


PHANTOMS: dict[str, _Spec] = {
    "globule": _Spec("tiny", "C1", (
        _Ellipsoid((0, 0, 0), (22, 17, 15), (10, 20, 0)),
        _Ellipsoid((16, 8, 4), (9, 8, 8)),
    ), "lumpy ellipsoid with a knob"),
    "dimer": _Spec("tiny", "C2", (
        _Ellipsoid((0, 13, 0), (13, 11, 16), (0, 0, 15)),
        _Ellipsoid((6, 20, 12), (6, 6, 6)),
    ), "two lobes side by side"),
    "trimer": _Spec("small", "C3", (
        _Ellipsoid((25, 0, 0), (17, 13, 15), (0, 0, 25)),
        _Ellipsoid((30, 12, 10), (8, 8, 8)),
    ), "three lobes in a flat triangle"),
    "tetramer": _Spec("small", "D2", (
        _Ellipsoid((18, 15, 12), (15, 12, 14), (20, 0, 30)),
    ), "four lobes, tetrahedral-like"),
    "rod": _Spec("small", "C1", (
        _Capsule((-48, -8, 0), (0, 0, 0), 15),
        _Capsule((0, 0, 0), (40, 22, 8), 13),
        _Ellipsoid((-50, -8, 0), (17, 17, 17)),
    ), "bent rod"),
    "dumbbell": _Spec("small", "C1", (
        _Ellipsoid((-30, 0, 0), (23, 22, 21)),
        _Ellipsoid((35, 4, 0), (17, 16, 18)),
        _Capsule((-30, 0, 0), (35, 4, 0), 7),
    ), "two unequal balls and a neck"),
    "ring6": _Spec("medium", "C6", _ring(6, 52, 0.0, (17, 14, 26), knob=_Ellipsoid(
        (58, 12, 20), (8, 8, 8))), "flat hexameric ring with a hole"),
    "capped_ring5": _Spec("medium", "C5", (
        _Ellipsoid((50, 0, -8), (17, 15, 24), (0, 0, 10)),
        _Ellipsoid((20, 5, 26), (18, 12, 8)),
    ), "pentameric ring closed by a cap"),
    "cube8": _Spec("medium", "D4", (
        _Ellipsoid((36, 10, 24), (17, 16, 20), (0, 0, 30)),
        _Ellipsoid((18, 30, 48), (8, 8, 7)),
    ), "two stacked tetrameric rings"),
    "tetrahedral12": _Spec("medium", "T", (
        _Ellipsoid((40, 14, 24), (15, 12, 14), (10, 30, 0)),
    ), "12 subunits on a tetrahedral shell"),
    "barrel28": _Spec("large", "D7", (
        _Ellipsoid((52, 0, 26), (19, 17, 23)),
        _Ellipsoid((45, 10, 76), (17, 14, 22), (0, 0, 20)),
    ), "four stacked heptameric rings"),
    "ribosome_like": _Spec("large", "C1", (
        _Ellipsoid((0, -20, 0), (88, 75, 70), (0, 0, 10)),
        _Ellipsoid((10, 78, 15), (70, 36, 52), (0, 0, -10)),
        _Ellipsoid((-60, -10, 55), (22, 20, 26)),
        _Capsule((55, -40, -30), (95, -55, -45), 14),
    ), "large and small subunit with a cleft"),
    "cage24": _Spec("large", "O", (
        _Ellipsoid((78, 24, 18), (22, 15, 14), (0, 15, 20)),
    ), "24 subunits on an octahedral cage"),
    "shell60": _Spec("large", "I", (
        _Ellipsoid((0, 58, 95), (15, 13, 12), (30, 0, 0)),
    ), "12 pentameric knobs on an icosahedral shell"),
}


def list_phantoms() -> list[str]:
    """Names of the built-in phantoms, smallest size group first."""
    return list(PHANTOMS)


def _group(symmetry: str) -> np.ndarray:
    if symmetry == "C1":
        return np.eye(3)[None]
    return Rotation.create_group(symmetry).as_matrix()


def _extent(parts) -> float:
    """Radius (Å) of a sphere about the origin holding every part (and so every symmetry copy)."""
    r = 0.0
    for p in parts:
        if isinstance(p, _Ellipsoid):
            r = max(r, float(np.linalg.norm(p.center)) + max(p.semi_axes))
        else:
            ends = max(np.linalg.norm(p.start), np.linalg.norm(p.end))
            r = max(r, float(ends) + p.radius)
    return r


def _soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1.0 - np.tanh(signed_distance / width))


def _render_parts(parts, symmetry, voxel_size_angstrom: float) -> np.ndarray:
    ops = _group(symmetry)
    extent = _extent(parts)
    half = int(np.ceil(extent / voxel_size_angstrom)) + 3
    n = 2 * half + 1
    ax = (np.arange(n, dtype=np.float32) - half) * np.float32(voxel_size_angstrom)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)  # (N, 3) xyz Å
    occ = np.zeros(pts.shape[0], dtype=np.float32)
    width = max(1.5, 0.35 * voxel_size_angstrom)
    for g in ops:
        for p in parts:
            if isinstance(p, _Ellipsoid):
                body = Rotation.from_euler("xyz", p.rotation, degrees=True).as_matrix()
                rot = g @ body
                c = g @ np.asarray(p.center, dtype=float)
                q = (pts - c.astype(np.float32)) @ rot.astype(np.float32)  # body coordinates
                f = np.sqrt(((q / np.asarray(p.semi_axes, dtype=np.float32)) ** 2).sum(axis=1))
                d = (f - 1.0) * np.float32(min(p.semi_axes))
            else:
                a = (g @ np.asarray(p.start, dtype=float)).astype(np.float32)
                b = (g @ np.asarray(p.end, dtype=float)).astype(np.float32)
                ab = b - a
                t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
                closest = a + t[:, None] * ab
                d = np.linalg.norm(pts - closest, axis=1) - np.float32(p.radius)
            np.maximum(occ, _soft(d, width), out=occ)
    return occ.reshape(n, n, n)


@functools.lru_cache(maxsize=128)
def _phantom_cached(name: str, voxel_size_angstrom: float, resolution_angstrom: float) -> Template:
    spec = PHANTOMS[name]
    occ = _render_parts(spec.parts, spec.symmetry, voxel_size_angstrom)
    mass_kda = float(occ.sum()) * voxel_size_angstrom**3 * PROTEIN_DA_PER_A3 / 1e3
    dens = lowpass_gaussian(
        occ, resolution_angstrom=resolution_angstrom, voxel_size_angstrom=voxel_size_angstrom
    )
    dens = center_and_crop(dens)
    dens.setflags(write=False)
    return Template(
        name=name, density=dens, voxel_size_angstrom=float(voxel_size_angstrom),
        size_group=spec.size_group, source=f"phantom:{name}", symmetry=spec.symmetry,
        mass_kda=mass_kda,
    )


def phantom(
    name: str, *, voxel_size_angstrom: float = 10.0, resolution_angstrom: float = 20.0
) -> Template:
    """Render one built-in phantom.

    Parameters
    ----------
    name
        One of :func:`list_phantoms`.
    voxel_size_angstrom
        Sampling in Å (default 10 Å = 1 nm, SHREC's).
    resolution_angstrom
        Gaussian low-pass resolution in Å (0: none).

    Returns
    -------
    Template
        Deterministic (no randomness), cached per arguments; the density array is read-only.

    Raises
    ------
    KeyError
        If ``name`` is not a built-in phantom.
    """
    if name not in PHANTOMS:
        raise KeyError(f"unknown phantom {name!r}; known: {', '.join(PHANTOMS)}")
    return _phantom_cached(name, float(voxel_size_angstrom), float(resolution_angstrom))


def phantom_library(
    names=None, *, voxel_size_angstrom: float = 10.0, resolution_angstrom: float = 20.0
) -> list[Template]:
    """Render several phantoms (default: all of them, in library order)."""
    names = list(PHANTOMS) if names is None else list(names)
    return [
        phantom(n, voxel_size_angstrom=voxel_size_angstrom, resolution_angstrom=resolution_angstrom)
        for n in names
    ]


def blob_volumes(labels: np.ndarray, box: int, rng: np.random.Generator) -> np.ndarray:
    """Class k = a Gaussian blob of radius 1.5 + 1.5 k voxels at the centre, plus noise.

    The smallest labelled data a classifier can learn (the training tests and
    ``benchmarks/shrec_init_check.py`` use it). Returns float32 (N, box, box, box), zyx.
    """
    c = (box - 1) / 2
    z, y, x = np.mgrid[:box, :box, :box]
    r2 = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2
    out = np.empty((len(labels), box, box, box), dtype=np.float32)
    for i, k in enumerate(labels):
        sigma = 1.5 + 1.5 * k
        out[i] = np.exp(-r2 / (2 * sigma**2)) + 0.3 * rng.standard_normal((box, box, box))
    return out
