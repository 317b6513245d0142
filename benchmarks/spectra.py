"""Fourier helpers of the rescaling benchmarks (rescale_check, simulator_voxel_size_probe)."""

from __future__ import annotations

import numpy as np

__all__ = ["fourier_crop", "radial_power"]


def fourier_crop(vol: np.ndarray, factor: int) -> np.ndarray:
    """Keep the frequencies below the binned grid's Nyquist (sizes divided by ``factor``)."""
    f = np.fft.rfftn(vol)
    n = np.array(vol.shape)
    m = n // factor
    kz = np.r_[0:m[0] // 2, n[0] - m[0] // 2:n[0]]
    ky = np.r_[0:m[1] // 2, n[1] - m[1] // 2:n[1]]
    out = np.fft.irfftn(f[np.ix_(kz, ky, np.arange(m[2] // 2 + 1))], s=tuple(m), axes=(0, 1, 2))
    return out.astype(np.float32) / np.float32(factor**3)


def radial_power(v: np.ndarray, n_bins: int) -> np.ndarray:
    """Mean power of ``v - mean`` in ``n_bins`` radial frequency bands up to Nyquist."""
    v = v - v.mean()
    p = np.abs(np.fft.fftn(v)) ** 2 / v.size
    f = np.sqrt(sum(np.meshgrid(*[np.fft.fftfreq(n) ** 2 for n in v.shape], indexing="ij")))
    idx = np.digitize(f.ravel(), np.linspace(0, 0.5, n_bins + 1))
    return np.array([p.ravel()[idx == i].mean() for i in range(1, n_bins + 1)],
                    dtype=np.float64)
