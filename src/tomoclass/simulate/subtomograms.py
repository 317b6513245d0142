"""Subtomogram mode: one rotated, shifted particle per box with CTF, missing wedge and noise.

Image model (per subtomogram, all in Fourier space of the box)::

    s     = clean particle + neighbours           (rotated, shifted templates; real space)
    S     = W * CTF * FFT(s)                      (filtered signal)
    N     = W * FFT(n),   n ~ white Gaussian      (noise is measured through the wedge too;
                                                   FFT(n) is drawn directly in Fourier space)
    noisy = IFFT(S + c * N)

``W`` is the missing-wedge mask, ``CTF`` the isotropic 3D CTF at the particle's defocus.
SNR is ``var(signal) / var(noise)`` over the whole box, where ``signal = IFFT(S)`` (the
noise-free, CTF- and wedge-filtered volume) and ``noise = noisy - signal``; the realised
noise variance is computed from its spectrum (Parseval), so the scale ``c`` is exact:

* ``snr_reference: subtomogram``: ``var(signal)`` is this box's own (neighbours included),
  so every subtomogram has exactly the requested SNR;
* ``snr_reference: dataset`` (default): ``var(signal)`` is one reference for the whole
  dataset (:func:`reference_signal_variance`: the class-balanced mean variance of a lone
  particle), so all subtomograms share one noise level, as in a tomogram, and the requested
  SNR holds for the average class while small particles get less and large ones more.

Randomness: subtomogram ``i`` of a stream with seed ``s`` uses its own generator
``numpy.random.default_rng([s, i])``, so the output does not depend on the batch size.
Class of subtomogram ``i`` is ``i % n_classes`` (classes interleaved and balanced).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft

from tomoclass.errors import InputError
from tomoclass.simulate.fourier import (
    AMPLITUDE_CONTRAST,
    SPHERICAL_ABERRATION_MM,
    TILT_RANGE_DEG,
    VOLTAGE_KV,
    ctf,
    frequency_grid,
    missing_wedge_mask,
    rfft_weights,
    white_noise_spectrum,
)
from tomoclass.simulate.rotation import particle_matrix, paste_add, random_euler
from tomoclass.simulate.template import Template

__all__ = ["SubtomogramParams", "Subtomogram", "draw_params", "render_clean",
           "apply_imaging", "reference_signal_variance", "simulate_batch", "iter_subtomograms",
           "check_box"]


@dataclass(frozen=True)
class SubtomogramParams:
    """Everything drawn at random for one subtomogram (and then stored as its metadata).

    Attributes
    ----------
    index
        Position in the stream.
    class_id, class_name
        Index into the template list and its name.
    rot, tilt, psi
        RELION Euler angles (deg) of the particle (:mod:`tomoclass.simulate.rotation`).
    shift_zyx
        Particle centre offset from the box centre ``box // 2`` (voxels, z, y, x).
    defocus_um
        Defocus of the CTF (µm, underfocus positive); NaN when no CTF.
    snr
        Requested SNR (see module notes); ``inf`` when no noise.
    neighbours
        ``((class_id, rot, tilt, psi, dz, dy, dx), ...)`` of crowding neighbours.
    """

    index: int
    class_id: int
    class_name: str
    rot: float
    tilt: float
    psi: float
    shift_zyx: tuple[float, float, float]
    defocus_um: float
    snr: float
    neighbours: tuple = ()


@dataclass(frozen=True)
class Subtomogram:
    """One simulated subtomogram.

    Attributes
    ----------
    noisy
        ``(D, D, D)`` float32, (z, y, x): what a tomogram would show (CTF, wedge, noise,
        neighbours); protein is dark at low frequency (negative CTF).
    clean
        ``(D, D, D)`` float32: the particle alone, rotated and shifted, without neighbours,
        CTF, wedge or noise (protein density, 1 = protein).
    params
        The :class:`SubtomogramParams` (class, angles, shift, defocus, SNR).
    """

    noisy: np.ndarray
    clean: np.ndarray
    params: SubtomogramParams


def check_box(templates: Sequence[Template], box_size: int, max_shift_voxels: float) -> None:
    """Raise :class:`InputError` naming the structure if a particle does not fit the box."""
    for t in templates:
        need = t.radius_voxels + max_shift_voxels
        if need > box_size / 2:
            raise InputError(
                f"particle '{t.name}' (radius {t.radius_voxels:.1f} voxels + shift "
                f"{max_shift_voxels:g}) does not fit a {box_size}-voxel box; need box >= "
                f"{int(np.ceil(2 * need))}", path=t.source or t.name, field="box_size",
            )


def draw_params(
    rng: np.random.Generator,
    *,
    index: int,
    class_id: int,
    templates: Sequence[Template],
    box_size: int,
    max_shift_voxels: float = 1.0,
    defocus_um: tuple[float, float] | None = (2.5, 3.5),
    snr_range: tuple[float, float] | None = (0.1, 0.1),
    crowding: int = 0,
) -> SubtomogramParams:
    """Draw one subtomogram's random parameters (Haar rotation, shift in a ball, defocus, SNR).

    ``defocus_um=None`` means no CTF; ``snr_range=None`` means no noise. Neighbours are placed
    just outside the particle's bounding sphere, at most ``crowding`` of them, each
    overlapping the box.
    """
    rot, tilt, psi = random_euler(rng, 1)[0]
    v = rng.standard_normal(3)
    v *= max_shift_voxels * rng.random() ** (1 / 3) / max(np.linalg.norm(v), 1e-12)
    dfc = float(rng.uniform(*defocus_um)) if defocus_um is not None else float("nan")
    if snr_range is None:
        snr = float("inf")
    else:
        lo, hi = snr_range
        snr = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    neighbours = []
    n_nb = int(rng.integers(0, crowding + 1)) if crowding > 0 else 0
    r0 = templates[class_id].radius_voxels
    for _ in range(n_nb):
        cid = int(rng.integers(0, len(templates)))
        ang = random_euler(rng, 1)[0]
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        dist = r0 + templates[cid].radius_voxels + 1.0 + 2.0 * rng.random()
        pos = d * dist + v
        if np.abs(pos).max() - templates[cid].radius_voxels >= box_size / 2:
            continue  # entirely outside the box: contributes nothing
        neighbours.append((cid, *map(float, ang), *map(float, pos)))
    return SubtomogramParams(
        index=int(index), class_id=int(class_id), class_name=templates[class_id].name,
        rot=float(rot), tilt=float(tilt), psi=float(psi),
        shift_zyx=tuple(float(x) for x in v), defocus_um=dfc, snr=snr,
        neighbours=tuple(neighbours),
    )


def _place(dst, template, order, matrix, position_zyx) -> None:
    """Rotate ``template`` into a cube of its own size and add it at ``position_zyx``.

    ``position_zyx`` is in voxels from the centre of ``dst``. Only the template's cube is
    interpolated, which is what makes small particles cheap.
    """
    pos = np.asarray(position_zyx, dtype=float)
    ipos = np.round(pos)
    m = template.box
    cube = template.rotated(matrix, pos - ipos, order=order)
    corner = [int(s // 2 + ip - m // 2) for s, ip in zip(dst.shape, ipos, strict=True)]
    paste_add(dst, cube, corner)


def render_clean(
    templates: Sequence[Template], params: SubtomogramParams, box_size: int, *, order: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate/shift the particle (and its neighbours) into a box.

    Returns
    -------
    clean : numpy.ndarray
        ``(D, D, D)`` float32, the particle alone.
    scene : numpy.ndarray
        ``(D, D, D)`` float32, particle plus neighbours (the same array as ``clean`` when
        there are none).
    """
    shape = (box_size,) * 3
    clean = np.zeros(shape, dtype=np.float32)
    _place(clean, templates[params.class_id], order,
           particle_matrix(params.rot, params.tilt, params.psi), params.shift_zyx)
    if not params.neighbours:
        return clean, clean
    scene = clean.copy()
    for cid, r, ti, p, dz, dy, dx in params.neighbours:
        _place(scene, templates[cid], order, particle_matrix(r, ti, p), (dz, dy, dx))
    return clean, scene


def _parseval_var(spec: np.ndarray, w: np.ndarray, n_vox: int) -> np.ndarray:
    """Variance of the real volumes whose rfftn (batch, ...) is ``spec``."""
    power = (np.abs(spec) ** 2 * w).reshape(spec.shape[0], -1).sum(axis=1)
    mean = spec[:, 0, 0, 0].real / n_vox
    return power / n_vox**2 - mean**2


def apply_imaging(
    scenes: np.ndarray,
    *,
    voxel_size_angstrom: float,
    defocus_um: np.ndarray | None = None,
    voltage_kv: float = VOLTAGE_KV,
    spherical_aberration_mm: float = SPHERICAL_ABERRATION_MM,
    amplitude_contrast: float = AMPLITUDE_CONTRAST,
    b_factor_angstrom2: float = 0.0,
    tilt_range_deg: tuple[float, float] | None = TILT_RANGE_DEG,
    snr: np.ndarray | None = None,
    noise: np.ndarray | None = None,
    noise_spectrum: np.ndarray | None = None,
    signal_variance: np.ndarray | float | None = None,
    workers: int = -1,
) -> np.ndarray:
    """Apply CTF, missing wedge and noise at an exact SNR to a batch of volumes.

    With ``snr=None`` the result is the noise-free filtered signal, so
    ``apply_imaging(x, snr=s, noise=n, ...) - apply_imaging(x, ...)`` is the noise.

    Parameters
    ----------
    scenes
        ``(B, D, H, W)`` float32 noise-free densities.
    voxel_size_angstrom
        Sampling (Å).
    defocus_um
        ``(B,)`` defocus per volume (µm); ``None``: no CTF.
    voltage_kv, spherical_aberration_mm, amplitude_contrast, b_factor_angstrom2
        Optics (see :func:`tomoclass.simulate.fourier.ctf`).
    tilt_range_deg
        ``(min, max)`` tilt range; ``None``: no missing wedge.
    snr
        ``(B,)`` requested SNR; ``None``: no noise. The noise variance is
        ``signal_variance / snr``.
    noise
        ``(B, D, H, W)`` white standard-normal noise; drawn by the caller from per-particle
        generators for reproducibility. With ``snr``, this or ``noise_spectrum`` is required.
    noise_spectrum
        ``(B, D, H, W // 2 + 1)`` complex64: the same noise already in ``rfftn`` layout
        (:func:`tomoclass.simulate.fourier.white_noise_spectrum`), which saves an FFT.
    signal_variance
        Reference signal variance, scalar or ``(B,)``; default each volume's own filtered
        signal variance (then every volume has exactly the requested SNR).
    workers
        FFT threads (``-1``: all cores).

    Returns
    -------
    numpy.ndarray
        ``(B, D, H, W)`` float32.
    """
    scenes = np.asarray(scenes, dtype=np.float32)
    b = scenes.shape[0]
    shape = scenes.shape[1:]
    axes = (1, 2, 3)
    spec = scipy.fft.rfftn(scenes, axes=axes, workers=workers)
    filt = None
    wedge = None
    if tilt_range_deg is not None:
        wedge = _wedge_cached(shape, float(tilt_range_deg[0]), float(tilt_range_deg[1]))
        filt = wedge[None]
    if defocus_um is not None:
        # |k|² takes few distinct values on a grid: evaluate the CTF once per value, gather
        k2_values, k2_index = _k2_cached(shape, float(voxel_size_angstrom))
        c = ctf(k2_values[None, :],
                defocus_um=np.asarray(defocus_um, dtype=np.float32).reshape(b, 1),
                voltage_kv=voltage_kv, spherical_aberration_mm=spherical_aberration_mm,
                amplitude_contrast=amplitude_contrast, b_factor_angstrom2=b_factor_angstrom2)
        if wedge is not None:
            c = c[:, k2_index] * wedge[None]
        else:
            c = c[:, k2_index]
        filt = c
    if filt is not None:
        spec *= filt
    if snr is not None:
        if noise is None and noise_spectrum is None:
            raise ValueError("noise or noise_spectrum is required when snr is given")
        n_vox = int(np.prod(shape))
        w = rfft_weights(shape[-1])
        if noise_spectrum is not None:
            nspec = np.asarray(noise_spectrum, dtype=np.complex64)
        else:
            nspec = scipy.fft.rfftn(np.asarray(noise, dtype=np.float32), axes=axes,
                                    workers=workers)
        if wedge is not None:
            nspec *= wedge[None]
        if signal_variance is None:
            var_s = _parseval_var(spec, w, n_vox)
        else:
            var_s = np.broadcast_to(np.asarray(signal_variance, dtype=np.float64), (b,))
        var_n = _parseval_var(nspec, w, n_vox)
        scale = np.sqrt(var_s / (np.asarray(snr, dtype=np.float64) * np.maximum(var_n, 1e-30)))
        nspec *= scale.astype(np.float32).reshape(b, 1, 1, 1)
        spec += nspec
    out = scipy.fft.irfftn(spec, s=shape, axes=axes, workers=workers)
    return out.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _wedge_cached(shape, tmin, tmax):
    m = missing_wedge_mask(shape, tilt_min_deg=tmin, tilt_max_deg=tmax)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=8)
def _k2_cached(shape, voxel):
    """Distinct |k|² values of an rfft grid and, per grid point, the index of its value."""
    kz, ky, kx = frequency_grid(shape, voxel)
    k2 = (kz * kz + ky * ky + kx * kx).astype(np.float32)
    values, index = np.unique(k2, return_inverse=True)
    index = index.reshape(k2.shape).astype(np.intp)
    values.setflags(write=False)
    index.setflags(write=False)
    return values, index


def reference_signal_variance(templates: Sequence[Template], config, *, n_views: int = 32
                              ) -> float:
    """The dataset's reference signal variance for ``snr_reference: dataset``.

    The mean over classes (each class weighted equally) of the box variance of the particle
    alone, CTF- and wedge-filtered as configured, over ``n_views`` fixed Haar-random
    orientations with defoci spread evenly over the defocus range. Deterministic: it does not
    depend on the seed, so datasets with different seeds share one noise level.
    """
    sc, mc = config.subtomograms, config.microscope
    box = sc.box_size
    angles = random_euler(np.random.default_rng(0x5EED), n_views)
    lo, hi = mc.defocus_um
    defoci = lo + (hi - lo) * (np.arange(n_views) + 0.5) / n_views
    per_class = []
    for cid, _ in enumerate(templates):
        scenes = np.stack([render_clean(templates, SubtomogramParams(
            0, cid, "", a, b, c, (0.0, 0.0, 0.0), 0.0, 0.0), box,
            order=sc.interpolation_order)[0] for a, b, c in angles])
        signal = apply_imaging(
            scenes, voxel_size_angstrom=config.voxel_size_angstrom,
            defocus_um=defoci if sc.ctf else None,
            voltage_kv=mc.voltage_kv, spherical_aberration_mm=mc.spherical_aberration_mm,
            amplitude_contrast=mc.amplitude_contrast, b_factor_angstrom2=mc.b_factor_angstrom2,
            tilt_range_deg=mc.tilt_range_deg if sc.missing_wedge else None, workers=1)
        per_class.append(float(signal.reshape(n_views, -1).var(axis=1).mean()))
    return float(np.mean(per_class))


def simulate_batch(
    templates: Sequence[Template], config, seed: int, indices: Sequence[int], *,
    workers: int = -1, signal_variance: float | None = None,
) -> list[Subtomogram]:
    """Simulate the subtomograms at stream positions ``indices`` (see :func:`iter_subtomograms`).

    ``signal_variance`` is the reference for the noise level (``snr_reference: dataset``);
    ``None`` scales the noise to each subtomogram's own signal.
    """
    sc = config.subtomograms
    mc = config.microscope
    box = sc.box_size
    shape = (box,) * 3
    n_classes = len(templates)
    bsz = len(indices)
    scenes = np.empty((bsz,) + shape, dtype=np.float32)
    spec_shape = (bsz, box, box, box // 2 + 1)
    noises = np.empty(spec_shape, dtype=np.complex64) if sc.noise else None
    params, cleans = [], []
    for k, i in enumerate(indices):
        rng = np.random.default_rng([seed, int(i)])
        p = draw_params(
            rng, index=i, class_id=int(i) % n_classes, templates=templates, box_size=box,
            max_shift_voxels=sc.max_shift_voxels,
            defocus_um=mc.defocus_um if sc.ctf else None,
            snr_range=sc.snr_range if sc.noise else None, crowding=sc.crowding,
        )
        clean, scene = render_clean(templates, p, box, order=sc.interpolation_order)
        scenes[k] = scene
        params.append(p)
        cleans.append(clean)
        if noises is not None:
            white_noise_spectrum(rng, shape, out=noises[k])
    noisy = apply_imaging(
        scenes, voxel_size_angstrom=config.voxel_size_angstrom,
        defocus_um=np.array([p.defocus_um for p in params]) if sc.ctf else None,
        voltage_kv=mc.voltage_kv, spherical_aberration_mm=mc.spherical_aberration_mm,
        amplitude_contrast=mc.amplitude_contrast, b_factor_angstrom2=mc.b_factor_angstrom2,
        tilt_range_deg=mc.tilt_range_deg if sc.missing_wedge else None,
        snr=np.array([p.snr for p in params]) if sc.noise else None,
        noise_spectrum=noises, signal_variance=signal_variance, workers=workers,
    )
    return [Subtomogram(noisy=noisy[k], clean=cleans[k], params=p) for k, p in enumerate(params)]


_WORKER_STATE: dict = {}


def _worker_init(templates, config, seed, signal_variance):
    _WORKER_STATE.update(templates=templates, config=config, seed=seed,
                         signal_variance=signal_variance)


def _worker_run(indices):
    st = _WORKER_STATE
    return simulate_batch(st["templates"], st["config"], st["seed"], indices, workers=1,
                          signal_variance=st["signal_variance"])


def iter_subtomograms(
    templates: Sequence[Template],
    config,
    *,
    seed: int | None = None,
    start: int = 0,
    count: int | None = None,
    processes: int = 1,
    workers: int = -1,
) -> Iterator[Subtomogram]:
    """Stream simulated subtomograms (memory stays flat: a few batches at a time).

    Parameters
    ----------
    templates
        Class templates, all at ``config.voxel_size_angstrom``.
    config
        A :class:`~tomoclass.simulate.config.SimulationConfig` (uses ``subtomograms`` and
        ``microscope``).
    seed
        Overrides ``config.seed``.
    start, count
        Stream positions ``start .. start + count - 1``; default all
        ``n_per_class * n_classes``.
    processes
        Worker processes (``1``: in this process). The output is identical for any value.
    workers
        FFT threads when ``processes == 1``.

    Yields
    ------
    Subtomogram
        In stream order; identical for identical (seed, index) whatever the batch size.

    Raises
    ------
    InputError
        A template that does not fit the box (names its file), or mismatched voxel sizes.
    """
    sc = config.subtomograms
    seed = config.seed if seed is None else int(seed)
    box = sc.box_size
    for t in templates:
        if abs(t.voxel_size_angstrom - config.voxel_size_angstrom) > 1e-6:
            raise InputError(f"template '{t.name}' is at {t.voxel_size_angstrom} Å, config at "
                             f"{config.voxel_size_angstrom} Å", path=t.source, field="voxel_size")
    check_box(templates, box, sc.max_shift_voxels)
    total = sc.n_per_class * len(templates) if count is None else int(count)
    batches = [range(b0, min(b0 + sc.batch_size, start + total))
               for b0 in range(start, start + total, sc.batch_size)]
    ref = (reference_signal_variance(templates, config)
           if sc.noise and sc.snr_reference == "dataset" else None)
    if processes <= 1 or len(batches) <= 1:
        for idx in batches:
            yield from simulate_batch(templates, config, seed, idx, workers=workers,
                                      signal_variance=ref)
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    window = 2 * processes  # batches in flight: bounded memory
    with cf.ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_init,
                                initargs=(list(templates), config, seed, ref)) as ex:
        pending = [ex.submit(_worker_run, list(idx)) for idx in batches[:window]]
        nxt = window
        while pending:
            result = pending.pop(0).result()
            if nxt < len(batches):
                pending.append(ex.submit(_worker_run, list(batches[nxt])))
                nxt += 1
            yield from result
