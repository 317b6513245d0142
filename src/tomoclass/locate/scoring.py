"""Score a whole tomogram with a trained classifier: every box on a grid, or fully convolutionally.

Two ways to put the classifier at every grid point of a tomogram (:func:`score_tomogram`
chooses; the methods live in :mod:`~tomoclass.locate.boxes`,
:mod:`~tomoclass.locate.convolutional` and :mod:`~tomoclass.locate.tiles`, what they share
in :mod:`~tomoclass.locate.geometry`):

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

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tomoclass.errors import InputError
from tomoclass.locate.boxes import default_batch, score_by_boxes
from tomoclass.locate.convolutional import score_by_stages, score_by_tiles, trunk_stages
from tomoclass.locate.geometry import (
    NORMALIZATIONS,
    Geometry,
    ScoreMaps,
    global_stats,
    model_geometry,
)
from tomoclass.locate.tiles import default_tile_voxels

log = logging.getLogger(__name__)


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
    device = _check_request(model, tomogram, class_names, method, normalize, device)
    model = model.to(device).eval()
    if method == "boxes":
        if stride is None:
            stride = (max(model_geometry(model, box, device=device).stride)
                      if getattr(model, "has_gap_head", False) else 4)
        return score_by_boxes(model, tomogram, box, class_names, stride=int(stride),
                              normalize=normalize, device=device,
                              batch_size=batch_size or default_batch(box, device),
                              progress=progress, precision=precision)
    geom, stages = _dense_plan(model, box, halo, method, device)
    if max_tile_voxels is None and tile is None:
        max_tile_voxels = default_tile_voxels(model, box, device)
    stats = global_stats(tomogram) if normalize != "none" else None
    log.info("scoring %s on %s by %s (stride %s, box %d)", "x".join(map(str, tomogram.shape)),
             device, "stages" if stages else "tiles", geom.stride, box)
    if stages is not None:
        return score_by_stages(model, stages, tomogram, geom, class_names, tile,
                               max_tile_voxels, normalize, stats, device, progress)
    return score_by_tiles(model, tomogram, geom, class_names, tile, max_tile_voxels,
                          normalize, stats, device, progress)


def _check_request(model: nn.Module, tomogram: np.ndarray, class_names: Sequence[str],
                   method: str, normalize: str, device: torch.device | str | None
                   ) -> torch.device:
    """Refuse a bad method, model, normalisation, tomogram or class list; the device to use."""
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
    return torch.device(device)


def _dense_plan(model: nn.Module, box: int, halo: int | None, method: str,
                device: torch.device) -> tuple[Geometry, list | None]:
    """The net's geometry (``halo`` overriding its own) and its trunk stages (None: tiles).

    Raises
    ------
    InputError
        ``method="stages"`` for a trunk that cannot be run stage by stage.
    """
    geom = model_geometry(model, box, device=device)
    if halo is not None:
        geom = Geometry(
            box=geom.box,
            stride=geom.stride,
            window=geom.window,
            halo=tuple(int(math.ceil(halo / s)) * s for s in geom.stride),  # type: ignore[arg-type]
        )
    stages = trunk_stages(model, geom, box, device) if method != "tiles" else None
    if method == "stages" and stages is None:
        raise InputError(
            "this model's trunk is not an nn.Sequential 'features' that forward_features "
            "runs unchanged; use method='tiles'",
            field="method",
        )
    return geom, stages
