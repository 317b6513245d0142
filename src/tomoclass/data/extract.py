"""Subtomogram extraction from (memory-mapped) tomograms.

Conventions
-----------
- Tomograms and boxes are ``(z, y, x)`` arrays; table coordinates are voxels, 0-based, x fastest
  (:mod:`tomoclass.io.schema`).
- A box of size ``D`` is centred so that the particle centre lands on voxel ``(D//2, D//2, D//2)``
  of the box (the FFT-centre convention, also for odd ``D``).
- Without ``subvoxel`` the centre is rounded to the nearest voxel (halves round up) and the box is
  a plain slice of the tomogram (no interpolation). With ``subvoxel`` (or when the tomogram's voxel
  size differs from the requested one) the box is resampled by separable cubic (Catmull-Rom)
  interpolation so the exact centre is on ``D//2``; when downsampling, a Gaussian low-pass of
  sigma ``step / 2`` tomogram voxels is applied first against aliasing.
- Particles whose centre lies outside the tomogram are always skipped and counted
  (``Extraction.n_outside``); particles whose box crosses the border are padded with the mean of
  their in-bounds voxels and flagged (``border="pad"``, default) or skipped and counted
  (``border="skip"``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.volume import Volume, check_voxel_size

log = logging.getLogger(__name__)

NORMALIZATIONS = ("zscore", "none")

#: Largest relative difference between a tomogram's voxel size and the training data's that
#: ``predict`` and ``locate`` accept without resampling (:func:`resampling_step`).
VOXEL_SIZE_TOLERANCE = 0.05


def resampling_step(voxel_size_angstrom: float, training_voxel_size_angstrom: float, *,
                    rescale: bool, path: object = None, what: str = "boxes") -> float:
    """Tomogram voxels per training voxel to resample with, 1.0 for none.

    A voxel size within :data:`VOXEL_SIZE_TOLERANCE` of the training data's is used as it is
    (resampled only with ``rescale`` and over 0.1% off); beyond it, ``rescale`` resamples and
    its absence is an InputError naming ``path`` and both sizes (``what`` says what
    ``--rescale`` would resample).
    """
    off = voxel_size_angstrom / training_voxel_size_angstrom - 1.0
    if abs(off) > VOXEL_SIZE_TOLERANCE and not rescale:
        raise InputError(
            f"voxel size {voxel_size_angstrom:g} Å differs from the training data's "
            f"{training_voxel_size_angstrom:g} Å by {100 * off:+.1f}% (more than "
            f"{100 * VOXEL_SIZE_TOLERANCE:g}%); pass --rescale to resample {what}, or "
            "--voxel-size if the header is wrong", path=path, field="voxel_size_angstrom")
    if rescale and abs(off) > 1e-3:
        return training_voxel_size_angstrom / voxel_size_angstrom
    return 1.0


@dataclass
class Extraction:
    """Result of :func:`extract_subtomograms`.

    Attributes
    ----------
    subtomograms
        float32 array ``(n, D, D, D)`` (z, y, x), one box per kept row of ``table``.
    table
        The kept rows (input order) with two added columns: ``padded`` (bool, the box crossed the
        tomogram border and was padded) and ``source_row`` (int, row in the input table).
    n_outside
        Rows skipped because their centre is outside the tomogram.
    n_border_skipped
        Rows skipped because their box crosses the border (``border="skip"``).
    n_padded
        Kept rows whose box was padded.
    """

    subtomograms: np.ndarray
    table: pd.DataFrame
    n_outside: int
    n_border_skipped: int
    n_padded: int

    @property
    def n_skipped(self) -> int:
        """All skipped rows (outside + border-skipped)."""
        return self.n_outside + self.n_border_skipped


@dataclass
class ExtractionPlan:
    """Which rows of a table are extracted and how (see :func:`plan_extraction`).

    Attributes
    ----------
    rows
        Indices (into the input table) of the kept rows, in input order.
    centres
        ``(n, 3)`` float64 box centres in tomogram voxels, ``(z, y, x)`` order.
    padded
        ``(n,)`` bool: the box crosses the tomogram border.
    step
        Sampling step in tomogram voxels per box voxel (``target / source`` voxel size).
    interpolate
        True when boxes are resampled (sub-voxel centring or rescaling).
    """

    rows: np.ndarray
    centres: np.ndarray
    padded: np.ndarray
    step: float
    interpolate: bool
    box: int
    n_outside: int
    n_border_skipped: int


def _as_volume(
    volume: Volume | np.ndarray, voxel_size_angstrom: float | None
) -> tuple[np.ndarray, float | None]:
    if isinstance(volume, Volume):
        return volume.data, volume.voxel_size_angstrom
    arr = volume
    if not hasattr(arr, "ndim") or arr.ndim != 3:
        raise InputError(f"a tomogram must be a 3D (z, y, x) array, got shape "
                         f"{getattr(arr, 'shape', None)}", field="volume")
    return arr, voxel_size_angstrom


def plan_extraction(
    shape: tuple[int, int, int],
    table: pd.DataFrame,
    box: int = 32,
    *,
    source_voxel_size_angstrom: float | None = None,
    voxel_size_angstrom: float | None = None,
    subvoxel: bool = False,
    border: str = "pad",
) -> ExtractionPlan:
    """Decide which particles are extracted, where, and whether their boxes need padding.

    Parameters
    ----------
    shape
        Tomogram ``(z, y, x)`` size in voxels.
    table
        Particle table (schema columns ``x``, ``y``, ``z`` in voxels).
    box
        Box edge ``D`` in voxels of the output (at ``voxel_size_angstrom``).
    source_voxel_size_angstrom, voxel_size_angstrom
        Tomogram and output voxel sizes (Å). When both are given and differ by more than 0.1 %,
        boxes are resampled with step ``voxel_size_angstrom / source_voxel_size_angstrom``.
    subvoxel
        Centre boxes on the exact (fractional) coordinate by interpolation.
    border
        ``"pad"`` or ``"skip"`` for boxes crossing the border.

    Raises
    ------
    InputError
        Box not positive, box (in tomogram voxels) larger than the tomogram, missing or
        non-finite coordinates, unknown ``border``.
    """
    if border not in ("pad", "skip"):
        raise InputError(f"border must be 'pad' or 'skip', not {border!r}", field="border")
    if not isinstance(box, (int, np.integer)) or box < 1:
        raise InputError(f"box must be a positive integer, not {box!r}", field="box")
    for col in S.COORDS:
        if col not in table.columns:
            raise InputError("missing column in the particle table", field=col)
    step = 1.0
    if source_voxel_size_angstrom is not None and voxel_size_angstrom is not None:
        src = check_voxel_size(source_voxel_size_angstrom, field="source voxel size")
        dst = check_voxel_size(voxel_size_angstrom)
        if abs(dst / src - 1.0) > 1e-3:
            step = dst / src
    interpolate = subvoxel or step != 1.0
    extent = box * step  # box edge in tomogram voxels
    too_big = [n for n in shape if extent > n]
    if too_big:
        raise InputError(
            f"box of {box} voxels ({extent:g} tomogram voxels) is larger than the tomogram "
            f"(z, y, x)={tuple(shape)}", field="box")
    zyx = table[[S.Z, S.Y, S.X]].to_numpy(dtype=np.float64, copy=True)
    if not np.isfinite(zyx).all():
        i = int(np.argmax(~np.isfinite(zyx).all(axis=1)))
        raise InputError(f"row {i} of the particle table has a non-finite coordinate",
                         field="x,y,z")
    size = np.asarray(shape, dtype=np.float64)
    inside = np.all((zyx >= -0.5) & (zyx < size - 0.5), axis=1)
    centres = zyx if interpolate else np.floor(zyx + 0.5)
    # First and last tomogram voxel a box touches along each axis.
    half = box // 2
    if interpolate:
        lo = centres - half * step
        hi = centres + (box - 1 - half) * step
        # cubic interpolation reads one voxel beyond the sample positions (more with the low-pass)
        reach = 1 + (math.ceil(1.5 * step) if step > 1.0 + 1e-3 else 0)
        needs_pad = np.any((np.floor(lo) - reach < 0) | (np.ceil(hi) + reach > size - 1),
                           axis=1)
    else:
        lo = centres - half
        hi = lo + box - 1
        needs_pad = np.any((lo < 0) | (hi > size - 1), axis=1)
    keep = inside.copy()
    n_outside = int((~inside).sum())
    n_border = 0
    if border == "skip":
        drop = inside & needs_pad
        n_border = int(drop.sum())
        keep &= ~needs_pad
    rows = np.flatnonzero(keep)
    return ExtractionPlan(rows=rows, centres=centres[rows], padded=needs_pad[rows], step=step,
                          interpolate=interpolate, box=int(box), n_outside=n_outside,
                          n_border_skipped=n_border)


def extract_subtomograms(
    volume: Volume | np.ndarray,
    table: pd.DataFrame,
    box: int = 32,
    *,
    voxel_size_angstrom: float | None = None,
    subvoxel: bool = False,
    border: str = "pad",
    normalize: str = "zscore",
    out: np.ndarray | None = None,
) -> Extraction:
    """Cut boxes centred on the particles of ``table`` out of a tomogram.

    Parameters
    ----------
    volume
        :class:`tomoclass.io.Volume` (memory-mapped: only the boxes are read) or a
        ``(z, y, x)`` array.
    table
        Particle table whose rows all belong to this tomogram (coordinates in its voxels).
    box
        Output box edge ``D`` in voxels (default 32).
    voxel_size_angstrom
        Output voxel size (Å). If it differs from the tomogram's, boxes are resampled (the box
        then covers ``D * voxel_size_angstrom`` Å). Default: the tomogram's.
    subvoxel
        Centre each box on the exact fractional coordinate (cubic-spline interpolation)
        instead of the nearest voxel.
    border
        ``"pad"`` (default): boxes crossing the border are padded with the mean of their
        in-bounds voxels and flagged ``padded``; ``"skip"``: they are dropped and counted.
    normalize
        ``"zscore"`` (default: each box to mean 0, standard deviation 1; a constant box
        becomes all zeros) or ``"none"``.
    out
        Optional preallocated float32 array ``(n_kept, D, D, D)`` (e.g. a memmap) to fill.

    Returns
    -------
    Extraction
        Boxes ``(n, D, D, D)`` float32, the kept rows and the skip/pad counts.

    Raises
    ------
    InputError
        Box larger than the tomogram, bad options, non-finite coordinates.
    """
    data, src_vs = _as_volume(volume, None)
    if normalize not in NORMALIZATIONS:
        raise InputError(f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}",
                         field="normalize")
    if voxel_size_angstrom is not None and src_vs is None:
        raise InputError("rescaling needs the tomogram's voxel size: pass a Volume",
                         field="voxel_size_angstrom")
    plan = plan_extraction(tuple(data.shape), table, box, source_voxel_size_angstrom=src_vs,
                           voxel_size_angstrom=voxel_size_angstrom, subvoxel=subvoxel,
                           border=border)
    n = len(plan.rows)
    if out is None:
        out = np.empty((n, box, box, box), dtype=np.float32)
    elif out.shape != (n, box, box, box):
        raise InputError(f"out has shape {out.shape}, expected {(n, box, box, box)}", field="out")
    for start, chunk in iter_boxes(data, plan, normalize=normalize):
        out[start:start + len(chunk)] = chunk
    kept = table.iloc[plan.rows].copy()
    kept["padded"] = plan.padded
    kept["source_row"] = plan.rows
    kept = kept.reset_index(drop=True)
    n_padded = int(plan.padded.sum())
    if plan.n_outside or plan.n_border_skipped or n_padded:
        log.info("extracted %d box(es): %d skipped outside the tomogram, %d skipped at the "
                 "border, %d padded", n, plan.n_outside, plan.n_border_skipped, n_padded)
    return Extraction(subtomograms=out, table=kept, n_outside=plan.n_outside,
                      n_border_skipped=plan.n_border_skipped, n_padded=n_padded)


def iter_boxes(
    data: np.ndarray, plan: ExtractionPlan, *, normalize: str = "zscore", chunk: int = 256
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, boxes)`` chunks of the planned boxes, in plan order.

    Boxes are read in z order (so a memory-mapped tomogram is walked through once, front to
    back) and returned in plan order; memory stays at ``chunk`` boxes.
    """
    box = plan.box
    n = len(plan.rows)
    shape = np.asarray(data.shape)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk))
        res = np.empty((len(idx), box, box, box), dtype=np.float32)
        # read this chunk's boxes in z order
        for j in idx[np.argsort(plan.centres[idx, 0], kind="stable")]:
            c = plan.centres[j]
            if plan.interpolate:
                b = _resampled_box(data, c, box, plan.step, shape)
            else:
                b = _sliced_box(data, c.astype(np.int64), box, shape, plan.padded[j])
            res[j - start] = b
        if normalize == "zscore":
            zscore_inplace(res)
        yield start, res


def _sliced_box(data: np.ndarray, c: np.ndarray, box: int, shape: np.ndarray,
                padded: bool) -> np.ndarray:
    lo = c - box // 2
    hi = lo + box
    if not padded:
        return data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    a = np.maximum(lo, 0)
    b = np.minimum(hi, shape)
    inner = np.asarray(data[a[0]:b[0], a[1]:b[1], a[2]:b[2]], dtype=np.float32)
    fill = float(inner.mean(dtype=np.float64)) if inner.size else 0.0
    res = np.full((box, box, box), fill, dtype=np.float32)
    o = a - lo
    res[o[0]:o[0] + inner.shape[0], o[1]:o[1] + inner.shape[1], o[2]:o[2] + inner.shape[2]] = inner
    return res


def _resampled_box(data: np.ndarray, c: np.ndarray, box: int, step: float,
                   shape: np.ndarray) -> np.ndarray:
    """Resample one box by separable Catmull-Rom (cubic) interpolation.

    Along each axis the box samples lie at ``c + (i - box//2) * step`` tomogram voxels. The
    interpolation (and, when downsampling, a Gaussian low-pass of sigma ``step / 2``) is a
    ``(box, L)`` matrix per axis applied to the ``L``-voxel crop, so a box costs three small
    matrix products instead of a general 3D spline evaluation.
    """
    half = box // 2
    offsets = (np.arange(box) - half) * step
    sigma = 0.5 * step if step > 1.0 + 1e-3 else 0.0
    margin = 2 + int(math.ceil(3 * sigma))
    pos = [c[a] + offsets for a in range(3)]
    lo = np.array([int(math.floor(p[0])) - margin for p in pos])
    hi = np.array([int(math.floor(p[-1])) + margin + 1 for p in pos])
    a = np.maximum(lo, 0)
    b = np.minimum(hi, shape)
    inner = np.asarray(data[a[0]:b[0], a[1]:b[1], a[2]:b[2]], dtype=np.float32)
    if np.any(a != lo) or np.any(b != hi):
        fill = float(inner.mean(dtype=np.float64)) if inner.size else 0.0
        crop = np.full(tuple(hi - lo), fill, dtype=np.float32)
        o = a - lo
        crop[o[0]:o[0] + inner.shape[0], o[1]:o[1] + inner.shape[1],
             o[2]:o[2] + inner.shape[2]] = inner
    else:
        crop = inner
    if sigma == 0.0 and step == 1.0:
        # Pure sub-voxel shift: the same 4 taps along each axis, applied by slicing.
        out = crop
        for k in range(3):
            f = float(pos[k][0] - math.floor(pos[k][0]))
            start = int(math.floor(pos[k][0])) - 1 - lo[k]
            taps = _catmull_rom(np.array([f]))[0]
            acc = None
            for t in range(4):
                sl = [slice(None)] * 3
                sl[k] = slice(start + t, start + t + box)
                term = taps[t] * out[tuple(sl)]
                acc = term if acc is None else acc + term
            out = acc
        return np.asarray(out, dtype=np.float32)
    wz, wy, wx = (_axis_weights(pos[k] - lo[k], crop.shape[k], sigma) for k in range(3))
    out = np.tensordot(wz, crop, axes=(1, 0))            # (D, Ly, Lx)
    out = np.tensordot(wy, out, axes=(1, 1))             # (D_y, D_z, Lx)
    out = np.tensordot(wx, out, axes=(1, 2))             # (D_x, D_y, D_z)
    return np.ascontiguousarray(out.transpose(2, 1, 0), dtype=np.float32)


def _catmull_rom(f: np.ndarray) -> np.ndarray:
    """Weights ``(n, 4)`` of samples at offsets -1, 0, 1, 2 for fractional positions ``f``."""
    f2, f3 = f * f, f * f * f
    return np.stack([(-f3 + 2 * f2 - f) / 2, (3 * f3 - 5 * f2 + 2) / 2,
                     (-3 * f3 + 4 * f2 + f) / 2, (f3 - f2) / 2], axis=1).astype(np.float32)


def _axis_weights(positions: np.ndarray, length: int, sigma: float) -> np.ndarray:
    """``(len(positions), length)`` Catmull-Rom weights (after a Gaussian of ``sigma``)."""
    return _axis_operator(positions, length, sigma).toarray().astype(np.float32)


def _axis_operator(positions: np.ndarray, length: int, sigma: float):
    """:func:`_axis_weights` as a sparse (CSR, float64) matrix.

    A band of ``4 + 6 sigma`` taps per row, so whole tomogram axes cost memory and time
    linear in their length. Samples beyond the ends take the edge voxel (the clipped taps
    add up there).
    """
    from scipy import sparse

    positions = np.asarray(positions, dtype=np.float64)
    base = np.floor(positions).astype(np.int64)
    taps = _catmull_rom(positions - base).astype(np.float64)
    rows = np.repeat(np.arange(len(positions)), 4)
    cols = np.clip((base[:, None] + np.arange(-1, 3)[None, :]).reshape(-1), 0, length - 1)
    w = sparse.csr_matrix((taps.reshape(-1), (rows, cols)), shape=(len(positions), length))
    if sigma > 0:
        r = int(math.ceil(3 * sigma))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        k /= k.sum()
        idx = np.arange(length)
        g = sparse.csr_matrix(
            (np.tile(k, length), (np.repeat(idx, len(k)),
                                  np.clip(idx[:, None] + np.arange(-r, r + 1), 0,
                                          length - 1).reshape(-1))),
            shape=(length, length))
        w = w @ g
    return w.tocsr()


def resample_volume(data: np.ndarray, step: float, *, slab: int = 16) -> np.ndarray:
    """Resample a whole volume onto a grid ``step`` voxels apart, as boxes are resampled.

    Output voxel ``i`` (along each axis) lies at input voxel ``i * step`` (0-based voxel
    centres; the first voxels coincide), so a position ``p`` in output voxels is
    ``p * step`` input voxels. The output has ``floor((n - 1) / step) + 1`` voxels per axis
    (every sample inside the input). The kernel is the extraction's: separable Catmull-Rom,
    after a Gaussian low-pass of sigma ``step / 2`` input voxels when downsampling
    (``step > 1``). Applied as one sparse banded matrix per axis, y and x a slab of ``slab``
    z-sections at a time (``data`` may be memory-mapped), then z.

    Parameters
    ----------
    data
        ``(z, y, x)`` volume.
    step
        Input voxels per output voxel (target voxel size / input voxel size).
    slab
        z-sections read and resampled in y and x at a time.

    Returns
    -------
    numpy.ndarray
        float32 ``(z', y', x')``.

    Raises
    ------
    InputError
        A step that is not a positive finite number, or one leaving an axis empty.
    """
    if not (math.isfinite(step) and step > 0):
        raise InputError(f"resampling step {step!r} is not a positive number", field="step")
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}", field="shape")
    shape = np.array(data.shape)
    new = np.floor((shape - 1) / step + 1e-9).astype(int) + 1
    sigma = 0.5 * step if step > 1.0 + 1e-3 else 0.0
    wz, wy, wx = (_axis_operator(np.arange(new[k]) * step, int(shape[k]), sigma)
                  .astype(np.float32) for k in range(3))
    nz = int(shape[0])
    yx = np.empty((nz, new[1], new[2]), dtype=np.float32)
    for z0 in range(0, nz, slab):
        a = np.asarray(data[z0:z0 + slab], dtype=np.float32)
        s = len(a)
        a = (wy @ a.transpose(1, 0, 2).reshape(shape[1], -1)).reshape(new[1], s, shape[2])
        a = (wx @ a.transpose(2, 1, 0).reshape(shape[2], -1)).reshape(new[2], s, new[1])
        yx[z0:z0 + s] = a.transpose(1, 2, 0)
    out = wz @ yx.reshape(nz, -1)
    return np.ascontiguousarray(out, dtype=np.float32).reshape(tuple(new))


def zscore_tensor(x: Any) -> Any:
    """:func:`zscore_inplace` for a torch tensor of boxes ``(B, ...)``, as a new tensor.

    Each box to mean 0 and standard deviation 1 (a constant box becomes zeros). Typed
    ``Any`` so that this module does not import torch.
    """
    flat = x.reshape(len(x), -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    std = flat.pow(2).mean(dim=1, keepdim=True).sqrt()
    return (flat / std.clamp_min(1e-30)).where(std > 0, 0.0).reshape(x.shape)


def zscore_inplace(boxes: np.ndarray) -> None:
    """Scale each box to mean 0 and standard deviation 1 (a constant box becomes zeros).

    The mean is removed before the sum of squares is taken, so a large offset (e.g. uint16
    data) does not cancel the variance; float32 throughout to keep it memory-bound. Values
    too large for float32 arithmetic make the box non-finite without numpy's warnings: the
    caller checks every box (:func:`nonfinite_cause` says why) and refuses or skips it.
    """
    flat = boxes.reshape(len(boxes), -1)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = flat.mean(axis=1, dtype=np.float32)
        flat -= mean[:, None]
        var = np.einsum("ij,ij->i", flat, flat) / np.float32(flat.shape[1])
        std = np.sqrt(var)
        scale = np.zeros_like(std)
        np.divide(1.0, std, out=scale, where=std > 0)
        flat *= scale[:, None]


# -- non-finite boxes ---------------------------------------------------------------------
#: What extraction does with a box that holds NaN/inf: refuse the job or leave the box out.
NONFINITE_CHOICES = ("error", "skip")


def nonfinite_cause(data: np.ndarray, plan: ExtractionPlan, j: int) -> str:
    """Why planned box ``j`` became non-finite: NaN/inf in the tomogram, or an overflow."""
    c = plan.centres[j]
    shape = np.asarray(data.shape)
    if plan.interpolate:
        raw = _resampled_box(data, c, plan.box, plan.step, shape)
    else:
        raw = _sliced_box(data, c.astype(np.int64), plan.box, shape, plan.padded[j])
    raw = np.asarray(raw, dtype=np.float64)
    bad = int((~np.isfinite(raw)).sum())
    if bad:
        return f"the tomogram holds {bad} NaN/inf voxel{'s' if bad > 1 else ''} there"
    return (f"values up to {np.abs(raw).max():.3g} overflow float32 when normalized; "
            "rescale the tomogram")


def screen_nonfinite(boxes: np.ndarray, rows: pd.DataFrame, start: int, data: np.ndarray,
                     plan: ExtractionPlan, *, tomogram: Any, policy: str = "error",
                     clean: np.ndarray | None = None
                     ) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None, int]:
    """Refuse (``policy="error"``) or drop (``"skip"``) the boxes of a chunk holding NaN/inf.

    Parameters
    ----------
    boxes, rows, clean
        One chunk of :func:`iter_boxes`, its table rows and clean boxes.
    start
        Plan row of the chunk's first box.
    data, plan
        The tomogram and the plan the chunk was cut with (to tell the cause).
    tomogram
        Its path, named in the message.
    policy
        One of :data:`NONFINITE_CHOICES`.

    Returns
    -------
    tuple
        The boxes, rows and clean boxes kept, and how many were dropped.

    Raises
    ------
    InputError
        With ``policy="error"``: names the tomogram, the first position and the cause.
    """
    from tomoclass.data.finite import bad_rows_of

    bad = bad_rows_of(boxes)
    if not len(bad):
        return boxes, rows, clean, 0
    first = rows.iloc[int(bad[0])]
    where = ", ".join(f"{c} {first[c]:g}" for c in S.COORDS)
    msg = (f"{len(bad)} box{'es' if len(bad) > 1 else ''} became NaN/inf, the first at "
           f"{where} ({nonfinite_cause(data, plan, start + int(bad[0]))})")
    if policy != "skip":
        raise InputError(f"{msg}; pass --nonfinite skip to leave such boxes out",
                         path=tomogram, field="nonfinite")
    log.warning("%s: %s; left out", tomogram, msg)
    keep = np.ones(len(boxes), dtype=bool)
    keep[bad] = False
    return (boxes[keep], rows[keep].reset_index(drop=True),
            None if clean is None else clean[keep], len(bad))
