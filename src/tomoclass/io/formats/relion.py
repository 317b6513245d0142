"""RELION STAR particle tables (RELION 3.1/4/5, Warp): reading and writing.

Coordinates ``rlnCoordinateX/Y/Z`` (voxels, optionally in another pixel size) or RELION 5's
``rlnCenteredCoordinateX/Y/ZAngst``; origin shifts ``rlnOrigin*`` (Å or pixels); RELION 5's
subtomogram pre-rotation ``rlnTomoSubtomogram*``; class from ``tomoclassClassName``,
``rlnClassNumber`` or a named column. tomoclass's own columns are ``tomoclass*``.
"""

from __future__ import annotations

import logging
import math
import re
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
from tomoclass.io.star import read_star, write_star

log = logging.getLogger(__name__)

#: Prefix of tomoclass's own columns in STAR files (RELION ignores labels it does not know).
STAR_PREFIX = "tomoclass"

_STAR_NAME = "tomoclassClassName"
_STAR_IS_PROTEIN = "tomoclassIsProtein"
_STAR_EXTRA = "tomoclass_"

#: A block of a STAR file as the line index sees it: its labels, the line of each row, and the
#: line its loop's data starts on (the first line after the labels that is not blank; 0: none).
StarIndex = dict[str, tuple[list[str], list[int], int]]

#: pandas' message (through starfile) for a loop row with more values than labels.
_TOO_MANY = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _star_line_index(text: str, path: Path) -> StarIndex:
    """Block name -> (labels, 1-based line of each row, loop data start), from one pass.

    Not a parser: :mod:`starfile` reads the values. This finds, line by line, where each
    block's labels and rows are (a ``_label value`` block is one row, on its first label's
    line), so that an error about a value names its line, and refuses what starfile would
    silently misread: text before the first ``data_``, a value outside a ``loop_``, a label
    without a value, a second ``loop_`` or a label after the rows of one ``data_`` block.
    """
    index: dict[str, tuple[list[str], list[int], list[int]]] = {}
    name: str | None = None
    in_loop = False
    for i, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        s = raw.strip()
        if not s:
            continue
        if in_loop and name is not None and not s.startswith(("_", "loop_", "data_")):
            block = index[name]
            if block[0] and not block[2]:
                block[2].append(i)  # where starfile's loop data (and pandas' line 1) starts
        if s.startswith("#"):
            continue
        if s.startswith("data_"):
            name, in_loop = s[5:], False
            index[name] = ([], [], [])
            continue
        if name is None:
            raise InputError("text before the first data_ block", path=path, line=i)
        labels, lines, _ = index[name]
        if s.startswith("loop_"):
            if labels:
                raise InputError("a second loop_ in one data_ block (give each its own data_)",
                                 path=path, line=i)
            in_loop = True
        elif s.startswith("_"):
            label = s.split()[0]
            if in_loop and lines:
                raise InputError(f"label {label} after the rows of a loop_", path=path, line=i,
                                 field=label[1:])
            if not in_loop and len(s.split(None, 1)) < 2:
                raise InputError(f"label {label} has no value", path=path, line=i,
                                 field=label[1:])
            labels.append(label[1:])
            if not in_loop and not lines:
                lines.append(i)
        elif not in_loop:
            raise InputError("a value outside a loop_", path=path, line=i)
        else:
            lines.append(i)
    return {key: (labels, lines, start[0] if start else 0)
            for key, (labels, lines, start) in index.items() if labels}


def _pick_particles_block(index: StarIndex, path: Path) -> str:
    """The particles' block: ``data_particles``, ``data_``, else the first with coordinates."""
    if not index:
        raise InputError("no data_ block with a loop_ of particles", path=path)
    coord_labels = {"rlnCoordinateX", "rlnCenteredCoordinateXAngst"}
    for key in ("particles", ""):
        if key in index and coord_labels & set(index[key][0]):
            return key
    for key, (labels, _, _) in index.items():
        if coord_labels & set(labels):
            return key
    raise InputError(
        "no block has rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst columns", path=path,
        field="rlnCoordinateX")


def _star_text_columns(path: Path, index: StarIndex,
                       key: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Block ``key``'s values as text, label -> list, and every block, via one starfile read."""
    labels, lines, _ = index[key]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise InputError("column appears twice", path=path, field=dup)
    every_label = sorted({lab for labs, _, _ in index.values() for lab in labs})
    try:
        blocks = read_star(path, text_labels=every_label)
    except InputError as exc:
        raise _with_row_line(exc, index, path) from None
    block = blocks.get(key)
    if isinstance(block, dict):  # a single particle as "_label value" pairs
        block = pd.DataFrame({k: [v] for k, v in block.items()})
    if (not isinstance(block, pd.DataFrame) or len(block) != len(lines)
            or [str(c) for c in block.columns] != labels):
        rows = len(block) if isinstance(block, pd.DataFrame) else 0
        raise InputError(f"starfile reads block data_{key} differently ({rows} rows, "
                         f"{len(lines)} lines)", path=path)
    cols = {lab: ["" if v is None else str(v) for v in block[lab].tolist()] for lab in labels}
    return cols, blocks


def _with_row_line(exc: InputError, index: StarIndex, path: Path) -> InputError:
    """The starfile error for a row with too many values, as a line-numbered one if it can be."""
    found = _TOO_MANY.search(exc.message)
    if found is None:
        return exc
    expected, row, saw = (int(g) for g in found.groups())
    for labels, lines, start in index.values():
        line = start + row - 1
        if start and len(labels) == expected and line in lines:
            return InputError(f"{saw} values for {expected} columns", path=path, line=line)
    return exc


def read_star_table(ctx: ReadContext) -> tuple[pd.DataFrame, list[int]]:
    """A RELION STAR particle table -> (schema table, 1-based line of each row).

    The file is parsed once, by :mod:`starfile` (:func:`tomoclass.io.star.read_star`, every
    value as text); a line index (:func:`_star_line_index`) gives each row's line for errors.
    """
    path = ctx.path
    index = _star_line_index(read_text(path), path)
    key = _pick_particles_block(index, path)
    lines = index[key][1]
    cols, blocks = _star_text_columns(path, index, key)
    numbers = _ColumnNumbers(cols, lines, path)
    tomos = _star_tomograms(cols, ctx, len(lines))
    xyz, vox_per_coord = _star_coordinates(cols, numbers, ctx, tomos, lines)
    # RELION 5 subtomogram pre-rotation A_sub: the orientation is A_sub @ A_particle and the
    # origin shifts are in the pre-rotated frame (ParticleSet::getMatrix3x3 / getPosition).
    a_sub = _star_subtomogram_matrices(cols, numbers, path, lines)
    xyz = _star_origin_shifts(xyz, cols, numbers, a_sub, ctx, vox_per_coord,
                              _star_optics(blocks))
    angles = _star_angles(cols, numbers, a_sub, len(lines))
    names = _star_class_names(cols, ctx, lines)
    df = pd.DataFrame({
        S.TOMOGRAM: tomos, S.X: xyz[:, 0], S.Y: xyz[:, 1], S.Z: xyz[:, 2], S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2],
        S.SCORE: (numbers("rlnAutopickFigureOfMerit", allow_nan=True)
                  if "rlnAutopickFigureOfMerit" in cols else np.full(len(lines), np.nan)),
        S.IS_PROTEIN: _star_is_protein(cols, names, lines, path),
    })
    if "rlnImageName" in cols:
        df[IMAGE_NAME] = cols["rlnImageName"]
    for lab, values in cols.items():
        if lab.startswith(_STAR_EXTRA) and len(lab) > len(_STAR_EXTRA):
            df[lab[len(_STAR_EXTRA):]] = maybe_numeric(values)
    return df, lines


class _ColumnNumbers:
    """``numbers(label)``: a column as floats, an error naming the line of a bad value."""

    def __init__(self, cols: Mapping[str, list[str]], lines: Sequence[int], path: Path) -> None:
        self.cols, self.lines, self.path = cols, lines, path

    def __call__(self, label: str, *, allow_nan: bool = False,
                 default: float | None = None) -> np.ndarray:
        if label not in self.cols:
            if default is None:
                raise InputError("missing column", path=self.path, field=label)
            return np.full(len(self.lines), default, dtype=np.float64)
        return np.array(
            [parse_number(v, self.path, ln, label, allow_nan=allow_nan)
             for v, ln in zip(self.cols[label], self.lines, strict=True)],
            dtype=np.float64)


def _star_tomograms(cols: Mapping[str, list[str]], ctx: ReadContext, n: int) -> list[str]:
    """Each row's tomogram: ``rlnTomoName``, else ``rlnMicrographName``, else the default."""
    if "rlnTomoName" in cols and not ctx.tomogram_given:
        return [strip_tomo(v, path_like=False) for v in cols["rlnTomoName"]]
    if "rlnMicrographName" in cols and not ctx.tomogram_given:
        return [strip_tomo(v, path_like=True) for v in cols["rlnMicrographName"]]
    return [ctx.tomogram] * n


def _star_coordinates(cols: Mapping[str, list[str]], numbers: _ColumnNumbers,
                      ctx: ReadContext, tomos: Sequence[str],
                      lines: Sequence[int]) -> tuple[np.ndarray, float | None]:
    """(n, 3) x, y, z in voxels of the tomogram, and voxels per coordinate unit (None: Å).

    RELION 5's centred coordinates (Å) when the tomograms' sizes and voxel size are known or
    they are the only ones, else ``rlnCoordinateX/Y/Z`` rescaled by the coordinate pixel size.
    """
    path = ctx.path
    centred = "rlnCenteredCoordinateXAngst" in cols
    plain = "rlnCoordinateX" in cols
    if centred and plain and (
            ctx.voxel_size_angstrom is None
            or any(ctx.shape_for(t) is None for t in set(tomos))):
        # both kinds (tomoclass writes both): without the tomograms' size and voxel size the
        # plain voxel coordinates are the ones that can be read
        centred = False
    if not centred:
        xyz = np.stack([numbers(f"rlnCoordinate{a}") for a in "XYZ"], 1)
        if ctx.coordinate_pixel_size_angstrom is None:
            return xyz, 1.0
        if ctx.voxel_size_angstrom is None:
            raise InputError("coordinate_pixel_size_angstrom needs voxel_size_angstrom too",
                             path=path, field="voxel_size_angstrom")
        vox_per_coord = ctx.coordinate_pixel_size_angstrom / ctx.voxel_size_angstrom
        return xyz * vox_per_coord, vox_per_coord
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
    if plain and len(xyz) and ctx.coordinate_pixel_size_angstrom is None:
        other = np.stack([numbers(f"rlnCoordinate{a}") for a in "XYZ"], 1)
        off = float(np.nanmax(np.abs(other - xyz)))
        if off > 1.0:
            log.warning("%s: rlnCoordinateX/Y/Z and rlnCenteredCoordinateX/Y/ZAngst differ "
                        "by up to %.1f voxels (another tomogram size or voxel size?); the "
                        "centred ones are used", path, off)
    return xyz, None  # already in voxels


def _star_origin_shifts(xyz: np.ndarray, cols: Mapping[str, list[str]],
                        numbers: _ColumnNumbers, a_sub: np.ndarray | None, ctx: ReadContext,
                        vox_per_coord: float | None, optics: Mapping[str, float]) -> np.ndarray:
    """The particle centres: coordinate - A_sub @ origin (RELION's convention)."""
    if any(f"rlnOrigin{a}Angst" in cols for a in "XYZ"):
        shift_a = np.stack([numbers(f"rlnOrigin{a}Angst", default=0.0) for a in "XYZ"], 1)
        if np.any(shift_a != 0):
            vs = ctx.voxel_size_angstrom or optics.get("pixel")
            if vs is None:
                raise InputError(
                    "origin shifts in Å need the voxel size (voxel_size_angstrom / --voxel-size)",
                    path=ctx.path, field="rlnOriginXAngst")
            xyz = xyz - _rotated(a_sub, shift_a) / vs
    if any(f"rlnOrigin{a}" in cols for a in "XYZ"):  # RELION <3.1: shifts in pixels
        shift_p = np.stack([numbers(f"rlnOrigin{a}", default=0.0) for a in "XYZ"], 1)
        xyz = xyz - _rotated(a_sub, shift_p) * (vox_per_coord or 1.0)
    return xyz


def _star_class_names(cols: Mapping[str, list[str]], ctx: ReadContext,
                      lines: Sequence[int]) -> list[str]:
    """Each row's class: the class column, ``tomoclassClassName``, ``rlnClassNumber``, or ""."""
    if ctx.class_column is not None:
        if ctx.class_column not in cols:
            raise InputError(f"no such column (columns: {', '.join(cols)})", path=ctx.path,
                             field=ctx.class_column)
        names = [label_name(v, ctx, ln, ctx.class_column)
                 for v, ln in zip(cols[ctx.class_column], lines, strict=True)]
    elif _STAR_NAME in cols:
        names = list(cols[_STAR_NAME])
    elif "rlnClassNumber" in cols:
        names = [label_name(v, ctx, ln, "rlnClassNumber")
                 for v, ln in zip(cols["rlnClassNumber"], lines, strict=True)]
    else:
        names = [""] * len(lines)
    return ["" if v in ('""', "''") else v for v in names]


def _star_is_protein(cols: Mapping[str, list[str]], names: Sequence[str],
                     lines: Sequence[int], path: Path) -> list[bool]:
    """``tomoclassIsProtein`` (0/1) where written, else from the class name."""
    if _STAR_IS_PROTEIN not in cols:
        return [is_protein(v) for v in names]
    prot = []
    for v, ln in zip(cols[_STAR_IS_PROTEIN], lines, strict=True):
        if v not in ("0", "1"):
            raise InputError(f"{show_value(v)} is not 0 or 1", path=path, line=ln,
                             field=_STAR_IS_PROTEIN)
        prot.append(v == "1")
    return prot


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


def _star_optics(blocks: Mapping[str, Any]) -> dict[str, float]:
    """``{"pixel": Å}`` from the optics block's tilt-series or image pixel size, if any."""
    out: dict[str, float] = {}
    block = blocks.get("optics")
    if isinstance(block, pd.DataFrame):
        first = block.iloc[0].to_dict() if len(block) else {}
    else:
        first = dict(block or {})
    for lab in ("rlnTomoTiltSeriesPixelSize", "rlnImagePixelSize"):
        if lab in first:
            try:
                value = float(first[lab])
            except (TypeError, ValueError):
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
