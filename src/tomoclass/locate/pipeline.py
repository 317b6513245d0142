"""``locate``: a trained run + a tomogram -> picks (STAR, CSV, SHREC'21 txt) and score maps."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomoclass.data.extract import resample_volume, resampling_step
from tomoclass.data.polarity import (
    candidate_polarity,
    invert_if,
    resolve_inversion,
    training_polarity,
)
from tomoclass.data.spectrum import box_filter_for, resolve_matching, spectrum_at
from tomoclass.errors import InputError
from tomoclass.io import read_volume, write_particles, write_volume
from tomoclass.io.annotate import class_file
from tomoclass.io.atomic import atomic_dir
from tomoclass.io.naming import distinct_tomogram_names
from tomoclass.io.outputs import check_output_dir, check_output_file, claim_dir
from tomoclass.io.tomonames import resolve_tomogram_name
from tomoclass.io.volume import warn_if_beam_along_y
from tomoclass.locate.calibration import run_threshold
from tomoclass.locate.candidates import AUTO_RATIO, AUTO_SAMPLE, Candidates, propose_candidates
from tomoclass.locate.peaks import BACKGROUND, find_peaks, picks_from_boxes
from tomoclass.locate.scoring import BoxClassifier, ScoreMaps, score_tomogram

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


def parse_radii(values: Sequence[str] | None) -> float | dict[str, float] | None:
    """Parse ``--radius`` options: ``R`` (every class) or ``NAME=R`` (repeatable), voxels.

    Returns None for no option, a float for a single bare number, else a mapping (a bare
    number then also becomes the value for every class not named, under the key ``"*"``).

    Raises
    ------
    InputError
        A value that is not a positive number.
    """
    if not values:
        return None
    out: dict[str, float] = {}
    for raw in values:
        name, _, num = raw.rpartition("=")
        try:
            r = float(num)
        except ValueError:
            raise InputError(f"radius {raw!r} is not R or NAME=R", field="radius") from None
        if not np.isfinite(r) or r <= 0:
            raise InputError(f"radius {raw!r} must be a positive number of voxels", field="radius")
        out[name.strip() or "*"] = r
    if list(out) == ["*"]:
        return out["*"]
    return out


def merge_radii(
    sizes: str | Path | None, values: Sequence[str] | None, voxel_size_angstrom: float = 10.0
) -> float | dict[str, float] | None:
    """Radii from a SHREC'21 ``sizes.txt`` and ``--radius`` options, the options winning.

    ``sizes`` is read by :func:`tomoclass.io.read_class_sizes` at ``voxel_size_angstrom``,
    ``values`` by :func:`parse_radii`. Returns None when neither is given.
    """
    return _with_sizes(sizes, parse_radii(values), voxel_size_angstrom)


def radii_for_tomogram(
    tomogram: str | Path,
    sizes: str | Path | None,
    radii: float | Mapping[str, float] | None,
    voxel_size_angstrom: float | None = None,
) -> float | dict[str, float] | None:
    """Radii for one tomogram: ``sizes.txt`` converted at its voxel size, ``radii`` winning.

    The voxel size is ``voxel_size_angstrom``, else the tomogram's header (read only when
    ``sizes`` is given); ``radii`` as for :func:`locate`, merged as :func:`merge_radii` does.
    """
    vs = None
    if sizes is not None:
        vs = voxel_size_angstrom or read_volume(tomogram, check="none").voxel_size_angstrom
    return _with_sizes(sizes, radii, vs)


def _with_sizes(sizes: str | Path | None, given: float | Mapping[str, float] | None,
                voxel_size_angstrom: float | None) -> float | dict[str, float] | None:
    """``sizes.txt`` radii at ``voxel_size_angstrom``, overridden by ``given``.

    A mapping's entries win; a bare number covers the classes the file does not name.
    """
    from tomoclass.io import read_class_sizes

    if sizes is None:
        return dict(given) if isinstance(given, Mapping) else given
    out: dict[str, float] = dict(read_class_sizes(sizes, voxel_size_angstrom))
    if isinstance(given, Mapping):
        out.update(given)
    elif given is not None:
        out["*"] = float(given)
    return out


def resolve_radii(
    class_names: Sequence[str], radii: float | Mapping[str, float] | None, box: int
) -> dict[str, float]:
    """Radius per particle class: the given ones, ``"*"`` for the rest, else ``box / 4``.

    ``box / 4`` is a fallback, not a measurement: it assumes the training box was chosen
    about twice the particle's diameter. Pass real radii (e.g. SHREC'21 ``sizes.txt``)
    when known.
    """
    names = [n for n in class_names if n.casefold() != BACKGROUND]
    if radii is None:
        log.info("no --radius given: using box / 4 = %g voxels for every class", box / 4)
        return {n: box / 4 for n in names}
    if not isinstance(radii, Mapping):
        return {n: float(radii) for n in names}
    table = {str(k).casefold(): float(v) for k, v in radii.items()}
    out = {}
    for n in names:
        r = table.get(n.casefold(), table.get("*"))
        if r is None:
            raise InputError(
                f"no radius for class '{n}'; give NAME=R for it or a bare R for all",
                field="radius",
            )
        out[n] = r
    return out


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
    run_dir
        A run directory (:func:`tomoclass.train.load_run`) whose classes include
        ``"background"``.
    tomogram_path
        MRC tomogram, read memory-mapped.
    out
        Particle table path; its suffix picks the main format (``.star``, ``.csv``,
        ``.txt``) and the other two are written beside it with the same stem.
    which
        Checkpoint (``best``, ``last``, ``epoch_NNN``).
    score_maps_dir
        If given, a directory that receives ``<class>.mrc`` per class (probabilities,
        background included) and ``objectness.mrc`` (1 - P(background)), at the tomogram's
        voxels and voxel size.
    threshold
        Minimum objectness (1 - P(background)) of a pick. None (default): the threshold
        stored with the run for this checkpoint by ``tomoclass score-picks --calibrate``
        (:mod:`tomoclass.locate.calibration`), else 0.5.
    radii
        Particle radii in voxels (number or mapping, see :func:`resolve_radii`).
    method
        ``"candidates"`` (default): propose blob centres at the particles' scales
        (:func:`tomoclass.locate.propose_candidates`) and classify the box centred on each,
        exactly as training boxes are cut (:func:`tomoclass.locate.classify_boxes`); the
        default: minutes per tomogram on a CPU. ``"boxes"``: classify the box at every grid
        point (``stride`` apart) the same way: no proposal step to miss a particle and dense
        score maps, but one forward pass per grid point (hours on a CPU).
        ``"stages"``/``"tiles"``: one fully convolutional pass (a net trained on isolated
        boxes was not trained for it: see ``docs/locate.md``).
    stride, batch_size, tile, halo
        See :func:`tomoclass.locate.score_tomogram` (``batch_size`` also applies to
        ``"candidates"``).
    polarity
        How the particles look in the tomogram. ``"dark"`` (as reconstructed) or
        ``"bright"`` (contrast inverted): when it is not the training data's polarity
        (``dark`` for tomoclass datasets), the tomogram is inverted (lazily, as it is read)
        before anything else, and candidates are proposed with the training polarity.
        ``"auto"`` (default) measures it first
        (:func:`tomoclass.data.polarity.measure_polarity`; inverts only a clear call). A
        clear call is trusted: candidates of the training polarity only
        (:func:`tomoclass.data.polarity.candidate_polarity`). When it is unclear (or the run
        is ``mixed``), ``"candidates"`` proposes blobs of both signs, classifies the strongest
        ``AUTO_SAMPLE`` (256) of each sign, and drops a sign whose share of particles
        (objectness at least ``threshold``) is below ``AUTO_RATIO`` (1/4) of the other's.
        ``"both"``: the tomogram as given, candidates of both signs.
        ``result.inverted``/``result.polarity`` and ``result.candidates.polarity`` say what
        was done.
    candidate_threshold, max_candidates
        ``"candidates"`` only: see :func:`tomoclass.locate.propose_candidates`
        (``candidate_threshold`` is its ``threshold``, in noise standard deviations).
    normalize
        ``local``, ``global`` or ``none``; default from the training data's normalisation
        (z-score per box -> ``local``).
    voxel_size_angstrom
        Override the tomogram header's voxel size (Å).
    rescale
        When the tomogram's voxel size differs from the training data's, resample the whole
        tomogram to the training voxel size first (:func:`tomoclass.data.resample_volume`:
        the kernel that resamples boxes in extraction, anti-aliased when downsampling) and
        report the picks in the tomogram's voxels. Without it a difference over 5% is an
        error. Radii given in ``radii`` are in the tomogram's voxels; score maps are written
        at the training voxel size.
    device
        Torch device (default CUDA when present).
    progress
        Show progress bars.
    tomo_name, tomograms_star, warp_settings
        The tomogram's name in the tables (``rlnTomoName``), or a RELION 5 ``tomograms.star``
        or a Warp settings file to find it in; default: Warp's ``<name>_<pixel>Apx`` or the
        file name, logged (:func:`tomoclass.io.tomonames.resolve_tomogram_name`).
    split_by_class
        Also write ``<out stem>_<class>.star`` per class (same columns as the STAR).
    precision
        Box classification arithmetic, ``"auto"``, ``"fp32"`` or ``"bf16"`` (see
        :func:`tomoclass.locate.score_tomogram`; ``"candidates"`` and ``"boxes"``).
    match_spectrum
        ``"candidates"`` only: filter each box so that the boxes at the candidates have the
        training boxes' amplitude spectrum (:mod:`tomoclass.data.spectrum`). ``"auto"``
        (default): when the tomogram is resampled (``rescale``) and the run records its
        training spectrum; ``"on"``; ``"off"``. ``result.spectrum_gain`` is the gain used.

    Returns
    -------
    LocateResult

    Raises
    ------
    InputError
        A bad run or tomogram, a voxel size more than 5% off the training data's (without
        ``rescale``), a run
        without a background class, bad radii or options.
    """
    from tomoclass.train import load_run

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}",
                         field="method")
    if polarity not in POLARITIES:
        raise InputError(f"unknown polarity {polarity!r}; use one of {', '.join(POLARITIES)}",
                         field="polarity")
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".star", ".csv", ".txt"):
        raise InputError(
            f"output suffix {out.suffix!r} is not .star, .csv or .txt", path=out, field="out"
        )
    check_output_file(out)
    if score_maps_dir is not None:
        check_output_dir(score_maps_dir, "score-maps")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, class_map, info = load_run(run_dir, which, map_location=dev)
    if threshold is None:
        threshold, threshold_source = run_threshold(run_dir, which)
    else:
        threshold, threshold_source = float(threshold), "given"
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold {threshold:g} is not within [0, 1]", field="threshold")
    log.info("pick threshold %g (%s)", threshold, threshold_source)
    names = list(class_map.names)
    if BACKGROUND not in [n.casefold() for n in names]:
        raise InputError(
            f"the classifier has no '{BACKGROUND}' class (classes: {', '.join(names)}); train "
            "it with background boxes (tomoclass.locate.background_boxes) to locate particles",
            path=run_dir, field="classes")
    box = info.get("box")
    if not box:
        raise InputError("the run records no box size", path=run_dir, field="box")
    box = int(box)
    volume = read_volume(tomogram_path, voxel_size_angstrom=voxel_size_angstrom)
    warn_if_beam_along_y(volume)
    trained = info.get("voxel_size_angstrom")
    step = 1.0
    if trained:
        step = resampling_step(volume.voxel_size_angstrom, float(trained), rescale=rescale,
                               path=tomogram_path, what="the tomogram")
    if normalize is None:
        data_norm = str((info.get("data") or {}).get("normalization") or "zscore")
        normalize = NORMALIZATION_FOR_DATA.get(data_norm, "local")
    # radii in tomogram voxels (given) and in the voxels located at (/ step); box / 4 is in
    # training voxels
    class_radii = resolve_radii(names, radii, box)
    if radii is None:
        located_radii, class_radii = class_radii, {n: r * step for n, r in class_radii.items()}
    else:
        located_radii = {n: r / step for n, r in class_radii.items()}
    name = resolve_tomogram_name(tomogram_path, name=tomo_name, tomograms_star=tomograms_star,
                                 warp_settings=warp_settings)
    if method == "candidates" and score_maps_dir is not None:
        raise InputError(
            "score maps need a dense method (--method boxes, stages or tiles); candidates "
            "scores only the proposed positions",
            field="score_maps",
        )

    spectrum = resolve_matching(match_spectrum, info, resampled=step != 1.0)
    if spectrum is not None and method != "candidates":
        if match_spectrum == "on":
            raise InputError("spectrum matching needs --method candidates", field="match_spectrum")
        log.warning("spectra not matched: --method %s does not support it", method)
        spectrum = None
    box_filter = spectrum_gain = None
    start = time.perf_counter()
    maps = cands = None
    stage: dict[str, float] = {}
    data = volume.data
    target = training_polarity(info)
    invert, measured = (False, None) if polarity == "both" else resolve_inversion(
        polarity, data, volume.voxel_size_angstrom, target=target, what=str(tomogram_path))
    stage["polarity"] = time.perf_counter() - start
    if step != 1.0:
        data = resample_volume(volume.data, step)
        if invert:
            np.negative(data, out=data)
        stage["resample"] = time.perf_counter() - start - sum(stage.values())
        log.info("resampled %s from %g to %g Å: %s -> %s voxels", name,
                 volume.voxel_size_angstrom, float(trained), volume.data.shape, data.shape)
    else:
        data = invert_if(data, invert)
    signs = candidate_polarity(polarity, measured, target)
    if method == "candidates":
        cands = propose_candidates(
            data,
            sorted(set(located_radii.values())),
            # after any inversion the particles look as in training (a "mixed" run: as given);
            # a clear measurement is trusted, only an unclear one leaves both signs
            polarity=signs,
            threshold=candidate_threshold,
            max_candidates=max_candidates,
            device=dev,
            progress=progress,
        )
        stage["propose"] = time.perf_counter() - start - sum(stage.values())
        if spectrum is not None and len(cands):
            target_spec = spectrum_at(data, cands.zyx, box, volume.voxel_size_angstrom * step)
            spectrum_gain, box_filter = box_filter_for(spectrum, target_spec)
        cands, probs = _classify_candidates(
            model,
            data,
            cands,
            auto=polarity == "auto" and signs == "both",
            threshold=threshold,
            background=[n.casefold() for n in names].index(BACKGROUND),
            box=box,
            normalize=normalize,
            device=dev,
            batch_size=batch_size,
            progress=progress,
            precision=precision,
            box_filter=box_filter,
        )
        stage["classify"] = time.perf_counter() - start - sum(stage.values())
        picks = picks_from_boxes(
            cands.centres, probs, names, located_radii, threshold=threshold,
            tomogram_name=name,
        )
    else:
        maps = score_tomogram(
            model,
            data,
            box=box,
            class_names=names,
            method=method,
            stride=stride,
            batch_size=batch_size,
            tile=tile,
            halo=halo,
            normalize=normalize,
            device=dev,
            progress=progress,
            precision=precision,
        )
        stage["score"] = time.perf_counter() - start - sum(stage.values())
        picks = find_peaks(maps, located_radii, threshold=threshold, tomogram_name=name)
    if step != 1.0:  # back to the tomogram's voxels
        picks[["x", "y", "z"]] = picks[["x", "y", "z"]].to_numpy(float) * step
    seconds = time.perf_counter() - start
    stage["pick"] = seconds - sum(stage.values())

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
        outputs.append(write_score_maps(maps, score_maps_dir, volume.voxel_size_angstrom * step))
    log.info("%d picks in %.1f s (%s) -> %s", len(picks), seconds,
             ", ".join(f"{k} {v:.1f} s" for k, v in stage.items()), out)
    return LocateResult(picks, outputs, maps, seconds, class_radii, normalize, cands,
                        {k: round(v, 3) for k, v in stage.items()}, threshold,
                        threshold_source, step, invert, measured, volume.shape,
                        volume.voxel_size_angstrom, spectrum_gain)


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
    from tomoclass.train import load_run

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


def _classify_candidates(
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

    With ``auto``, first choose the polarity to keep (see :func:`locate`) from the strongest
    candidates of each sign; the probabilities are (N, K) for the N kept. ``kw`` go to
    :class:`~tomoclass.locate.scoring.BoxClassifier`.
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
