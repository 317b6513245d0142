"""CSV (or tab-separated) particle tables with named columns (``x, y, z`` at least)."""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.formats.common import (
    ReadContext,
    is_protein,
    label_name,
    maybe_numeric,
    parse_number,
    read_text,
    show_value,
)

_CSV_ALIASES = {
    "x": S.X, "y": S.Y, "z": S.Z,
    "class": S.CLASS_NAME, "class_name": S.CLASS_NAME, "classname": S.CLASS_NAME,
    "label": S.CLASS_NAME,
    "tomogram": S.TOMOGRAM, "tomo": S.TOMOGRAM, "tomo_name": S.TOMOGRAM,
    "rot": S.ROT, "tilt": S.TILT, "psi": S.PSI,
    "score": S.SCORE, "probability": S.SCORE, "is_protein": S.IS_PROTEIN,
}




def read_csv_table(ctx: ReadContext, *, delimiter: str | None = None,
              aliases: Mapping[str, str] = _CSV_ALIASES) -> tuple[pd.DataFrame, list[int]]:
    """CSV -> (schema table, 1-based line of each row); columns named through ``aliases``.

    Columns not in ``aliases`` are kept as extra columns (numbers where every value is one).
    """
    text = read_text(ctx.path)
    if delimiter is None:  # comma, or tab for a tab-separated file without commas
        first = next((ln for ln in text.splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")), "")
        delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(_io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    data: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(row) != len(header):
                raise InputError(f"{len(row)} fields for {len(header)} columns",
                                 path=ctx.path, line=reader.line_num)
            data.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", path=ctx.path, line=reader.line_num) from None
    if header is None:
        raise InputError("no particles in the table (the file is empty)", path=ctx.path)
    mapped: dict[str, int] = {}
    extras: dict[str, int] = {}
    ctx.header_names = list(header)
    for j, name in enumerate(header):
        key = aliases.get(name.lower())
        if key is not None:
            if key in mapped:
                raise InputError("column appears twice", path=ctx.path, line=1, field=name)
            mapped[key] = j
        elif name:
            extras[name] = j
    for need in (S.X, S.Y, S.Z):
        if need not in mapped:
            raise InputError("missing column (a CSV needs x, y, z)", path=ctx.path, line=1,
                             field=need)
    n = len(data)

    def col(key: str) -> list[str]:
        return [r[mapped[key]].strip() for r in data]

    def nums(key: str, allow_nan: bool) -> np.ndarray:
        return np.array([parse_number(v, ctx.path, ln, header[mapped[key]], allow_nan=allow_nan)
                         for v, ln in zip(col(key), lines, strict=True)], dtype=np.float64)

    if S.CLASS_NAME in mapped:
        names = [label_name(v, ctx, ln, header[mapped[S.CLASS_NAME]]) if v else ""
                 for v, ln in zip(col(S.CLASS_NAME), lines, strict=True)]
    else:
        names = [""] * n
    df = pd.DataFrame({
        S.TOMOGRAM: (col(S.TOMOGRAM) if S.TOMOGRAM in mapped and not ctx.tomogram_given
                     else [ctx.tomogram] * n),
        S.X: nums(S.X, False), S.Y: nums(S.Y, False), S.Z: nums(S.Z, False),
        S.CLASS_NAME: names,
    })
    for key in (S.ROT, S.TILT, S.PSI, S.SCORE):
        df[key] = nums(key, True) if key in mapped else np.full(n, np.nan)
    if S.IS_PROTEIN in mapped:
        prot = []
        for v, ln in zip(col(S.IS_PROTEIN), lines, strict=True):
            low = v.lower()
            if low not in ("true", "false", "1", "0"):
                raise InputError(f"{show_value(v)} is not true/false", path=ctx.path, line=ln,
                                 field=header[mapped[S.IS_PROTEIN]])
            prot.append(low in ("true", "1"))
        df[S.IS_PROTEIN] = prot
    else:
        df[S.IS_PROTEIN] = [is_protein(v) for v in names]
    for name, j in extras.items():
        df[name] = maybe_numeric([r[j].strip() for r in data])
    return df, lines
