"""Subtomogram lists without coordinates: a STAR of ``rlnImageName`` + a class.

RELION and Warp write subtomogram stacks as one MRC per particle listed in a STAR file; a lab's
own list often keeps only the image name and a class (``docs/data.md``). :func:`read_image_table`
reads such a file (with or without coordinates) into the particle schema for
``tomoclass dataset import``: coordinates are taken when present, else 0 (unknown; the table
gets ``attrs["coordinates"] = False``), the tomogram from ``rlnTomoName`` /
``rlnMicrographName`` / the image's folder, the class from the column the user names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.classes import class_name_from_file
from tomoclass.io.particles import (
    IMAGE_NAME,
    NON_PROTEIN_CLASSES,
    SHREC19_CLASSES,
    read_particles,
)
from tomoclass.io.star import read_star

_COORDS = ("rlnCoordinateX", "rlnCenteredCoordinateXAngst")


def read_image_table(
    path: str | os.PathLike[str],
    *,
    class_column: str | None = None,
    class_names: Sequence[str] | str | None = None,
    class_from_filename: bool | str = False,
) -> pd.DataFrame:
    """A STAR list of subtomogram images as a particle table (``image_name`` column).

    Parameters
    ----------
    path
        STAR file with ``rlnImageName`` in one of its loops.
    class_column
        Column holding each row's class (default: ``tomoclassClassName``, else
        ``rlnClassNumber``); its values are the class names as written (numbers through
        ``class_names`` when given).
    class_names
        Names of numeric labels (1-based), or ``"shrec19"``.
    class_from_filename
        The class from the file name instead (see
        :func:`tomoclass.io.classes.class_name_from_file`).

    Raises
    ------
    InputError
        No loop with ``rlnImageName``, the class column missing, a row without a class.
    """
    path = Path(path)
    blocks = read_star(path)
    loops = [b for b in blocks.values() if isinstance(b, pd.DataFrame)]
    if any(any(c in b.columns for c in _COORDS) for b in loops):
        table = read_particles(path, format="star", class_names=class_names,
                               class_column=class_column, class_from_filename=class_from_filename,
                               duplicates="keep")
        table.attrs["coordinates"] = True
        return table
    block = next((b for b in loops if "rlnImageName" in b.columns), None)
    if block is None:
        raise InputError("no loop has rlnImageName (the subtomogram files)", path=path,
                         field="rlnImageName")
    n = len(block)
    images = [str(v) for v in block["rlnImageName"]]
    names = _classes(block, path, class_column, class_names, class_from_filename)
    if "rlnTomoName" in block.columns:
        tomos = [str(v) for v in block["rlnTomoName"]]
    elif "rlnMicrographName" in block.columns:
        tomos = [Path(str(v).split(":")[0]).stem for v in block["rlnMicrographName"]]
    else:  # Subtomograms/TS_01/000001.mrc -> TS_01
        tomos = [Path(v).parent.name for v in images]
    angles = {col: (block[lab].to_numpy(np.float64) if lab in block.columns
                    else np.full(n, np.nan))
              for col, lab in ((S.ROT, "rlnAngleRot"), (S.TILT, "rlnAngleTilt"),
                               (S.PSI, "rlnAnglePsi"))}
    table = pd.DataFrame({
        S.TOMOGRAM: tomos, S.X: np.zeros(n), S.Y: np.zeros(n), S.Z: np.zeros(n),
        S.CLASS_NAME: names, **angles, S.SCORE: np.full(n, np.nan),
        S.IS_PROTEIN: [v.strip().lower() not in NON_PROTEIN_CLASSES for v in names],
        IMAGE_NAME: images,
    })
    table.attrs["coordinates"] = False
    return table


def _classes(block: pd.DataFrame, path: Path, column: str | None,
             class_names: Sequence[str] | str | None,
             from_filename: bool | str) -> list[str]:
    n = len(block)
    if from_filename:
        return [class_name_from_file(path, from_filename)] * n
    if column is None:
        column = next((c for c in ("tomoclassClassName", "rlnClassNumber")
                       if c in block.columns), None)
        if column is None:
            raise InputError("no class column (name it: --class-column, or "
                             "--class-from-filename)", path=path, field="rlnClassNumber")
    if column not in block.columns:
        raise InputError(f"no such column (columns: {', '.join(map(str, block.columns))})",
                         path=path, field=column)
    if isinstance(class_names, str):
        class_names = SHREC19_CLASSES if class_names.lower() == "shrec19" else [class_names]
    out = []
    for i, v in enumerate(block[column]):
        text = "" if pd.isna(v) else str(v)
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            text = str(int(v))
        if class_names is not None and text.lstrip("-").isdigit():
            k = int(text)
            if not 1 <= k <= len(class_names):
                raise InputError(f"class label {k} is outside 1..{len(class_names)} of the "
                                 "given class names", path=path, field=column)
            text = class_names[k - 1]
        if not text:
            raise InputError(f"row {i + 1} has no class", path=path, field=column)
        out.append(text)
    return out
