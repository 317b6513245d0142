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


