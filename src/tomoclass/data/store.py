"""The on-disk subtomogram dataset: one directory, memory-mappable arrays, a STAR table.

Layout (``docs/architecture.md``, format version 1)::

    <dataset>/
      subtomograms.npy   float32 (N, D, D, D), (z, y, x) boxes, memory-mapped on read
      clean.npy          optional, same shape: noise-free simulated boxes
      particles.star     one row per box: schema columns + class_id, split, index
      classes.yaml       ordered list of {name, size_group}
      dataset.yaml       box, voxel_size_angstrom, normalization, format_version, provenance

Why ``.npy``: it is one flat, C-ordered array that numpy memory-maps with no extra dependency,
any tool (numpy, MATLAB readers, ``np.load`` in a notebook) reads it, random access to one box
is a single contiguous read (D³·4 bytes), and a streaming writer can append boxes and fix the
header's row count at the end. Compression (HDF5/zarr) would save little on noisy float data and
would make every DataLoader worker decompress.

A dataset directory is written to a temporary name and renamed when complete, so a killed job
leaves no half-written dataset behind.
"""

from __future__ import annotations

import ast
import datetime as dt
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tomoclass.data.classmap import ClassMap
from tomoclass.data.extract import zscore_inplace
from tomoclass.data.finite import RECORD_KEY, bad_rows_of, make_record, nonfinite_rows
from tomoclass.data.polarity import DATA_POLARITIES
from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.atomic import atomic_dir
from tomoclass.io.particles import IMAGE_NAME, read_particles, write_particles
from tomoclass.io.volume import check_voxel_size, read_volume, write_volume

# the split rule is tomoclass.splits' (the simulator applies the same one)
from tomoclass.splits import assign_splits, tomogram_number  # noqa: F401

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
VOLUMES_FILE = "subtomograms.npy"
CLEAN_FILE = "clean.npy"
TABLE_FILE = "particles.star"
CLASSES_FILE = "classes.yaml"
META_FILE = "dataset.yaml"

CLASS_ID, SPLIT, INDEX = "class_id", "split", "index"

_NPY_HEADER_BYTES = 128  # fixed so the streaming writer can rewrite the row count in place


# ---------------------------------------------------------------------------------------------
# npy with a rewritable header


def _npy_header(shape: tuple[int, ...]) -> bytes:
    d = {"descr": "<f4", "fortran_order": False, "shape": tuple(int(s) for s in shape)}
    body = repr(d).encode("latin1")
    total = _NPY_HEADER_BYTES
    pad = total - 10 - len(body) - 1
    if pad < 0:
        raise InputError(f"array shape {shape} too long for the npy header")
    return b"\x93NUMPY\x01\x00" + np.uint16(total - 10).tobytes() + body + b" " * pad + b"\n"


class _NpyAppender:
    """Append float32 boxes to an .npy file; the header's row count is fixed on close."""

    def __init__(self, path: Path, box: int) -> None:
        self.path = path
        self.box = box
        self.n = 0
        self._fh = open(path, "wb")
        self._fh.write(_npy_header((0, box, box, box)))

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype="<f4")
        self._fh.write(arr.tobytes(order="C"))
        self.n += len(arr)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.seek(0)
        self._fh.write(_npy_header((self.n, self.box, self.box, self.box)))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()


# ---------------------------------------------------------------------------------------------
# writing


class DatasetWriter:
    """Write a dataset chunk by chunk, so memory stays at one chunk whatever the dataset size.

    Use as a context manager::

        with DatasetWriter(path, box=32, class_map=cm, voxel_size_angstrom=10.0) as w:
            for boxes, rows in chunks:
                w.append(boxes, rows)

    The directory appears at ``path`` only when the ``with`` block ends without an exception
    (an existing folder there is refused unless it is a previous dataset and overwriting is
    allowed, see :mod:`tomoclass.io.outputs`). Boxes holding NaN/inf are refused (naming the
    first row) unless ``record_nonfinite``; either way dataset.yaml records which rows have them
    (:mod:`tomoclass.data.finite`).

    Parameters
    ----------
    path
        Dataset directory.
    box
        Box edge ``D`` (voxels).
    class_map
        :class:`ClassMap`; every appended row's ``class_name`` must be in it.
    voxel_size_angstrom
        Voxel size of the boxes (Å).
    with_clean
        Whether ``clean`` boxes are appended too (``clean.npy``).
    normalization
        How the boxes were normalized (recorded in dataset.yaml), e.g. ``"zscore"``.
    provenance
        Free-form mapping recorded in dataset.yaml (source files, options, command line).
    polarity
        How particles look in the boxes, ``"dark"`` (tomoclass's convention: raw
        reconstructions, the simulator with its CTF), ``"bright"`` or ``"mixed"``; recorded
        in dataset.yaml and by training in the run, so that ``predict`` and ``locate`` can
        invert a tomogram of the other polarity (:mod:`tomoclass.data.polarity`).
    record_nonfinite
        Keep boxes holding NaN/inf (recorded as bad rows) instead of refusing them.
    """

    def __init__(self, path: str | os.PathLike[str], *, box: int, class_map: ClassMap,
                 voxel_size_angstrom: float, with_clean: bool = False,
                 normalization: str = "zscore", provenance: Mapping[str, Any] | None = None,
                 polarity: str = "dark", record_nonfinite: bool = False) -> None:
        self.record_nonfinite = record_nonfinite
        if not isinstance(box, (int, np.integer)) or box < 1:
            raise InputError(f"box must be a positive integer, not {box!r}", field="box")
        if len(class_map) == 0:
            raise InputError("the class map is empty", field="classes")
        self.path = Path(path)
        self.box = int(box)
        self.class_map = class_map
        self.voxel_size_angstrom = check_voxel_size(voxel_size_angstrom)
        self.with_clean = with_clean
        self.normalization = normalization
        if polarity not in DATA_POLARITIES:
            raise InputError(f"polarity must be one of {', '.join(DATA_POLARITIES)}, not "
                             f"{polarity!r}", field="polarity")
        self.polarity = polarity
        self.provenance = dict(provenance or {})
        self._tables: list[pd.DataFrame] = []
        self._ctx: Any = None
        self._vol: _NpyAppender | None = None
        self._clean: _NpyAppender | None = None
        self.n = 0
        self._bad: list[int] = []

    def __enter__(self) -> DatasetWriter:
        self._ctx = atomic_dir(self.path, kind="dataset")
        tmp = self._ctx.__enter__()
        self._tmp = Path(tmp)
        self._vol = _NpyAppender(self._tmp / VOLUMES_FILE, self.box)
        if self.with_clean:
            self._clean = _NpyAppender(self._tmp / CLEAN_FILE, self.box)
        return self

    def append(self, volumes: np.ndarray, table: pd.DataFrame,
               clean: np.ndarray | None = None) -> None:
        """Add ``len(table)`` boxes ``(n, D, D, D)`` and their rows (schema + optional split)."""
        if self._vol is None:
            raise RuntimeError("DatasetWriter.append outside its with-block")
        d = self.box
        if volumes.ndim != 4 or volumes.shape[1:] != (d, d, d):
            raise InputError(f"boxes have shape {volumes.shape}, expected (n, {d}, {d}, {d})",
                             field="volumes")
        if len(volumes) != len(table):
            raise InputError(f"{len(volumes)} boxes for {len(table)} table rows", field="volumes")
        if self.with_clean:
            if clean is None or clean.shape != volumes.shape:
                raise InputError("clean boxes missing or of another shape", field="clean")
        elif clean is not None:
            raise InputError("clean boxes given to a writer opened without with_clean=True",
                             field="clean")
        for col in S.COORDS + (S.CLASS_NAME,):
            if col not in table.columns:
                raise InputError("missing column in the dataset table", field=col)
        rows = table.reset_index(drop=True).copy()
        rows[CLASS_ID] = [self.class_map.index(str(c)) for c in rows[S.CLASS_NAME]]
        if SPLIT not in rows.columns:
            rows[SPLIT] = "train"
        bad = ~rows[SPLIT].isin(SPLITS)
        if bad.any():
            raise InputError(f"split {rows[SPLIT][bad].iloc[0]!r} is not one of {SPLITS}",
                             field=SPLIT)
        rows[INDEX] = np.arange(self.n, self.n + len(rows))
        bad = bad_rows_of(volumes)
        if len(bad) and not self.record_nonfinite:
            r = rows.iloc[int(bad[0])]
            raise InputError(f"{len(bad)} box(es) hold NaN/inf values, first of "
                             f"{r[S.TOMOGRAM]} at x {r[S.X]:g}, y {r[S.Y]:g}, z {r[S.Z]:g}",
                             path=self.path, field="volumes")
        self._bad.extend(int(self.n + i) for i in bad)
        self._vol.append(volumes)
        if self._clean is not None:
            self._clean.append(clean)  # type: ignore[arg-type]
        self._tables.append(rows)
        self.n += len(rows)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        try:
            if exc_type is None:
                if self.n == 0:
                    raise InputError("no subtomograms to write: the dataset would be empty",
                                     path=self.path)
                self._vol.close()  # type: ignore[union-attr]
                if self._clean is not None:
                    self._clean.close()
                self._finish()
            else:
                self._vol.abort()  # type: ignore[union-attr]
                if self._clean is not None:
                    self._clean.abort()
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        return self._ctx.__exit__(exc_type, exc, tb)

    def _finish(self) -> None:
        table = pd.concat(self._tables, ignore_index=True)
        write_particles(self._tmp / TABLE_FILE, table, format="star", class_map=self.class_map)
        with open(self._tmp / CLASSES_FILE, "w", encoding="utf-8") as fh:
            # the contract's layout: a bare ordered list of {name, size_group}
            yaml.safe_dump(self.class_map.to_dict()["classes"], fh, sort_keys=False)
        meta = {
            "format_version": FORMAT_VERSION,
            "n_subtomograms": int(self.n),
            "box": self.box,
            "voxel_size_angstrom": float(self.voxel_size_angstrom),
            "normalization": self.normalization,
            "polarity": self.polarity,
            "has_clean": bool(self.with_clean),
            "axis_order": "n, z, y, x",
            "dtype": "float32",
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "provenance": _plain(self.provenance),
            RECORD_KEY: make_record(self._tmp / VOLUMES_FILE, self._bad),
        }
        with open(self._tmp / META_FILE, "w", encoding="utf-8") as fh:
            yaml.safe_dump(meta, fh, sort_keys=False)


def _plain(obj: Any) -> Any:
    """Make ``obj`` YAML-safe (paths, tuples and numpy scalars to plain types)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_dataset(
    path: str | os.PathLike[str],
    volumes: np.ndarray,
    table: pd.DataFrame,
    class_map: ClassMap,
    voxel_size_angstrom: float,
    clean: np.ndarray | None = None,
    *,
    normalization: str = "zscore",
    provenance: Mapping[str, Any] | None = None,
    chunk: int = 1024,
    polarity: str = "dark",
) -> Path:
    """Write a whole dataset at once (see :class:`DatasetWriter` for streaming).

    Parameters
    ----------
    path
        Dataset directory (created atomically; an existing one is replaced when done).
    volumes
        ``(N, D, D, D)`` boxes (z, y, x); any float dtype, stored as float32.
    table
        ``N`` rows in the particle schema; ``split`` is kept if present (else all ``train``).
    class_map
        Names -> labels; ``class_id`` is computed from ``table.class_name``.
    voxel_size_angstrom
        Box voxel size (Å).
    clean
        Optional noise-free boxes of the same shape.
    normalization
        How the boxes were normalized (recorded in dataset.yaml).
    provenance
        Free-form mapping recorded in dataset.yaml.
    chunk
        Rows written per append.
    polarity
        How the particles look in the boxes, ``"dark"`` or ``"bright"`` (see
        :class:`DatasetWriter`).

    Returns
    -------
    Path
        ``path``.
    """
    volumes = np.asarray(volumes) if not isinstance(volumes, np.ndarray) else volumes
    if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1:
        raise InputError(f"volumes must be (N, D, D, D), got {volumes.shape}", field="volumes")
    if len(volumes) != len(table):
        raise InputError(f"{len(volumes)} boxes for {len(table)} table rows", field="volumes")
    table = table.reset_index(drop=True)
    with DatasetWriter(path, box=int(volumes.shape[1]), class_map=class_map,
                       voxel_size_angstrom=voxel_size_angstrom, with_clean=clean is not None,
                       normalization=normalization, provenance=provenance,
                       polarity=polarity) as w:
        for s in range(0, len(volumes), chunk):
            w.append(volumes[s:s + chunk], table.iloc[s:s + chunk],
                     None if clean is None else clean[s:s + chunk])
    return Path(path)


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class SubtomogramStore:
    """An opened dataset (see :func:`open_dataset`).

    Attributes
    ----------
    path
        The dataset directory.
    volumes
        Read-only memmap ``(N, D, D, D)`` float32, (z, y, x) boxes.
    clean
        Same for the noise-free boxes, or None.
    table
        ``N`` rows: schema columns + ``class_id``, ``split``, ``index``.
    class_map
        :class:`ClassMap`.
    voxel_size_angstrom
        Box voxel size (Å).
    box
        Box edge ``D``.
    meta
        The parsed dataset.yaml.
    """

    path: Path
    volumes: np.ndarray
    clean: np.ndarray | None
    table: pd.DataFrame
    class_map: ClassMap
    voxel_size_angstrom: float
    box: int
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.table)

    def split_indices(self, split: str | None) -> np.ndarray:
        """Rows (= array indices) of ``split`` (``None``: all)."""
        if split is None:
            return np.arange(len(self.table))
        if split not in SPLITS:
            raise InputError(f"split {split!r} is not one of {SPLITS}", field="split")
        return np.flatnonzero(self.table[SPLIT].to_numpy() == split)

    def summary(self) -> dict[str, Any]:
        """Counts per class and split, box, voxel size (what ``tomoclass dataset info`` shows)."""
        counts = (self.table.groupby([S.CLASS_NAME, SPLIT]).size().unstack(fill_value=0)
                  if len(self.table) else pd.DataFrame())
        per_class = {}
        for name, group in zip(self.class_map.names, self.class_map.size_groups, strict=True):
            row = {s: int(counts.loc[name, s]) if (name in counts.index and s in counts.columns)
                   else 0 for s in SPLITS}
            per_class[name] = {"size_group": group, **row, "total": sum(row.values())}
        per_split = {s: int((self.table[SPLIT] == s).sum()) for s in SPLITS}
        return {
            "path": str(self.path), "n_subtomograms": len(self.table), "box": self.box,
            "voxel_size_angstrom": self.voxel_size_angstrom,
            "normalization": self.meta.get("normalization", ""),
            "polarity": self.meta.get("polarity", "dark"),
            "has_clean": self.clean is not None,
            "tomograms": sorted(self.table[S.TOMOGRAM].astype(str).unique().tolist()),
            "per_split": per_split, "per_class": per_class,
            "nonfinite_rows": nonfinite_rows(self).tolist(),
        }


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"missing {what}", path=path) from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"unreadable {what} ({exc})", path=path) from None
    if arr.dtype != np.float32 or arr.ndim != 4 or len(set(arr.shape[1:])) != 1:
        raise InputError(f"{what} must be float32 (N, D, D, D), is {arr.dtype} {arr.shape}",
                         path=path)
    return arr


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise InputError("missing file", path=path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid YAML ({type(exc).__name__})", path=path) from None


def open_dataset(path: str | os.PathLike[str]) -> SubtomogramStore:
    """Open a dataset directory; the arrays are memory-mapped, nothing big is loaded.

    Raises
    ------
    InputError
        Not a dataset directory, missing or inconsistent files (row counts, box size, class ids
        outside the class map, unknown split names), unsupported format version.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError("not a dataset directory", path=path)
    meta = _load_yaml(path / META_FILE)
    if not isinstance(meta, Mapping):
        raise InputError("dataset.yaml is not a mapping", path=path / META_FILE)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"dataset format version {version!r} is not supported "
                         f"(this tomoclass reads {FORMAT_VERSION})", path=path / META_FILE,
                         field="format_version")
    class_map = ClassMap.from_dict(_load_yaml(path / CLASSES_FILE) or {})
    volumes = _load_npy(path / VOLUMES_FILE, "subtomogram array")
    clean = _load_npy(path / CLEAN_FILE, "clean array") if (path / CLEAN_FILE).exists() else None
    table = read_particles(path / TABLE_FILE, format="star", duplicates="keep",
                           allow_empty=True)
    star = path / TABLE_FILE
    for col in (CLASS_ID, SPLIT, INDEX):
        if col not in table.columns:
            raise InputError("missing column", path=star, field=f"tomoclass_{col}")
    n = len(volumes)
    if len(table) != n:
        raise InputError(f"{len(table)} table rows for {n} subtomograms", path=star)
    if clean is not None and clean.shape != volumes.shape:
        raise InputError(f"clean.npy shape {clean.shape} differs from {volumes.shape}",
                         path=path / CLEAN_FILE)
    ids = table[CLASS_ID].to_numpy()
    if n and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0
              or ids.max() >= len(class_map)):
        raise InputError(f"class ids outside 0..{len(class_map) - 1}", path=star,
                         field="tomoclass_class_id")
    if not np.array_equal(table[INDEX].to_numpy(), np.arange(n)):
        raise InputError("index column is not 0..N-1 in order", path=star,
                         field="tomoclass_index")
    bad = ~table[SPLIT].isin(SPLITS)
    if bad.any():
        raise InputError(f"unknown split {table[SPLIT][bad].iloc[0]!r}", path=star,
                         field="tomoclass_split")
    names = np.asarray(class_map.names, dtype=object)[ids] if n else np.array([])
    if n and not np.array_equal(names.astype(str), table[S.CLASS_NAME].astype(str).to_numpy()):
        i = int(np.argmax(names.astype(str) != table[S.CLASS_NAME].astype(str).to_numpy()))
        raise InputError(f"row {i}: class_id {ids[i]} is {names[i]!r} in classes.yaml but the "
                         f"row says {table[S.CLASS_NAME][i]!r}", path=star)
    box = int(meta.get("box", volumes.shape[1]))
    if box != volumes.shape[1]:
        raise InputError(f"dataset.yaml says box {box}, the array has {volumes.shape[1]}",
                         path=path / META_FILE, field="box")
    vs = check_voxel_size(meta.get("voxel_size_angstrom"), path=path / META_FILE)
    return SubtomogramStore(path=path, volumes=volumes, clean=clean, table=table,
                            class_map=class_map, voxel_size_angstrom=vs, box=box, meta=dict(meta))


def set_splits(path: str | os.PathLike[str], split: np.ndarray) -> None:
    """Replace a dataset's ``split`` column (atomically rewrites particles.star)."""
    store = open_dataset(path)
    split = np.asarray(split).astype(str)
    if split.shape != (len(store),):
        raise InputError(f"{len(split)} splits for {len(store)} rows", field="split")
    table = store.table.copy()
    table[SPLIT] = split
    write_particles(Path(path) / TABLE_FILE, table, format="star", class_map=store.class_map)


# ---------------------------------------------------------------------------------------------
# RELION / Warp layout: one MRC per subtomogram + a STAR file


def import_subtomograms(
    star: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | str | None = None,
    class_map: ClassMap | None = None,
    root: str | os.PathLike[str] | None = None,
    voxel_size_angstrom: float | None = None,
    normalize: str = "zscore",
    split_method: str = "tomogram",
    split_options: Mapping[str, Any] | None = None,
    chunk: int = 256,
    polarity: str = "dark",
    class_column: str | None = None,
    class_from_filename: bool | str = False,
) -> Path:
    """Build a dataset from a folder of subtomogram MRCs listed in a STAR file.

    Parameters
    ----------
    star
        STAR with ``rlnImageName`` (path of each subtomogram MRC, relative to ``root``) and a
        class (``class_column``, else ``tomoclassClassName``, else ``rlnClassNumber`` named
        through ``class_names`` or kept as written); coordinates are not needed
        (:func:`tomoclass.io.stacks.read_image_table`).
    out
        Dataset directory to write.
    class_names
        Names for ``rlnClassNumber`` (1-based), or ``"shrec19"``.
    class_map
        Class order of the dataset (default: sorted class names, paper size groups).
    root
        Directory the image paths are relative to. Default: the STAR file's directory, then
        its parents (RELION writes paths relative to the project directory).
    voxel_size_angstrom
        Override for the subtomograms' header voxel size (Å).
    normalize
        ``"zscore"`` (each box) or ``"none"``.
    split_method, split_options
        Passed to :func:`assign_splits` when the STAR has no ``tomoclass_split`` column.
    chunk
        Subtomograms held in memory at a time.
    polarity
        How the particles look in the subtomograms: ``"dark"`` (as reconstructed, RELION's and
        Warp's default) or ``"bright"`` (contrast inverted); stored as they are and recorded
        (see :class:`DatasetWriter`).
    class_column, class_from_filename
        Where the class is: a column of the STAR (e.g. ``rlnParticleName``; its values are the
        class names) or the file name (one STAR per class).

    Raises
    ------
    InputError
        Missing rlnImageName, unreadable/missing subtomograms, boxes of different sizes or voxel
        sizes, ``N@stack`` 2D-stack names (RELION 5 2D stacks are not subtomograms).
    """
    from tomoclass.io.stacks import read_image_table

    star = Path(star)
    table = read_image_table(star, class_column=class_column, class_names=class_names,
                             class_from_filename=class_from_filename)
    has_coordinates = bool(table.attrs.get("coordinates", True))
    if IMAGE_NAME not in table.columns:
        raise InputError("missing column: the subtomogram paths", path=star, field="rlnImageName")
    table = table[table[S.IS_PROTEIN]].reset_index(drop=True)
    if class_map is None:
        class_map = ClassMap.from_names(sorted(n for n in table[S.CLASS_NAME].unique()))
    if (table[S.CLASS_NAME] == "").any():
        raise InputError("a row has no class (tomoclassClassName / rlnClassNumber; name the "
                         "column with --class-column)", path=star,
                         field=class_column or "rlnClassNumber")
    roots = [Path(root)] if root is not None else [star.parent, *list(star.parent.parents)[:3]]

    def locate(name: str) -> Path:
        if "@" in name:
            raise InputError(f"{name!r} is an image in a 2D stack, not a subtomogram MRC",
                             path=star, field="rlnImageName")
        p = Path(name)
        if p.is_absolute():
            return p
        for r in roots:
            if (r / p).is_file():
                return r / p
        raise InputError(f"subtomogram {name!r} not found under {roots[0]}", path=star,
                         field="rlnImageName")

    if SPLIT not in table.columns:
        table[SPLIT] = assign_splits(table, split_method, **dict(split_options or {}))
    first = read_volume(locate(str(table[IMAGE_NAME][0])), voxel_size_angstrom)
    box = first.shape[0]
    vs = first.voxel_size_angstrom
    with DatasetWriter(out, box=box, class_map=class_map, voxel_size_angstrom=vs,
                       normalization=normalize, polarity=polarity,
                       provenance={"imported_from": str(star.resolve()),
                                   "coordinates": has_coordinates}) as w:
        for s in range(0, len(table), chunk):
            part = table.iloc[s:s + chunk]
            boxes = np.empty((len(part), box, box, box), dtype=np.float32)
            for j, name in enumerate(part[IMAGE_NAME].astype(str)):
                p = locate(name)
                v = read_volume(p, voxel_size_angstrom)
                if v.shape != (box, box, box):
                    raise InputError(f"subtomogram has shape {v.shape}, the first one "
                                     f"{(box, box, box)}", path=p)
                if abs(v.voxel_size_angstrom / vs - 1) > 1e-3:
                    raise InputError(f"voxel size {v.voxel_size_angstrom:g} Å differs from the "
                                     f"first subtomogram's {vs:g} Å", path=p)
                boxes[j] = v.data
            if normalize == "zscore":
                zscore_inplace(boxes)
            w.append(boxes, part)
    return Path(out)


def export_subtomograms(store: SubtomogramStore | str | os.PathLike[str],
                        out: str | os.PathLike[str], *, clean: bool = False) -> Path:
    """Write a dataset as one MRC per subtomogram plus ``particles.star`` (RELION/Warp layout).

    Files: ``<out>/Subtomograms/<tomogram>/<index:06d>.mrc`` and ``<out>/particles.star`` with an
    optics block (``rlnImagePixelSize``, ``rlnImageSize``, ``rlnImageDimensionality`` 3), image
    paths relative to ``out``, ``rlnClassNumber`` (1-based) and ``tomoclassClassName``. With
    ``clean`` the noise-free boxes are exported instead. The directory appears when complete.
    """
    if not isinstance(store, SubtomogramStore):
        store = open_dataset(store)
    arr = store.clean if clean else store.volumes
    if arr is None:
        raise InputError("the dataset has no clean subtomograms", path=store.path, field="clean")
    out = Path(out)
    table = store.table.copy()
    names = []
    with atomic_dir(out, kind="subtomogram-export") as tmp:
        for i, tomo in enumerate(table[S.TOMOGRAM].astype(str)):
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", tomo) or "tomogram"
            rel = Path("Subtomograms") / safe / f"{i:06d}.mrc"
            write_volume(Path(tmp) / rel, np.asarray(arr[i]), store.voxel_size_angstrom)
            names.append(rel.as_posix())
        table[IMAGE_NAME] = names
        write_particles(Path(tmp) / "particles.star", table, format="star",
                        class_map=store.class_map,
                        optics={"rlnOpticsGroup": 1, "rlnOpticsGroupName": "opticsGroup1",
                                "rlnImagePixelSize": float(store.voxel_size_angstrom),
                                "rlnImageSize": int(store.box), "rlnImageDimensionality": 3})
    return out


def parse_list(text: str) -> list[str]:
    """Split a CLI list (``"0,1,2"`` or ``"[0, 1]"``) into strings."""
    text = text.strip()
    if text.startswith("["):
        try:
            return [str(v) for v in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            raise InputError(f"cannot parse list {text!r}") from None
    return [t.strip() for t in text.split(",") if t.strip()]
