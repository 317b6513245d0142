"""DeepFinder object lists (XML ``<object class_label x y z [phi psi the] [tomo_idx]>``)."""

from __future__ import annotations

import math
from xml.parsers import expat

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.euler import deepfinder_to_relion
from tomoclass.io.formats.common import ReadContext, is_protein, label_name, parse_number


def read_deepfinder(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """DeepFinder XML -> (schema table, line of each ``<object>``)."""
    raw = ctx.path.read_bytes()
    rows: list[tuple[int, dict[str, str]]] = []
    parser = expat.ParserCreate()

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "object":
            rows.append((parser.CurrentLineNumber, attrs))

    parser.StartElementHandler = start
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise InputError(f"not well-formed XML ({expat.ErrorString(exc.code)})", path=ctx.path,
                         line=exc.lineno) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"not readable XML ({type(exc).__name__})", path=ctx.path) from None
    tomos, names, values, lines = [], [], [], []
    for line, attrs in rows:
        for need in ("class_label", "x", "y", "z"):
            if need not in attrs:
                raise InputError("missing attribute of <object>", path=ctx.path, line=line,
                                 field=need)
        xyz = [parse_number(attrs[f], ctx.path, line, f, allow_nan=False) for f in ("x", "y", "z")]
        ang = [
            parse_number(attrs[f], ctx.path, line, f, allow_nan=True) if f in attrs else math.nan
            for f in ("phi", "psi", "the")
        ]
        label = attrs["class_label"].strip()
        names.append(label_name(label, ctx, line, "class_label"))
        if ctx.tomogram_given or "tomo_idx" not in attrs:
            tomos.append(ctx.tomogram)
        else:
            tomos.append(attrs["tomo_idx"].strip())
        values.append(xyz + ang)
        lines.append(line)
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    angles = deepfinder_to_relion(arr[:, 3], arr[:, 4], arr[:, 5])
    df = pd.DataFrame({
        S.TOMOGRAM: tomos, S.X: arr[:, 0], S.Y: arr[:, 1], S.Z: arr[:, 2], S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2], S.SCORE: np.nan,
        S.IS_PROTEIN: [is_protein(n) for n in names],
    })
    return df, lines
