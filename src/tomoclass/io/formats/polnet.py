"""PolNet's ``tomos_motif_list.csv``: tab-separated, coordinates in Å."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.formats.common import ReadContext, strip_tomo
from tomoclass.io.formats.csvtable import read_csv_table

#: PolNet's ``tomos_motif_list.csv`` (tab-separated): the class is ``Code``, the tomogram the
#: stem of ``Tomo3D`` (the reconstruction's path), coordinates ``X Y Z`` in Å.
_POLNET_ALIASES = {"x": S.X, "y": S.Y, "z": S.Z, "code": S.CLASS_NAME, "tomo3d": S.TOMOGRAM}


def is_polnet(path: Path) -> bool:
    """A PolNet motif list: a tab-separated header naming ``Tomo3D`` or ``Code`` and ``Q1``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.readline()
    except OSError:
        return False
    cols = {c.strip().lower() for c in head.split("\t")}
    return "\t" in head and {"x", "y", "z"} <= cols and ("tomo3d" in cols
                                                       or {"code", "q1"} <= cols)


def read_polnet(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """PolNet motif list -> schema: Å to voxels, tomogram from ``Tomo3D``, class ``Code``.

    The quaternion ``Q1..Q4`` is kept as extra columns; it is not converted to RELION angles
    (PolNet's rotation convention is not pinned down here), so the angles are NaN.
    """
    vs = ctx.voxel_size_angstrom
    if vs is None or vs <= 0:
        raise InputError("PolNet motif-list coordinates are in Å: give the tomograms' voxel "
                         "size (voxel_size_angstrom / --voxel-size)", path=ctx.path, field="X")
    df, lines = read_csv_table(ctx, delimiter="\t", aliases=_POLNET_ALIASES)
    df[[S.X, S.Y, S.Z]] = df[[S.X, S.Y, S.Z]].to_numpy(np.float64) / float(vs)
    if not ctx.tomogram_given and "tomo3d" in [h.lower() for h in ctx.header_names]:
        df[S.TOMOGRAM] = [strip_tomo(str(v), path_like=True) for v in df[S.TOMOGRAM]]
    df[S.IS_PROTEIN] = True  # every PolNet motif is a macromolecule (membranes are not listed)
    return df, lines
