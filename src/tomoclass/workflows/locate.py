"""``locate``: a trained run + a tomogram -> picks (STAR, CSV, SHREC'21 txt) and score maps.

The run-level orchestration above the ``locate`` stage: :func:`locate` prepares the run for
the tomogram (:func:`tomoclass.infer.prepare_tomogram`, as ``predict`` does), resamples and
inverts it, proposes and classifies candidates (:func:`tomoclass.locate.propose_candidates`,
:func:`tomoclass.locate.classify_candidates`) or scores it densely
(:func:`tomoclass.locate.score_tomogram`), picks (:func:`tomoclass.locate.picks_from_boxes`,
:func:`tomoclass.locate.find_peaks`) and writes the tables; :func:`locate_many` does several
tomograms into one table.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.data.extract import resample_volume
from tomoclass.data.polarity import candidate_polarity, invert_if
from tomoclass.errors import InputError
from tomoclass.infer import PreparedTomogram, load_run, prepare_tomogram
from tomoclass.io import write_particles, write_volume
from tomoclass.io.annotate import class_file
from tomoclass.io.atomic import atomic_dir
from tomoclass.io.naming import distinct_tomogram_names
from tomoclass.io.outputs import check_output_dir, check_output_file, claim_dir
from tomoclass.locate.boxes import classify_candidates
from tomoclass.locate.calibration import run_threshold
from tomoclass.locate.candidates import Candidates, propose_candidates
from tomoclass.locate.geometry import ScoreMaps
from tomoclass.locate.peaks import BACKGROUND, find_peaks, picks_from_boxes
from tomoclass.locate.radii import pretrained_radii, radii_for_tomogram, resolve_radii
from tomoclass.locate.scoring import score_tomogram

#: Files a multi-tomogram ``locate`` writes into its --out folder.
PICKS_PATTERNS = ("*_picks.star", "*_picks.csv", "*_picks.txt", "picks.star", "picks.csv")

log = logging.getLogger(__name__)

#: The data stage's per-subtomogram normalisation -> its fully convolutional stand-in.
NORMALIZATION_FOR_DATA = {"zscore": "local", "none": "none"}

#: Particle polarities :func:`locate` takes (``auto``: measured, then checked by the
#: classifier; ``both``: the tomogram as given, candidates of both signs).
POLARITIES = ("auto", "both", "dark", "bright")

#: What :func:`locate` can score with (``auto`` picks ``stages`` when the net allows it).
METHODS = ("candidates", "boxes", "stages", "tiles", "auto")



@dataclass(frozen=True)
class LocateResult:
    """What :func:`locate` produced.

    Attributes
    ----------
    picks
        The particle table (schema of :mod:`tomoclass.io.schema` plus ``class_score``).
    outputs
        Files written: the tables, then the score-map directory if any.
    maps
        The score maps on the stride grid; None for ``method="candidates"``.
    seconds
        Wall time of scoring and peak finding (reading the run excluded).
    radii
        Radius in voxels used for each particle class.
    normalize
        The tomogram normalisation used.
    candidates
        ``method="candidates"``: the proposals that were classified; else None.
    stage_seconds
        Wall time per stage: ``polarity`` (its measurement, ``polarity="auto"``), with
        ``rescale`` ``resample``, then ``propose``, ``classify``, ``pick`` (candidates) or
        ``score``, ``pick`` (the dense methods).
    threshold, threshold_source
        The objectness threshold used and where it came from (``"given"``, ``"calibrated
        on FILE"``, ``"default"``).
    step
        Tomogram voxels per voxel located at: 1, or with ``rescale`` the training voxel
        size over the tomogram's. ``picks`` and ``radii`` are in tomogram voxels;
        ``maps`` and ``candidates`` in the voxels located at.
    inverted
        The tomogram's contrast was inverted to the training data's polarity (``maps`` and
        ``candidates`` then describe the inverted tomogram).
    polarity
        The tomogram's measured polarity (:class:`tomoclass.data.polarity.Polarity`,
        ``polarity="auto"``), else None.
    tomogram_shape, voxel_size_angstrom
        The tomogram's ``(z, y, x)`` size and voxel size (Å) as used (STAR tables also get
        RELION 5 centred coordinates from them).
    spectrum_gain
        The per-band gain of spectrum matching (``match_spectrum``), else None.
    """

    picks: pd.DataFrame
    outputs: list[Path]
    maps: ScoreMaps | None
    seconds: float
    radii: dict[str, float]
    normalize: str
    candidates: Candidates | None = None
    stage_seconds: dict[str, float] | None = None
    threshold: float | None = None
    threshold_source: str = ""
    step: float = 1.0
    inverted: bool = False
    polarity: Any = None
    tomogram_shape: tuple[int, int, int] | None = None
    voxel_size_angstrom: float | None = None
    spectrum_gain: list[float] | None = None


def locate(
    run_dir: str | Path,
    tomogram_path: str | Path,
    out: str | Path,
    *,
    which: str = "best",
    score_maps_dir: str | Path | None = None,
    threshold: float | None = None,
    radii: float | Mapping[str, float] | None = None,
    method: str = "candidates",
    stride: int | None = None,
    batch_size: int | None = None,
    tile: int | None = None,
    halo: int | None = None,
    normalize: str | None = None,
    voxel_size_angstrom: float | None = None,
    device: str | None = None,
    progress: bool = True,
    polarity: str = "auto",
    candidate_threshold: float = 3.0,
    max_candidates: int | None = None,
    separation: float = 1.0,
    rescale: bool = False,
    precision: str = "auto",
    match_spectrum: str = "auto",
    tomo_name: str | None = None,
    tomograms_star: str | Path | None = None,
    split_by_class: bool = False,
    warp_settings: str | Path | None = None,
) -> LocateResult:
    """Find and classify the particles of one tomogram with a trained run.

    Parameters
    ----------
    run_dir, which
        A run (:func:`tomoclass.infer.load_run`) with a ``"background"`` class; its checkpoint.
    tomogram_path
        MRC or OME-Zarr tomogram, read memory-mapped.
    out
        Particle table path; its suffix picks the main format (``.star``, ``.csv``,
        ``.txt``) and the other two are written beside it with the same stem.
    score_maps_dir
        Dense methods: a directory for the score maps (:func:`write_score_maps`).
    threshold
        Minimum objectness of a pick; default: the run's calibrated threshold
        (:mod:`tomoclass.locate.calibration`), else 0.5.
    radii
        Particle radii in voxels (number or mapping, see :func:`tomoclass.locate.resolve_radii`).
    method
        ``"candidates"`` (default): classify the box at each blob proposed at the particles'
        scales; ``"boxes"``: at every grid point; ``"stages"``/``"tiles"``: one fully
        convolutional pass (``docs/locate.md``).
    stride, batch_size, tile, halo, precision
        See :func:`tomoclass.locate.score_tomogram` (``batch_size`` and ``precision`` also
        apply to ``"candidates"``).
    polarity
        ``"dark"``, ``"bright"`` (inverted when not the training data's), ``"auto"``
        (measured; unclear: :func:`tomoclass.locate.classify_candidates` chooses) or
        ``"both"`` (as given, candidates of both signs); ``docs/locate.md``.
    candidate_threshold, max_candidates
        ``"candidates"`` only: ``threshold`` (noise standard deviations) and
        ``max_candidates`` of :func:`tomoclass.locate.propose_candidates`.
    separation
        Non-maximum suppression: a pick closer than ``separation`` times the larger of two
        class radii to a stronger pick is dropped (:func:`tomoclass.locate.find_peaks`, rule
        4). 1 by default; above 1 also drops two picks on opposite sides of one particle,
        and real neighbours closer than that (``docs/locate.md``).
    normalize, voxel_size_angstrom
        ``local``, ``global``, ``none`` (default: from the training data's normalisation);
        an override of the tomogram header's voxel size (Å).
    rescale
        Resample the tomogram to the training voxel size first (picks and given radii in the
        tomogram's voxels, score maps at the training voxel size); without it a voxel size
        over 5% off is an error.
    device, progress
        Torch device (default CUDA when present); progress bars.
    tomo_name, tomograms_star, warp_settings
        The tomogram's name in the tables (``rlnTomoName``), or where to find it
        (:func:`tomoclass.io.tomonames.resolve_tomogram_name`).
    split_by_class
        Also write ``<out stem>_<class>.star`` per class (same columns as the STAR).
    match_spectrum
        ``"candidates"``: match the training boxes' spectrum, ``"auto"``, ``"on"``, ``"off"``
        (:func:`tomoclass.infer.prepare_tomogram`).

    Returns
    -------
    LocateResult

    Raises
    ------
    InputError
        A bad run or tomogram, a voxel size more than 5% off without ``rescale``, a run
        without a background class, bad radii or options.
    """
    out = _check_request(out, method, polarity, score_maps_dir, separation)
    prep = prepare_tomogram(
        run_dir, tomogram_path, which=which, device=device,
        voxel_size_angstrom=voxel_size_angstrom, rescale=rescale, polarity=polarity,
        match_spectrum=match_spectrum, tomogram_name=tomo_name, tomograms_star=tomograms_star,
        warp_settings=warp_settings, rescale_what="the tomogram", allow_both=True)
    threshold, threshold_source = _threshold(run_dir, which, threshold)
    box = _detector_box(prep, run_dir)
    class_radii, located = _radii(list(prep.class_map.names), radii, box, prep.step, run_dir)
    _spectrum_for(prep, method, match_spectrum)
    stage = {"polarity": prep.seconds["polarity"]}  # the clock started before it
    job = _Job(prep, box, threshold, normalize or _normalization(prep.info), located, stage,
               time.perf_counter() - stage["polarity"], progress, precision, batch_size,
               separation)
    data = _located_volume(job)
    maps = cands = gain = None
    if method == "candidates":
        cands, picks, gain = _by_candidates(job, data, polarity, candidate_threshold,
                                            max_candidates)
    else:
        maps, picks = _by_dense(job, data, method, stride, tile, halo)
    if prep.step != 1.0:  # back to the tomogram's voxels
        picks[["x", "y", "z"]] = picks[["x", "y", "z"]].to_numpy(float) * prep.step
    seconds = job.lap("pick")
    outputs = _write_tables(out, picks, prep, split_by_class, maps, score_maps_dir)
    log.info("%d picks in %.1f s (%s) -> %s", len(picks), seconds,
             ", ".join(f"{k} {v:.1f} s" for k, v in stage.items()), out)
    return LocateResult(picks, outputs, maps, seconds, class_radii, job.normalize, cands,
                        {k: round(v, 3) for k, v in stage.items()}, threshold,
                        threshold_source, prep.step, prep.invert, prep.measured,
                        prep.volume.shape, prep.volume.voxel_size_angstrom, gain)


def locate_many(
    run_dir: str | Path,
    tomograms: Sequence[str | Path],
    out_dir: str | Path,
    *,
    radii: float | Mapping[str, float] | None = None,
    sizes: str | Path | None = None,
    voxel_size_angstrom: float | None = None,
    **kwargs,
) -> list[LocateResult]:
    """Locate several tomograms with one run, and gather their picks in one table.

    Each tomogram ``T.mrc`` gets ``out_dir/T_picks.star`` (and ``.csv``, ``.txt``: SHREC
    text holds one tomogram); all picks together go to ``out_dir/picks.star`` and
    ``out_dir/picks.csv``, one ``rlnTomoName`` per row, as RELION imports them. The combined
    table is written only when every tomogram was located.

    Parameters
    ----------
    run_dir, radii, voxel_size_angstrom, kwargs
        As for :func:`locate` (``score_maps_dir`` gets one subfolder per tomogram).
    tomograms
        MRC paths; their names (:func:`tomoclass.io.tomogram_name`: stem, or folder for
        ``model_3/reconstruction.mrc``) name them and must differ.
    out_dir
        Folder for the tables (made if missing).
    sizes
        SHREC'21 ``sizes.txt``: radii converted at each tomogram's own voxel size
        (``voxel_size_angstrom`` or its header); entries of ``radii`` override it.

    Raises
    ------
    InputError
        No tomograms, one missing, two with the same stem, or what :func:`locate` refuses.
    """
    paths = [Path(t) for t in tomograms]
    if not paths:
        raise InputError("no tomograms to locate", field="tomogram")
    for p in paths:
        if not p.is_file():
            raise InputError("tomogram not found", path=p, field="tomogram")
    stems = distinct_tomogram_names(paths)
    _, class_map, _ = load_run(run_dir, kwargs.get("which", "best"))
    out_dir = Path(out_dir)
    maps = kwargs.pop("score_maps_dir", None)
    results = []
    with (claim_dir(out_dir, "picks", patterns=PICKS_PATTERNS),
          claim_dir(maps, "score-maps", patterns=("*/*",)) if maps else contextlib.nullcontext()):
        for p, stem in zip(paths, stems, strict=True):
            results.append(locate(
                run_dir, p, out_dir / f"{stem}_picks.star",
                radii=radii_for_tomogram(p, sizes, radii, voxel_size_angstrom),
                voxel_size_angstrom=voxel_size_angstrom,
                score_maps_dir=None if maps is None else Path(maps) / stem, **kwargs))
        table = pd.concat([r.picks for r in results], ignore_index=True)
        vs = {r.voxel_size_angstrom for r in results}
        centred = {}
        if len(vs) == 1:  # RELION 5 centred coordinates need one voxel size for the table
            centred = {"voxel_size_angstrom": vs.pop(),
                       "tomogram_shape": {s: r.tomogram_shape
                                          for s, r in zip(stems, results, strict=True)}}
        write_particles(out_dir / "picks.star", table, class_map=class_map, **centred)
        write_particles(out_dir / "picks.csv", table)
    return results


def write_score_maps(maps: ScoreMaps, directory: str | Path, voxel_size_angstrom: float) -> Path:
    """Write each class's probability map and the objectness map as MRC, at tomogram voxels.

    One class at a time is resampled (see :meth:`ScoreMaps.to_voxels`), so memory holds
    one tomogram-sized float32 map. The directory appears complete or not at all.
    """
    directory = Path(directory)
    with atomic_dir(directory, kind="score-maps") as tmp:
        for k, cls in enumerate(maps.class_names):
            write_volume(tmp / f"{_safe(cls)}.mrc", maps.to_voxels(k), voxel_size_angstrom)
        keys = [n.casefold() for n in maps.class_names]
        if BACKGROUND in keys:
            bg = maps.to_voxels(keys.index(BACKGROUND))
            write_volume(tmp / "objectness.mrc", 1.0 - bg, voxel_size_angstrom)
    return directory


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "class"


@dataclass
class _Job:
    """What the steps of :func:`locate` share: the prepared run and the options."""

    prep: PreparedTomogram
    box: int
    threshold: float
    normalize: str
    radii: dict[str, float]  # in the voxels located at
    stage: dict[str, float]
    start: float
    progress: bool
    precision: str
    batch_size: int | None
    separation: float

    def lap(self, name: str) -> float:
        """Record the time since the last lap as stage ``name``; the time since the start."""
        total = time.perf_counter() - self.start
        self.stage[name] = total - sum(self.stage.values())
        return total


def _check_request(out: str | Path, method: str, polarity: str,
                   score_maps_dir: str | Path | None, separation: float = 1.0) -> Path:
    """Refuse a bad method, polarity, separation or output before anything is read.

    Returns the output path.
    """
    if not (isinstance(separation, int | float) and math.isfinite(separation)
            and separation > 0):
        raise InputError(f"separation must be a positive number, got {separation!r}",
                         field="separation")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}",
                         field="method")
    if polarity not in POLARITIES:
        raise InputError(f"unknown polarity {polarity!r}; use one of {', '.join(POLARITIES)}",
                         field="polarity")
    out = Path(out)
    if out.suffix.lower() not in (".star", ".csv", ".txt"):
        raise InputError(
            f"output suffix {out.suffix!r} is not .star, .csv or .txt", path=out, field="out"
        )
    check_output_file(out)
    if score_maps_dir is not None:
        check_output_dir(score_maps_dir, "score-maps")
    if method == "candidates" and score_maps_dir is not None:
        raise InputError(
            "score maps need a dense method (--method boxes, stages or tiles); candidates "
            "scores only the proposed positions",
            field="score_maps",
        )
    return out


def _threshold(run_dir: str | Path, which: str, threshold: float | None) -> tuple[float, str]:
    """The pick threshold and where it came from (given, calibrated with the run, default)."""
    if threshold is None:
        threshold, source = run_threshold(run_dir, which)
    else:
        threshold, source = float(threshold), "given"
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold {threshold:g} is not within [0, 1]", field="threshold")
    log.info("pick threshold %g (%s)", threshold, source)
    return threshold, source


def _detector_box(prep: PreparedTomogram, run_dir: str | Path) -> int:
    """The run's box size; refuses a run without a background class or a box size."""
    names = list(prep.class_map.names)
    if BACKGROUND not in [n.casefold() for n in names]:
        raise InputError(
            f"the classifier has no '{BACKGROUND}' class (classes: {', '.join(names)}); train "
            "it with background boxes (tomoclass.locate.background_boxes) to locate particles",
            path=run_dir, field="classes")
    box = prep.info.get("box")
    if not box:
        raise InputError("the run records no box size", path=run_dir, field="box")
    return int(box)


def _normalization(info: dict[str, Any]) -> str:
    """The tomogram normalisation standing in for the training data's."""
    data_norm = str((info.get("data") or {}).get("normalization") or "zscore")
    return NORMALIZATION_FOR_DATA.get(data_norm, "local")


def _radii(names: list[str], radii: float | Mapping[str, float] | None, box: int,
           step: float, run_dir: str | Path) -> tuple[dict[str, float], dict[str, float]]:
    """Radii in tomogram voxels and in the voxels located at (/ ``step``).

    Given radii are in tomogram voxels; the defaults (a pretrained model's recorded radii,
    else ``box / 4``) are in training voxels.
    """
    if radii is None:
        class_radii = resolve_radii(names, pretrained_radii(run_dir), box)
        return {n: r * step for n, r in class_radii.items()}, class_radii
    class_radii = resolve_radii(names, radii, box)
    return class_radii, {n: r / step for n, r in class_radii.items()}


def _spectrum_for(prep: PreparedTomogram, method: str, match_spectrum: str) -> None:
    """Spectrum matching is for ``"candidates"``: refuse ``on`` otherwise, drop ``auto``."""
    if prep.spectrum is None or method == "candidates":
        return
    if match_spectrum == "on":
        raise InputError("spectrum matching needs --method candidates", field="match_spectrum")
    log.warning("spectra not matched: --method %s does not support it", method)
    prep.spectrum = None


def _located_volume(job: _Job) -> np.ndarray:
    """The tomogram as located: resampled to the training voxel size, inverted as decided."""
    prep = job.prep
    volume = prep.volume
    if prep.step == 1.0:
        return invert_if(volume.data, prep.invert)
    data = resample_volume(volume.data, prep.step)
    if prep.invert:
        np.negative(data, out=data)
    job.lap("resample")
    log.info("resampled %s from %g to %g Å: %s -> %s voxels", prep.name,
             volume.voxel_size_angstrom, prep.training_voxel_size_angstrom, volume.data.shape,
             data.shape)
    return data


def _by_candidates(job: _Job, data: np.ndarray, polarity: str, candidate_threshold: float,
                   max_candidates: int | None
                   ) -> tuple[Candidates, pd.DataFrame, list[float] | None]:
    """Propose, classify (choosing the polarity when unclear) and pick: candidates, picks, gain."""
    prep = job.prep
    names = list(prep.class_map.names)
    signs = candidate_polarity(polarity, prep.measured, prep.target_polarity)
    cands = propose_candidates(
        data, sorted(set(job.radii.values())),
        # after any inversion the particles look as in training (a "mixed" run: as given);
        # a clear measurement is trusted, only an unclear one leaves both signs
        polarity=signs, threshold=candidate_threshold, max_candidates=max_candidates,
        device=prep.device, progress=job.progress)
    job.lap("propose")
    gain = box_filter = None
    if len(cands):
        gain, box_filter = prep.box_filter(data, cands.zyx, job.box,
                                           prep.volume.voxel_size_angstrom * prep.step)
    cands, probs = classify_candidates(
        prep.model, data, cands, auto=polarity == "auto" and signs == "both",
        threshold=job.threshold, background=[n.casefold() for n in names].index(BACKGROUND),
        box=job.box, normalize=job.normalize, device=prep.device, batch_size=job.batch_size,
        progress=job.progress, precision=job.precision, box_filter=box_filter)
    job.lap("classify")
    picks = picks_from_boxes(cands.centres, probs, names, job.radii, threshold=job.threshold,
                             tomogram_name=prep.name, separation=job.separation)
    return cands, picks, gain


def _by_dense(job: _Job, data: np.ndarray, method: str, stride: int | None, tile: int | None,
              halo: int | None) -> tuple[ScoreMaps, pd.DataFrame]:
    """Score every grid point (:func:`tomoclass.locate.score_tomogram`), pick the peaks."""
    prep = job.prep
    maps = score_tomogram(prep.model, data, box=job.box, class_names=list(prep.class_map.names),
                          method=method, stride=stride, batch_size=job.batch_size, tile=tile,
                          halo=halo, normalize=job.normalize, device=prep.device,
                          progress=job.progress, precision=job.precision)
    job.lap("score")
    return maps, find_peaks(maps, job.radii, threshold=job.threshold, tomogram_name=prep.name,
                            separation=job.separation)


def _write_tables(out: Path, picks: pd.DataFrame, prep: PreparedTomogram,
                  split_by_class: bool, maps: ScoreMaps | None,
                  score_maps_dir: str | Path | None) -> list[Path]:
    """Write the picks as ``out`` and its two sibling formats; the paths written.

    With ``split_by_class`` also one STAR per class; the score maps last, when asked for.
    """
    volume, class_map = prep.volume, prep.class_map
    suffix = out.suffix.lower()
    outputs = []
    for ext in [suffix] + [e for e in (".star", ".csv", ".txt") if e != suffix]:
        path = out.with_suffix(ext)
        if ext == ".star":
            parts = [(path, picks)]
            if split_by_class:
                names = picks["class_name"].astype(str)
                parts += [(class_file(path, c), picks[names == c]) for c in class_map.names
                          if (names == c).any()]
            for where, part in parts:
                write_particles(where, part, class_map=class_map, tomogram_shape=volume.shape,
                                voxel_size_angstrom=volume.voxel_size_angstrom)
            outputs.extend(w for w, _ in parts[1:])
        else:
            write_particles(path, picks)
        outputs.append(path)
    if score_maps_dir is not None and maps is not None:
        outputs.append(write_score_maps(maps, score_maps_dir,
                                        volume.voxel_size_angstrom * prep.step))
    return outputs
