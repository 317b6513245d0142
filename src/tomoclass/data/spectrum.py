"""Spectrum matching: make boxes of another tomogram look, frequency by frequency, like training.

A classifier trained on one simulator, voxel size or reconstruction sees its training data's
noise texture as part of the signal. Boxes of a tomogram made otherwise (binned from a finer
voxel size, another simulator or reconstruction) have another amplitude spectrum, and the
classifier fails on them even where the particles are the same: on the simulator's 5 Å
tomogram resampled to 10 Å, a 10 Å classifier's accuracy at the true positions fell from
0.583 (its own 10 Å test tomogram) to 0.083 (``benchmarks/results/spectrum_20261126/``).
DeePiCt answers this with a spectrum matching filter; so does tomoclass:

1. the training data's spectrum is measured once (:func:`dataset_spectrum`: the mean
   amplitude of the z-scored training boxes' Fourier transforms in radial bands one FFT
   ring wide, ``box // 2`` up to Nyquist and one for the corners beyond) and stored with
   the run (``data.spectrum``);
2. the target's spectrum is measured the same way on boxes cut as training boxes are, at the
   picks (``predict``) or the candidates (``locate``) (:func:`box_spectrum`);
3. their ratio, clipped to :data:`GAIN_LIMITS`, is the radial gain applied in each box's
   Fourier transform before the box is z-scored again and classified (:func:`filter_boxes`).

With it the same classifier's accuracy on the resampled 5 Å tomogram is 0.600, on the
10 Å test tomogram 0.588 (unchanged within noise). ``predict``/``locate`` use it when
they resample (``match_spectrum="auto"``) or when asked (``"on"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tomoclass.errors import InputError

log = logging.getLogger(__name__)

#: Boxes measured at most (a random sample beyond).
MAX_BOXES = 1500
#: The gain of a band is clipped to this range.
GAIN_LIMITS = (0.1, 10.0)
#: ``match_spectrum`` values: ``auto`` matches when the voxel size is resampled.
MATCH_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Spectrum:
    """Mean amplitude spectrum of z-scored boxes, in radial bands.

    Attributes
    ----------
    amplitude
        ``box // 2 + 1`` values: band ``i`` holds the frequencies ``|k|`` (cycles/voxel) in
        ``[i, i + 1) / box``; the last band everything from Nyquist on.
    box
        Box edge (voxels) the boxes had.
    voxel_size_angstrom
        Their voxel size (Å).
    n_boxes
        How many boxes were measured.
    """

    amplitude: tuple[float, ...]
    box: int
    voxel_size_angstrom: float
    n_boxes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (run info, JSON)."""
        return {"amplitude": [float(a) for a in self.amplitude], "box": self.box,
                "voxel_size_angstrom": self.voxel_size_angstrom, "n_boxes": self.n_boxes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spectrum:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(a) for a in d["amplitude"]), int(d["box"]),
                   float(d["voxel_size_angstrom"]), int(d["n_boxes"]))


def _band_index(box: int) -> np.ndarray:
    """(box, box, box) band of every FFT frequency of a box (``floor(|k| box)``, capped)."""
    f = np.fft.fftfreq(box)
    k = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)
    return np.minimum((k * box + 1e-9).astype(int), box // 2)


def box_spectrum(boxes: np.ndarray, voxel_size_angstrom: float) -> Spectrum:
    """The :class:`Spectrum` of ``(n, D, D, D)`` boxes (z-scored, as the data stage cuts them)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 4 or len(set(boxes.shape[1:])) != 1 or len(boxes) == 0:
        raise InputError(f"boxes must be (n, D, D, D) with n > 0, got {boxes.shape}",
                         field="boxes")
    box = boxes.shape[1]
    idx = _band_index(box).ravel()
    n_bands = box // 2 + 1
    total = np.zeros(n_bands)
    for s in range(0, len(boxes), 128):
        amp = np.abs(np.fft.fftn(boxes[s:s + 128], axes=(1, 2, 3))).reshape(-1, box**3)
        total += np.bincount(idx, weights=amp.sum(0), minlength=n_bands)
    counts = np.bincount(idx, minlength=n_bands) * len(boxes)
    return Spectrum(tuple(total / counts), box, float(voxel_size_angstrom), len(boxes))


def dataset_spectrum(store: Any, split: str | None = "train", *, max_boxes: int = MAX_BOXES,
                     seed: int = 0) -> Spectrum:
    """The :class:`Spectrum` of a dataset's boxes (``split``; a random ``max_boxes`` at most)."""
    rows = store.split_indices(split)
    if len(rows) == 0:
        rows = store.split_indices(None)
    if len(rows) > max_boxes:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_boxes, replace=False))
    return box_spectrum(np.asarray(store.volumes[rows]), store.voxel_size_angstrom)


def spectrum_at(data: Any, centres_zyx: np.ndarray, box: int, voxel_size_angstrom: float, *,
                source_voxel_size_angstrom: float | None = None, max_boxes: int = MAX_BOXES,
                seed: int = 0) -> Spectrum:
    """The :class:`Spectrum` of z-scored boxes of ``data`` centred on ``centres_zyx`` (voxels).

    Boxes are cut at ``voxel_size_angstrom``; with ``source_voxel_size_angstrom`` (the
    tomogram's, when it differs) they are resampled as extraction resamples them.
    """
    import pandas as pd

    from tomoclass.data.extract import iter_boxes, plan_extraction

    c = np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)
    if len(c) > max_boxes:
        c = c[np.sort(np.random.default_rng(seed).choice(len(c), max_boxes, replace=False))]
    table = pd.DataFrame({"x": c[:, 2], "y": c[:, 1], "z": c[:, 0]})
    resample = (source_voxel_size_angstrom is not None
                and abs(source_voxel_size_angstrom / voxel_size_angstrom - 1) > 1e-3)
    plan = plan_extraction(tuple(int(n) for n in data.shape), table, box, border="pad",
                           source_voxel_size_angstrom=source_voxel_size_angstrom,
                           voxel_size_angstrom=voxel_size_angstrom if resample else None)
    if len(plan.rows) == 0:
        raise InputError("no box inside the tomogram to measure its spectrum", field="centres")
    boxes = np.concatenate([b for _, b in iter_boxes(data, plan, normalize="zscore")])
    return box_spectrum(boxes, voxel_size_angstrom)


def matching_gain(train: Spectrum, target: Spectrum) -> np.ndarray:
    """Per-band gain taking ``target``'s amplitudes to ``train``'s, clipped to GAIN_LIMITS.

    Raises
    ------
    InputError
        Spectra of boxes of other sizes or voxel sizes (more than 5% apart).
    """
    if train.box != target.box or abs(target.voxel_size_angstrom / train.voxel_size_angstrom
                                      - 1.0) > 0.05:
        raise InputError(f"spectra of {target.box}-voxel boxes at {target.voxel_size_angstrom:g}"
                         f" Å and {train.box}-voxel boxes at {train.voxel_size_angstrom:g} Å "
                         "cannot be matched", field="spectrum")
    t = np.asarray(train.amplitude)
    s = np.asarray(target.amplitude)
    gain = np.divide(t, s, out=np.ones_like(t), where=s > 0)
    gain[0] = 1.0  # the mean, zero after z-scoring
    return np.clip(gain, *GAIN_LIMITS)


def gain_grid(gain: np.ndarray, box: int) -> np.ndarray:
    """The per-band ``gain`` on a box's FFT grid, (box, box, box) float32."""
    return np.asarray(gain, dtype=np.float32)[_band_index(box)]


def box_filter_for(train: Spectrum, target: Spectrum) -> tuple[list[float], np.ndarray]:
    """The filter ``predict`` and ``locate`` apply: gain per band and its box grid.

    The gain takes ``target`` to ``train`` (:func:`matching_gain`; logged, and returned
    rounded for the record); the grid is :func:`gain_grid` of it.
    """
    gain = matching_gain(train, target)
    log.info("spectrum matched to the training boxes': gain per band %s",
             " ".join(f"{g:.2f}" for g in gain))
    return [round(float(g), 4) for g in gain], gain_grid(gain, train.box)


def filter_boxes(x: Any, grid: Any) -> Any:
    """Apply a :func:`gain_grid` to boxes and z-score each again.

    ``x`` is a torch tensor ``(B, D, D, D)`` or ``(B, 1, D, D, D)`` (float32) and ``grid`` a
    ``(D, D, D)`` tensor on its device; returns the same shape.
    """
    import torch

    from tomoclass.data.extract import zscore_tensor

    y = torch.fft.ifftn(torch.fft.fftn(x.float(), dim=(-3, -2, -1)) * grid,
                        dim=(-3, -2, -1)).real
    return zscore_tensor(y).to(x.dtype)


def training_spectrum(info: dict[str, Any]) -> Spectrum | None:
    """The training data's spectrum of a run (``load_run``'s info), else None.

    Runs record it in ``info["data"]["spectrum"]``; for older runs it is measured from the
    dataset named in ``info["data"]["path"]`` when that still exists.
    """
    data = info.get("data") or {}
    if data.get("spectrum"):
        return Spectrum.from_dict(data["spectrum"])
    path = data.get("path")
    if path:
        from pathlib import Path

        from tomoclass.data.store import open_dataset

        if Path(path).is_dir():
            return dataset_spectrum(open_dataset(path))
    return None


def resolve_matching(mode: str, info: dict[str, Any], resampled: bool) -> Spectrum | None:
    """The training spectrum to match to, or None for no matching.

    ``mode``: ``"off"``; ``"on"`` (an InputError when the run has no spectrum or its boxes
    were not z-scored); ``"auto"`` (default): when the boxes are resampled from another voxel
    size and the run has one.
    """
    if mode not in MATCH_CHOICES:
        raise InputError(f"match_spectrum must be one of {', '.join(MATCH_CHOICES)}, not "
                         f"{mode!r}", field="match_spectrum")
    if mode == "off" or (mode == "auto" and not resampled):
        return None
    norm = (info.get("data") or {}).get("normalization") or "zscore"
    if norm != "zscore":
        if mode == "on":
            raise InputError(f"spectrum matching needs z-scored training boxes, not {norm!r}",
                             field="match_spectrum")
        log.info("training boxes not z-scored (%s): spectra not matched", norm)
        return None
    spec = training_spectrum(info)
    if spec is None:
        if mode == "on":
            raise InputError("the run records no training spectrum and its dataset is gone: "
                             "cannot match spectra", field="match_spectrum")
        log.info("no training spectrum with this run: spectra not matched")
    return spec
