"""Write tomoclass's classes into the user's own STAR table (RELION 3.1, RELION 5, Warp).

:func:`annotate_star` reads the table the picks came from with ``starfile``, keeps every block
(``data_general``, ``data_optics``, ...) and every column of the particle block as they were
(coordinates stay in the units they came in: unbinned pixels stay unbinned pixels under
``rlnCoordinateX/Y/Z``; origin shifts, ``rlnOpticsGroup``, ``rlnTomoParticleName``,
``rlnRandomSubset``... untouched), keeps the rows that were classified, in file order, and adds:

- ``tomoclassClassName``, ``tomoclass_class_number`` (1-based, class-map order),
  ``tomoclass_confidence`` and ``tomoclass_prob_<class>`` (RELION ignores labels it does not
  know; tomoclass reads them back);
- ``rlnClassNumber`` (= the class number) and ``rlnAutopickFigureOfMerit`` (= confidence)
  when the table has none (a table's own are left as they are);
- ``rlnTomoName`` when the table names no tomogram (no ``rlnTomoName``/``rlnMicrographName``);
- RELION 5's ``rlnCenteredCoordinateX/Y/ZAngst`` when absent and the tomogram's size and voxel
  size are known: ``(coordinate in tomogram voxels - size / 2) * voxel size``, from the
  ``rlnCoordinate`` columns as they stand (origin shifts are not subtracted: RELION 5 keeps
  ``rlnOriginX/Y/ZAngst`` beside them, the particle being at centred - origin).

``split_by_class`` also writes one such file per predicted class.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.star import read_star, write_star

log = logging.getLogger(__name__)

#: Column of a prediction table: the 0-based row of the source table's particle block.
INPUT_ROW = "input_row"

_COORD_LABELS = ("rlnCoordinateX", "rlnCenteredCoordinateXAngst")


def particle_block(blocks: Mapping[str, Any], path: Path | None = None) -> str:
    """Name of the particle block, the one :func:`tomoclass.io.read_particles` reads.

    ``particles`` (or the nameless block) when it has coordinates, else the first loop with
    coordinate columns.
    """
    loops = {k: b for k, b in blocks.items() if isinstance(b, pd.DataFrame)}
    for key in ("particles", ""):
        if key in loops and any(c in loops[key].columns for c in _COORD_LABELS):
            return key
    for key, block in loops.items():
        if any(c in block.columns for c in _COORD_LABELS):
            return key
    raise InputError("no block has rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst "
                     "columns", path=path, field="rlnCoordinateX")


def annotate_star(
    source: str | os.PathLike[str],
    predictions: pd.DataFrame,
    out: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    voxel_size_angstrom: float | None = None,
    tomogram_shapes: Mapping[str, Sequence[int]] | None = None,
    coordinate_pixel_size_angstrom: float | None = None,
    split_by_class: bool = False,
) -> list[Path]:
    """Write ``source`` with the predicted classes added to its classified rows.

    Parameters
    ----------
    source
        The STAR table the picks were read from.
    predictions
        One row per classified particle: :data:`INPUT_ROW` (row of the source's particle
        block), ``tomogram``, ``class_name``, ``confidence`` (else ``score``) and any
        ``prob_<class>`` columns.
    out
        The annotated table (``.star``).
    class_names
        The run's classes in order (``tomoclass_class_number`` = position + 1).
    voxel_size_angstrom, tomogram_shapes
        The tomograms' voxel size (Å) and ``(z, y, x)`` sizes by name: with both, centred Å
        coordinates are added when the table has none.
    coordinate_pixel_size_angstrom
        Pixel size (Å) of the table's ``rlnCoordinate`` values when not the tomogram's voxels.
    split_by_class
        Also write ``<out stem>_<class>.star`` per predicted class (same blocks).

    Returns
    -------
    list of Path
        The files written, ``out`` first.

    Raises
    ------
    InputError
        A prediction row outside the source table, a class not in ``class_names``, a source
        table tomoclass cannot parse.
    """
    source, out = Path(source), Path(out)
    blocks = read_star(source)
    key = particle_block(blocks, source)
    particles = blocks[key]
    if INPUT_ROW not in predictions.columns:
        raise InputError(f"predictions lack the {INPUT_ROW} column", field=INPUT_ROW)
    rows = predictions[INPUT_ROW].to_numpy(np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(particles)):
        raise InputError(f"prediction rows outside the {len(particles)} rows of the table",
                         path=source, field=INPUT_ROW)
    annotated = particles.iloc[rows].reset_index(drop=True)
    _add_columns(annotated, predictions.reset_index(drop=True), list(class_names), source,
                 voxel_size_angstrom, tomogram_shapes, coordinate_pixel_size_angstrom)
    if len(annotated) < len(particles):
        log.info("%s: %d of %d rows classified and written to %s", source, len(annotated),
                 len(particles), out)
    comments = (f"annotated by tomoclass from {source.name}: every block and column as it "
                "was, plus tomoclassClassName, tomoclass_class_number (1-based), "
                "tomoclass_confidence, tomoclass_prob_<class>",)
    written = [write_star(out, {**blocks, key: annotated}, comments=comments)]
    if split_by_class:
        names = annotated["tomoclassClassName"].astype(str)
        for cls in [c for c in class_names if (names == c).any()]:
            part = annotated[names == cls].reset_index(drop=True)
            written.append(write_star(class_file(out, cls), {**blocks, key: part},
                                      comments=comments))
    return written


def class_file(out: str | os.PathLike[str], class_name: str) -> Path:
    """Where ``split_by_class`` writes one class: ``<out stem>_<class>.star``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_{_safe(class_name)}{out.suffix or '.star'}")


def _add_columns(table: pd.DataFrame, pred: pd.DataFrame, class_names: list[str], source: Path,
                 voxel: float | None, shapes: Mapping[str, Sequence[int]] | None,
                 coord_px: float | None) -> None:
    names = pred[S.CLASS_NAME].astype(str)
    index = {n: i + 1 for i, n in enumerate(class_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise InputError(f"class {unknown[0]!r} is not among the run's classes", path=source,
                         field=S.CLASS_NAME)
    number = np.array([index[n] for n in names], dtype=np.int64)
    conf = pred["confidence"] if "confidence" in pred.columns else pred[S.SCORE]
    conf = conf.to_numpy(np.float64)
    table["tomoclassClassName"] = names.to_numpy()
    table["tomoclass_class_number"] = number
    table["tomoclass_confidence"] = conf
    for col in pred.columns:
        if str(col).startswith("prob_"):
            table[f"tomoclass_{col}"] = pred[col].to_numpy(np.float64)
    if "rlnClassNumber" in table.columns:
        log.info("%s: rlnClassNumber kept as the table gave it; tomoclass's class is "
                 "tomoclass_class_number", source)
    else:
        table["rlnClassNumber"] = number
    if "rlnAutopickFigureOfMerit" not in table.columns:
        table["rlnAutopickFigureOfMerit"] = conf
    if not {"rlnTomoName", "rlnMicrographName"} & set(table.columns):
        table["rlnTomoName"] = pred[S.TOMOGRAM].astype(str).to_numpy()
    if (shapes and voxel and "rlnCoordinateX" in table.columns
            and "rlnCenteredCoordinateXAngst" not in table.columns):
        tomos = pred[S.TOMOGRAM].astype(str)
        if all(t in shapes for t in tomos):
            scale = (coord_px / voxel) if coord_px else 1.0
            xyz = table[[f"rlnCoordinate{a}" for a in "XYZ"]].to_numpy(np.float64) * scale
            size = np.array([np.asarray(shapes[t], np.float64)[::-1] for t in tomos])
            centred = (xyz - size.reshape(-1, 3) / 2.0) * float(voxel)
            for k, a in enumerate("XYZ"):
                table[f"rlnCenteredCoordinate{a}Angst"] = centred[:, k]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "class"
