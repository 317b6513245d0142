"""RELION STAR particle tables (RELION 3.1/4/5, Warp): reading and writing.

Coordinates ``rlnCoordinateX/Y/Z`` (voxels, optionally in another pixel size) or RELION 5's
``rlnCenteredCoordinateX/Y/ZAngst``; origin shifts ``rlnOrigin*`` (Å or pixels); RELION 5's
subtomogram pre-rotation ``rlnTomoSubtomogram*``; class from ``tomoclassClassName``,
``rlnClassNumber`` or a named column. tomoclass's own columns are ``tomoclass*``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.euler import relion_angles, relion_matrix
from tomoclass.io.formats.common import (
    IMAGE_NAME,
    ReadContext,
    is_protein,
    label_name,
    maybe_numeric,
    parse_number,
    read_text,
    show_value,
    strip_tomo,
)
from tomoclass.io.star import write_star

log = logging.getLogger(__name__)

#: Prefix of tomoclass's own columns in STAR files (RELION ignores labels it does not know).
STAR_PREFIX = "tomoclass"

_STAR_NAME = "tomoclassClassName"
_STAR_IS_PROTEIN = "tomoclassIsProtein"
_STAR_EXTRA = "tomoclass_"

def _star_blocks(text: str) -> dict[str, tuple[list[str], list[list[str]], list[int]]]:
    """Parse STAR loops: block name -> (labels, rows of tokens, line numbers).

    Only what particle tables use: ``data_`` blocks holding one ``loop_`` or simple
    ``_label value`` pairs (returned as a one-row table). Quoted tokens are supported.
    """
    blocks: dict[str, tuple[list[str], list[list[str]], list[int]]] = {}
    name: str | None = None
    labels: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    in_loop = False
    pairs: dict[str, str] = {}
    pair_line = 0

    def close() -> None:
        if name is None:
            return
        if labels:
            blocks[name] = (list(labels), list(rows), list(lines))
        elif pairs:
            blocks[name] = (list(pairs), [list(pairs.values())], [pair_line])

    for i, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("data_"):
            close()
            name, labels, rows, lines, in_loop, pairs = s[5:], [], [], [], False, {}
            continue
        if name is None:
            raise InputError("text before the first data_ block", path=None, line=i)
        if s == "loop_" or s.startswith("loop_"):
            if labels or pairs:
                close()
                name = f"{name}#{i}"
                labels, rows, lines, pairs = [], [], [], {}
            in_loop = True
            continue
        if s.startswith("_"):
            tokens = _star_tokens(s, i)
            if in_loop and not rows:
                labels.append(tokens[0][1:])
            else:
                if len(tokens) < 2:
                    raise InputError(f"label {tokens[0]} has no value", line=i, field=tokens[0])
                pairs[tokens[0][1:]] = tokens[1]
                pair_line = pair_line or i
            continue
        if not in_loop:
            raise InputError("a value outside a loop_", line=i)
        tokens = _star_tokens(s, i)
        if len(tokens) != len(labels):
            raise InputError(f"{len(tokens)} values for {len(labels)} columns", line=i)
        rows.append(tokens)
        lines.append(i)
    close()
    return blocks


def _star_tokens(s: str, line: int) -> list[str]:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'":
            j = i + 1
            while j < n and not (s[j] == c and (j + 1 == n or s[j + 1].isspace())):
                j += 1
            if j >= n:
                raise InputError("unclosed quote", line=line)
            out.append(s[i + 1:j])
            i = j + 1
            continue
        if c == "#":
            break
        j = i
        while j < n and not s[j].isspace():
            j += 1
        out.append(s[i:j])
        i = j
    return out


def _pick_particles_block(blocks: Mapping[str, Any], path: Path) -> str:
    if not blocks:
        raise InputError("no data_ block with a loop_ of particles", path=path)
    coord_labels = {"rlnCoordinateX", "rlnCenteredCoordinateXAngst"}
    for key in ("particles", ""):
        if key in blocks and coord_labels & set(blocks[key][0]):
            return key
    for key, (labels, _, _) in blocks.items():
        if coord_labels & set(labels):
            return key
    raise InputError(
        "no block has rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst columns", path=path,
        field="rlnCoordinateX")


def read_star_table(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """A RELION STAR particle table -> (schema table, 1-based line of each row)."""
    path = ctx.path
    text = read_text(path)
    try:
        blocks = _star_blocks(text)
    except InputError as exc:
        raise InputError(exc.message, path=path, line=exc.line, field=exc.field) from None
    key = _pick_particles_block(blocks, path)
    labels, rows, lines = blocks[key]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise InputError("column appears twice", path=path, field=dup)
    # The values come from the starfile package (the reference reader); the scan above only
    # checked the structure and gives each row's line number for error messages.
    cols = _starfile_columns(path, key, labels, len(rows))
    if cols is None:
        cols = {lab: [r[j] for r in rows] for j, lab in enumerate(labels)}
    n = len(rows)
    optics = _star_optics(blocks)

    def numbers(label: str, *, allow_nan: bool = False, default: float | None = None) -> np.ndarray:
        if label not in cols:
            if default is None:
                raise InputError("missing column", path=path, field=label)
            return np.full(n, default, dtype=np.float64)
        return np.array(
            [parse_number(v, path, ln, label, allow_nan=allow_nan)
             for v, ln in zip(cols[label], lines, strict=True)],
            dtype=np.float64)

    # Tomogram names.
    if "rlnTomoName" in cols and not ctx.tomogram_given:
        tomos = [strip_tomo(v, path_like=False) for v in cols["rlnTomoName"]]
    elif "rlnMicrographName" in cols and not ctx.tomogram_given:
        tomos = [strip_tomo(v, path_like=True) for v in cols["rlnMicrographName"]]
    else:
        tomos = [ctx.tomogram] * n

    centred = "rlnCenteredCoordinateXAngst" in cols
    plain = "rlnCoordinateX" in cols
    if centred and plain and (
            ctx.voxel_size_angstrom is None
            or any(ctx.shape_for(t) is None for t in set(tomos))):
        # both kinds (tomoclass writes both): without the tomograms' size and voxel size the
        # plain voxel coordinates are the ones that can be read
        centred = False
    if centred:
        c = np.stack([numbers(f"rlnCenteredCoordinate{a}Angst") for a in "XYZ"], 1)
        vs = ctx.voxel_size_angstrom
        if vs is None or vs <= 0:
            raise InputError(
                "RELION 5 centred coordinates (Å) need the tomogram's voxel size "
                "(voxel_size_angstrom / --voxel-size)", path=path,
                field="rlnCenteredCoordinateXAngst")
        xyz = np.empty_like(c)
        for i, tomo in enumerate(tomos):
            shape = ctx.shape_for(tomo)
            if shape is None:
                raise InputError(
                    f"RELION 5 centred coordinates need the size of tomogram {tomo!r} "
                    "(tomogram_shape / the tomogram file)", path=path, line=lines[i],
                    field="rlnCenteredCoordinateXAngst")
            size_xyz = np.array(shape[::-1], dtype=np.float64)
            xyz[i] = c[i] / vs + size_xyz / 2.0
        vox_per_coord = None  # already in voxels
        if plain and n and ctx.coordinate_pixel_size_angstrom is None:
            other = np.stack([numbers(f"rlnCoordinate{a}") for a in "XYZ"], 1)
            off = float(np.nanmax(np.abs(other - xyz)))
            if off > 1.0:
                log.warning("%s: rlnCoordinateX/Y/Z and rlnCenteredCoordinateX/Y/ZAngst differ "
                            "by up to %.1f voxels (another tomogram size or voxel size?); the "
                            "centred ones are used", path, off)
    else:
        xyz = np.stack([numbers(f"rlnCoordinate{a}") for a in "XYZ"], 1)
        if ctx.coordinate_pixel_size_angstrom is not None:
            if ctx.voxel_size_angstrom is None:
                raise InputError("coordinate_pixel_size_angstrom needs voxel_size_angstrom too",
                                 path=path, field="voxel_size_angstrom")
            vox_per_coord = ctx.coordinate_pixel_size_angstrom / ctx.voxel_size_angstrom
            xyz = xyz * vox_per_coord
        else:
            vox_per_coord = 1.0

    # RELION 5 subtomogram pre-rotation A_sub: the orientation is A_sub @ A_particle and the
    # origin shifts are in the pre-rotated frame (ParticleSet::getMatrix3x3 / getPosition).
    a_sub = _star_subtomogram_matrices(cols, numbers, path, lines)

    # Origin shifts: the particle centre is coordinate - A_sub @ origin (RELION convention).
    if any(f"rlnOrigin{a}Angst" in cols for a in "XYZ"):
        shift_a = np.stack([numbers(f"rlnOrigin{a}Angst", default=0.0) for a in "XYZ"], 1)
        if np.any(shift_a != 0):
            vs = ctx.voxel_size_angstrom or optics.get("pixel")
            if vs is None:
                raise InputError(
                    "origin shifts in Å need the voxel size (voxel_size_angstrom / --voxel-size)",
                    path=path, field="rlnOriginXAngst")
            xyz = xyz - _rotated(a_sub, shift_a) / vs
    if any(f"rlnOrigin{a}" in cols for a in "XYZ"):  # RELION <3.1: shifts in pixels
        shift_p = np.stack([numbers(f"rlnOrigin{a}", default=0.0) for a in "XYZ"], 1)
        xyz = xyz - _rotated(a_sub, shift_p) * (vox_per_coord or 1.0)

    angles = _star_angles(cols, numbers, a_sub, n)
    if ctx.class_column is not None:
        if ctx.class_column not in cols:
            raise InputError(f"no such column (columns: {', '.join(cols)})", path=path,
                             field=ctx.class_column)
        names = [label_name(v, ctx, ln, ctx.class_column)
                 for v, ln in zip(cols[ctx.class_column], lines, strict=True)]
    elif _STAR_NAME in cols:
        names = [v for v in cols[_STAR_NAME]]
    elif "rlnClassNumber" in cols:
        names = [label_name(v, ctx, ln, "rlnClassNumber")
                 for v, ln in zip(cols["rlnClassNumber"], lines, strict=True)]
    else:
        names = [""] * n
    names = ["" if v in ('""', "''") else v for v in names]
    if "rlnAutopickFigureOfMerit" in cols:
        score = numbers("rlnAutopickFigureOfMerit", allow_nan=True)
    else:
        score = np.full(n, np.nan)
    if _STAR_IS_PROTEIN in cols:
        prot = []
        for v, ln in zip(cols[_STAR_IS_PROTEIN], lines, strict=True):
            if v not in ("0", "1"):
                raise InputError(f"{show_value(v)} is not 0 or 1", path=path, line=ln,
                                 field=_STAR_IS_PROTEIN)
            prot.append(v == "1")
    else:
        prot = [is_protein(v) for v in names]
    df = pd.DataFrame({
        S.TOMOGRAM: tomos, S.X: xyz[:, 0], S.Y: xyz[:, 1], S.Z: xyz[:, 2], S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2], S.SCORE: score,
        S.IS_PROTEIN: prot,
    })
    if "rlnImageName" in cols:
        df[IMAGE_NAME] = cols["rlnImageName"]
    for lab, values in cols.items():
        if lab.startswith(_STAR_EXTRA) and len(lab) > len(_STAR_EXTRA):
            df[lab[len(_STAR_EXTRA):]] = maybe_numeric(values)
    return df, lines


def _star_subtomogram_matrices(cols: Mapping[str, Any], numbers: Any, path: Path,
                               lines: Sequence[int]) -> np.ndarray | None:
    """RELION 5's ``rlnTomoSubtomogramRot/Tilt/Psi`` as matrices (n, 3, 3), or None."""
    labels = [f"rlnTomoSubtomogram{a}" for a in ("Rot", "Tilt", "Psi")]
    if not any(lab in cols for lab in labels):
        return None
    sub = np.stack([numbers(lab, allow_nan=True, default=0.0) for lab in labels], 1)
    bad = np.argwhere(np.isnan(sub))
    if len(bad):
        row, col = bad[0]
        raise InputError("NaN subtomogram pre-rotation angle (RELION needs a number)",
                         path=path, line=lines[row], field=labels[col])
    return relion_matrix(sub[:, 0], sub[:, 1], sub[:, 2])


def _rotated(a_sub: np.ndarray | None, shifts: np.ndarray) -> np.ndarray:
    return shifts if a_sub is None else np.einsum("nij,nj->ni", a_sub, shifts)


def _star_angles(cols: Mapping[str, Any], numbers: Any, a_sub: np.ndarray | None,
                 n: int) -> np.ndarray:
    """Each row's orientation in the tomogram: ``rlnAngle*`` after the subtomogram pre-rotation.

    RELION composes ``A = A_subtomogram @ A_particle`` (``ParticleSet::getMatrix3x3``,
    ``src/jaz/tomography/particle_set.cpp``), a missing ``rlnAngle*`` column counting as no
    rotation; rows whose own angles are NaN (no orientation) stay NaN.
    """
    labels = [f"rlnAngle{a}" for a in ("Rot", "Tilt", "Psi")]
    if a_sub is not None and not any(lab in cols for lab in labels):
        return relion_angles(a_sub)
    angles = np.stack([numbers(lab, allow_nan=True, default=np.nan) for lab in labels], 1)
    if a_sub is None:
        return angles
    ok = np.all(np.isfinite(angles), axis=1)
    if ok.any():
        a_part = relion_matrix(angles[ok, 0], angles[ok, 1], angles[ok, 2])
        angles[ok] = relion_angles(a_sub[ok] @ a_part)
    return angles


def _starfile_columns(
    path: Path, key: str, labels: list[str], n: int
) -> dict[str, list[str]] | None:
    """Read block ``key`` with :mod:`starfile`; values as text. None if it is not a plain loop."""
    if "#" in key:  # a second loop_ in one data_ block: starfile keeps only one
        return None
    try:
        import starfile

        blocks = starfile.read(path, always_dict=True, parse_as_string=labels)
    except Exception as exc:  # a third-party parser on untrusted text: report, never crash
        raise InputError(f"starfile cannot parse it ({type(exc).__name__}: {_short(exc)})",
                         path=path) from None
    df = blocks.get(key)
    if not isinstance(df, pd.DataFrame):
        return None  # a single particle as "_label value" pairs: starfile gives a dict
    if len(df) != n or list(df.columns) != labels:
        raise InputError(f"starfile reads block data_{key} differently ({len(df)} rows, "
                         f"{n} lines)", path=path)
    return {lab: ["" if v is None else str(v) for v in df[lab].tolist()] for lab in labels}


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:120]


def _star_optics(blocks: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "optics" in blocks:
        labels, rows, _ = blocks["optics"]
        for lab in ("rlnTomoTiltSeriesPixelSize", "rlnImagePixelSize"):
            if lab in labels and rows:
                try:
                    value = float(rows[0][labels.index(lab)])
                except ValueError:
                    continue
                if value > 0 and math.isfinite(value):
                    out["pixel"] = value
                    break
    return out


def centred_angstrom(table: pd.DataFrame, voxel: float, shape: Any, path: Path) -> np.ndarray:
    """RELION 5 centred coordinates (Å) of every row: ``(xyz - size_xyz / 2) * voxel``."""
    sizes = np.empty((len(table), 3), dtype=np.float64)
    if isinstance(shape, Mapping):
        for i, tomo in enumerate(table[S.TOMOGRAM].astype(str)):
            if tomo not in shape:
                raise InputError(f"no tomogram size for tomogram {tomo!r}", path=path,
                                 field="rlnCenteredCoordinateXAngst")
            sizes[i] = np.asarray(shape[tomo], dtype=np.float64)[::-1]
    else:
        sizes[:] = np.asarray(shape, dtype=np.float64)[::-1]
    xyz = table[[S.X, S.Y, S.Z]].to_numpy(np.float64)
    return (xyz - sizes / 2.0) * voxel


def write_star_table(path: Path, table: pd.DataFrame, class_map: Any,
                     optics: Mapping[str, Any] | None = None,
                     centred: np.ndarray | None = None) -> None:
    """Write a complete schema table as RELION STAR (``data_particles``), atomically."""
    names = table[S.CLASS_NAME].astype(str)
    if class_map is None:
        order = sorted(n for n in names.unique() if n)
    else:
        order = list(getattr(class_map, "names", class_map))
    index = {n: i + 1 for i, n in enumerate(order)}
    missing = sorted(set(n for n in names if n and n not in index))
    if missing:
        raise InputError(f"class {missing[0]!r} is not in the class map", path=path,
                         field=S.CLASS_NAME)
    out = pd.DataFrame({
        "rlnTomoName": table[S.TOMOGRAM].astype(str),
        "rlnCoordinateX": table[S.X].astype(float),
        "rlnCoordinateY": table[S.Y].astype(float),
        "rlnCoordinateZ": table[S.Z].astype(float),
        **({} if centred is None else
           {f"rlnCenteredCoordinate{a}Angst": centred[:, k] for k, a in enumerate("XYZ")}),
        "rlnAngleRot": table[S.ROT].astype(float),
        "rlnAngleTilt": table[S.TILT].astype(float),
        "rlnAnglePsi": table[S.PSI].astype(float),
        "rlnClassNumber": [index.get(n, 0) for n in names],
        "rlnAutopickFigureOfMerit": table[S.SCORE].astype(float),
        _STAR_NAME: names,
        _STAR_IS_PROTEIN: table[S.IS_PROTEIN].astype(bool).astype(int),
    })
    angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    if len(out) and out[angles].isna().all(axis=None):
        # picks without orientations (locate): leave the columns out, as RELION's own
        # pickers do, rather than hand NaN angles on to extraction and refinement
        out = out.drop(columns=angles)
    for col in table.columns:
        if col == IMAGE_NAME:
            out["rlnImageName"] = table[col].astype(str).to_numpy()
        elif col not in S.PARTICLE_COLUMNS:
            out[_STAR_EXTRA + str(col)] = table[col].to_numpy()
    comments = ("written by tomoclass; coordinates in voxels of rlnTomoName (0-based)"
                + (" and RELION 5 centred, in Å" if centred is not None else "") + ",",
                "angles RELION ZYZ degrees, rlnClassNumber 1-based in the class map's order")
    blocks: dict[str, Any] = {}
    if optics:
        out["rlnOpticsGroup"] = 1
        blocks["optics"] = pd.DataFrame({k: [v] for k, v in optics.items()})
    blocks["particles"] = out
    write_star(path, blocks, comments=comments)


# ---------------------------------------------------------------------------------------------
