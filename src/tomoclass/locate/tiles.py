"""Tiling the score grid of a tomogram so that memory stays bounded (fully convolutional scoring).

A tile's input is its boxes' extent plus a halo of at least the net's receptive-field radius,
cut at multiples of the stride (see :mod:`tomoclass.locate.scoring`): :func:`plan_tiles`,
:func:`choose_tile` (the largest tile within a voxel budget), :func:`default_tile_voxels`
(that budget), :func:`padded_extent` and :func:`grid_shape`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tomoclass.locate.geometry import Geometry


@dataclass(frozen=True)
class Tile:
    """One tile of the score grid and the input it reads.

    ``grid_start``/``grid_stop``: score-grid cells [start, stop) per axis (z, y, x);
    ``lo``/``hi``: the padded-tomogram voxels [lo, hi) the net reads for them (padded
    coordinate = tomogram voxel + box // 2).
    """

    grid_start: tuple[int, int, int]
    grid_stop: tuple[int, int, int]
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    @property
    def input_voxels(self) -> int:
        """Voxels the net reads for this tile."""
        return int(np.prod(np.array(self.hi) - np.array(self.lo)))


def plan_tiles(geom: Geometry, shape: Sequence[int], tile: int) -> list[Tile]:
    """Cut the score grid of a (z, y, x) tomogram into tiles of edge ``tile`` voxels.

    Each tile's input reaches ``halo`` voxels beyond its boxes and starts on a multiple of
    the stride, clipped to the padded tomogram (see the module docstring).
    """
    s, w, h = np.array(geom.stride), np.array(geom.window), np.array(geom.halo)
    shape_arr = np.asarray(shape)
    grid = grid_shape(geom, shape_arr)
    padded = np.array(padded_extent(geom, shape_arr))
    cells = np.maximum(1, int(tile) // s)
    starts = [range(0, int(g), int(c)) for g, c in zip(grid, cells, strict=True)]
    out = []
    for ja in itertools.product(*starts):
        ja_arr = np.array(ja)
        jb = np.minimum(ja_arr + cells, grid)
        lo = np.maximum(0, s * ja_arr - h)
        hi = np.minimum(padded, s * (jb + w - 1) + h)
        out.append(Tile(*(tuple(int(v) for v in a) for a in (ja_arr, jb, lo, hi))))  # type: ignore[arg-type]
    return out


def grid_shape(geom: Geometry, shape: np.ndarray) -> np.ndarray:
    """Score-grid points per axis: j = 0 .. ceil((n - 1) / stride)."""
    s = np.array(geom.stride)
    return (np.asarray(shape) - 1 + s - 1) // s + 1


def padded_extent(geom: Geometry, shape: np.ndarray) -> tuple[int, int, int]:
    """Extent of the zero-padded tomogram the net sees: a multiple of the stride."""
    s = np.array(geom.stride)
    return tuple(int(v) for v in s * (grid_shape(geom, shape) - 1) + geom.box)  # type: ignore[return-value]


def choose_tile(geom: Geometry, padded_shape: Sequence[int], max_voxels: int) -> int:
    """Largest tile edge (voxels, a multiple of the stride) whose input fits ``max_voxels``.

    A tile of edge ``t`` reads ``t + box - stride + 2 * halo`` voxels a side, clipped to the
    padded tomogram (so a thin tomogram's z axis is read whole). Returns the smallest tile
    (one stride) when even that does not fit.
    """
    s = np.array(geom.stride)
    span = geom.box - s + 2 * np.array(geom.halo)
    limit = np.array(padded_shape)
    best = int(s.max())
    t = best
    while t <= int(limit.max()):
        need = np.minimum(t + span, limit).prod()
        if need > max_voxels:
            break
        best = t
        t += int(s.max())
    return best


def default_tile_voxels(model: nn.Module, box: int, device: torch.device) -> int:
    """Input voxels per tile by default (the memory bound of the automatic tile).

    4,000,000 on the CPU; on CUDA half the free memory over the bytes per voxel measured on a
    ``2 * box`` probe.
    """
    if device.type != "cuda":
        return 4_000_000
    n = 2 * box
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        x = torch.zeros((1, 1, n, n, n), device=device)
        model.forward_features(x)
    per_voxel = max(1.0, (torch.cuda.max_memory_allocated(device) - base) / n**3)
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.5 * free / per_voxel)

