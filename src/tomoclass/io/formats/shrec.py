"""SHREC'19/'21 particle text: ``class x y z [phi psi theta]`` (PyTom ZXZ degrees)."""

from __future__ import annotations

import io as _io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.atomic import atomic_path
from tomoclass.io.euler import relion_to_zxz_pytom, zxz_pytom_to_relion
from tomoclass.io.formats.common import (
    ReadContext,
    is_protein,
    label_name,
    parse_number,
    read_text,
)


def read_shrec(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """SHREC text -> (schema table, 1-based line of each row); a header line is skipped."""
    text = read_text(ctx.path)
    fields = ("x", "y", "z", "phi", "psi", "theta")
    names: list[str] = []
    values: list[list[float]] = []
    lines: list[int] = []
    for i, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if not lines and len(parts) >= 4 and parts[1].lower() == "x":
            continue  # a header line
        if len(parts) not in (4, 7):
            raise InputError(
                f"expected 7 columns (class x y z phi psi theta) or 4 (class x y z), "
                f"got {len(parts)}", path=ctx.path, line=i)
        row = [
            parse_number(tok, ctx.path, i, f, allow_nan=f in ("phi", "psi", "theta"))
            for f, tok in zip(fields, parts[1:], strict=True)
        ]
        row += [math.nan] * (6 - len(row))
        names.append(label_name(parts[0], ctx, i, "class"))
        values.append(row)
        lines.append(i)
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    angles = zxz_pytom_to_relion(arr[:, 3], arr[:, 4], arr[:, 5])
    df = pd.DataFrame({
        S.TOMOGRAM: ctx.tomogram,
        S.X: arr[:, 0], S.Y: arr[:, 1], S.Z: arr[:, 2],
        S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2],
        S.SCORE: np.nan,
        S.IS_PROTEIN: [is_protein(n) for n in names],
    })
    return df, lines


def write_shrec(path: Path, table: pd.DataFrame) -> None:
    """Write one tomogram's rows as SHREC'21 text (PyTom ZXZ angles), atomically."""
    tomos = table[S.TOMOGRAM].astype(str).unique()
    if len(tomos) > 1:
        raise InputError(
            f"SHREC text holds one tomogram, the table has {len(tomos)} "
            f"({', '.join(tomos[:3])}...); write one file per tomogram", path=path,
            field=S.TOMOGRAM)
    bad = table[S.CLASS_NAME].astype(str).str.contains(r"\s|^$", regex=True)
    if bad.any():
        raise InputError(
            f"class name {table[S.CLASS_NAME].iloc[int(np.argmax(bad))]!r} is empty or has "
            "spaces, which SHREC text cannot hold", path=path, field=S.CLASS_NAME)
    zxz = relion_to_zxz_pytom(table[S.ROT], table[S.TILT], table[S.PSI])
    out = _io.StringIO()
    for name, x, y, z, (phi, psi, theta) in zip(
        table[S.CLASS_NAME].astype(str), table[S.X], table[S.Y], table[S.Z], zxz, strict=True
    ):
        out.write(f"{name} {_fmt(x)} {_fmt(y)} {_fmt(z)} {_fmt(phi)} {_fmt(psi)} {_fmt(theta)}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(out.getvalue(), encoding="utf-8")


def _fmt(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.10g}"
