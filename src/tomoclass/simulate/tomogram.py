"""Tomogram mode: crowded volume -> tilt series -> weighted back-projection.

Pipeline (:func:`simulate_tomogram`)
1. :func:`place_particles`: random, non-overlapping (bounding spheres plus a gap),
   fully inside the volume, at integer voxels, Haar-random orientations; class counts
   proportional to the class weights.
2. :func:`render_density`: the rotated templates summed into the volume (1 = protein),
   and a class-label volume (0 background, ``k + 1`` for class ``k`` where its density is
   above 20 % of its maximum).
3. :func:`project`: line integrals for every tilt (tilt axis y, beam along z; detector
   coordinate ``x' = x cos(theta) + z sin(theta)``, see :mod:`tomoclass.simulate.fourier`),
   voxel-driven with linear splatting; each y row is independent, so the projector is one
   sparse matrix (all tilts) applied to a slab of y rows at a time.
4. Per tilt: phase ``phi = sigma(V) * dV * voxel * projection`` (weak-phase object,
   ``dV`` = protein minus ice potential), dose-dependent radiation damage
   ``exp(-D_prev / (2 Ne(k)))`` (Grant & Grigorieff 2015), CTF at the tilt's defocus,
   image ``I = 1 + 2 CTF * phi``, shot noise ``Poisson(dose_per_pixel * I)``, normalised
   back to contrast ``I / dose_per_pixel - 1``.
5. :func:`backproject`: R-weighted (ramp, Ram-Lak) back-projection, the adjoint of the
   projector; the result is divided by ``2 sigma dV voxel`` so it is in density units
   (protein ~ -1 at low frequency because the CTF is negative there: protein is dark).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.fft
import scipy.sparse as sp

from tomoclass.errors import InputError
from tomoclass.io import schema
from tomoclass.simulate.fourier import (
    critical_exposure,
    ctf,
    frequency_grid,
    interaction_constant,
)
from tomoclass.simulate.rotation import particle_matrix, paste_add, random_euler
from tomoclass.simulate.template import MASK_THRESHOLD, Template

__all__ = [
    "PlacedParticle",
    "TomogramResult",
    "class_counts",
    "place_particles",
    "render_density",
    "projection_matrix",
    "project",
    "ramp_filter",
    "backproject",
    "tilt_order",
    "simulate_tomogram",
    "particles_table",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedParticle:
    """One particle in a tomogram: class, centre (integer voxels) and RELION angles (deg)."""

    class_id: int
    class_name: str
    z: int
    y: int
    x: int
    rot: float
    tilt: float
    psi: float


@dataclass
class TomogramResult:
    """A simulated tomogram and its ground truth.

    Attributes
    ----------
    tomogram
        ``(Z, Y, X)`` float32 reconstruction, density units (protein dark).
    labels
        ``(Z, Y, X)`` int16 class labels (0 background, ``class_id + 1``).
    particles
        The placed particles.
    class_names
        Class names by ``class_id``.
    tilt_angles_deg, defocus_um, dose_before_e_per_angstrom2
        Per tilt: angle, defocus, dose received before it.
    voxel_size_angstrom
        Sampling.
    density
        ``(Z, Y, X)`` float32 noise-free density, when requested.
    """

    tomogram: np.ndarray
    labels: np.ndarray
    particles: list[PlacedParticle]
    class_names: list[str]
    tilt_angles_deg: np.ndarray
    defocus_um: np.ndarray
    dose_before_e_per_angstrom2: np.ndarray
    voxel_size_angstrom: float
    density: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def class_counts(n: int, weights: Sequence[float]) -> np.ndarray:
    """Split ``n`` particles by weights with the largest-remainder rule (deterministic)."""
    w = np.asarray(weights, dtype=float)
    if w.sum() <= 0:
        raise InputError("class weights must not all be zero", field="classes.weight")
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def place_particles(
    templates: Sequence[Template],
    shape_zyx: tuple[int, int, int],
    n_particles: int,
    rng: np.random.Generator,
    *,
    weights: Sequence[float] | None = None,
    min_gap_voxels: float = 1.0,
    max_tries: int = 300,
) -> list[PlacedParticle]:
    """Place particles at random without overlap (bounding spheres + gap), fully inside.

    Larger particles are placed first (denser packing). A particle that finds no free spot
    in ``max_tries`` draws is dropped with a warning.

    Returns
    -------
    list of PlacedParticle
        In placement order.
    """
    shape = np.asarray(shape_zyx, dtype=int)
    weights = [1.0] * len(templates) if weights is None else list(weights)
    counts = class_counts(n_particles, weights)
    radii = np.array([t.radius_voxels for t in templates])
    todo = np.repeat(np.arange(len(templates)), counts)
    todo = todo[np.argsort(-radii[todo], kind="stable")]
    pos = np.empty((len(todo), 3))
    rad = np.empty(len(todo))
    placed: list[PlacedParticle] = []
    dropped = 0
    for cid in todo:
        r = radii[cid]
        lo = np.ceil(np.full(3, r)).astype(int)
        hi = shape - 1 - lo
        if np.any(hi < lo):
            raise InputError(
                f"particle '{templates[cid].name}' (radius {r:.1f} voxels) does not fit a "
                f"{tuple(shape)} tomogram", path=templates[cid].source or None, field="shape_zyx")
        k = len(placed)
        ok = False
        for _ in range(max_tries):
            c = rng.integers(lo, hi + 1)
            if k == 0:
                ok = True
                break
            d2 = ((pos[:k] - c) ** 2).sum(axis=1)
            if np.all(d2 >= (rad[:k] + r + min_gap_voxels) ** 2):
                ok = True
                break
        if not ok:
            dropped += 1
            continue
        rot, tilt, psi = random_euler(rng, 1)[0]
        pos[k] = c
        rad[k] = r
        placed.append(PlacedParticle(int(cid), templates[cid].name, int(c[0]), int(c[1]),
                                     int(c[2]), float(rot), float(tilt), float(psi)))
    if dropped:
        log.warning("placed %d of %d particles: no free space left for %d",
                    len(placed), n_particles, dropped)
    return placed


def render_density(
    templates: Sequence[Template],
    particles: Sequence[PlacedParticle],
    shape_zyx: tuple[int, int, int],
    *,
    order: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum the rotated templates into a volume and paint the class-label volume.

    Returns
    -------
    density : numpy.ndarray
        ``(Z, Y, X)`` float32.
    labels : numpy.ndarray
        ``(Z, Y, X)`` int16, 0 background, ``class_id + 1`` inside a particle.
    """
    density = np.zeros(shape_zyx, dtype=np.float32)
    labels = np.zeros(shape_zyx, dtype=np.int16)
    for p in particles:
        t = templates[p.class_id]
        m = t.box
        cube = t.rotated(particle_matrix(p.rot, p.tilt, p.psi), order=order)
        corner = (p.z - m // 2, p.y - m // 2, p.x - m // 2)
        paste_add(density, cube, corner)
        mask = (cube > MASK_THRESHOLD * float(t.density.max())).astype(np.int16) * (p.class_id + 1)
        _paint(labels, mask, corner)
    return density, labels


def _paint(dst: np.ndarray, src: np.ndarray, corner) -> None:
    sl_d, sl_s = [], []
    for c, n_s, n_d in zip(corner, src.shape, dst.shape, strict=True):
        lo, hi = max(c, 0), min(c + n_s, n_d)
        if hi <= lo:
            return
        sl_d.append(slice(lo, hi))
        sl_s.append(slice(lo - c, hi - c))
    view = dst[tuple(sl_d)]
    s = src[tuple(sl_s)]
    np.copyto(view, s, where=s > 0)


def projection_matrix(
    shape_zx: tuple[int, int], angles_deg: Sequence[float], n_detector: int
) -> sp.csc_matrix:
    """Sparse projector of one (z, x) slice onto a detector row, for all tilts.

    Voxel ``(z, x)`` (centred at ``n // 2``) lands at ``x' = x cos(t) + z sin(t)`` (plus the
    detector centre ``n_detector // 2``) and is split linearly between the two nearest
    detector pixels, so the projector conserves mass and its transpose is linear
    interpolation (the back-projector). Built column by column (two entries per voxel and
    tilt; zero weight off the detector), so no format conversion is needed.

    Returns
    -------
    scipy.sparse.csc_matrix
        ``(n_tilts * n_detector, nz * nx)`` float32; row ``t * n_detector + u``.
    """
    nz, nx = shape_zx
    nt = len(angles_deg)
    if nt * n_detector >= 2**31 or nz * nx * nt * 2 >= 2**31:
        raise InputError("tomogram too large for the projector's 32-bit indices",
                         field="shape_zyx")
    z = (np.arange(nz) - nz // 2).astype(np.float64)
    x = (np.arange(nx) - nx // 2).astype(np.float64)
    idx = np.empty((nz * nx, nt, 2), dtype=np.int32)
    val = np.empty((nz * nx, nt, 2), dtype=np.float32)
    for t, a in enumerate(np.deg2rad(np.asarray(angles_deg, dtype=float))):
        xp = (x[None, :] * np.cos(a) + z[:, None] * np.sin(a)).ravel() + n_detector // 2
        f = np.floor(xp)
        w = (xp - f).astype(np.float32)
        f = f.astype(np.int64)
        for k, (r, wt) in enumerate(((f, 1.0 - w), (f + 1, w))):
            inside = (r >= 0) & (r < n_detector)
            idx[:, t, k] = np.clip(r, 0, n_detector - 1) + t * n_detector
            val[:, t, k] = np.where(inside, wt, 0.0)
    indptr = np.arange(0, nz * nx * nt * 2 + 1, nt * 2, dtype=np.int32)
    return sp.csc_matrix((val.ravel(), idx.ravel(), indptr), shape=(nt * n_detector, nz * nx))


def project(volume: np.ndarray, angles_deg: Sequence[float], *, matrix=None) -> np.ndarray:
    """Project a volume along the beam for every tilt (tilt axis y).

    Parameters
    ----------
    volume
        ``(Z, Y, X)`` float32.
    angles_deg
        Tilt angles in degrees.
    matrix
        A precomputed :func:`projection_matrix` for this shape and angles.

    Returns
    -------
    numpy.ndarray
        ``(n_tilts, Y, X)`` float32 tilt series (detector as wide as the volume), in units of
        density x voxel length.
    """
    nz, ny, nx = volume.shape
    nt = len(angles_deg)
    p = projection_matrix((nz, nx), angles_deg, nx) if matrix is None else matrix
    out = np.empty((nt, ny, nx), dtype=np.float32)
    # y-slabs: rows are independent (tilt axis y), so only one slab is ever transposed
    for y0, y1 in _slabs(ny, nz * nx):
        v2 = np.ascontiguousarray(np.asarray(volume[:, y0:y1], dtype=np.float32)
                                  .transpose(0, 2, 1)).reshape(nz * nx, y1 - y0)
        out[:, y0:y1] = (p @ v2).reshape(nt, nx, y1 - y0).transpose(0, 2, 1)
    return out


def _slabs(n: int, row_elements: int, budget_bytes: int = 64 * 1024**2):
    """``(start, stop)`` ranges over ``n`` rows so one float32 slab stays under the budget."""
    step = max(1, min(n, budget_bytes // max(1, 4 * row_elements)))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def ramp_filter(n_detector: int, tilt_step_rad: float) -> np.ndarray:
    """Ram-Lak (R-weighting) filter for ``rfft`` of rows zero-padded to ``2 n`` (times dtheta).

    Built from the band-limited spatial kernel ``h(0) = 1/4``, ``h(odd n) = -1/(pi n)^2``
    (Kak & Slaney), which avoids the DC bias of a sampled ``|k|``.
    """
    m = 2 * n_detector
    n = np.concatenate([np.arange(0, m // 2 + 1), np.arange(-(m // 2) + 1, 0)])
    h = np.zeros(m)
    h[0] = 0.25
    odd = n % 2 == 1
    h[odd] = -1.0 / (np.pi * n[odd]) ** 2
    return (np.real(np.fft.rfft(h)) * tilt_step_rad).astype(np.float32)


def backproject(
    tilt_series: np.ndarray,
    angles_deg: Sequence[float],
    shape_zyx: tuple[int, int, int],
    *,
    weighting: bool = True,
    matrix=None,
) -> np.ndarray:
    """Weighted back-projection (the adjoint of :func:`project` after R-weighting).

    Parameters
    ----------
    tilt_series
        ``(n_tilts, Y, X)`` projections.
    angles_deg
        Their tilt angles (deg), evenly spaced for the weighting.
    shape_zyx
        Output shape ``(Z, Y, X)`` with ``Y``, ``X`` equal to the tilt series'.
    weighting
        Apply the ramp filter (``False``: plain back-projection).
    matrix
        A precomputed :func:`projection_matrix` for this shape and angles.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` float32.
    """
    nt, ny, nx = tilt_series.shape
    nz = int(shape_zyx[0])
    ts = np.asarray(tilt_series, dtype=np.float32)
    if weighting:
        step = np.deg2rad(np.mean(np.diff(angles_deg))) if nt > 1 else np.pi
        filt = ramp_filter(nx, float(step))
        spec = scipy.fft.rfft(ts, n=2 * nx, axis=2, workers=-1)
        spec *= filt
        ts = scipy.fft.irfft(spec, n=2 * nx, axis=2, workers=-1)[:, :, :nx].astype(np.float32)
    p = projection_matrix((nz, nx), angles_deg, nx) if matrix is None else matrix
    pt = p.T.tocsr()
    rec = np.empty((nz, ny, nx), dtype=np.float32)
    for y0, y1 in _slabs(ny, max(nz, nt) * nx):
        flat = np.ascontiguousarray(ts[:, y0:y1].transpose(0, 2, 1)).reshape(nt * nx, y1 - y0)
        rec[:, y0:y1] = (pt @ flat).reshape(nz, nx, y1 - y0).transpose(0, 2, 1)
    return rec


def tilt_order(angles_deg: Sequence[float], scheme: str = "dose_symmetric") -> np.ndarray:
    """Acquisition order of the tilts: indices into ``angles_deg``.

    ``dose_symmetric`` (Hagen et al. 2017): start nearest 0°, then alternate sides in
    groups of two; ``sequential``: from the lowest angle to the highest.
    """
    a = np.asarray(angles_deg, dtype=float)
    if scheme == "sequential":
        return np.argsort(a, kind="stable")
    start = int(np.argmin(np.abs(a)))
    pos = [i for i in np.argsort(a) if a[i] > a[start]]
    neg = [i for i in np.argsort(-a) if a[i] < a[start]]
    order = [start]
    side = 0
    while pos or neg:
        src = pos if (side == 0 and pos) or not neg else neg
        order.extend(src[:2])
        del src[:2]
        side ^= 1
    return np.asarray(order, dtype=int)


def simulate_tomogram(
    templates: Sequence[Template],
    config,
    *,
    seed: int | None = None,
    index: int = 0,
    progress=None,
) -> TomogramResult:
    """Simulate one tomogram from a :class:`~tomoclass.simulate.config.SimulationConfig`.

    Parameters
    ----------
    templates
        Class templates at ``config.voxel_size_angstrom``.
    config
        Uses ``tomogram``, ``microscope``, ``classes`` (weights) and ``voxel_size_angstrom``.
    seed, index
        The tomogram's random stream is ``default_rng([seed, index])``.
    progress
        Optional callable ``progress(step_name)`` called after each stage (for progress bars).

    Returns
    -------
    TomogramResult
    """
    tc = config.tomogram
    mc = config.microscope
    vs = float(config.voxel_size_angstrom)
    seed = config.seed if seed is None else int(seed)
    rng = np.random.default_rng([seed, int(index)])
    shape = tuple(int(s) for s in tc.shape_zyx)
    if len(templates) > 32000:
        raise InputError("too many classes for an int16 label volume", field="classes")
    tick = progress or (lambda name: None)

    weights = [c.weight for c in config.classes] if len(config.classes) == len(templates) else None
    particles = place_particles(templates, shape, tc.n_particles, rng, weights=weights,
                                min_gap_voxels=tc.min_gap_voxels)
    tick("placed particles")
    density, labels = render_density(templates, particles, shape,
                                     order=tc.interpolation_order)
    tick("rendered density")

    angles = np.asarray(mc.tilt_angles_deg, dtype=float)
    nt = len(angles)
    pmat = projection_matrix((shape[0], shape[2]), angles, shape[2])
    series = project(density, angles, matrix=pmat)
    if not tc.write_density:
        del density
        density = None
    tick("projected tilt series")

    sigma = interaction_constant(mc.voltage_kv)
    phase_per_unit = sigma * tc.potential_contrast_volts * vs  # rad per (density x voxel)
    base_defocus = float(rng.uniform(*mc.defocus_um))
    defocus = base_defocus + tc.defocus_jitter_um * rng.standard_normal(nt)
    defocus = np.clip(defocus, 0.0, None)
    order = tilt_order(angles, tc.acquisition)
    dose_per_tilt = tc.dose_e_per_angstrom2 / nt
    dose_before = np.empty(nt)
    dose_before[order] = np.arange(nt) * dose_per_tilt
    dose_px = dose_per_tilt * vs * vs
    ky, kx = frequency_grid(shape[1:], vs)
    k2 = ky * ky + kx * kx
    k = np.sqrt(k2)
    ne = critical_exposure(k).astype(np.float32)
    for t in range(nt):
        spec = scipy.fft.rfft2(series[t] * np.float32(phase_per_unit), workers=-1)
        filt = np.ones_like(k2)
        if tc.ctf:
            filt = filt * ctf(k2, defocus_um=defocus[t], voltage_kv=mc.voltage_kv,
                              spherical_aberration_mm=mc.spherical_aberration_mm,
                              amplitude_contrast=mc.amplitude_contrast,
                              b_factor_angstrom2=mc.b_factor_angstrom2)
        if tc.radiation_damage and dose_before[t] > 0:
            filt = filt * np.exp(-np.float32(dose_before[t] + 0.5 * dose_per_tilt) / (2 * ne))
        contrast = scipy.fft.irfft2(spec * filt, s=shape[1:], workers=-1).astype(np.float32)
        if tc.noise:
            intensity = np.clip(1.0 + 2.0 * contrast, 0.0, None) * dose_px
            counts = rng.poisson(intensity).astype(np.float32)
            series[t] = counts / np.float32(dose_px) - 1.0
        else:
            series[t] = 2.0 * contrast
    tick("imaged tilts")

    rec = backproject(series, angles, shape, matrix=pmat)
    rec /= np.float32(2.0 * phase_per_unit)
    tick("reconstructed")
    return TomogramResult(
        tomogram=rec, labels=labels, particles=particles,
        class_names=[t.name for t in templates], tilt_angles_deg=angles, defocus_um=defocus,
        dose_before_e_per_angstrom2=dose_before, voxel_size_angstrom=vs, density=density,
        info={"seed": seed, "index": int(index), "base_defocus_um": base_defocus,
              "dose_per_tilt_e_per_angstrom2": dose_per_tilt},
    )


def particles_table(result: TomogramResult, tomogram_name: str) -> pd.DataFrame:
    """The placed particles as a particle table in the schema of :mod:`tomoclass.io.schema`."""
    rows = [{
        schema.TOMOGRAM: tomogram_name, schema.X: float(p.x), schema.Y: float(p.y),
        schema.Z: float(p.z), schema.CLASS_NAME: p.class_name, schema.ROT: p.rot,
        schema.TILT: p.tilt, schema.PSI: p.psi, schema.SCORE: np.nan, schema.IS_PROTEIN: True,
    } for p in result.particles]
    return pd.DataFrame(rows, columns=list(schema.PARTICLE_COLUMNS))
