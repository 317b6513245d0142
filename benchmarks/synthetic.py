"""Synthetic inputs shared by the CPU benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomoclass.io import write_volume


def write_noise_tomogram(path: Path, shape: tuple[int, int, int], voxel_size_angstrom: float,
                         rng: np.random.Generator) -> Path:
    """Write a float32 MRC of unit Gaussian noise, one z-section drawn at a time."""
    data = np.empty(shape, np.float32)
    for z in range(shape[0]):
        data[z] = rng.standard_normal(shape[1:], dtype=np.float32)
    write_volume(path, data, voxel_size_angstrom)
    return path


def blob_volumes(labels: np.ndarray, box: int, rng: np.random.Generator) -> np.ndarray:
    """Class k = a Gaussian blob of radius 1.5 + 1.5 k voxels at the centre, plus noise.

    The data of the training tests (tests/train_support's ``blob_volumes``, the same rule), for
    benchmarks, which do not import from tests/. Returns float32 (N, box, box, box), zyx.
    """
    c = (box - 1) / 2
    z, y, x = np.mgrid[:box, :box, :box]
    r2 = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2
    out = np.empty((len(labels), box, box, box), dtype=np.float32)
    for i, k in enumerate(labels):
        sigma = 1.5 + 1.5 * k
        out[i] = np.exp(-r2 / (2 * sigma**2)) + 0.3 * rng.standard_normal((box, box, box))
    return out
