"""Fourier-space physics: spatial-frequency grids, the CTF and the missing wedge.

Conventions
-----------
* Spatial frequencies are in 1/Å. Grids follow :func:`numpy.fft.fftfreq` for full axes and
  :func:`numpy.fft.rfftfreq` for the last (x) axis of ``rfftn`` layouts; volumes are (z, y, x).
* The CTF is the weak-phase transfer function with the sign chosen so that a positive
  potential (protein) appears *dark* at low frequency, as in real micrographs and tomograms::

      chi(k) = pi * lambda * dz * k**2 - pi/2 * Cs * lambda**3 * k**4 + phase_shift
      CTF(k) = -(sqrt(1 - A**2) * sin(chi) + A * cos(chi)) * exp(-B * k**2 / 4)

  with ``dz`` the defocus (positive = underfocus), ``Cs`` the spherical aberration, ``A`` the
  amplitude contrast, ``B`` a B-factor envelope, all converted to Å.
* Tilt geometry: the tilt axis is y and the beam is along z. The projection at tilt angle
  ``theta`` integrates along the direction ``(x, z) = (-sin theta, cos theta)``, so its detector
  coordinate is ``x' = x cos theta + z sin theta``. By the central-slice theorem it samples the
  Fourier plane spanned by ``ky`` and ``(kx, kz) = (cos theta, sin theta)``; a tilt range
  ``[theta_min, theta_max]`` therefore measures the frequencies whose angle
  ``atan(kz / kx)`` lies in that range, and the rest (around ``kz``) is the missing wedge.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AMPLITUDE_CONTRAST",
    "SPHERICAL_ABERRATION_MM",
    "TILT_RANGE_DEG",
    "VOLTAGE_KV",
    "electron_wavelength_angstrom",
    "interaction_constant",
    "frequency_grid",
    "ctf",
    "ctf_zeros_inv_angstrom",
    "missing_wedge_mask",
    "critical_exposure",
    "rfft_weights",
    "white_noise_spectrum",
]

# Microscope defaults (SHREC'21-like), declared once: the CTF functions below, the simulator's
# imaging (tomoclass.simulate.subtomograms) and its configuration (MicroscopeConfig) use them.
#: Acceleration voltage (kV).
VOLTAGE_KV = 300.0
#: Spherical aberration Cs (mm).
SPHERICAL_ABERRATION_MM = 2.7
#: Amplitude contrast fraction.
AMPLITUDE_CONTRAST = 0.07
#: Tilt range of the tilt series (degrees).
TILT_RANGE_DEG = (-60.0, 60.0)

_M0C2_KEV = 510.99895  # electron rest energy
_HC_KEV_ANGSTROM = 12.398419843320026


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å at an acceleration voltage in kV (300 kV: 0.0197)."""
    e = float(voltage_kv)
    return _HC_KEV_ANGSTROM / np.sqrt(e * (2.0 * _M0C2_KEV + e))


def interaction_constant(voltage_kv: float) -> float:
    """Interaction constant sigma in rad / (V Å) (phase shift per volt of potential per Å path)."""
    e = float(voltage_kv)
    lam = electron_wavelength_angstrom(e)
    return 2.0 * np.pi / (lam * e * 1e3) * (_M0C2_KEV + e) / (2.0 * _M0C2_KEV + e)


def frequency_grid(shape, voxel_size_angstrom: float, *, rfft: bool = True):
    """Broadcastable spatial-frequency axes of a (z, y, x) or (y, x) grid, in 1/Å.

    Parameters
    ----------
    shape
        Real-space shape, 2 or 3 axes.
    voxel_size_angstrom
        Sampling in Å.
    rfft
        Use the half (rfft) layout on the last axis.

    Returns
    -------
    tuple of numpy.ndarray
        One float32 array per axis, shaped to broadcast (e.g. ``(n, 1, 1)``, ``(1, n, 1)``, ...).
    """
    shape = tuple(int(s) for s in shape)
    axes = []
    for i, n in enumerate(shape):
        last = i == len(shape) - 1
        f = np.fft.rfftfreq(n, d=voxel_size_angstrom) if (rfft and last) else np.fft.fftfreq(
            n, d=voxel_size_angstrom
        )
        view = [1] * len(shape)
        view[i] = f.size
        axes.append(f.astype(np.float32).reshape(view))
    return tuple(axes)


def ctf(
    k2_inv_angstrom2,
    *,
    defocus_um,
    voltage_kv: float = VOLTAGE_KV,
    spherical_aberration_mm: float = SPHERICAL_ABERRATION_MM,
    amplitude_contrast: float = AMPLITUDE_CONTRAST,
    b_factor_angstrom2: float = 0.0,
    phase_shift_deg: float = 0.0,
) -> np.ndarray:
    """Contrast transfer function at squared spatial frequencies.

    Parameters
    ----------
    k2_inv_angstrom2
        Squared spatial frequency ``|k|**2`` in 1/Å², any shape ``S``.
    defocus_um
        Defocus in µm, positive = underfocus; a scalar or an array broadcasting against
        ``S`` (e.g. ``(n, 1, 1, 1)`` for a batch of volumes).
    voltage_kv, spherical_aberration_mm, amplitude_contrast
        Microscope: acceleration voltage (kV), Cs (mm), amplitude contrast fraction (0..1).
    b_factor_angstrom2
        Gaussian envelope ``exp(-B k²/4)`` (0: none).
    phase_shift_deg
        Extra phase (phase plate), degrees.

    Returns
    -------
    numpy.ndarray
        float32 CTF values, broadcast shape; negative at low frequency (protein dark).
    """
    lam = electron_wavelength_angstrom(voltage_kv)
    k2 = np.asarray(k2_inv_angstrom2, dtype=np.float32)
    dz = np.asarray(defocus_um, dtype=np.float32) * np.float32(1e4)
    cs = np.float32(spherical_aberration_mm * 1e7)
    chi = np.float32(np.pi * lam) * dz * k2 - np.float32(0.5 * np.pi * lam**3) * cs * k2 * k2
    chi = chi + np.float32(np.deg2rad(phase_shift_deg))
    w = np.float32(np.sqrt(1.0 - amplitude_contrast**2))
    out = -(w * np.sin(chi) + np.float32(amplitude_contrast) * np.cos(chi))
    if b_factor_angstrom2:
        out = out * np.exp(np.float32(-b_factor_angstrom2 / 4.0) * k2)
    return out.astype(np.float32, copy=False)


def ctf_zeros_inv_angstrom(
    *,
    defocus_um: float,
    k_max_inv_angstrom: float,
    voltage_kv: float = VOLTAGE_KV,
    spherical_aberration_mm: float = SPHERICAL_ABERRATION_MM,
    amplitude_contrast: float = AMPLITUDE_CONTRAST,
    phase_shift_deg: float = 0.0,
) -> np.ndarray:
    """Theoretical CTF zero crossings ``|k|`` (1/Å) below ``k_max_inv_angstrom``, ascending.

    Solves ``chi(k) = n pi - atan(A / sqrt(1 - A²))`` for ``n = 1, 2, ...`` (see :func:`ctf`).
    """
    lam = electron_wavelength_angstrom(voltage_kv)
    dz = defocus_um * 1e4
    cs = spherical_aberration_mm * 1e7
    alpha = np.arctan2(amplitude_contrast, np.sqrt(1.0 - amplitude_contrast**2))
    alpha += np.deg2rad(phase_shift_deg)
    a = 0.5 * np.pi * cs * lam**3
    b = np.pi * lam * dz
    zeros = []
    for n in range(1, 100000):
        c = n * np.pi - alpha
        if a > 0:
            disc = b * b - 4 * a * c
            if disc < 0:
                break
            u = (b - np.sqrt(disc)) / (2 * a)
        else:
            u = c / b
        if u <= 0:
            continue
        k = np.sqrt(u)
        if k > k_max_inv_angstrom:
            break
        zeros.append(k)
    return np.asarray(zeros, dtype=float)


def missing_wedge_mask(
    shape,
    *,
    tilt_min_deg: float = TILT_RANGE_DEG[0],
    tilt_max_deg: float = TILT_RANGE_DEG[1],
    rfft: bool = True,
) -> np.ndarray:
    """Fourier mask of the frequencies a single-axis tilt series measures (1) or misses (0).

    Parameters
    ----------
    shape
        Real-space (z, y, x) shape.
    tilt_min_deg, tilt_max_deg
        Tilt range in degrees (tilt axis y, beam along z; see module notes for the sign).
    rfft
        Return the half layout of :func:`numpy.fft.rfftn` (last axis ``x // 2 + 1``).

    Returns
    -------
    numpy.ndarray
        float32 mask, 1 where measured; the DC term is always measured. The mask is the same
        for every ``ky`` (tilt axis).
    """
    kz, _, kx = frequency_grid(shape, 1.0, rfft=rfft)
    kz = kz[:, :, :1]
    kx = kx[:1, :, :]
    # fold to kx >= 0 by Friedel symmetry (the point -k is measured with k)
    sign = np.where(kx < 0, -1.0, 1.0)
    kxf = kx * sign
    kzf = kz * sign
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.degrees(np.arctan2(kzf, kxf))  # in (-90, 90]
    # kx == 0 plane: angle is +90 for kz > 0 and -90 for kz < 0; either is the same line
    on_axis = (kxf == 0) & (kzf != 0)
    eps = 1e-6
    measured = (angle >= tilt_min_deg - eps) & (angle <= tilt_max_deg + eps)
    measured_axis = (tilt_min_deg <= -90 + eps) | (tilt_max_deg >= 90 - eps)
    measured = np.where(on_axis, measured_axis, measured)
    measured = measured | ((kxf == 0) & (kzf == 0))
    mask2d = measured.astype(np.float32)  # (nz, 1, nx_f)
    ny = int(shape[1])
    return np.ascontiguousarray(np.broadcast_to(mask2d, (mask2d.shape[0], ny, mask2d.shape[2])))


def critical_exposure(k_inv_angstrom) -> np.ndarray:
    """Critical exposure (e/Å²) at which a spatial frequency keeps 1/e of its amplitude.

    Grant & Grigorieff (2015), 300 kV: ``Ne(k) = 0.245 k**-1.665 + 2.81``.
    """
    k = np.maximum(np.asarray(k_inv_angstrom, dtype=np.float64), 1e-6)
    return 0.245 * k**-1.665 + 2.81


def rfft_weights(n_last: int) -> np.ndarray:
    """Multiplicity of each ``rfft`` bin along the last axis (2 except DC and Nyquist).

    ``sum(w * |F|**2) == sum_full(|F|**2)`` for a real signal, so Parseval works on the half
    spectrum.
    """
    m = n_last // 2 + 1
    w = np.full(m, 2.0, dtype=np.float32)
    w[0] = 1.0
    if n_last % 2 == 0:
        w[-1] = 1.0
    return w


def white_noise_spectrum(rng: np.random.Generator, shape, *, out: np.ndarray | None = None):
    """The ``rfftn`` of real white noise of unit variance, drawn directly in Fourier space.

    Real and imaginary parts of every coefficient are independent, zero-mean, with
    ``E|X|² = N`` (``N`` voxels); the ``kx = 0`` and Nyquist planes are made Hermitian
    (self-conjugate points real), so the inverse transform is real, white (uncorrelated voxels
    of unit variance) and saves the forward FFT of the noise. The parts are drawn uniform
    (4x cheaper than normal deviates); each voxel of the inverse is a sum of ``N`` independent
    terms, hence Gaussian to within ``O(1/N)`` (central limit; tested with a KS test).

    Parameters
    ----------
    rng
        Random generator.
    shape
        Real-space ``(D, H, W)``.
    out
        Optional complex64 array of shape ``(D, H, W // 2 + 1)`` to fill.

    Returns
    -------
    numpy.ndarray
        complex64 ``(D, H, W // 2 + 1)``.
    """
    d, h, w = (int(s) for s in shape)
    m = w // 2 + 1
    n = d * h * w
    spec = np.empty((d, h, m), dtype=np.complex64) if out is None else out
    if spec.shape != (d, h, m) or spec.dtype != np.complex64 or not spec.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous complex64 of shape {(d, h, m)}")
    raw = spec.view(np.float32)  # (d, h, 2m): real and imaginary parts interleaved
    rng.random(dtype=np.float32, out=raw)
    raw -= np.float32(0.5)
    raw *= np.float32(np.sqrt(12.0 * n / 2.0))  # uniform(-1/2, 1/2) has variance 1/12
    iz = (-np.arange(d)) % d
    iy = (-np.arange(h)) % h
    planes = [0] + ([w // 2] if w % 2 == 0 else [])
    for p in planes:
        plane = spec[:, :, p]
        mirrored = np.conj(plane[iz][:, iy])
        spec[:, :, p] = (plane + mirrored) * np.float32(1 / np.sqrt(2.0))
    return spec
