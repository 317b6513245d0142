"""Tomograms + particle tables -> a dataset directory (what ``tomoclass extract`` runs)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.data.classmap import ClassMap
from tomoclass.data.extract import (
    NONFINITE_CHOICES,
    iter_boxes,
    plan_extraction,
    screen_nonfinite,
)
from tomoclass.data.polarity import DATASET_POLARITY, resolve_inversion
from tomoclass.data.store import SPLIT, DatasetWriter, assign_splits, tomogram_number
from tomoclass.errors import InputError, ResourceError
from tomoclass.io import schema as S
from tomoclass.io.naming import tomogram_name
from tomoclass.io.volume import read_volume, warn_if_beam_along_y

log = logging.getLogger(__name__)

#: The option that overrides tomogram headers in ``extract`` (its ``--voxel-size`` is the
#: dataset's), named in voxel-size errors.
_OVERRIDE = "--tomogram-voxel-size"


@dataclass
class ExtractReport:
    """What :func:`extract_dataset` did.

    Attributes
    ----------
    path
        The dataset written.
    n_written
        Subtomograms in the dataset.
    n_outside, n_border_skipped, n_padded
        Rows skipped because the centre is outside the tomogram / the box crosses the border
        (``border="skip"``), and rows kept but padded.
    n_unmatched
        Table rows whose tomogram matched none of the given tomogram files (not extracted).
    n_nonprotein
        Non-protein rows (vesicles, fiducials) left out.
    n_nonfinite
        Boxes left out because they held NaN/inf (``nonfinite="skip"``).
    per_tomogram
        Tomogram name (:func:`tomoclass.io.tomogram_name`) -> rows written.
    inverted
        Tomogram name -> whether its contrast was inverted (its particles were bright).
    """

    path: Path
    n_written: int = 0
    n_outside: int = 0
    n_border_skipped: int = 0
    n_padded: int = 0
    n_unmatched: int = 0
    n_nonprotein: int = 0
    n_nonfinite: int = 0
    per_tomogram: dict[str, int] = field(default_factory=dict)
    inverted: dict[str, bool] = field(default_factory=dict)


def check_disk_space(out: Path, nbytes: int, *, margin_bytes: int = 64 * 1024**2) -> None:
    """Refuse before starting when the disk holding ``out`` cannot take ``nbytes`` more.

    Raises
    ------
    ResourceError
        Free space below ``nbytes`` + ``margin_bytes`` (the table and headers).
    """
    probe = out.parent if not out.exists() else out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = nbytes + margin_bytes
    if free < need:
        raise ResourceError(
            f"{out}: the dataset needs about {need / 1024**3:.2f} GiB but only "
            f"{free / 1024**3:.2f} GiB are free on that disk")


def match_tomograms(tomogram_paths: Sequence[Path], table: pd.DataFrame) -> dict[Path, np.ndarray]:
    """Map each tomogram file to the rows of ``table`` that belong to it.

    A file matches the rows whose ``tomogram`` equals its name
    (:func:`tomoclass.io.tomogram_name`: the stem, or the folder for generic names such as
    SHREC's ``model_3/reconstruction.mrc``); failing that, rows whose tomogram name ends in
    the same number (``9`` <-> ``model_9.mrc``). With one file and one
    tomogram name in the table, they are paired whatever their names.

    Returns
    -------
    dict
        Path -> row indices (possibly empty).
    """
    names = table[S.TOMOGRAM].astype(str).to_numpy()
    distinct = pd.unique(names)
    if len(tomogram_paths) == 1 and len(distinct) == 1:
        return {Path(tomogram_paths[0]): np.arange(len(table))}
    out: dict[Path, np.ndarray] = {}
    for p in tomogram_paths:
        p = Path(p)
        stem = tomogram_name(p)
        rows = np.flatnonzero(names == stem)
        if len(rows) == 0:
            num = tomogram_number(stem)
            if num is not None:
                hits = [t for t in distinct if tomogram_number(t) == num]
                if len(hits) == 1:
                    rows = np.flatnonzero(names == hits[0])
        out[p] = rows
    return out


#: How to give a dataset a validation split (``train`` needs one), for messages.
VALIDATION_SPLIT_HINT = (
    "give --val-tomograms NAMES or --val-fraction F (e.g. 0.1: a share of each class's training "
    "particles) to extract, or reassign an existing dataset with 'tomoclass dataset split DS "
    "--test-tomograms ... --val-fraction 0.1'")


def _warn_if_no_validation(split: np.ndarray) -> None:
    """Warn when a dataset is about to be written without validation rows."""
    if len(split) and not (split == "val").any():
        counts = ", ".join(f"{int((split == s).sum())} {s}" for s in ("train", "test")
                           if (split == s).any())
        log.warning("no validation split (%s): 'tomoclass train' needs one; %s", counts,
                    VALIDATION_SPLIT_HINT)


def _with_background(table: pd.DataFrame, tomograms: Sequence[str | os.PathLike[str]],
                     options: Mapping[str, Any], *, box: int, border: str,
                     tomogram_voxel_size_angstrom: float | None) -> pd.DataFrame:
    """``table`` plus background rows for every tomogram file that has rows."""
    from tomoclass.data.background import background_for_tomograms

    truths = {}
    for path, rows in match_tomograms([Path(t) for t in tomograms], table).items():
        if len(rows):
            shape = read_volume(path, tomogram_voxel_size_angstrom, check="none",
                                override_option=_OVERRIDE).shape
            truth = table.iloc[rows]
            truths[str(truth[S.TOMOGRAM].iloc[0])] = (truth, shape)
    opts = dict(options)
    opts.setdefault("max_offset", box / 2)
    bg = background_for_tomograms(truths, box=box if border == "skip" else None, **opts)
    log.info("added %d background boxes (%d tomograms)", len(bg), len(truths))
    return pd.concat([table, bg], ignore_index=True)


def extract_dataset(
    out: str | os.PathLike[str],
    tomograms: Sequence[str | os.PathLike[str]],
    table: pd.DataFrame,
    *,
    box: int = 32,
    voxel_size_angstrom: float | None = None,
    tomogram_voxel_size_angstrom: float | None = None,
    class_map: ClassMap | None = None,
    include_nonprotein: bool = False,
    subvoxel: bool = False,
    border: str = "pad",
    normalize: str = "zscore",
    split_method: str = "tomogram",
    split_options: Mapping[str, Any] | None = None,
    chunk: int = 256,
    provenance: Mapping[str, Any] | None = None,
    clean_tomograms: Sequence[str | os.PathLike[str]] | None = None,
    polarity: str = "auto",
    background: Mapping[str, Any] | None = None,
    nonfinite: str = "error",
) -> ExtractReport:
    """Extract every particle of ``table`` from its tomogram into a new dataset directory.

    Parameters
    ----------
    out
        Dataset directory (written atomically).
    tomograms
        MRC tomograms (memory-mapped; only the boxes are read).
    table
        Particle table(s) concatenated, in the schema; rows are matched to tomogram files by
        :func:`match_tomograms`.
    box
        Box edge in voxels of the dataset.
    voxel_size_angstrom
        Dataset voxel size (Å); default: the first tomogram's. Tomograms at other voxel sizes
        are resampled.
    tomogram_voxel_size_angstrom
        Override for wrong tomogram headers (Å).
    class_map
        Class order; default: sorted protein class names with the paper's size groups.
        A row whose class is not in it raises InputError.
    include_nonprotein
        Keep vesicle/fiducial rows (their class names must then be in ``class_map``). Rows of
        the class ``background`` (boxes added by :func:`tomoclass.locate.background_boxes`)
        are kept either way.
    subvoxel, border, normalize
        As :func:`tomoclass.data.extract.extract_subtomograms`.
    split_method, split_options
        :func:`tomoclass.data.store.assign_splits` (on the whole table, before extraction;
        skipped rows do not rebalance a stratified split). A ``split`` column already in
        ``table`` is kept.
    chunk
        Boxes held in memory at a time (the dataset is streamed to disk).
    provenance
        Extra entries for dataset.yaml's provenance.
    clean_tomograms
        Noise-free density volumes, one per entry of ``tomograms`` and of the same shape
        (the simulator's ``*_density.mrc``). The same boxes are cut from them, without
        normalization, into the dataset's ``clean.npy`` (ground truth for CAM figures and
        scores).
    polarity
        How the particles look in the tomograms: ``"auto"`` (default) measures each tomogram
        (:func:`tomoclass.data.polarity.measure_polarity`), ``"dark"``/``"bright"`` says it
        for all. Boxes of bright tomograms are inverted: a dataset holds dark particles
        (``dataset.yaml``: ``polarity: dark``), whatever mix of conventions it came from.
    background
        Add background boxes (a detector's non-particle class) to every tomogram with rows:
        keyword arguments of :func:`tomoclass.data.background.background_for_tomograms`
        (``n_random``, ``n_offcentre``, ``radii``, ``seed``, optional ``max_offset``, default
        ``box / 2``). Centres may lie anywhere in the tomogram (their boxes padded like the
        particles'), or where the whole box fits with ``border="skip"``. The rows join the
        split like any class; ``background`` is appended to a given ``class_map`` lacking it.
    nonfinite
        A box that holds NaN/inf (NaN in the tomogram, or values that overflow float32 when
        normalized): ``"error"`` refuses the job naming the tomogram, position and cause;
        ``"skip"`` leaves such boxes out (counted in ``n_nonfinite``, each chunk logged).

    Returns
    -------
    ExtractReport
        Counts of written, skipped, padded, unmatched and non-protein rows.

    Raises
    ------
    InputError
        No tomograms, no row matching any tomogram, bad volumes or options.
    ResourceError
        Not enough free disk for the dataset (checked before any work).
    """
    _check_extract_options(tomograms, nonfinite)
    report = ExtractReport(path=Path(out))
    table = _extractable_rows(table, include_nonprotein, report)
    if background:
        table = _with_background(table, tomograms, background, box=box, border=border,
                                 tomogram_voxel_size_angstrom=tomogram_voxel_size_angstrom)
    class_map = _dataset_class_map(table, class_map, with_background=bool(background))
    if SPLIT not in table.columns:
        table[SPLIT] = assign_splits(table, split_method, **dict(split_options or {}))
    paths = [Path(t) for t in tomograms]
    matched, used = _matched_rows(paths, table, report)
    _warn_if_no_validation(table[SPLIT].to_numpy()[used])
    check_disk_space(Path(out), int(used.sum()) * box**3 * 4 * (2 if clean_tomograms else 1))
    volumes = _matched_volumes(paths, matched, tomogram_voxel_size_angstrom)
    cleans = _clean_volumes(paths, clean_tomograms, volumes, tomogram_voxel_size_angstrom)
    if voxel_size_angstrom is None:
        voxel_size_angstrom = next(iter(volumes.values())).voxel_size_angstrom
    prov = {"tomograms": [str(p) for p in paths], "box": box, "subvoxel": subvoxel,
            "border": border, "normalize": normalize, "split_method": split_method,
            "polarity": {"requested": polarity,
                         "tomograms": _resolve_polarities(volumes, polarity, report)},
            **dict(provenance or {})}
    cut = {"box": box, "voxel_size_angstrom": voxel_size_angstrom, "subvoxel": subvoxel,
           "border": border, "normalize": normalize, "chunk": chunk, "nonfinite": nonfinite}
    _write_dataset(out, volumes, cleans, table, matched, report, class_map, prov, cut)
    return report


def _check_extract_options(tomograms: Sequence[Any], nonfinite: str) -> None:
    """Refuse an empty tomogram list or an unknown non-finite policy before any work."""
    if not tomograms:
        raise InputError("no tomograms given", field="tomograms")
    if nonfinite not in NONFINITE_CHOICES:
        raise InputError(f"nonfinite must be one of {', '.join(NONFINITE_CHOICES)}, not "
                         f"{nonfinite!r}", field="nonfinite")


def _extractable_rows(table: pd.DataFrame, include_nonprotein: bool,
                      report: ExtractReport) -> pd.DataFrame:
    """The rows to extract: proteins and background boxes (all rows with ``include_nonprotein``)."""
    table = table.reset_index(drop=True)
    if not include_nonprotein:
        # background boxes (tomoclass.locate.background_boxes) are not proteins but were
        # added on purpose, to train a detector: keep them; leave vesicles and fiducials out
        keep = (table[S.IS_PROTEIN].astype(bool).to_numpy()
                | (table[S.CLASS_NAME].astype(str).str.casefold() == S.BACKGROUND).to_numpy())
        report.n_nonprotein = int((~keep).sum())
        table = table[keep].reset_index(drop=True)
    if len(table) == 0:
        raise InputError("no particles to extract (after leaving out non-protein rows)",
                         field="tables")
    return table


def _dataset_class_map(table: pd.DataFrame, class_map: ClassMap | None, *,
                       with_background: bool) -> ClassMap:
    """The dataset's class map (given, else from the table); an unknown class raises now."""
    if with_background and class_map is not None and S.BACKGROUND not in class_map:
        class_map = ClassMap([*class_map.names, S.BACKGROUND], [*class_map.size_groups, ""])
    if class_map is None:
        class_map = ClassMap.from_names(sorted(table[S.CLASS_NAME].astype(str).unique()))
    for name in pd.unique(table[S.CLASS_NAME].astype(str)):
        class_map.index(name)  # unknown class -> InputError before any work
    return class_map


def _matched_rows(paths: Sequence[Path], table: pd.DataFrame,
                  report: ExtractReport) -> tuple[dict[Path, np.ndarray], np.ndarray]:
    """Rows of each tomogram file, and which rows have one; none matching raises."""
    matched = match_tomograms(paths, table)
    used = np.zeros(len(table), dtype=bool)
    for rows in matched.values():
        used[rows] = True
    report.n_unmatched = int((~used).sum())
    if not used.any():
        raise InputError(
            "no table row matches a tomogram file (table tomograms: "
            f"{', '.join(map(str, pd.unique(table[S.TOMOGRAM])[:5]))}; files: "
            f"{', '.join(p.name for p in paths[:5])}); name each table's tomogram: --tables "
            "TABLE=TOMOGRAM (e.g. objl_0.xml=tomo_0)", field="tomogram")
    if report.n_unmatched:
        log.warning("%d particle(s) belong to tomograms not given; not extracted",
                    report.n_unmatched)
    return matched, used


def _matched_volumes(paths: Sequence[Path], matched: Mapping[Path, np.ndarray],
                     voxel_size: float | None) -> dict[Path, Any]:
    """The tomograms that have rows, opened (memory-mapped); warns of a beam along y."""
    volumes = {p: read_volume(p, voxel_size, override_option=_OVERRIDE)
               for p in paths if len(matched[p])}
    for v in volumes.values():
        warn_if_beam_along_y(v)
    return volumes


def _clean_volumes(paths: Sequence[Path], clean_tomograms: Sequence[Any] | None,
                   volumes: Mapping[Path, Any], voxel_size: float | None) -> dict[Path, Any]:
    """The noise-free volume of each tomogram that has rows (same shape), if given."""
    cleans: dict[Path, Any] = {}
    if clean_tomograms is None:
        return cleans
    if len(clean_tomograms) != len(paths):
        raise InputError(f"{len(clean_tomograms)} clean volumes for {len(paths)} tomograms",
                         field="clean_tomograms")
    for p, c in zip(paths, clean_tomograms, strict=True):
        if p not in volumes:
            continue
        cleans[p] = read_volume(c, voxel_size, override_option=_OVERRIDE)
        if cleans[p].shape != volumes[p].shape:
            raise InputError(f"clean volume of shape {cleans[p].shape} for a tomogram of "
                             f"shape {volumes[p].shape}", path=c, field="shape")
    return cleans


def _resolve_polarities(volumes: Mapping[Path, Any], polarity: str,
                        report: ExtractReport) -> dict[str, Any]:
    """Whether each tomogram's boxes are inverted (into ``report``), and the provenance."""
    measured = {}
    for p, v in volumes.items():
        name = tomogram_name(p)
        report.inverted[name], m = resolve_inversion(polarity, v.data, v.voxel_size_angstrom,
                                                     what=str(p))
        measured[name] = {"inverted": report.inverted[name],
                          **({"measured": m.to_dict()} if m is not None else {})}
    return measured


def _write_dataset(out: str | os.PathLike[str], volumes: Mapping[Path, Any],
                   cleans: Mapping[Path, Any], table: pd.DataFrame,
                   matched: Mapping[Path, np.ndarray], report: ExtractReport,
                   class_map: ClassMap, provenance: Mapping[str, Any],
                   cut: Mapping[str, Any]) -> None:
    """Write the dataset directory: every tomogram's boxes (``cut``: how), atomically."""
    with DatasetWriter(out, box=cut["box"], class_map=class_map,
                       voxel_size_angstrom=cut["voxel_size_angstrom"],
                       normalization=cut["normalize"], provenance=provenance,
                       polarity=DATASET_POLARITY, with_clean=bool(cleans)) as w:
        for p, vol in volumes.items():
            _extract_tomogram(w, p, vol, table.iloc[matched[p]].reset_index(drop=True),
                              cleans.get(p), report, **cut)
        _check_written(report)


def _extract_tomogram(w: DatasetWriter, p: Path, vol: Any, sub: pd.DataFrame, clean_vol: Any,
                      report: ExtractReport, *, box: int, voxel_size_angstrom: float,
                      subvoxel: bool, border: str, normalize: str, chunk: int,
                      nonfinite: str) -> None:
    """Cut the boxes of one tomogram's rows ``sub`` into the dataset, counting into ``report``."""
    plan = plan_extraction(vol.shape, sub, box,
                           source_voxel_size_angstrom=vol.voxel_size_angstrom,
                           voxel_size_angstrom=voxel_size_angstrom, subvoxel=subvoxel,
                           border=border)
    kept = sub.iloc[plan.rows].reset_index(drop=True)
    kept["padded"] = plan.padded
    n_dropped = 0
    clean_chunks = (iter_boxes(clean_vol.data, plan, normalize="none", chunk=chunk)
                    if clean_vol is not None else None)
    for start, boxes in iter_boxes(vol.data, plan, normalize=normalize, chunk=chunk):
        if report.inverted[tomogram_name(p)]:
            np.negative(boxes, out=boxes)
        clean = next(clean_chunks)[1] if clean_chunks is not None else None
        boxes, rows, clean, dropped = screen_nonfinite(
            boxes, kept.iloc[start:start + len(boxes)], start, vol.data, plan,
            tomogram=p, policy=nonfinite, clean=clean)
        n_dropped += dropped
        if len(boxes):
            w.append(boxes, rows, clean=clean)
    report.n_outside += plan.n_outside
    report.n_border_skipped += plan.n_border_skipped
    report.n_padded += int(plan.padded.sum())
    report.n_nonfinite += n_dropped
    report.per_tomogram[tomogram_name(p)] = len(kept) - n_dropped
    report.n_written += len(kept) - n_dropped


def _check_written(report: ExtractReport) -> None:
    """Warn when most particles lie outside their tomogram (a pixel-size mix-up?); refuse none."""
    total = report.n_outside + report.n_written + report.n_border_skipped
    if report.n_outside > 0.5 * total:
        log.warning("%d of %d particles lie outside their tomogram: are the coordinates in "
                    "another pixel size (unbinned tilt-series pixels: --coords-angpix) or "
                    "the voxel size wrong?", report.n_outside, total)
    if report.n_written == 0:
        raise InputError("every particle was skipped (outside the tomogram or at the border)",
                         field="border")
