"""What the scoring methods share: a net's geometry, the score maps, tomogram normalisation.

:func:`model_geometry` measures how a net's feature map relates to its input (stride,
window, halo; :class:`Geometry`); :class:`ScoreMaps` holds per-class probabilities on a
score grid; :func:`normalized_region` and :func:`global_stats` normalise a tomogram region as
the scoring methods read it (``NORMALIZATIONS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from tomoclass.errors import InputError

#: Tomogram normalisations of the scoring methods (see :func:`tomoclass.locate.score_tomogram`).
NORMALIZATIONS = ("local", "global", "none")


@dataclass(frozen=True)
class Geometry:
    """How a model's feature map relates to its input.

    Attributes
    ----------
    box
        Edge of the training box in voxels.
    stride
        Input voxels per feature cell along (z, y, x).
    window
        Feature cells per box along (z, y, x) (``box // stride``).
    halo
        Input voxels of context added on each side of a tile along (z, y, x); a multiple
        of ``stride`` and at least the receptive-field radius beyond a feature cell.
    """

    box: int
    stride: tuple[int, int, int]
    window: tuple[int, int, int]
    halo: tuple[int, int, int]


@dataclass(frozen=True)
class ScoreMaps:
    """Per-class probabilities on the score grid of a tomogram.

    Attributes
    ----------
    probabilities
        Float32 array (K, gz, gy, gx): softmax over the K classes (background included) of
        the classifier on the box centred at grid point (jz, jy, jx), i.e. at tomogram voxel
        ``(stride[0] * jz, stride[1] * jy, stride[2] * jx)``.
    class_names
        The K class names, in the classifier's order.
    stride
        Voxels between grid points along (z, y, x).
    shape
        Tomogram shape (z, y, x) in voxels.
    """

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    stride: tuple[int, int, int]
    shape: tuple[int, int, int]

    def to_voxels(self, k: int) -> np.ndarray:
        """Class ``k``'s probability map resampled to every tomogram voxel.

        Trilinear interpolation between grid points (grid point j sits on voxel
        ``stride * j``), so values stay within [0, 1].

        Returns
        -------
        numpy.ndarray
            Float32 (z, y, x) of the tomogram's shape.
        """
        grid = torch.from_numpy(np.ascontiguousarray(self.probabilities[k]))[None, None]
        full = [s * (g - 1) + 1 for s, g in zip(self.stride, grid.shape[2:], strict=True)]
        up = F.interpolate(grid, size=full, mode="trilinear", align_corners=True)[0, 0]
        z, y, x = self.shape
        return up[:z, :y, :x].numpy().astype(np.float32, copy=False)



def model_geometry(model: nn.Module, box: int, *, device: torch.device | str = "cpu") -> Geometry:
    """Measure a model's stride on a ``box``-sized probe and bound its receptive field.

    Parameters
    ----------
    model
        A model with ``forward_features``.
    box
        Training box edge in voxels.
    device
        Where to run the probe.

    Returns
    -------
    Geometry

    Raises
    ------
    InputError
        The feature map does not tile the box evenly (the net must keep input / stride
        cells, i.e. use 'same' padding).
    """
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32

    def cells_for(n: int) -> tuple[int, ...]:
        with torch.inference_mode():
            x = torch.zeros((1, 1, n, n, n), dtype=dtype, device=device)
            return tuple(int(c) for c in model.forward_features(x).shape[2:])

    cells = cells_for(box)
    # A second probe twice as large must give twice the cells: the map is input / stride.
    if any(c <= 0 or box % c for c in cells) or cells_for(2 * box) != tuple(2 * c for c in cells):
        raise InputError(
            f"the model's feature map {cells} does not divide the {box}-voxel box evenly; "
            "locate needs a box that is a multiple of the net's stride and a net whose "
            "feature map is input / stride ('same' padding)",
            field="box",
        )
    stride = tuple(box // c for c in cells)
    radius = receptive_field_radius(model)
    halo = tuple(int(math.ceil(radius / s)) * s for s in stride)
    return Geometry(box=box, stride=stride, window=cells, halo=halo)  # type: ignore[arg-type]


def receptive_field_radius(model: nn.Module) -> float:
    """Upper bound, in input voxels, of how far a feature cell sees beyond its own voxels.

    Walks the model's convolutions and pools in registration order, summing each kernel's
    reach (``dilation * (kernel - 1) / 2``, times the stride accumulated so far). For a
    DenseNet every 3x3x3 convolution lies on one path, so the sum is exact; for nets with
    parallel branches it over-estimates, which is safe for a halo. Adaptive (global) pools
    and linear layers are ignored.
    """
    radius = 0.0
    stride = 1.0
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            k = max(m.kernel_size)
            d = max(m.dilation)
            radius += d * (k - 1) / 2 * stride
            stride *= max(m.stride)
        elif isinstance(m, nn.modules.pooling._AvgPoolNd | nn.modules.pooling._MaxPoolNd):
            k = max(as_triple(m.kernel_size))
            s = max(as_triple(m.stride if m.stride is not None else m.kernel_size))
            dil = max(as_triple(getattr(m, "dilation", 1)))
            radius += max(0, dil * (k - 1) - (s - 1)) * stride
            stride *= s
    return radius


def normalized_region(
    tomogram: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    box: int,
    normalize: str,
    stats: tuple[float, float] | None,
) -> np.ndarray:
    """Tomogram region [lo, hi) (may reach outside; zeros there), normalised, float32."""
    shape = np.array(tomogram.shape)
    out = np.zeros(tuple(int(v) for v in hi - lo), dtype=np.float32)
    vlo, vhi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(vhi <= vlo):
        return out
    dst = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(vlo, vhi, lo, strict=True))
    if normalize == "local":
        # Window statistics need box // 2 voxels of context beyond the region (mirrored at
        # the tomogram's own edges, identically in every tile).
        m = box // 2
        rlo, rhi = np.maximum(vlo - m, 0), np.minimum(vhi + m, shape)
        data = np.asarray(
            tomogram[tuple(slice(int(a), int(b)) for a, b in zip(rlo, rhi, strict=True))],
            dtype=np.float64,
        )
        mean = ndimage.uniform_filter(data, size=box, mode="reflect")
        sq = ndimage.uniform_filter(data * data, size=box, mode="reflect")
        std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        floor = 1e-3 * stats[1]  # type: ignore[index]
        norm = (data - mean) / np.maximum(std, floor)
        crop = tuple(slice(int(a - r), int(b - r)) for a, b, r in zip(vlo, vhi, rlo, strict=True))
        out[dst] = norm[crop]
    else:
        data = np.asarray(
            tomogram[tuple(slice(int(a), int(b)) for a, b in zip(vlo, vhi, strict=True))],
            dtype=np.float32,
        )
        if normalize == "global":
            mean, std = stats  # type: ignore[misc]
            data = (data - mean) / std
        out[dst] = data
    return out


def global_stats(tomogram: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a tomogram, read one z-slab at a time."""
    total = total_sq = 0.0
    count = 0
    for z0 in range(0, tomogram.shape[0], 16):
        slab = np.asarray(tomogram[z0 : z0 + 16], dtype=np.float64)
        total += float(slab.sum())
        total_sq += float((slab * slab).sum())
        count += slab.size
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
    return mean, (std if std > 0 else 1.0)


def as_triple(v) -> tuple[int, int, int]:
    """``v`` as a (z, y, x) triple (a kernel size or stride given as one int or a tuple)."""
    return tuple(v) if isinstance(v, tuple | list) else (int(v),) * 3  # type: ignore[return-value]
