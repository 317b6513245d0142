"""Particle tables: SHREC'19/'21 text, DeepFinder XML, RELION STAR, CSV and PolNet motif lists.

Every reader returns a :class:`pandas.DataFrame` with the columns of :mod:`tomoclass.io.schema`
(coordinates in voxels of the tomogram, 0-based, angles as RELION ZYZ degrees); every writer takes
one. Bad input raises :class:`tomoclass.errors.InputError` naming the file, the 1-based line and
the field. What each format's coordinates and angles are assumed to mean is in ``docs/io.md``.

This module is the dispatcher: it picks the format (:func:`table_format`), calls its reader in
:mod:`tomoclass.io.formats` and applies the checks every format shares (known classes, bounds,
duplicates). The bounds rules are :mod:`tomoclass.io.bounds`'s, the naming heuristics
:mod:`tomoclass.io.naming`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.atomic import atomic_path
from tomoclass.io.bounds import COORDS_ANGPIX_HINT, OVERSHOOT_RATIO, outside_tomogram, overshoot
from tomoclass.io.classes import class_name_from_file, set_class_from_column
from tomoclass.io.formats.common import (
    IMAGE_NAME,
    NON_PROTEIN_CLASSES,
    SHREC19_CLASSES,
    ReadContext,
    is_protein,
    label_name,
    show_value,
)
from tomoclass.io.formats.csvtable import read_csv_table
from tomoclass.io.formats.deepfinder import read_deepfinder
from tomoclass.io.formats.polnet import is_polnet, read_polnet
from tomoclass.io.formats.relion import (
    STAR_PREFIX,
    centred_angstrom,
    read_star_table,
    write_star_table,
)
from tomoclass.io.formats.shrec import read_shrec, read_shrec19, read_shrec21, write_shrec
from tomoclass.io.naming import tomogram_name

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_NAME", "NON_PROTEIN_CLASSES", "READ_FORMATS", "SHREC19_CLASSES", "STAR_PREFIX",
    "WRITE_FORMATS", "read_particles", "table_format", "write_particles",
]

#: Formats :func:`read_particles` understands ("shrec" tells SHREC'19 from SHREC'21 text).
READ_FORMATS = ("shrec19", "shrec21", "shrec", "deepfinder", "star", "csv", "polnet")
#: Formats :func:`write_particles` writes.
WRITE_FORMATS = ("star", "csv", "shrec21", "shrec19")

#: The reader of each format.
_READERS = {"shrec19": read_shrec19, "shrec21": read_shrec21, "shrec": read_shrec,
            "deepfinder": read_deepfinder, "star": read_star_table, "polnet": read_polnet,
            "csv": read_csv_table}

# ---------------------------------------------------------------------------------------------
# public API


def read_particles(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    tomogram: str | None = None,
    class_names: Sequence[str] | str | None = None,
    known_classes: Iterable[str] | None = None,
    tomogram_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    voxel_size_angstrom: float | None = None,
    coordinate_pixel_size_angstrom: float | None = None,
    out_of_bounds: str = "error",
    duplicates: str = "error",
    allow_empty: bool = False,
    class_column: str | None = None,
    class_from_filename: bool | str = False,
) -> pd.DataFrame:
    """Read a particle table into the tomoclass schema.

    Parameters
    ----------
    path
        The table.
    format
        One of :data:`READ_FORMATS` or ``"auto"`` (by suffix: ``.star``, ``.xml``, ``.csv``
        (a tab-separated one with PolNet's ``Tomo3D`` or ``Code`` and ``Q1`` columns is a PolNet
        ``tomos_motif_list.csv``: coordinates in Å, so ``voxel_size_angstrom`` is needed);
        anything else is read as SHREC text: SHREC'19's ``pdb z y x`` when its rows look as
        SHREC'19's simulator wrote them, else SHREC'21's ``class x y z``;
        :func:`tomoclass.io.formats.shrec.looks_like_shrec19`). ``"shrec19"`` / ``"shrec21"``
        say which.
    tomogram
        Tomogram name for formats that hold none (SHREC text, CSV without a ``tomogram``
        column, STAR without ``rlnTomoName``/``rlnMicrographName``). Default: the file stem
        without a ``particle_locations_`` prefix or ``_gt`` suffix.
    class_names
        Names for numeric class labels (DeepFinder ``class_label``, STAR ``rlnClassNumber``
        without a name column): label k (1-based) is ``class_names[k-1]``. ``"shrec19"`` is
        :data:`SHREC19_CLASSES`. Without it the label itself (as text) is the class name.
    known_classes
        If given, every protein row's class must be one of these (case-insensitive; the
        spelling given here is kept), else InputError naming the line.
    tomogram_shape
        ``(z, y, x)`` size in voxels of the tomogram (or a mapping tomogram name -> shape).
        Needed for RELION 5 centred coordinates; when given, coordinates are also checked to
        lie inside ``[-0.5, n - 0.5)`` on every axis.
    voxel_size_angstrom
        Voxel size (Å) of the tomogram the coordinates should refer to. Needed for RELION 5
        centred coordinates and for origin shifts in Å.
    coordinate_pixel_size_angstrom
        Pixel size (Å) of the table's coordinates (``rlnCoordinateX/Y/Z``, ``x y z``) when it
        differs from the tomogram's voxel size, e.g. RELION 4 and Warp tables in unbinned
        tilt-series pixels (Warp's ``--coords_angpix``); coordinates are rescaled by
        ``coordinate / voxel``. Not applied to RELION 5 centred coordinates (in Å). Default:
        the coordinates are already in voxels of the tomogram.
    out_of_bounds
        ``"error"`` (default) or ``"skip"`` (drop rows outside ``tomogram_shape`` and log the
        count) when ``tomogram_shape`` is given; ``"keep"`` does not check (the shape is then
        only used for RELION 5 centred coordinates, e.g. when extraction counts the skips).
    duplicates
        What to do with rows of one tomogram at the same coordinates (within 1e-3 voxel):
        ``"error"`` (default), ``"drop"`` (keep the first, log the count) or ``"keep"``.
    allow_empty
        Return an empty table instead of raising for a file with no particles.
    class_column
        STAR or CSV: the column holding each row's class (e.g. ``rlnParticleName``), instead
        of ``tomoclassClassName``/``rlnClassNumber``/``class``; numeric labels go through
        ``class_names``.
    class_from_filename
        Every row's class is taken from the file name (one table per class): ``True`` -> the
        name without extension(s); a regular expression -> its ``class`` group, else its
        first group, else its whole match (:func:`tomoclass.io.classes.class_name_from_file`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`tomoclass.io.schema.PARTICLE_COLUMNS` first, then any extra columns of
        the source (STAR/CSV), one row per particle, in file order; ``attrs["lines"]`` is absent.

    Raises
    ------
    InputError
        Unreadable file, unknown format, missing columns, non-numeric or non-finite
        coordinates, unknown class names, duplicates, out-of-bounds coordinates, RELION 5
        centred coordinates without tomogram size/voxel size, empty table.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    fmt = _detect_format(path, format)
    ctx = ReadContext(
        path=path, tomogram=tomogram if tomogram is not None else tomogram_name(path),
        tomogram_given=tomogram is not None, class_names=_class_name_list(class_names),
        tomogram_shape=tomogram_shape, voxel_size_angstrom=voxel_size_angstrom,
        coordinate_pixel_size_angstrom=coordinate_pixel_size_angstrom, header_names=[],
        class_column=class_column,
    )
    if class_column is not None and fmt not in ("star", "csv", "polnet"):
        raise InputError(f"a class column applies to STAR and CSV tables, not {fmt}", path=path,
                         field=class_column)
    df, lines = _READERS[fmt](ctx)
    if coordinate_pixel_size_angstrom is not None and fmt not in ("star", "polnet"):
        df = _rescale_coordinates(df, ctx)
    df = _set_classes(df, ctx, fmt, class_from_filename)
    return _finalize(df, lines, ctx, known_classes, out_of_bounds, duplicates, allow_empty)


def _class_name_list(class_names: Sequence[str] | str | None) -> list[str] | None:
    """``class_names`` as a list: ``"shrec19"`` is :data:`SHREC19_CLASSES`."""
    if isinstance(class_names, str):
        if class_names.lower() != "shrec19":
            raise InputError(f"unknown class-name list {class_names!r} (known: shrec19)",
                             field="class_names")
        return list(SHREC19_CLASSES)
    return None if class_names is None else list(class_names)


def _rescale_coordinates(df: pd.DataFrame, ctx: ReadContext) -> pd.DataFrame:
    """Coordinates in pixels of ``coordinate_pixel_size_angstrom`` -> voxels of the tomogram."""
    if ctx.voxel_size_angstrom is None:
        raise InputError("coordinate_pixel_size_angstrom needs voxel_size_angstrom too",
                         path=ctx.path, field="voxel_size_angstrom")
    scale = float(ctx.coordinate_pixel_size_angstrom) / float(ctx.voxel_size_angstrom)
    df[[S.X, S.Y, S.Z]] = df[[S.X, S.Y, S.Z]].to_numpy(np.float64) * scale
    return df


def _set_classes(df: pd.DataFrame, ctx: ReadContext, fmt: str,
                 class_from_filename: bool | str) -> pd.DataFrame:
    """Each row's class from ``class_column`` (CSV; STAR's reader does it) or the file name."""
    if ctx.class_column is not None and fmt != "star":
        df = set_class_from_column(df, ctx.class_column, ctx.path, ctx.header_names,
                                   lambda v: label_name(v, ctx, None, ctx.class_column))
        df[S.IS_PROTEIN] = [is_protein(v) for v in df[S.CLASS_NAME]]
    if class_from_filename:
        df[S.CLASS_NAME] = class_name_from_file(ctx.path, class_from_filename)
        df[S.IS_PROTEIN] = [is_protein(v) for v in df[S.CLASS_NAME]]
    return df


def write_particles(
    path: str | os.PathLike[str],
    df: pd.DataFrame,
    format: str = "auto",
    class_map: Any = None,
    *,
    optics: Mapping[str, Any] | None = None,
    voxel_size_angstrom: float | None = None,
    tomogram_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Write a schema table as STAR (RELION-compatible), CSV or SHREC text, atomically.

    Parameters
    ----------
    path
        Destination; the format is taken from the suffix with ``format="auto"`` (``.star``,
        ``.csv``, ``.txt`` -> SHREC'21).
    df
        Table in the schema of :mod:`tomoclass.io.schema` (missing optional columns get their
        defaults: class "", angles/score NaN, is_protein True).
    format
        ``"star"``, ``"csv"``, ``"shrec21"``, ``"shrec19"`` (z y x first) or ``"auto"``.
    class_map
        For STAR: the class order behind ``rlnClassNumber`` (1-based), a ``ClassMap`` (anything
        with ``.names``) or a list of names. Default: names sorted alphabetically. A row whose
        class is not in it raises InputError; rows with no class ("") get class number 0.
    optics
        STAR only: values of a one-row ``data_optics`` block (e.g. ``rlnImagePixelSize``,
        ``rlnImageSize``, ``rlnImageDimensionality``); rows then get ``rlnOpticsGroup`` 1.
    voxel_size_angstrom, tomogram_shape
        STAR only, both or neither: the tomograms' voxel size (Å) and ``(z, y, x)`` size (one
        shape, or a mapping tomogram name -> shape). With them every row also gets RELION 5's
        ``rlnCenteredCoordinateX/Y/ZAngst`` = ``(voxel - size / 2) * voxel_size_angstrom``,
        the inverse of what :func:`read_particles` does with them, so that RELION 5 takes the
        picks as they are.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    STAR: block ``data_particles`` with ``rlnTomoName``, ``rlnCoordinateX/Y/Z`` (voxels),
    ``rlnAngleRot/Tilt/Psi`` (left out when every angle is NaN, as in picks from
    :func:`tomoclass.locate.locate`), ``rlnClassNumber``, ``rlnAutopickFigureOfMerit``
    (score) and the tomoclass columns ``tomoclassClassName``, ``tomoclassIsProtein`` and
    ``tomoclass_<col>`` for every extra column (except ``image_name``, written as
    ``rlnImageName``).
    SHREC'21 text: ``class x y z a1 a2 a3`` (angles as PyTom's simulator gives them to
    voltools, :func:`tomoclass.io.euler.relion_to_shrec21`); SHREC'19 text: ``pdb z y x a1 a2
    a3`` (:func:`tomoclass.io.euler.relion_to_shrec19`). One tomogram per file, non-protein
    rows with ``NaN`` angles.
    """
    path = Path(path)
    fmt = format.lower()
    if fmt == "auto":
        fmt = {".star": "star", ".csv": "csv", ".txt": "shrec21"}.get(path.suffix.lower(), "")
        if not fmt:
            raise InputError(
                f"cannot tell the table format from the suffix {path.suffix!r}; "
                "use .star, .csv or .txt or pass format=", path=path, field="format")
    if fmt not in WRITE_FORMATS:
        raise InputError(f"unknown table format {format!r} (one of {', '.join(WRITE_FORMATS)})",
                         path=path, field="format")
    table = _complete(df, path)
    centred = None
    if (voxel_size_angstrom is None) != (tomogram_shape is None):
        raise InputError("centred coordinates need both voxel_size_angstrom and "
                         "tomogram_shape", path=path, field="rlnCenteredCoordinateXAngst")
    if voxel_size_angstrom is not None and fmt == "star":
        centred = centred_angstrom(table, float(voxel_size_angstrom), tomogram_shape, path)
    if fmt == "star":
        write_star_table(path, table, class_map, optics, centred)
    elif fmt == "csv":
        # coordinates first: a row starting with a name like "#3" would read as a comment
        first = [S.X, S.Y, S.Z]
        table = table[first + [c for c in table.columns if c not in first]]
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, na_rep="NaN")
    else:
        write_shrec(path, table, fmt)
    return path


# ---------------------------------------------------------------------------------------------
# format detection


def table_format(path: str | os.PathLike[str], format: str = "auto") -> str:
    """The format :func:`read_particles` reads ``path`` as (one of :data:`READ_FORMATS`).

    ``"auto"`` goes by the suffix (``.star``, ``.xml``, ``.csv``; a tab-separated ``.csv``
    with PolNet's columns is ``"polnet"``; anything else SHREC text); another value is checked.
    """
    return _detect_format(Path(path), format)


def _detect_format(path: Path, fmt: str) -> str:
    fmt = fmt.lower()
    if fmt == "auto":
        suffix = path.suffix.lower()
        found = {".star": "star", ".xml": "deepfinder", ".csv": "csv"}.get(suffix, "shrec")
        if found == "csv" and is_polnet(path):
            found = "polnet"
        return found
    if fmt not in READ_FORMATS:
        raise InputError(f"unknown table format {fmt!r} (one of {', '.join(READ_FORMATS)})",
                         path=path, field="format")
    return fmt


# ---------------------------------------------------------------------------------------------
# validation common to every format


def _complete(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise InputError("a particle table must be a pandas DataFrame", path=path)
    for need in S.COORDS:
        if need not in df.columns:
            raise InputError("missing column", path=path, field=need)
    table = df.copy()
    defaults = {S.TOMOGRAM: "", S.CLASS_NAME: "", S.ROT: np.nan, S.TILT: np.nan, S.PSI: np.nan,
                S.SCORE: np.nan, S.IS_PROTEIN: True}
    for key, value in defaults.items():
        if key not in table.columns:
            table[key] = value
    table[S.CLASS_NAME] = table[S.CLASS_NAME].fillna("").astype(str)
    table[S.TOMOGRAM] = table[S.TOMOGRAM].fillna("").astype(str)
    rest = [c for c in table.columns if c not in S.PARTICLE_COLUMNS]
    return table[list(S.PARTICLE_COLUMNS) + rest].reset_index(drop=True)


def _finalize(
    df: pd.DataFrame, lines: list[int], ctx: ReadContext, known_classes: Iterable[str] | None,
    out_of_bounds: str, duplicates: str, allow_empty: bool,
) -> pd.DataFrame:
    """The checks every format shares: known classes, bounds, duplicates, emptiness."""
    path = ctx.path
    if out_of_bounds not in ("error", "skip", "keep"):
        raise InputError(f"out_of_bounds must be error/skip/keep, not {out_of_bounds!r}",
                         field="out_of_bounds")
    if duplicates not in ("error", "drop", "keep"):
        raise InputError(f"duplicates must be error/drop/keep, not {duplicates!r}",
                         field="duplicates")
    if len(df) == 0:
        if allow_empty:
            return _complete(df, path)
        raise InputError("no particles in the table", path=path)
    line_arr = np.asarray(lines, dtype=np.int64)
    df = df.copy()
    df[S.TOMOGRAM] = df[S.TOMOGRAM].astype(str)
    df[S.CLASS_NAME] = df[S.CLASS_NAME].astype(str)
    df[S.IS_PROTEIN] = df[S.IS_PROTEIN].astype(bool)
    if known_classes is not None:
        df[S.CLASS_NAME] = _known_class_names(df, line_arr, known_classes, path)
    if ctx.tomogram_shape is not None and out_of_bounds != "keep":
        keep = _inside_rows(df, line_arr, ctx, skip=out_of_bounds == "skip")
        if not keep.all():
            log.warning("%s: skipped %d particle(s) outside the tomogram", path,
                        int((~keep).sum()))
            df, line_arr = df[keep].reset_index(drop=True), line_arr[keep]
    if duplicates != "keep" and len(df):
        dup = _duplicated_rows(df, line_arr, path, error=duplicates == "error")
        if dup.any():
            log.warning("%s: dropped %d duplicated particle(s)", path, int(dup.sum()))
            df, line_arr = df[~dup].reset_index(drop=True), line_arr[~dup]
    if len(df) == 0 and not allow_empty:
        raise InputError("no particles left in the table", path=path)
    return _complete(df, path)


def _known_class_names(df: pd.DataFrame, line_arr: np.ndarray, known_classes: Iterable[str],
                       path: Path) -> list[str]:
    """Each row's class spelt as in ``known_classes``; an unknown protein class raises."""
    canon = {str(c).lower(): str(c) for c in known_classes}
    fixed = []
    for name, prot, ln in zip(df[S.CLASS_NAME], df[S.IS_PROTEIN], line_arr, strict=True):
        hit = canon.get(name.lower())
        if hit is None and prot:
            shown = ", ".join(list(canon.values())[:8])
            raise InputError(f"unknown class {show_value(name)} (known: {shown}"
                             f"{', ...' if len(canon) > 8 else ''})", path=path,
                             line=int(ln), field="class")
        fixed.append(name if hit is None else hit)
    return fixed


def _inside_rows(df: pd.DataFrame, line_arr: np.ndarray, ctx: ReadContext, *,
                 skip: bool) -> np.ndarray:
    """Which rows lie inside their tomogram; with ``skip`` False the first outside one raises."""
    keep = np.ones(len(df), dtype=bool)
    xyz = df[[S.X, S.Y, S.Z]].to_numpy()
    for i, tomo in enumerate(df[S.TOMOGRAM]):
        shape = ctx.shape_for(tomo)
        if shape is None:
            continue
        bad = outside_tomogram(xyz[i][None], shape)[0]
        if not bad.any():
            continue
        if skip:
            keep[i] = False
            continue
        axis = "xyz"[int(np.argmax(bad))]
        scaled = ctx.coordinate_pixel_size_angstrom is not None
        hint = ("; " + COORDS_ANGPIX_HINT
                if not scaled and overshoot(xyz[:, :2], shape) > OVERSHOOT_RATIO else "")
        raise InputError(
            f"coordinate {axis}={xyz[i]['xyz'.index(axis)]:g} is outside tomogram "
            f"{tomo!r} of size (z, y, x)={tuple(shape)}{hint}", path=ctx.path,
            line=int(line_arr[i]), field=axis)
    return keep


def _duplicated_rows(df: pd.DataFrame, line_arr: np.ndarray, path: Path, *,
                     error: bool) -> np.ndarray:
    """Rows of one tomogram at the coordinates of an earlier one (within 1e-3 voxel).

    With ``error`` the first such row raises, naming the line it repeats.
    """
    key = pd.DataFrame({
        "t": df[S.TOMOGRAM],
        **{a: np.round(df[a].to_numpy() * 1000.0).astype(np.int64) for a in S.COORDS},
    })
    dup = key.duplicated(keep="first").to_numpy()
    if dup.any() and error:
        i = int(np.argmax(dup))
        first = int(np.argmax((key == key.iloc[i]).all(axis=1).to_numpy()))
        raise InputError(
            f"duplicated particle: same tomogram and coordinates as line "
            f"{int(line_arr[first])} ({int(dup.sum())} duplicate(s) in all; "
            "pass duplicates='drop' to keep the first)", path=path,
            line=int(line_arr[i]), field="x,y,z")
    return dup
