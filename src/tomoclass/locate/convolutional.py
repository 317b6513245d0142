"""Fully convolutional scoring: one forward pass over the tomogram, in tiles or stage by stage.

``method="tiles"`` (:func:`score_by_tiles`) runs the whole trunk per tile with the whole
net's halo; ``method="stages"`` (:func:`score_by_stages`) runs the trunk one downsampling
stage at a time (:func:`trunk_stages`). Both are exact re-arrangements of one pass; see
:mod:`tomoclass.locate.scoring` for what that pass is, and why a net trained on isolated boxes
was not trained for it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tomoclass.locate.geometry import (
    Geometry,
    ScoreMaps,
    as_triple,
    normalized_region,
    receptive_field_radius,
)
from tomoclass.locate.tiles import choose_tile, grid_shape, padded_extent, plan_tiles


@dataclass(frozen=True)
class _Stage:
    """A run of trunk modules ending in one downsampling (or the trunk's end)."""

    net: nn.Module
    stride: tuple[int, int, int]
    halo: tuple[int, int, int]


def trunk_stages(
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
            stride *= np.array(as_triple(m.stride))
        elif isinstance(m, nn.modules.pooling._AvgPoolNd | nn.modules.pooling._MaxPoolNd):
            stride *= np.array(as_triple(m.stride if m.stride is not None else m.kernel_size))
    return tuple(int(v) for v in stride)  # type: ignore[return-value]


def score_by_stages(
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
    extent = np.array(padded_extent(geom, shape))
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
                    region = normalized_region(
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
    probs = np.empty((len(class_names), *grid_shape(geom, shape)), dtype=np.float32)
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



def score_by_tiles(
    model: nn.Module,
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
    """The whole trunk per tile, with the whole net's halo; see ``method`` of score_tomogram."""
    shape = np.array(tomogram.shape)
    box = geom.box
    if tile is None:
        tile = choose_tile(geom, padded_extent(geom, shape), max_tile_voxels)  # type: ignore[arg-type]
    tiles = plan_tiles(geom, tuple(int(v) for v in shape), tile)
    s, w = np.array(geom.stride), np.array(geom.window)
    grid = grid_shape(geom, shape)
    pad_lo = box // 2
    linear = model.get_classifier()
    weight = linear.weight.detach().to(device)[:, :, None, None, None]
    bias = linear.bias.detach().to(device) if linear.bias is not None else None
    probs = np.empty((len(class_names), *grid), dtype=np.float32)
    with torch.inference_mode():
        for t in tqdm(tiles, desc="scoring tiles", unit="tile", disable=not progress):
            ja, jb, lo, hi = (np.array(v) for v in (t.grid_start, t.grid_stop, t.lo, t.hi))
            region = normalized_region(tomogram, lo - pad_lo, hi - pad_lo, box, normalize, stats)
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
