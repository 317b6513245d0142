"""Particle tables: SHREC'19/'21 text, DeepFinder XML, RELION STAR, CSV and PolNet motif lists.

Every reader returns a :class:`pandas.DataFrame` with the columns of :mod:`tomoclass.io.schema`
(coordinates in voxels of the tomogram, 0-based, angles as RELION ZYZ degrees); every writer takes
one. Bad input raises :class:`tomoclass.errors.InputError` naming the file, the 1-based line and
the field. What each format's coordinates and angles are assumed to mean is in ``docs/io.md``.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.parsers import expat

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.atomic import atomic_path
from tomoclass.io.classes import class_name_from_file, set_class_from_column
from tomoclass.io.euler import (
    relion_angles,
    relion_matrix,
    relion_to_zxz_pytom,
    zxz_pytom_to_relion,
)
from tomoclass.io.omezarr import zarr_tomogram_name
from tomoclass.io.star import write_star

log = logging.getLogger(__name__)

#: Formats :func:`read_particles` understands ("shrec19", "shrec21" and "shrec" are one parser).
READ_FORMATS = ("shrec19", "shrec21", "shrec", "deepfinder", "star", "csv", "polnet")
#: Formats :func:`write_particles` writes.
WRITE_FORMATS = ("star", "csv", "shrec21", "shrec19")

#: DeepFinder's SHREC'19 label order: ``class_label`` k (1-based) is the k-th name.
SHREC19_CLASSES = (
    "1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3qm1", "4b4t", "4d8q",
)

#: Class names (lower case) that are not macromolecules; their rows get ``is_protein`` False.
NON_PROTEIN_CLASSES = frozenset(
    {"vesicle", "vesicles", "fiducial", "fiducials", "gold", "membrane", S.BACKGROUND}
)

#: Prefix of tomoclass's own columns in STAR files (RELION ignores labels it does not know).
STAR_PREFIX = "tomoclass"

_STAR_NAME = "tomoclassClassName"
_STAR_IS_PROTEIN = "tomoclassIsProtein"
_STAR_EXTRA = "tomoclass_"

#: Extra column holding a STAR file's ``rlnImageName`` (path of a per-particle subtomogram).
IMAGE_NAME = "image_name"


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
        anything else is read as SHREC text).
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
    if isinstance(class_names, str):
        if class_names.lower() != "shrec19":
            raise InputError(f"unknown class-name list {class_names!r} (known: shrec19)",
                             field="class_names")
        class_names = SHREC19_CLASSES
    default_tomo = tomogram if tomogram is not None else _default_tomogram(path)
    ctx = _Context(
        path=path, tomogram=default_tomo, tomogram_given=tomogram is not None,
        class_names=None if class_names is None else list(class_names),
        tomogram_shape=tomogram_shape, voxel_size_angstrom=voxel_size_angstrom,
        coordinate_pixel_size_angstrom=coordinate_pixel_size_angstrom, header_names=[],
        class_column=class_column,
    )
    if class_column is not None and fmt not in ("star", "csv", "polnet"):
        raise InputError(f"a class column applies to STAR and CSV tables, not {fmt}", path=path,
                         field=class_column)
    if fmt in ("shrec19", "shrec21", "shrec"):
        df, lines = _read_shrec(ctx)
    elif fmt == "deepfinder":
        df, lines = _read_deepfinder(ctx)
    elif fmt == "star":
        df, lines = _read_star(ctx)
    elif fmt == "polnet":
        df, lines = _read_polnet(ctx)
    else:
        df, lines = _read_csv(ctx)
    if coordinate_pixel_size_angstrom is not None and fmt not in ("star", "polnet"):
        if voxel_size_angstrom is None:
            raise InputError("coordinate_pixel_size_angstrom needs voxel_size_angstrom too",
                             path=path, field="voxel_size_angstrom")
        scale = float(coordinate_pixel_size_angstrom) / float(voxel_size_angstrom)
        df[[S.X, S.Y, S.Z]] = df[[S.X, S.Y, S.Z]].to_numpy(np.float64) * scale
    if class_column is not None and fmt != "star":
        df = set_class_from_column(df, class_column, path, ctx.header_names,
                                   lambda v: _label_name(v, ctx, None, class_column))
        df[S.IS_PROTEIN] = [_is_protein(v) for v in df[S.CLASS_NAME]]
    if class_from_filename:
        df[S.CLASS_NAME] = class_name_from_file(path, class_from_filename)
        df[S.IS_PROTEIN] = [_is_protein(v) for v in df[S.CLASS_NAME]]
    return _finalize(df, lines, ctx, known_classes, out_of_bounds, duplicates, allow_empty)


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
    """Write a schema table as STAR (RELION-compatible), CSV or SHREC'21 text, atomically.

    Parameters
    ----------
    path
        Destination; the format is taken from the suffix with ``format="auto"`` (``.star``,
        ``.csv``, ``.txt`` -> SHREC'21).
    df
        Table in the schema of :mod:`tomoclass.io.schema` (missing optional columns get their
        defaults: class "", angles/score NaN, is_protein True).
    format
        ``"star"``, ``"csv"``, ``"shrec21"`` (alias ``"shrec19"``) or ``"auto"``.
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
    SHREC'21 text: ``class x y z phi psi theta`` (PyTom ZXZ), one tomogram per file,
    non-protein rows with ``NaN`` angles.
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
        centred = _centred_angstrom(table, float(voxel_size_angstrom), tomogram_shape, path)
    if fmt == "star":
        _write_star(path, table, class_map, optics, centred)
    elif fmt == "csv":
        # coordinates first: a row starting with a name like "#3" would read as a comment
        first = [S.X, S.Y, S.Z]
        table = table[first + [c for c in table.columns if c not in first]]
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, na_rep="NaN")
    else:
        _write_shrec(path, table)
    return path


# ---------------------------------------------------------------------------------------------
# shared helpers


class _Context:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def shape_for(self, tomo: str) -> tuple[int, int, int] | None:
        shp = self.tomogram_shape
        if shp is None:
            return None
        if isinstance(shp, Mapping):
            got = shp.get(tomo)
            return None if got is None else tuple(int(n) for n in got)  # type: ignore[return-value]
        return tuple(int(n) for n in shp)  # type: ignore[return-value]


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
        if found == "csv" and _is_polnet(path):
            found = "polnet"
        return found
    if fmt not in READ_FORMATS:
        raise InputError(f"unknown table format {fmt!r} (one of {', '.join(READ_FORMATS)})",
                         path=path, field="format")
    return fmt


#: File stems that name what a file holds, not which tomogram: SHREC'19/'21 keep every model in
#: its own folder (``model_3/reconstruction.mrc``, ``model_3/particle_locations.txt``), so the
#: folder names the tomogram.
GENERIC_STEMS = frozenset({
    "reconstruction", "grandmodel", "particle_locations", "class_mask", "occupancy_mask",
    "tomogram", "tomo", "particles", "picks", "coords", "coordinates", "ground_truth", "gt",
})


_COMPRESSION_SUFFIXES = (".gz", ".bz2")
_FILE_SUFFIXES = (".mrc", ".rec", ".map", ".st", ".mrcs", ".txt", ".star", ".csv", ".xml",
                  ".coords", ".tomostar")


def tomogram_name(path: str | os.PathLike[str]) -> str:
    """The tomogram a file (a tomogram or a table of one) belongs to, from its path.

    The file name without its extension (``TS_01.mrc``, ``TS_01.rec.gz`` -> ``TS_01``;
    other dots are kept: ``TS_1.5.mrc`` -> ``TS_1.5``), a
    table's ``particle_locations_`` prefix and ``_gt`` suffix removed; a generic name
    (:data:`GENERIC_STEMS`: ``reconstruction``, ``particle_locations``, ...) gives the
    folder's name instead (``model_3/reconstruction.mrc`` -> ``model_3``). Tables and
    tomograms named this way match in ``extract``, ``predict`` and ``locate``.
    """
    p = Path(path)
    if (zarr_name := zarr_tomogram_name(p)) is not None:  # TS_01.zarr[/1], copick's run
        return zarr_name
    stem = p.name
    for group in (_COMPRESSION_SUFFIXES, _FILE_SUFFIXES):
        for suffix in group:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                break
    stem = re.sub(r"^particle_locations_", "", stem)
    stem = re.sub(r"_gt$", "", stem)
    if stem.lower() in GENERIC_STEMS and p.parent.name not in ("", ".", ".."):
        return p.parent.name
    return stem


#: Coordinates reaching this many times a tomogram's extent are likely in another pixel size.
OVERSHOOT_RATIO = 1.5
#: What an out-of-bounds error then adds (after "; ").
COORDS_ANGPIX_HINT = ("if the coordinates are in another pixel size (unbinned tilt-series "
                      "pixels), give it (--coords-angpix)")


def outside_tomogram(xyz: np.ndarray, shape_zyx: Sequence[int]) -> np.ndarray:
    """(N, 3) bool: which coordinates (x, y, z voxels) lie outside ``[-0.5, n - 0.5)``."""
    size = np.asarray(shape_zyx, dtype=np.float64)[::-1]
    xyz = np.asarray(xyz, dtype=np.float64)
    return (xyz < -0.5) | (xyz >= size - 0.5)


def overshoot(xyz: np.ndarray, shape_zyx: Sequence[int]) -> float:
    """Largest coordinate over the tomogram's extent, on the axes ``xyz`` has (x, y[, z])."""
    xyz = np.asarray(xyz, dtype=np.float64)
    size = np.asarray(shape_zyx, dtype=np.float64)[::-1][:xyz.shape[1]]
    return float(np.max(xyz.max(axis=0) / size))


def distinct_tomogram_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """:func:`tomogram_name` of each path; InputError when two share one (picks would mix)."""
    names = [tomogram_name(p) for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"several tomograms are named {dup[0]!r}; their picks would mix",
                         field="tomogram")
    return names


def _default_tomogram(path: Path) -> str:
    return tomogram_name(path)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=path) from None
    if b"\x00" in raw:
        raise InputError("binary data where a text table is expected", path=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("not UTF-8 text", path=path, line=line) from None


def _number(token: str, path: Path, line: int | None, field: str, *, allow_nan: bool) -> float:
    try:
        value = float(token)
    except (TypeError, ValueError):
        raise InputError(f"{_show(token)} is not a number", path=path, line=line,
                         field=field) from None
    if math.isnan(value):
        if not allow_nan:
            raise InputError("NaN where a coordinate is needed", path=path, line=line, field=field)
    elif not math.isfinite(value):
        raise InputError(f"{_show(token)} is not finite", path=path, line=line, field=field)
    return value


def _show(token: Any) -> str:
    text = repr(str(token))
    return text if len(text) <= 40 else text[:37] + "...'"


def _is_protein(name: str) -> bool:
    return name.strip().lower() not in NON_PROTEIN_CLASSES


def _label_name(label: str, ctx: _Context, line: int | None, field: str) -> str:
    """Map a numeric class label through ``class_names`` (1-based) if given."""
    if ctx.class_names is None:
        return label
    try:
        k = int(float(label))
    except ValueError:
        return label
    if float(label) != k or not 1 <= k <= len(ctx.class_names):
        raise InputError(
            f"class label {label} is outside 1..{len(ctx.class_names)} of the given class names",
            path=ctx.path, line=line, field=field)
    return ctx.class_names[k - 1]


# ---------------------------------------------------------------------------------------------
# SHREC text


def _read_shrec(ctx: _Context) -> tuple[pd.DataFrame, list[int]]:
    text = _read_text(ctx.path)
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
            _number(tok, ctx.path, i, f, allow_nan=f in ("phi", "psi", "theta"))
            for f, tok in zip(fields, parts[1:], strict=True)
        ]
        row += [math.nan] * (6 - len(row))
        names.append(_label_name(parts[0], ctx, i, "class"))
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
        S.IS_PROTEIN: [_is_protein(n) for n in names],
    })
    return df, lines


def _write_shrec(path: Path, table: pd.DataFrame) -> None:
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


# ---------------------------------------------------------------------------------------------
# DeepFinder XML


def _read_deepfinder(ctx: _Context) -> tuple[pd.DataFrame, list[int]]:
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
        xyz = [_number(attrs[f], ctx.path, line, f, allow_nan=False) for f in ("x", "y", "z")]
        ang = [
            _number(attrs[f], ctx.path, line, f, allow_nan=True) if f in attrs else math.nan
            for f in ("phi", "psi", "the")
        ]
        label = attrs["class_label"].strip()
        names.append(_label_name(label, ctx, line, "class_label"))
        if ctx.tomogram_given or "tomo_idx" not in attrs:
            tomos.append(ctx.tomogram)
        else:
            tomos.append(attrs["tomo_idx"].strip())
        values.append(xyz + ang)
        lines.append(line)
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    angles = zxz_pytom_to_relion(arr[:, 3], arr[:, 4], arr[:, 5])
    df = pd.DataFrame({
        S.TOMOGRAM: tomos, S.X: arr[:, 0], S.Y: arr[:, 1], S.Z: arr[:, 2], S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2], S.SCORE: np.nan,
        S.IS_PROTEIN: [_is_protein(n) for n in names],
    })
    return df, lines


# ---------------------------------------------------------------------------------------------
# RELION STAR


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


def _read_star(ctx: _Context) -> tuple[pd.DataFrame, list[int]]:
    path = ctx.path
    text = _read_text(path)
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
            [_number(v, path, ln, label, allow_nan=allow_nan)
             for v, ln in zip(cols[label], lines, strict=True)],
            dtype=np.float64)

    # Tomogram names.
    if "rlnTomoName" in cols and not ctx.tomogram_given:
        tomos = [_strip_tomo(v, path_like=False) for v in cols["rlnTomoName"]]
    elif "rlnMicrographName" in cols and not ctx.tomogram_given:
        tomos = [_strip_tomo(v, path_like=True) for v in cols["rlnMicrographName"]]
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
        names = [_label_name(v, ctx, ln, ctx.class_column)
                 for v, ln in zip(cols[ctx.class_column], lines, strict=True)]
    elif _STAR_NAME in cols:
        names = [v for v in cols[_STAR_NAME]]
    elif "rlnClassNumber" in cols:
        names = [_label_name(v, ctx, ln, "rlnClassNumber")
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
                raise InputError(f"{_show(v)} is not 0 or 1", path=path, line=ln,
                                 field=_STAR_IS_PROTEIN)
            prot.append(v == "1")
    else:
        prot = [_is_protein(v) for v in names]
    df = pd.DataFrame({
        S.TOMOGRAM: tomos, S.X: xyz[:, 0], S.Y: xyz[:, 1], S.Z: xyz[:, 2], S.CLASS_NAME: names,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2], S.SCORE: score,
        S.IS_PROTEIN: prot,
    })
    if "rlnImageName" in cols:
        df[IMAGE_NAME] = cols["rlnImageName"]
    for lab, values in cols.items():
        if lab.startswith(_STAR_EXTRA) and len(lab) > len(_STAR_EXTRA):
            df[lab[len(_STAR_EXTRA):]] = _maybe_numeric(values)
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


def _strip_tomo(value: str, *, path_like: bool) -> str:
    """Tomogram name from a STAR value.

    ``rlnTomoName``: only a Warp ``.tomostar`` suffix is dropped. ``path_like``
    (``rlnMicrographName``): the directory, RELION's ``:mrc`` and the extension are dropped.
    """
    name = value
    if path_like:
        name = re.sub(r":(mrc|mrcs|st|rec)$", "", name, flags=re.IGNORECASE)
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
        suffixes: tuple[str, ...] = (".tomostar", ".mrc", ".rec", ".st", ".mrcs")
    else:
        suffixes = (".tomostar",)
    for suffix in suffixes:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _maybe_numeric(values: list[str]) -> Any:
    try:
        ints = [int(v) for v in values]
        return np.asarray(ints, dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError:
        # A text column: the writer refuses the text "nan", so a "nan" here is a missing
        # value (e.g. background_kind on particle rows); keep it missing, not a string.
        return [np.nan if v.lower().lstrip("+-") == "nan" else v for v in values]


def _centred_angstrom(table: pd.DataFrame, voxel: float, shape: Any, path: Path) -> np.ndarray:
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


def _write_star(path: Path, table: pd.DataFrame, class_map: Any,
                optics: Mapping[str, Any] | None = None,
                centred: np.ndarray | None = None) -> None:
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
# CSV

_CSV_ALIASES = {
    "x": S.X, "y": S.Y, "z": S.Z,
    "class": S.CLASS_NAME, "class_name": S.CLASS_NAME, "classname": S.CLASS_NAME,
    "label": S.CLASS_NAME,
    "tomogram": S.TOMOGRAM, "tomo": S.TOMOGRAM, "tomo_name": S.TOMOGRAM,
    "rot": S.ROT, "tilt": S.TILT, "psi": S.PSI,
    "score": S.SCORE, "probability": S.SCORE, "is_protein": S.IS_PROTEIN,
}


#: PolNet's ``tomos_motif_list.csv`` (tab-separated): the class is ``Code``, the tomogram the
#: stem of ``Tomo3D`` (the reconstruction's path), coordinates ``X Y Z`` in Å.
_POLNET_ALIASES = {"x": S.X, "y": S.Y, "z": S.Z, "code": S.CLASS_NAME, "tomo3d": S.TOMOGRAM}


def _is_polnet(path: Path) -> bool:
    """A PolNet motif list: a tab-separated header naming ``Tomo3D`` or ``Code`` and ``Q1``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.readline()
    except OSError:
        return False
    cols = {c.strip().lower() for c in head.split("\t")}
    return "\t" in head and {"x", "y", "z"} <= cols and ("tomo3d" in cols
                                                       or {"code", "q1"} <= cols)


def _read_polnet(ctx: _Context) -> tuple[pd.DataFrame, list[int]]:
    """PolNet motif list -> schema: Å to voxels, tomogram from ``Tomo3D``, class ``Code``.

    The quaternion ``Q1..Q4`` is kept as extra columns; it is not converted to RELION angles
    (PolNet's rotation convention is not pinned down here), so the angles are NaN.
    """
    vs = ctx.voxel_size_angstrom
    if vs is None or vs <= 0:
        raise InputError("PolNet motif-list coordinates are in Å: give the tomograms' voxel "
                         "size (voxel_size_angstrom / --voxel-size)", path=ctx.path, field="X")
    df, lines = _read_csv(ctx, delimiter="\t", aliases=_POLNET_ALIASES)
    df[[S.X, S.Y, S.Z]] = df[[S.X, S.Y, S.Z]].to_numpy(np.float64) / float(vs)
    if not ctx.tomogram_given and "tomo3d" in [h.lower() for h in ctx.header_names]:
        df[S.TOMOGRAM] = [_strip_tomo(str(v), path_like=True) for v in df[S.TOMOGRAM]]
    df[S.IS_PROTEIN] = True  # every PolNet motif is a macromolecule (membranes are not listed)
    return df, lines


def _read_csv(ctx: _Context, *, delimiter: str | None = None,
              aliases: Mapping[str, str] = _CSV_ALIASES) -> tuple[pd.DataFrame, list[int]]:
    text = _read_text(ctx.path)
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
        return np.array([_number(v, ctx.path, ln, header[mapped[key]], allow_nan=allow_nan)
                         for v, ln in zip(col(key), lines, strict=True)], dtype=np.float64)

    if S.CLASS_NAME in mapped:
        names = [_label_name(v, ctx, ln, header[mapped[S.CLASS_NAME]]) if v else ""
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
                raise InputError(f"{_show(v)} is not true/false", path=ctx.path, line=ln,
                                 field=header[mapped[S.IS_PROTEIN]])
            prot.append(low in ("true", "1"))
        df[S.IS_PROTEIN] = prot
    else:
        df[S.IS_PROTEIN] = [_is_protein(v) for v in names]
    for name, j in extras.items():
        df[name] = _maybe_numeric([r[j].strip() for r in data])
    return df, lines


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
    df: pd.DataFrame, lines: list[int], ctx: _Context, known_classes: Iterable[str] | None,
    out_of_bounds: str, duplicates: str, allow_empty: bool,
) -> pd.DataFrame:
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
        canon = {str(c).lower(): str(c) for c in known_classes}
        fixed = []
        for name, prot, ln in zip(df[S.CLASS_NAME], df[S.IS_PROTEIN], line_arr, strict=True):
            hit = canon.get(name.lower())
            if hit is None and prot:
                shown = ", ".join(list(canon.values())[:8])
                raise InputError(f"unknown class {_show(name)} (known: {shown}"
                                 f"{', ...' if len(canon) > 8 else ''})", path=path,
                                 line=int(ln), field="class")
            fixed.append(name if hit is None else hit)
        df[S.CLASS_NAME] = fixed

    keep = np.ones(len(df), dtype=bool)
    if ctx.tomogram_shape is not None and out_of_bounds != "keep":
        xyz = df[[S.X, S.Y, S.Z]].to_numpy()
        for i, tomo in enumerate(df[S.TOMOGRAM]):
            shape = ctx.shape_for(tomo)
            if shape is None:
                continue
            bad = outside_tomogram(xyz[i][None], shape)[0]
            if bad.any():
                if out_of_bounds == "skip":
                    keep[i] = False
                    continue
                axis = "xyz"[int(np.argmax(bad))]
                scaled = ctx.coordinate_pixel_size_angstrom is not None
                hint = ("; " + COORDS_ANGPIX_HINT
                        if not scaled and overshoot(xyz[:, :2], shape) > OVERSHOOT_RATIO else "")
                raise InputError(
                    f"coordinate {axis}={xyz[i]['xyz'.index(axis)]:g} is outside tomogram "
                    f"{tomo!r} of size (z, y, x)={tuple(shape)}{hint}", path=path,
                    line=int(line_arr[i]), field=axis)
        if not keep.all():
            log.warning("%s: skipped %d particle(s) outside the tomogram", path,
                        int((~keep).sum()))
            df, line_arr = df[keep].reset_index(drop=True), line_arr[keep]

    if duplicates != "keep" and len(df):
        key = pd.DataFrame({
            "t": df[S.TOMOGRAM],
            **{a: np.round(df[a].to_numpy() * 1000.0).astype(np.int64) for a in S.COORDS},
        })
        dup = key.duplicated(keep="first").to_numpy()
        if dup.any():
            if duplicates == "error":
                i = int(np.argmax(dup))
                first = int(np.argmax((key == key.iloc[i]).all(axis=1).to_numpy()))
                raise InputError(
                    f"duplicated particle: same tomogram and coordinates as line "
                    f"{int(line_arr[first])} ({int(dup.sum())} duplicate(s) in all; "
                    "pass duplicates='drop' to keep the first)", path=path,
                    line=int(line_arr[i]), field="x,y,z")
            log.warning("%s: dropped %d duplicated particle(s)", path, int(dup.sum()))
            df, line_arr = df[~dup].reset_index(drop=True), line_arr[~dup]
    if len(df) == 0 and not allow_empty:
        raise InputError("no particles left in the table", path=path)
    return _complete(df, path)
