"""Classifying boxes cut exactly as training boxes are: at given centres or on a grid.

:func:`classify_boxes` / :class:`BoxClassifier` classify the boxes centred on given voxels;
:func:`classify_candidates` does so for ``locate``'s candidates (choosing their polarity
first when it is unclear); :func:`score_by_boxes` classifies the box at every grid point
(``method="boxes"`` of :func:`tomoclass.locate.score_tomogram`). Boxes are cut, padded and
normalised as the data stage cuts training boxes, then classified in batches by the net
:func:`tomoclass.train.device.inference_net` gives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tomoclass.data.extract import zscore_tensor
from tomoclass.errors import InputError
from tomoclass.infer import inference_net
from tomoclass.locate.candidates import AUTO_RATIO, AUTO_SAMPLE, Candidates
from tomoclass.locate.geometry import NORMALIZATIONS, ScoreMaps, global_stats

log = logging.getLogger(__name__)


def score_by_boxes(
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
        self.batch_size = default_batch(box, self.device) if batch_size is None else batch_size
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


def default_batch(box: int, device: torch.device) -> int:
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
        mean, std = global_stats(tomogram) if normalize == "global" else (0.0, 1.0)
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


def classify_candidates(
    model: torch.nn.Module,
    data: np.ndarray,
    cands: Candidates,
    *,
    auto: bool,
    threshold: float,
    background: int,
    progress: bool,
    **kw,
) -> tuple[Candidates, np.ndarray]:
    """Classify the candidates' boxes; returns the kept candidates and their probabilities.

    With ``auto``, first choose the polarity to keep from the strongest ``AUTO_SAMPLE``
    candidates of each sign: a sign whose share of particles (objectness, 1 - P(background)
    at index ``background``, at least ``threshold``) is below ``AUTO_RATIO`` of the other's
    is dropped. The probabilities are (N, K) for the N kept. ``kw`` go to
    :class:`BoxClassifier`.
    """
    classify = BoxClassifier(model, data, **kw)
    if not auto or len(cands) == 0:
        return cands, classify(cands.zyx, progress=progress)
    dark = np.flatnonzero(cands.dark)[:AUTO_SAMPLE]
    bright = np.flatnonzero(~cands.dark)[:AUTO_SAMPLE]
    sample = np.concatenate([dark, bright])
    sample_probs = classify(cands.zyx[sample], progress=False)
    is_particle = 1.0 - sample_probs[:, background] >= threshold
    share_dark = float(is_particle[: len(dark)].mean()) if len(dark) else 0.0
    share_bright = float(is_particle[len(dark) :].mean()) if len(bright) else 0.0
    if share_bright < AUTO_RATIO * share_dark:
        chosen, keep = "dark", cands.dark.copy()
    elif share_dark < AUTO_RATIO * share_bright:
        chosen, keep = "bright", ~cands.dark
    else:
        chosen, keep = "both", np.ones(len(cands), bool)
    log.info(
        "polarity auto: %s (particles among the strongest %d dark / %d bright candidates: "
        "%.0f%% / %.0f%%)", chosen, len(dark), len(bright), 100 * share_dark,
        100 * share_bright,
    )
    probs = np.zeros((len(cands), sample_probs.shape[1]), np.float32)
    probs[sample] = sample_probs
    todo = keep.copy()
    todo[sample] = False
    probs[todo] = classify(cands.zyx[todo], progress=progress)
    kept = np.flatnonzero(keep)
    return cands.subset(kept, polarity=chosen), probs[kept]
