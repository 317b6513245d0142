"""Score a whole tomogram with a GAP + linear classifier, run fully convolutionally.

The classifier was trained on ``box``-sized subtomograms (32³ in the paper). For a box ``v``
its logits are ``W · mean_q f(v)[q] + b``, where ``f`` is ``forward_features`` (a feature map
downsampled by the net's stride ``s``, ``box / s`` cells a side) and the mean is the global
average pooling (GAP). Because the mean is linear, ``W · mean_q f[q] = mean_q (W · f[q])``:
the linear layer can be applied first, at every cell of the feature map, as a 1x1x1
convolution with the linear weights (the class activation map of Eq. 1 of the paper), and
the GAP then becomes a ``box / s``-sized average pool with stride 1 over that map. Computing
``f`` once over the whole (padded) tomogram and average-pooling it with a box-sized window
therefore evaluates the classifier on *every* box whose corner lies on the feature grid: the
exact sliding-window equivalent of GAP, at the cost of one forward pass.

What "exact" means here: the features of a box cell are the same in the tomogram and in the
isolated box only when they do not depend on what lies beyond the box. Inside an isolated box
the convolutions see zero padding at the box edge, in the tomogram they see the
neighbourhood. The two agree to rounding when the tomogram is zero around the box and the
net maps zero input to zero features (no bias or batch-norm shift); for a trained net they
differ by these border effects, which the benchmark measures.

Geometry (per axis, voxels of the tomogram, ``n`` voxels long)::

    score grid point j  <->  tomogram voxel c = s * j   (j = 0 .. ceil((n - 1) / s))
    box scored at j     =   tomogram[c - box // 2 : c - box // 2 + box]
                            (the ``data`` stage's centring convention for even boxes)

The tomogram is normalised (see ``normalize``) and padded with zeros (the normalised mean) by
``box // 2`` voxels before the net sees it, so particles at the border are scored too.

Tiling keeps memory bounded: the score grid is cut into tiles; a tile's input is its boxes'
extent plus a *halo* of at least the net's receptive-field radius, cut at multiples of the
stride, so every feature used is computed from exactly the voxels it would see in one pass
over the whole tomogram. Tile seams therefore change nothing but rounding.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from tomoclass.errors import InputError

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
            k = max(_triple(m.kernel_size))
            s = max(_triple(m.stride if m.stride is not None else m.kernel_size))
            dil = max(_triple(getattr(m, "dilation", 1)))
            radius += max(0, dil * (k - 1) - (s - 1)) * stride
            stride *= s
    return radius


def score_tomogram(
    model: nn.Module,
    tomogram: np.ndarray,
    *,
    box: int,
    class_names: Sequence[str],
    tile: int | None = None,
    halo: int | None = None,
    max_tile_voxels: int | None = None,
    normalize: str = "local",
    device: torch.device | str | None = None,
    progress: bool = True,
) -> ScoreMaps:
    """Per-class probability maps of a whole tomogram, computed in overlapping tiles.

    Parameters
    ----------
    model
        A GAP + linear classifier (``has_gap_head``) with ``forward_features`` and
        ``get_classifier()``; put in eval mode here.
    tomogram
        (z, y, x) array, memory-mapped is fine: only one tile's region is read at a time.
    box
        The training box edge in voxels; must be a multiple of the model's stride.
    class_names
        Names of the classifier's outputs, in order.
    tile
        Edge of a tile's score region in tomogram voxels (rounded down to the stride).
        Default: the largest tile whose input (``tile + box - stride + 2 * halo`` a side,
        clipped to the padded tomogram) holds at most ``max_tile_voxels`` voxels.
    halo
        Context voxels around a tile; default: the receptive-field bound of
        :func:`model_geometry`. Smaller values trade exactness at seams for speed.
    max_tile_voxels
        Memory bound for the automatic ``tile``: input voxels per tile. Default on CPU
        4,000,000 (about 4.5 GB for the paper's net, measured in ``docs/locate.md``); on
        CUDA half the free GPU memory divided by the bytes per voxel measured on a probe.
    normalize
        ``"local"`` (default): each voxel z-scored by the mean and standard deviation of the
        ``box``-sized window centred on it, the fully convolutional stand-in for the data
        stage's per-subtomogram z-score; ``"global"``: one mean and standard deviation for
        the tomogram; ``"none"``: values as stored.
    device
        Torch device; default CUDA when available, else CPU.
    progress
        Show a tqdm bar over tiles.

    Returns
    -------
    ScoreMaps

    Raises
    ------
    InputError
        Not a GAP + linear model, class names that do not match the classifier, a bad
        option, or a tomogram that is not 3-D.
    """
    if not getattr(model, "has_gap_head", False):
        raise InputError(
            "locate needs a model with a global-average-pooling + linear head "
            "(has_gap_head); this model has none",
            field="model",
        )
    if normalize not in NORMALIZATIONS:
        raise InputError(
            f"unknown normalization {normalize!r}; use one of {NORMALIZATIONS}", field="normalize"
        )
    if tomogram.ndim != 3:
        raise InputError(f"tomogram must be 3-D (z, y, x), got shape {tomogram.shape}")
    linear = model.get_classifier()
    if linear.out_features != len(class_names):
        raise InputError(
            f"the classifier has {linear.out_features} outputs but {len(class_names)} class "
            "names were given",
            field="class_names",
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    model = model.to(device).eval()
    geom = model_geometry(model, box, device=device)
    if halo is not None:
        geom = Geometry(
            box=geom.box,
            stride=geom.stride,
            window=geom.window,
            halo=tuple(int(math.ceil(halo / s)) * s for s in geom.stride),  # type: ignore[arg-type]
        )
    shape = np.array(tomogram.shape)
    if tile is None:
        if max_tile_voxels is None:
            max_tile_voxels = _default_tile_voxels(model, box, device)
        tile = choose_tile(geom, _padded_extent(geom, shape), max_tile_voxels)
    tiles = plan_tiles(geom, tuple(int(v) for v in shape), tile)
    s, w = np.array(geom.stride), np.array(geom.window)
    grid = _grid(geom, shape)
    pad_lo = box // 2
    # "local" floors each window's standard deviation at 1e-3 of the tomogram's, the same
    # constant in every tile, so flat regions do not blow up noise.
    stats = _global_stats(tomogram) if normalize != "none" else None

    weight = linear.weight.detach().to(device)[:, :, None, None, None]
    bias = linear.bias.detach().to(device) if linear.bias is not None else None
    probs = np.empty((len(class_names), *grid), dtype=np.float32)
    with torch.inference_mode():
        for t in tqdm(tiles, desc="scoring tiles", unit="tile", disable=not progress):
            ja, jb, lo, hi = (np.array(v) for v in (t.grid_start, t.grid_stop, t.lo, t.hi))
            region = _normalized_region(tomogram, lo - pad_lo, hi - pad_lo, box, normalize, stats)
            x = torch.from_numpy(region).to(device=device, dtype=weight.dtype)[None, None]
            feats = model.forward_features(x)
            cam = F.conv3d(feats, weight)
            logits = F.avg_pool3d(cam, kernel_size=tuple(int(v) for v in w), stride=1)
            if bias is not None:
                logits = logits + bias[:, None, None, None]
            off = ja - lo // s
            sl = tuple(slice(int(o), int(o + (b - a))) for o, a, b in zip(off, ja, jb, strict=True))
            out = torch.softmax(logits[0][(slice(None), *sl)], dim=0)
            probs[(slice(None), *(slice(int(a), int(b)) for a, b in zip(ja, jb, strict=True)))] = (
                out.float().cpu().numpy()
            )
    return ScoreMaps(
        probabilities=probs,
        class_names=tuple(class_names),
        stride=tuple(int(v) for v in s),  # type: ignore[arg-type]
        shape=tuple(int(v) for v in shape),  # type: ignore[arg-type]
    )


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
    grid = _grid(geom, shape_arr)
    padded = np.array(_padded_extent(geom, shape_arr))
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


def _grid(geom: Geometry, shape: np.ndarray) -> np.ndarray:
    """Score-grid points per axis: j = 0 .. ceil((n - 1) / stride)."""
    s = np.array(geom.stride)
    return (np.asarray(shape) - 1 + s - 1) // s + 1


def _padded_extent(geom: Geometry, shape: np.ndarray) -> tuple[int, int, int]:
    """Extent of the zero-padded tomogram the net sees: a multiple of the stride."""
    s = np.array(geom.stride)
    return tuple(int(v) for v in s * (_grid(geom, shape) - 1) + geom.box)  # type: ignore[return-value]


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


def _default_tile_voxels(model: nn.Module, box: int, device: torch.device) -> int:
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


def _normalized_region(
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


def _global_stats(tomogram: np.ndarray) -> tuple[float, float]:
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


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, tuple | list) else (int(v),) * 3  # type: ignore[return-value]
