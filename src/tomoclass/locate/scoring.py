"""Score a whole tomogram with a trained classifier: every box on a grid, or fully convolutionally.

Two ways to put the classifier at every grid point of a tomogram:

``method="boxes"`` (default): exact. The box centred on each grid point (``stride`` voxels
apart) is cut, padded and normalised exactly as the data stage cuts training boxes (border
boxes padded with the mean of their in-bounds voxels, then z-scored per box), and classified
in batches. The scores are the classifier's own outputs on the boxes it was trained for.

``method="stages"`` / ``"tiles"`` (fully convolutional, below): one forward pass over the
whole tomogram, 10-50x fewer FLOPs, but NOT what the net was trained on: a net trained on
isolated boxes sees zero padding around every box, and with a receptive field (104 voxels for
the paper's net) far larger than the box (32), its features depend on that padding. On the
shrec12 gpu tier (benchmarks/results/gpu_h100_20261126/table2_gpu) a 13-class dilated net
with 0.89 box-level macro F1 gave objectness above 0.5 nearly everywhere by the fully
convolutional route (371,617 picks for 2,500 particles, localization F1 0.013). It is kept
for nets trained to be used that way (e.g. bias-free or trained on larger crops) and for the
identity tests below.

Fully convolutional scoring, in detail:

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
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from tomoclass.data.extract import zscore_tensor
from tomoclass.errors import InputError
from tomoclass.train.device import inference_net

log = logging.getLogger(__name__)

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
    method: str = "boxes",
    stride: int | None = None,
    batch_size: int | None = None,
    precision: str = "auto",
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
        For ``method="tiles"``: context voxels around a tile; default: the receptive-field
        bound of :func:`model_geometry`. Smaller values trade exactness at seams for speed.
        (The ``"stages"`` method always uses each stage's own receptive field.)
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
    method
        ``"boxes"`` (default): classify the box centred on every grid point, cut and
        normalised as training boxes are (exact; see the module docstring). ``normalize``
        then means: ``"local"`` each box z-scored (the data stage's ``zscore``),
        ``"global"`` the tomogram's mean and standard deviation, ``"none"`` raw values.
        ``"stages"``: run the trunk (``model.features``, an ``nn.Sequential``) one
        downsampling stage at a time over the whole tomogram, each stage in tiles with that
        stage's own (small) halo, keeping the stage outputs (1/8 the voxels per stage) in
        memory; ``"tiles"``: run the whole trunk per tile with the whole net's halo (every
        tile re-reads ``2 * halo`` voxels of context a side); ``"auto"``:
        ``"stages"`` when the model's trunk allows it. The two agree with each other
        (tiles and stages are exact re-arrangements of one fully convolutional pass);
        ``"stages"`` recomputes far less (see ``docs/locate.md``).
    stride
        ``"boxes"`` only: voxels between grid points (default: the net's own stride, 4
        for the DenseNets; the other methods always use the net's stride). Cost grows
        with ``1 / stride**3``.
    batch_size
        ``"boxes"`` only: boxes per forward pass (default 256 on CUDA; on the CPU about
        2 million voxels' worth, 61 boxes of 32³, at least 16 and at most 1024).
    precision
        ``"boxes"`` only: ``"auto"`` (bf16 autocast on a CUDA GPU that supports it, float32
        otherwise), ``"fp32"``, or ``"bf16"`` (also on a CPU with native bf16, AVX512-BF16
        or AMX: classification 1.12x faster on the Zen 4 development CPU, the same picks to
        0.1%, docs/locate.md; an error elsewhere).

    Returns
    -------
    ScoreMaps

    Raises
    ------
    InputError
        Not a GAP + linear model, class names that do not match the classifier, a bad
        option, or a tomogram that is not 3-D.
    """
    if method not in ("boxes", "auto", "stages", "tiles"):
        raise InputError(
            f"unknown method {method!r}; use boxes, stages, tiles or auto", field="method"
        )
    if method != "boxes" and not getattr(model, "has_gap_head", False):
        raise InputError(
            f"method {method!r} needs a model with a global-average-pooling + linear head "
            "(has_gap_head); this model has none: use method='boxes'",
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
    if method == "boxes":
        if stride is None:
            stride = (max(model_geometry(model, box, device=device).stride)
                      if getattr(model, "has_gap_head", False) else 4)
        return _score_by_boxes(
            model,
            tomogram,
            box,
            class_names,
            stride=int(stride),
            normalize=normalize,
            device=device,
            batch_size=batch_size or _default_batch(box, device),
            progress=progress,
            precision=precision,
        )
    geom = model_geometry(model, box, device=device)
    if halo is not None:
        geom = Geometry(
            box=geom.box,
            stride=geom.stride,
            window=geom.window,
            halo=tuple(int(math.ceil(halo / s)) * s for s in geom.stride),  # type: ignore[arg-type]
        )
    shape = np.array(tomogram.shape)
    stages = _stages(model, geom, box, device) if method != "tiles" else None
    if method == "stages" and stages is None:
        raise InputError(
            "this model's trunk is not an nn.Sequential 'features' that forward_features "
            "runs unchanged; use method='tiles'",
            field="method",
        )
    if max_tile_voxels is None and tile is None:
        max_tile_voxels = _default_tile_voxels(model, box, device)
    stats = _global_stats(tomogram) if normalize != "none" else None
    log.info(
        "scoring %s on %s by %s (stride %s, box %d)",
        "x".join(map(str, tomogram.shape)),
        device,
        "stages" if stages else "tiles",
        geom.stride,
        box,
    )
    if stages is not None:
        return _score_by_stages(
            model,
            stages,
            tomogram,
            geom,
            class_names,
            tile,
            max_tile_voxels,
            normalize,
            stats,
            device,
            progress,
        )
    if tile is None:
        tile = choose_tile(geom, _padded_extent(geom, shape), max_tile_voxels)  # type: ignore[arg-type]
    tiles = plan_tiles(geom, tuple(int(v) for v in shape), tile)
    s, w = np.array(geom.stride), np.array(geom.window)
    grid = _grid(geom, shape)
    pad_lo = box // 2
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


def _score_by_boxes(
    model: nn.Module,
    tomogram: np.ndarray,
    box: int,
    class_names: Sequence[str],
    *,
    stride: int,
    normalize: str,
    device: torch.device,
    batch_size: int,
    progress: bool,
    precision: str = "auto",
) -> ScoreMaps:
    """Classify the box centred on every grid point (voxel ``stride * j``).

    Each box is cut, padded and normalised exactly as the data stage would cut it; see
    :func:`score_tomogram`.
    """
    if stride < 1:
        raise InputError(f"stride must be a positive number of voxels, got {stride}",
                         field="stride")
    shape = np.array(tomogram.shape)
    grid = (shape - 1 + stride - 1) // stride + 1
    # Grid points may sit up to stride - 1 voxels past the last voxel (j = ceil((n - 1) / s)).
    boxes = _BoxCutter(tomogram, box, normalize, device, max_centre=stride * (grid - 1))
    gy_gx = int(grid[1] * grid[2])

    def centres(idx: torch.Tensor) -> torch.Tensor:
        jz, rest = idx // gy_gx, idx % gy_gx
        return torch.stack([jz, rest // int(grid[2]), rest % int(grid[2])], dim=1) * stride

    net, dtype = inference_net(model, device, precision)
    probs = _classify(net, dtype, boxes, int(np.prod(grid)), centres, len(class_names),
                      batch_size, device, progress)
    return ScoreMaps(
        probabilities=probs.reshape(len(class_names), *(int(g) for g in grid)),
        class_names=tuple(class_names),
        stride=(stride, stride, stride),
        shape=tuple(int(v) for v in shape),  # type: ignore[arg-type]
    )


def classify_boxes(
    model: nn.Module,
    tomogram: np.ndarray,
    centres_zyx: np.ndarray,
    *,
    box: int,
    normalize: str = "local",
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    precision: str = "auto",
    box_filter: np.ndarray | None = None,
) -> np.ndarray:
    """Class probabilities of the boxes centred on given voxels, cut as training boxes are.

    Each box ``tomogram[c - box // 2 : c - box // 2 + box]`` (per axis) is cut, padded with
    the mean of its in-bounds voxels where it crosses the border and normalised exactly as
    the data stage cuts training boxes (``normalize``: ``"local"`` z-scores each box,
    ``"global"`` uses the tomogram's mean and standard deviation, ``"none"`` nothing), then
    classified in batches (bf16 + channels-last on CUDA, ``optimize_for_inference`` on the
    CPU).

    Parameters
    ----------
    model
        Any classifier taking (B, 1, box, box, box).
    tomogram
        (z, y, x) array, memory-mapped is fine.
    centres_zyx
        Integer array (N, 3) of voxel indices (z, y, x); centres outside the tomogram are
        allowed (their boxes are padded) up to ``box // 2`` voxels beyond it.
    box_filter
        A ``(box, box, box)`` gain on each box's FFT grid, applied after normalisation and
        followed by z-scoring again (:func:`tomoclass.data.spectrum.filter_boxes`: spectrum
        matching); None: none.
    box, normalize, device, batch_size, progress, precision
        As for :func:`score_tomogram`.

    Returns
    -------
    numpy.ndarray
        Float32 (N, K): softmax over the classifier's K outputs.

    Raises
    ------
    InputError
        A tomogram that is not 3-D, centres that are not (N, 3) integers or lie too far out,
        a bad normalisation or batch size.
    """
    return BoxClassifier(model, tomogram, box=box, normalize=normalize, device=device,
                         batch_size=batch_size, precision=precision,
                         box_filter=box_filter)(centres_zyx, progress=progress)


class BoxClassifier:
    """A classifier made ready to classify boxes of one tomogram, for several calls.

    What every call needs is prepared once: the net for inference (``optimize_for_inference``
    on the CPU, channels-last with bf16 autocast on CUDA) and, at the first call, the
    tomogram copied to the device with the padding that boxes up to half a box outside it
    need. :func:`classify_boxes` is one call; ``locate(polarity="auto")`` makes two.

    Parameters
    ----------
    model, tomogram, box, normalize, device, batch_size, precision, box_filter
        As for :func:`classify_boxes`.

    Raises
    ------
    InputError
        A tomogram that is not 3-D or a bad normalisation (a bad batch size at the call).
    """

    def __init__(self, model: nn.Module, tomogram: np.ndarray, *, box: int,
                 normalize: str = "local", device: torch.device | str | None = None,
                 batch_size: int | None = None, precision: str = "auto",
                 box_filter: np.ndarray | None = None) -> None:
        if tomogram.ndim != 3:
            raise InputError(f"tomogram must be 3-D (z, y, x), got shape {tomogram.shape}")
        if normalize not in NORMALIZATIONS:
            raise InputError(f"unknown normalization {normalize!r}; use one of "
                             f"{NORMALIZATIONS}", field="normalize")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = _default_batch(box, self.device) if batch_size is None else batch_size
        self.tomogram, self.box, self.normalize = tomogram, box, normalize
        model = model.to(self.device).eval()
        self.n_out = _n_outputs(model, box, self.device)
        self.net, self.dtype = inference_net(model, self.device, precision)
        if box_filter is not None and np.shape(box_filter) != (box, box, box):
            raise InputError(f"box filter of shape {np.shape(box_filter)} for {box}-voxel "
                             "boxes", field="box_filter")
        self.box_filter = box_filter
        self._cutter: _BoxCutter | None = None

    def __call__(self, centres_zyx: np.ndarray, *, progress: bool = True) -> np.ndarray:
        """Float32 (N, K) probabilities of the boxes centred on ``centres_zyx`` (N, 3).

        Raises
        ------
        InputError
            Centres that are not (N, 3) integers or lie more than half a box outside, a
            batch size below 1.
        """
        c = np.asarray(centres_zyx)
        if c.ndim != 2 or c.shape[1] != 3 or (c.size and not np.issubdtype(c.dtype, np.integer)):
            raise InputError(f"centres must be an (N, 3) integer array, got {c.dtype} "
                             f"{c.shape}", field="centres")
        shape = np.array(self.tomogram.shape)
        half = self.box // 2
        if c.size and (np.any(c < -half) or np.any(c >= shape + half)):
            raise InputError("box centres lie more than half a box outside the tomogram",
                             field="centres")
        if len(c) == 0:
            return np.empty((0, self.n_out), np.float32)
        if self._cutter is None:  # centres may be negative: shift them into the padded frame
            self._cutter = _BoxCutter(self.tomogram, self.box, self.normalize, self.device,
                                      max_centre=shape - 1 + 2 * half, shift=half,
                                      box_filter=self.box_filter)
        table = torch.from_numpy(c.astype(np.int64) + half).to(self.device)
        probs = _classify(self.net, self.dtype, self._cutter, len(c), lambda idx: table[idx],
                          self.n_out, self.batch_size, self.device, progress)
        return np.ascontiguousarray(probs.T)


def _n_outputs(model: nn.Module, box: int, device: torch.device) -> int:
    if hasattr(model, "get_classifier"):
        return int(model.get_classifier().out_features)
    with torch.inference_mode():
        return int(model(torch.zeros(1, 1, box, box, box, device=device)).shape[1])


def _default_batch(box: int, device: torch.device) -> int:
    """256 boxes on CUDA; on the CPU about 2 million voxels' worth, 16 to 1024 boxes."""
    return 256 if device.type == "cuda" else int(np.clip(2_000_000 // box**3, 16, 1024))


class _BoxCutter:
    """Boxes of a tomogram cut, padded and normalised as the data stage cuts them.

    The tomogram is copied (once, slab by slab) into a NaN-padded tensor on the device; a
    box's in-bounds voxels are its finite ones, and the data stage fills the rest with their
    mean. ``cut(centres)`` takes (B, 3) voxel indices in the frame shifted by ``shift``.
    """

    def __init__(self, tomogram: np.ndarray, box: int, normalize: str, device: torch.device,
                 *, max_centre: np.ndarray, shift: int = 0,
                 box_filter: np.ndarray | None = None) -> None:
        shape = np.array(tomogram.shape)
        half = box // 2
        self.box, self.normalize = box, normalize
        self.grid = (None if box_filter is None
                     else torch.as_tensor(box_filter, dtype=torch.float32, device=device))
        # padded[p] holds tomogram voxel p - half - shift; the box at shifted centre c is
        # padded[c : c + box].
        ext = np.asarray(max_centre) + box
        off = half + shift
        padded = torch.full(tuple(int(v) for v in ext), float("nan"), dtype=torch.float32)
        mean, std = _global_stats(tomogram) if normalize == "global" else (0.0, 1.0)
        for z0 in range(0, int(shape[0]), 16):  # slab by slab: a memory-mapped file is read once
            slab = np.array(tomogram[z0 : z0 + 16], dtype=np.float32)  # a writable copy
            if normalize == "global":
                slab = (slab - mean) / std
            padded[off + z0 : off + z0 + len(slab), off : off + int(shape[1]),
                   off : off + int(shape[2])] = torch.from_numpy(slab)
        padded = padded.to(device)
        st = padded.stride()
        n = tuple(int(v) for v in ext - box + 1)
        self.windows = padded.as_strided((*n, box, box, box), (*st, *st))

    def cut(self, c: torch.Tensor) -> torch.Tensor:
        """(B, 1, box, box, box) float32 boxes centred on ``c`` (B, 3)."""
        x = self.windows[c[:, 0], c[:, 1], c[:, 2]]  # (B, box, box, box), a copy
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            count = finite.sum(dim=(1, 2, 3), dtype=torch.float32)
            total = torch.where(finite, x, 0.0).sum(dim=(1, 2, 3), dtype=torch.float32)
            fill = torch.where(count > 0, total / count.clamp_min(1), 0.0)
            x = torch.where(finite, x, fill[:, None, None, None])
        if self.normalize == "local":
            x = zscore_tensor(x)
        if self.grid is not None:
            from tomoclass.data.spectrum import filter_boxes

            x = filter_boxes(x, self.grid)
        return x[:, None]


def _classify(net: nn.Module, dtype: torch.dtype | None, boxes: _BoxCutter, n_total: int,
              centres, n_out: int, batch_size: int, device: torch.device,
              progress: bool) -> np.ndarray:
    """Softmax of ``net`` on boxes ``0 .. n_total - 1``, (K, n_total) float32.

    ``net`` and ``dtype`` come from :func:`tomoclass.train.device.inference_net` (``dtype``:
    the autocast dtype, or None); ``centres(idx)`` gives the shifted centres of the boxes ``idx``.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}", field="batch_size")
    probs = np.empty((n_out, n_total), dtype=np.float32)
    bar = tqdm(total=n_total, desc="scoring boxes", unit="box", disable=not progress)
    with torch.inference_mode():
        for start in range(0, n_total, batch_size):
            idx = torch.arange(start, min(n_total, start + batch_size), device=device)
            x = boxes.cut(centres(idx))
            if dtype is not None:
                x = x.contiguous(memory_format=torch.channels_last_3d)
                with torch.autocast(device.type, dtype=dtype):
                    logits = net(x)
            else:
                logits = net(x)
            probs[:, start : start + len(idx)] = (
                torch.softmax(logits.float(), dim=1).T.cpu().numpy()
            )
            bar.update(len(idx))
    bar.close()
    return probs


@dataclass(frozen=True)
class _Stage:
    """A run of trunk modules ending in one downsampling (or the trunk's end)."""

    net: nn.Module
    stride: tuple[int, int, int]
    halo: tuple[int, int, int]


def _stages(
    model: nn.Module, geom: Geometry, box: int, device: torch.device
) -> list[_Stage] | None:
    """Split ``model.features`` after each downsampling child; None if that is not possible.

    Possible when ``features`` is an ``nn.Sequential`` whose output equals
    ``forward_features`` (checked on a box-sized probe) and whose strides multiply to the
    measured stride.
    """
    feats = getattr(model, "features", None)
    if not isinstance(feats, nn.Sequential) or len(feats) < 2:
        return None
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    probe = torch.randn((1, 1, box, box, box), generator=torch.Generator().manual_seed(0))
    probe = probe.to(device=device, dtype=dtype)
    with torch.inference_mode():
        # Loose enough for TF32 convolutions on GPUs; a trunk that is not what
        # forward_features runs differs by far more.
        if not torch.allclose(feats(probe), model.forward_features(probe), rtol=1e-3, atol=1e-4):
            return None
    groups: list[list[nn.Module]] = [[]]
    for child in feats.children():
        groups[-1].append(child)
        if any(v > 1 for v in _module_stride(child)):
            groups.append([])
    stages = []
    total = np.ones(3, int)
    for g in groups:
        if not g:
            continue
        net = nn.Sequential(*g)
        st = np.array(_module_stride(net))
        total *= st
        r = receptive_field_radius(net)
        halo = tuple(int(math.ceil(r / v)) * int(v) for v in st)
        stages.append(_Stage(net, tuple(int(v) for v in st), halo))  # type: ignore[arg-type]
    if tuple(int(v) for v in total) != geom.stride:
        return None
    return stages


def _module_stride(module: nn.Module) -> tuple[int, int, int]:
    stride = np.ones(3, int)
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            stride *= np.array(_triple(m.stride))
        elif isinstance(m, nn.modules.pooling._AvgPoolNd | nn.modules.pooling._MaxPoolNd):
            stride *= np.array(_triple(m.stride if m.stride is not None else m.kernel_size))
    return tuple(int(v) for v in stride)  # type: ignore[return-value]


def _score_by_stages(
    model: nn.Module,
    stages: list[_Stage],
    tomogram: np.ndarray,
    geom: Geometry,
    class_names: Sequence[str],
    tile: int | None,
    max_tile_voxels: int | None,
    normalize: str,
    stats: tuple[float, float] | None,
    device: torch.device,
    progress: bool,
) -> ScoreMaps:
    """Stage by stage over the whole padded tomogram; see ``method`` of score_tomogram."""
    shape = np.array(tomogram.shape)
    box = geom.box
    pad_lo = box // 2
    extent = np.array(_padded_extent(geom, shape))
    linear = model.get_classifier()
    dtype = linear.weight.dtype
    current: torch.Tensor | None = None  # (C, D, H, W) on the CPU; None: read the tomogram
    cumulative = np.ones(3, int)
    plans = []
    for st in stages:
        s_arr, h_arr = np.array(st.stride), np.array(st.halo)
        out_extent = extent // s_arr
        if tile is not None:
            cells = np.maximum(1, int(tile) // (cumulative * s_arr))
        else:
            cells = _stage_cells(s_arr, h_arr, extent, max_tile_voxels)  # type: ignore[arg-type]
        starts = [range(0, int(n), int(c)) for n, c in zip(out_extent, cells, strict=True)]
        plans.append((st, extent, out_extent, cells, list(itertools.product(*starts))))
        extent, cumulative = out_extent, cumulative * s_arr
    n_tiles = sum(len(p[4]) for p in plans)
    bar = tqdm(total=n_tiles, desc="scoring tiles", unit="tile", disable=not progress)
    with torch.inference_mode():
        for st, in_extent, out_extent, cells, tiles in plans:
            s_arr, h_arr = np.array(st.stride), np.array(st.halo)
            out: torch.Tensor | None = None
            for oa in tiles:
                oa_arr = np.array(oa)
                ob = np.minimum(oa_arr + cells, out_extent)
                lo = np.maximum(0, s_arr * oa_arr - h_arr)
                hi = np.minimum(in_extent, s_arr * ob + h_arr)
                if current is None:
                    region = _normalized_region(
                        tomogram, lo - pad_lo, hi - pad_lo, box, normalize, stats
                    )
                    x = torch.from_numpy(region)[None, None]
                else:
                    x = current[(slice(None), *_slices(lo, hi))][None]
                y = st.net(x.to(device=device, dtype=dtype))[0]
                if out is None:
                    out = torch.empty((y.shape[0], *(int(v) for v in out_extent)), dtype=y.dtype)
                off = oa_arr - lo // s_arr
                out[(slice(None), *_slices(oa_arr, ob))] = y[
                    (slice(None), *_slices(off, off + ob - oa_arr))
                ].cpu()
                bar.update()
            current = out
    bar.close()
    if current is None:  # no stage ran: cannot happen with a non-empty trunk
        raise RuntimeError("stage-wise scoring produced no feature map")
    weight = linear.weight.detach()[:, :, None, None, None]
    probs = np.empty((len(class_names), *_grid(geom, shape)), dtype=np.float32)
    with torch.inference_mode():
        # Per z-slab of the score grid, so the class maps never need the whole map twice.
        w = tuple(int(v) for v in geom.window)
        for za in range(0, probs.shape[1], 16):
            zb = min(za + 16, probs.shape[1])
            f = current[:, za : zb + w[0] - 1].to(device)[None]
            logits = F.avg_pool3d(F.conv3d(f, weight.to(device)), kernel_size=w, stride=1)[0]
            if linear.bias is not None:
                logits = logits + linear.bias.detach().to(device)[:, None, None, None]
            probs[:, za:zb] = torch.softmax(logits, dim=0).float().cpu().numpy()
    return ScoreMaps(
        probabilities=probs,
        class_names=tuple(class_names),
        stride=geom.stride,
        shape=tuple(int(v) for v in shape),  # type: ignore[arg-type]
    )


def _stage_cells(
    stride: np.ndarray, halo: np.ndarray, in_extent: np.ndarray, max_voxels: int
) -> np.ndarray:
    """Largest cubic tile (output cells) of a stage whose input fits ``max_voxels``."""
    best = 1
    c = 1
    while c <= int((in_extent // stride).max()):
        need = np.minimum(stride * c + 2 * halo, in_extent).prod()
        if need > max_voxels:
            break
        best = c
        c += 1 if c < 8 else max(1, c // 8)
    return np.full(3, best)


def _slices(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


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
