"""Classifying the particles of a tomogram with a trained run: :func:`predict_particles`.

The run and the tomogram are prepared as for ``locate``
(:func:`tomoclass.infer.prepare_tomogram`); boxes are cut out of the (memory-mapped) tomogram
in chunks of one inference batch, so
memory stays at one batch whatever the number of picks; they are normalised the way the
training data was (the dataset's ``normalization``), at the training box size, and the
model's softmax gives each particle a class, a confidence and every class probability.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomoclass.data.extract import iter_boxes, plan_extraction
from tomoclass.data.spectrum import filter_boxes
from tomoclass.errors import InputError
from tomoclass.infer.prepare import PreparedTomogram, prepare_tomogram
from tomoclass.io import schema as S
from tomoclass.io.annotate import INPUT_ROW
from tomoclass.io.bounds import COORDS_ANGPIX_HINT, OVERSHOOT_RATIO, overshoot
from tomoclass.train.device import autocast
from tomoclass.train.resources import check_fits, estimate_prediction

log = logging.getLogger(__name__)


#: Prefix of the per-class probability columns (``prob_<class name>``).
PROB_PREFIX = "prob_"


@dataclass
class PredictionResult:
    """Per-particle predictions.

    Attributes
    ----------
    table
        One row per input particle, input order: the input's schema columns with
        ``class_name`` = predicted class and ``score`` = its probability (confidence), plus
        ``class_number`` (1-based, RELION's ``rlnClassNumber``), ``confidence``,
        ``prob_<name>`` for every class, ``padded`` (the box crossed the tomogram border)
        and ``input_class_name`` (the class the input table gave, "" if none).
    probabilities
        float32 (N, K) softmax outputs in class-map order.
    class_map
        The run's :class:`tomoclass.data.ClassMap`.
    voxel_size_angstrom
        Voxel size of the tomogram (Å) as used.
    training_voxel_size_angstrom
        Voxel size of the training data (Å).
    rescaled
        True when boxes were resampled to the training voxel size.
    inverted
        True when the boxes' contrast was inverted to the training data's polarity.
    polarity
        The tomogram's measured polarity (``polarity="auto"``), else None.
    tomogram_shape
        The tomogram's ``(z, y, x)`` size (STAR output also gets RELION 5 centred
        coordinates from it and ``voxel_size_angstrom``).
    spectrum_gain
        The per-band gain of spectrum matching, else None.
    source
        The table file the picks came from (None for a DataFrame); a STAR source is
        annotated by :func:`write_predictions` (``table["input_row"]`` is its row).
    coordinate_pixel_size_angstrom
        Pixel size (Å) of the source's coordinates when not the tomogram's voxels.
    """

    table: pd.DataFrame
    probabilities: np.ndarray
    class_map: Any
    voxel_size_angstrom: float
    training_voxel_size_angstrom: float
    rescaled: bool
    inverted: bool = False
    polarity: Any = None
    tomogram_shape: tuple[int, int, int] | None = None
    spectrum_gain: list[float] | None = None
    source: Path | None = None
    coordinate_pixel_size_angstrom: float | None = None


class _OneShape(Mapping):
    """Every tomogram name -> one shape.

    RELION 5 centred coordinates of rows of other tomograms are converted with it too; those
    rows are dropped right after reading.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self._shape = shape

    def __getitem__(self, key: str) -> tuple[int, int, int]:
        return self._shape

    def __iter__(self):  # noqa: ANN204
        return iter(())

    def __len__(self) -> int:
        return 0


def _read_coords(coords: Any, tomogram_name: str, shape: tuple[int, int, int],
                 voxel_size_angstrom: float,
                 coordinate_pixel_size_angstrom: float | None = None) -> pd.DataFrame:
    """The picks of this tomogram; bounds are checked by the caller.

    The rows the table names it with; all rows when the table names one tomogram (or none:
    they are then given this tomogram's name).
    """
    from tomoclass.io import read_particles
    from tomoclass.io import tomogram_name as path_tomogram_name

    if isinstance(coords, pd.DataFrame):
        table = coords.copy()
        source = None
        table[INPUT_ROW] = np.arange(len(table))
    else:
        source = Path(coords)
        # the table's own tomogram names stand (a particles.star of many tomograms)
        kw = {"voxel_size_angstrom": voxel_size_angstrom, "out_of_bounds": "keep",
              "coordinate_pixel_size_angstrom": coordinate_pixel_size_angstrom}
        try:
            table = read_particles(source, tomogram_shape={tomogram_name: shape}, **kw)
        except InputError as exc:
            if exc.field != "rlnCenteredCoordinateXAngst":
                raise
            # RELION 5 centred rows of other tomograms (or of this one under another name):
            # their sizes are unknown; this one's serves, the other rows are dropped below
            table = read_particles(source, tomogram_shape=_OneShape(shape), **kw)
        table[INPUT_ROW] = np.arange(len(table))  # read_particles drops no row here
    for col in S.COORDS:
        if col not in table.columns:
            raise InputError("missing coordinate column", path=source, field=col)
    if S.TOMOGRAM in table.columns:
        names = table[S.TOMOGRAM].astype(str)
        distinct = sorted(names.unique())
        if len(distinct) > 1:
            if tomogram_name not in distinct:
                raise InputError(
                    f"the table holds tomograms {', '.join(distinct[:6])} but none is named "
                    f"'{tomogram_name}'; pass --tomogram-name", path=source, field=S.TOMOGRAM)
            table = table[names == tomogram_name]
            log.info("%d of %d picks in %s are of tomogram %s", len(table), len(names), source,
                     tomogram_name)
        elif distinct and distinct[0] != tomogram_name:
            if source is not None and distinct[0] == path_tomogram_name(source):
                table[S.TOMOGRAM] = tomogram_name  # a table without tomogram names
            else:
                log.info("using all %d picks of tomogram '%s' in %s for %s", len(table),
                         distinct[0], source, tomogram_name)
    if len(table) == 0:
        raise InputError("no particles to classify", path=source)
    return table.reset_index(drop=True)


def predict_particles(
    run: str | os.PathLike[str],
    tomogram: Any,
    coords: Any,
    *,
    which: str = "best",
    voxel_size_angstrom: float | None = None,
    rescale: bool = False,
    batch_size: int = 64,
    device: str = "auto",
    tomogram_name: str | None = None,
    max_memory_bytes: int | None = None,
    progress: bool = False,
    polarity: str = "auto",
    coordinate_pixel_size_angstrom: float | None = None,
    match_spectrum: str = "auto",
    tomograms_star: str | os.PathLike[str] | None = None,
    warp_settings: str | os.PathLike[str] | None = None,
) -> PredictionResult:
    """Classify the particles picked in a tomogram with a trained run.

    Parameters
    ----------
    run
        Run directory written by :func:`tomoclass.train.fit` (or a checkpoint ``.pt`` or a
        pretrained name).
    tomogram
        MRC path or a :class:`tomoclass.io.Volume` (z, y, x), memory-mapped.
    coords
        Picks: a STAR/CSV/SHREC-txt/XML path (read by :func:`tomoclass.io.read_particles`)
        or a DataFrame in the particle schema (``x``, ``y``, ``z`` in voxels of the
        tomogram, 0-based). Rows of other tomograms are left out (see ``tomogram_name``).
    which
        Checkpoint: ``"best"``, ``"last"`` or an epoch.
    voxel_size_angstrom
        Override of the tomogram header's voxel size (Å).
    rescale
        Resample boxes to the training voxel size when the tomogram's differs by more than
        5 %; without it such a tomogram is refused.
    batch_size
        Boxes per inference batch (memory is about one batch).
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``, ...
    tomogram_name
        Name of this tomogram in a multi-tomogram table (default: from ``tomograms_star``,
        else :func:`tomoclass.io.tomonames.resolve_tomogram_name` of the file: Warp's
        ``<name>_<pixel>Apx``, else its stem, or its folder for a generic name such as
        ``model_3/reconstruction.mrc``; what was assumed is logged).
    max_memory_bytes
        Refuse when the memory estimate for one batch exceeds this.
    progress
        Show a tqdm bar (particles/s).
    polarity
        How the particles look in the tomogram: ``"auto"`` (default) measures it
        (:func:`tomoclass.data.polarity.measure_polarity`), ``"dark"`` or ``"bright"`` says
        it. When it is not the training data's (``dark`` for tomoclass datasets) the boxes
        are inverted before classification.
    coordinate_pixel_size_angstrom
        Pixel size (Å) of the picks' coordinates when they are not in voxels of the
        tomogram (RELION 4 / Warp tables in unbinned tilt-series pixels); files only.
    match_spectrum
        Filter each box so that the boxes at the picks have the training boxes' amplitude
        spectrum (:mod:`tomoclass.data.spectrum`): ``"auto"`` (default) when boxes are
        resampled (``rescale``) and the run records its training spectrum, ``"on"``,
        ``"off"``. ``result.spectrum_gain`` is the gain used.
    tomograms_star, warp_settings
        A RELION 5 ``tomograms.star`` naming the tomogram (``rlnTomoName``), or a Warp
        settings file whose data folder's ``.tomostar`` files name it.

    Returns
    -------
    PredictionResult
        Table with predicted class, confidence and all class probabilities.

    Raises
    ------
    InputError
        Voxel size more than 5 % off the training data's without ``rescale``, coordinates
        outside the tomogram, unreadable/untrusted run, bad tables or volumes.
    tomoclass.errors.ResourceError
        The batch does not fit in memory by the estimate.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be positive, not {batch_size}", field="batch_size")
    prep = prepare_tomogram(
        run, tomogram, which=which, device=device, voxel_size_angstrom=voxel_size_angstrom,
        rescale=rescale, polarity=polarity, match_spectrum=match_spectrum,
        tomogram_name=tomogram_name, tomograms_star=tomograms_star, warp_settings=warp_settings)
    vol = prep.volume
    table = _read_coords(coords, prep.name, vol.shape, float(vol.voxel_size_angstrom),
                         coordinate_pixel_size_angstrom)
    plan = _plan_boxes(prep, table, coordinate_pixel_size_angstrom)
    check_fits(estimate_prediction(prep.model, int(prep.info["box"]), batch_size),
               device=prep.device, out_dir=Path.cwd(), max_memory_bytes=max_memory_bytes,
               what="prediction")
    spectrum_gain, grid = _box_filter(prep, table)
    probs = _classify_plan(prep, plan, grid, batch_size, progress)
    out = _prediction_table(table, probs, list(prep.class_map.names), plan.padded)
    return PredictionResult(out, probs, prep.class_map, float(vol.voxel_size_angstrom),
                            float(prep.info["voxel_size_angstrom"]), prep.step != 1.0,
                            prep.invert, prep.measured, tuple(vol.shape), spectrum_gain,
                            None if isinstance(coords, pd.DataFrame) else Path(coords),
                            coordinate_pixel_size_angstrom)


def _plan_boxes(prep: PreparedTomogram, table: pd.DataFrame,
                coordinate_pixel_size_angstrom: float | None) -> Any:
    """Where each pick's box is cut (resampled with ``rescale``); every pick inside.

    Raises
    ------
    InputError
        Picks outside the tomogram (with a hint when they look like unbinned pixels).
    """
    vol = prep.volume
    vs, train_vs = float(vol.voxel_size_angstrom), float(prep.info["voxel_size_angstrom"])
    plan = plan_extraction(vol.shape, table, int(prep.info["box"]),
                           source_voxel_size_angstrom=vs,
                           voxel_size_angstrom=train_vs if prep.step != 1.0 else None,
                           border="pad")
    if plan.n_outside:
        first = int(np.setdiff1d(np.arange(len(table)), plan.rows)[0])
        reach = overshoot(table[[S.X, S.Y, S.Z]].to_numpy(np.float64), vol.shape)
        hint = ("; " + COORDS_ANGPIX_HINT
                if reach > OVERSHOOT_RATIO and coordinate_pixel_size_angstrom is None else "")
        raise InputError(
            f"{plan.n_outside} particle(s) lie outside the tomogram of size (z, y, x)="
            f"{vol.shape}, first at row {first + 1} (x={table[S.X].iloc[first]:g}, "
            f"y={table[S.Y].iloc[first]:g}, z={table[S.Z].iloc[first]:g}){hint}",
            path=prep.path, field="x,y,z")
    return plan


def _box_filter(prep: PreparedTomogram, table: pd.DataFrame
                ) -> tuple[list[float] | None, torch.Tensor | None]:
    """Spectrum matching's gain and box filter (on the device) for the boxes at the picks."""
    vs, train_vs = float(prep.volume.voxel_size_angstrom), float(prep.info["voxel_size_angstrom"])
    rescaled = prep.step != 1.0
    # the boxes as they will be classified: resampled only with rescale
    gain, grid = prep.box_filter(prep.volume.data, table[[S.Z, S.Y, S.X]].to_numpy(np.float64),
                                 int(prep.info["box"]), train_vs if rescaled else vs,
                                 source_voxel_size_angstrom=vs if rescaled else None)
    return gain, None if grid is None else torch.from_numpy(grid).to(prep.device)


def _classify_plan(prep: PreparedTomogram, plan: Any, grid: torch.Tensor | None,
                   batch_size: int, progress: bool) -> np.ndarray:
    """Float32 (N, K) softmax of the net on the planned boxes, one batch in memory at a time.

    Boxes are normalised as the training data was (its ``normalization``), inverted to the
    training polarity and filtered by ``grid`` when given.
    """
    dev = prep.device
    normalize = (prep.info.get("data") or {}).get("normalization") or "zscore"
    net, dtype = prep.net("auto")
    probs = np.empty((len(plan.rows), len(prep.class_map)), dtype=np.float32)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.rows), unit="particle", desc="predict", leave=False)
    with torch.inference_mode():
        for start, boxes in iter_boxes(prep.volume.data, plan, normalize=normalize,
                                       chunk=batch_size):
            if prep.invert:
                np.negative(boxes, out=boxes)
            x = torch.from_numpy(boxes[:, None]).to(dev)
            if grid is not None:
                x = filter_boxes(x, grid)
            if dtype is not None:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with autocast(dev, dtype):
                logits = net(x)
            probs[start:start + len(boxes)] = torch.softmax(logits.float(), 1).cpu().numpy()
            if bar is not None:
                bar.update(len(boxes))
    if bar is not None:
        bar.close()
    return probs


def _prediction_table(table: pd.DataFrame, probs: np.ndarray, names: list[str],
                      padded: np.ndarray) -> pd.DataFrame:
    """The input rows with the predicted class, confidence and every class probability."""
    pred = probs.argmax(1)
    out = table.copy()
    out["input_class_name"] = (out[S.CLASS_NAME].astype(str) if S.CLASS_NAME in out.columns
                               else "")
    out[S.CLASS_NAME] = [names[i] for i in pred]
    out["class_number"] = pred + 1
    out["confidence"] = probs[np.arange(len(pred)), pred]
    out[S.SCORE] = out["confidence"]
    for j, n in enumerate(names):
        out[f"{PROB_PREFIX}{n}"] = probs[:, j]
    out["padded"] = padded
    return out


def write_predictions(result: PredictionResult | Sequence[PredictionResult],
                      path: str | os.PathLike[str], *, annotate: bool = True,
                      split_by_class: bool = False) -> Path:
    """Write predictions as RELION STAR (``.star``) or CSV (``.csv``), atomically.

    ``result`` may be several results (tomograms) of one run: one table, a ``rlnTomoName``
    per row.

    STAR, picks read from a STAR file (``annotate``, default): the user's table annotated by
    :func:`tomoclass.io.annotate.annotate_star`: every block and column kept, coordinates in
    the units they came in, the rows classified, plus ``tomoclassClassName``,
    ``tomoclass_class_number``, ``tomoclass_confidence``, ``tomoclass_prob_<class>`` (and
    ``rlnClassNumber``, ``rlnAutopickFigureOfMerit``, ``rlnTomoName`` and RELION 5 centred Å
    coordinates where the table has none).

    STAR otherwise: ``rlnClassNumber`` (1-based, class-map order), ``tomoclassClassName``,
    the confidence as ``rlnAutopickFigureOfMerit``, RELION 5 ``rlnCenteredCoordinateX/Y/ZAngst``
    beside the voxel coordinates (when every tomogram has one voxel size), and every other
    column as ``tomoclass_<column>`` (``tomoclass_prob_<class>``...). CSV: all columns by name,
    ``x, y, z`` in the picks' own units (scaled back to the pixel size given as
    ``coordinate_pixel_size_angstrom``, e.g. unbinned tilt-series pixels).

    ``split_by_class`` also writes ``<stem>_<class><suffix>`` per predicted class.
    """
    from tomoclass.io import write_particles
    from tomoclass.io.annotate import annotate_star, class_file

    results = [result] if isinstance(result, PredictionResult) else list(result)
    if not results:
        raise InputError("no predictions to write", path=path)
    path = Path(path)
    table = pd.concat([r.table for r in results], ignore_index=True)
    class_map = results[0].class_map
    shapes = {str(n): r.tomogram_shape for r in results
              for n in r.table[S.TOMOGRAM].astype(str).unique()}
    voxel = {r.voxel_size_angstrom for r in results}
    sources = {r.source for r in results}
    source = sources.pop() if len(sources) == 1 else None
    star = path.suffix.lower() == ".star"
    if (star and annotate and source is not None and source.suffix.lower() == ".star"
            and INPUT_ROW in table.columns):
        one_voxel = len(voxel) == 1 and all(v is not None for v in shapes.values())
        annotate_star(source, table.sort_values(INPUT_ROW, kind="stable"), path,
                      list(class_map.names), split_by_class=split_by_class,
                      voxel_size_angstrom=voxel.pop() if one_voxel else None,
                      tomogram_shapes=shapes if one_voxel else None,
                      coordinate_pixel_size_angstrom=results[0].coordinate_pixel_size_angstrom)
        return path
    parts = [(path, table)]
    if split_by_class:
        names = table[S.CLASS_NAME].astype(str)
        parts += [(class_file(path, c), table[names == c]) for c in class_map.names
                  if (names == c).any()]
    for out, part in parts:
        if not star:
            write_particles(out, _in_input_units(part, results), class_map=class_map)
            continue
        part = part.drop(columns=["class_number"])
        if len(voxel) != 1 or any(v is None for v in shapes.values()):
            write_particles(out, part, class_map=class_map)
        else:
            write_particles(out, part, class_map=class_map, tomogram_shape=shapes,
                            voxel_size_angstrom=next(iter(voxel)))
    return path


def _in_input_units(table: pd.DataFrame, results: Sequence[PredictionResult]) -> pd.DataFrame:
    """``table`` with x, y, z back in the pixel size the picks came in (CSV output)."""
    px = results[0].coordinate_pixel_size_angstrom
    voxel = {r.voxel_size_angstrom for r in results}
    if not px or len(voxel) != 1:
        return table
    table = table.copy()
    table[[S.X, S.Y, S.Z]] = table[[S.X, S.Y, S.Z]].to_numpy(np.float64) * (voxel.pop() / px)
    return table
