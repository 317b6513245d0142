"""SHREC'19 and SHREC'21 particle text: one particle a line, whitespace-separated.

- SHREC'21 (and tomoclass's ``*_gt.txt``): ``class x y z a1 a2 a3``; the angles as PyTom's
  simulator gave them to voltools (:func:`tomoclass.io.euler.shrec21_to_relion`).
- SHREC'19: ``pdb z y x a1 a2 a3``, **z first** (the contest's evaluation script reads
  ``pdb_id, Z, Y, X, rot_1, rot_2, rot_3`` and indexes ``hitbox[z][y][x]``); the angles are
  PyTom ZXZ ``(z1, x, z2)`` (:func:`tomoclass.io.euler.shrec19_to_relion`).

The two look alike. ``format="shrec"`` (and ``auto`` for ``.txt``) tells them apart by what
SHREC'19's simulator wrote (:func:`looks_like_shrec19`) and reads anything else as SHREC'21;
``"shrec19"`` / ``"shrec21"`` say which.
"""

from __future__ import annotations

import io as _io
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.atomic import atomic_path
from tomoclass.io.euler import (
    relion_to_shrec19,
    relion_to_shrec21,
    shrec19_to_relion,
    shrec21_to_relion,
)
from tomoclass.io.formats.common import (
    ReadContext,
    is_protein,
    label_name,
    parse_number,
    read_text,
)

log = logging.getLogger(__name__)

#: The two SHREC text layouts (module docstring) and their coordinate columns in file order.
LAYOUTS = ("shrec19", "shrec21")
_COORDS = {"shrec19": ("z", "y", "x"), "shrec21": ("x", "y", "z")}
#: Each layout's angle conversions: (file -> RELION, RELION -> file).
_ANGLES = {"shrec19": (shrec19_to_relion, relion_to_shrec19),
           "shrec21": (shrec21_to_relion, relion_to_shrec21)}
#: Fewest rows :func:`looks_like_shrec19` decides on (a short table could match by chance).
MIN_ROWS_TO_DETECT = 20


def looks_like_shrec19(values: np.ndarray) -> bool:
    """Whether rows ``(c1, c2, c3, a1, a2, a3)`` look like SHREC'19's simulator wrote them.

    It wrote integers (``{:4d}`` coordinates, ``{:4.0f}`` angles) in ``pdb z y x z1 x z2``
    order, the x angle (middle) in [0, 180] and the z angles in [-180, 180]; SHREC'21 writes
    4 decimals with its first angle in [0, 180] and the others in [0, 360). So: at least
    :data:`MIN_ROWS_TO_DETECT` rows with angles, every number an integer, the middle angle
    always in [0, 180] and a negative first or last angle somewhere.
    """
    rows = values[np.all(np.isfinite(values), axis=1)]
    if len(rows) < MIN_ROWS_TO_DETECT or not np.all(rows == np.round(rows)):
        return False
    a1, a2, a3 = rows[:, 3], rows[:, 4], rows[:, 5]
    return bool(np.all((a2 >= 0) & (a2 <= 180)) and (np.any(a1 < 0) or np.any(a3 < 0))
                and np.all(np.abs(rows[:, 3:]) <= 180))


def _fields(layout: str) -> tuple[str, ...]:
    """The six numeric columns' names as ``layout`` has them (errors name them)."""
    return (*_COORDS[layout], "angle 1", "angle 2", "angle 3")


def read_shrec(ctx: ReadContext, layout: str | None = None) -> tuple[pd.DataFrame, list[int]]:
    """SHREC text -> (schema table, 1-based line of each row); a header line is skipped.

    ``layout``: ``"shrec19"`` or ``"shrec21"`` (module docstring); None takes it from a header
    line (``class x y z ...`` / ``pdb z y x ...``), else tells them apart
    (:func:`looks_like_shrec19`) and logs which it chose.
    """
    text = read_text(ctx.path)
    # errors name the column as the layout given does (SHREC'21's names while telling apart)
    fields = _fields(layout or "shrec21")
    names: list[str] = []
    values: list[list[float]] = []
    lines: list[int] = []
    for i, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if not lines and len(parts) >= 4 and parts[1].lower() in ("x", "z"):
            header = [p.lower() for p in parts[1:4]]  # a header line: its order says the layout
            if layout is None and header in (["x", "y", "z"], ["z", "y", "x"]):
                layout = "shrec21" if header[0] == "x" else "shrec19"
                fields = _fields(layout)
            continue
        if len(parts) not in (4, 7):
            raise InputError(
                f"expected 7 columns (class x y z a1 a2 a3; SHREC'19: pdb z y x ...) or 4, "
                f"got {len(parts)}", path=ctx.path, line=i)
        row = [  # coordinates must be numbers; angles may be NaN (vesicles, fiducials)
            parse_number(tok, ctx.path, i, f, allow_nan=k >= 3)
            for k, (f, tok) in enumerate(zip(fields[:len(parts) - 1], parts[1:], strict=True))
        ]
        row += [math.nan] * (6 - len(row))
        names.append(label_name(parts[0], ctx, i, "class"))
        values.append(row)
        lines.append(i)
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    if layout is None:
        layout = "shrec19" if looks_like_shrec19(arr) else "shrec21"
        # SHREC'21 is the usual reading (tomoclass's own *_gt.txt): said only when debugging
        log.log(logging.INFO if layout == "shrec19" else logging.DEBUG,
                "%s: read as %s text (%s; pass format='shrec19' or 'shrec21' to say which)",
                ctx.path, "SHREC'19" if layout == "shrec19" else "SHREC'21",
                "z y x first, integer angles" if layout == "shrec19" else "x y z first")
    angles = _ANGLES[layout][0](arr[:, 3], arr[:, 4], arr[:, 5])
    coords = dict(zip(_COORDS[layout], (arr[:, 0], arr[:, 1], arr[:, 2]), strict=True))
    df = pd.DataFrame({
        S.TOMOGRAM: ctx.tomogram,
        S.X: coords["x"], S.Y: coords["y"], S.Z: coords["z"],
        S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2],
        S.SCORE: np.nan,
        S.IS_PROTEIN: [is_protein(n) for n in names],
    })
    return df, lines


def read_shrec19(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """SHREC'19 text (``pdb z y x a1 a2 a3``), whatever it looks like."""
    return read_shrec(ctx, "shrec19")


def read_shrec21(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """SHREC'21 text (``class x y z a1 a2 a3``), whatever it looks like."""
    return read_shrec(ctx, "shrec21")


def write_shrec(path: Path, table: pd.DataFrame, layout: str = "shrec21") -> None:
    """Write one tomogram's rows as SHREC text, atomically; the inverse of :func:`read_shrec`.

    ``layout``: ``"shrec21"`` (``class x y z a1 a2 a3``) or ``"shrec19"`` (``pdb z y x a1 a2
    a3``).
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown SHREC layout {layout!r} (one of {', '.join(LAYOUTS)})",
                         path=path, field="format")
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
    angles = _ANGLES[layout][1](table[S.ROT], table[S.TILT], table[S.PSI])
    cols = [table[{"x": S.X, "y": S.Y, "z": S.Z}[c]] for c in _COORDS[layout]]
    out = _io.StringIO()
    for name, c1, c2, c3, (a1, a2, a3) in zip(
        table[S.CLASS_NAME].astype(str), *cols, angles, strict=True
    ):
        out.write(f"{name} {_fmt(c1)} {_fmt(c2)} {_fmt(c3)} {_fmt(a1)} {_fmt(a2)} {_fmt(a3)}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(out.getvalue(), encoding="utf-8")


def _fmt(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.10g}"
