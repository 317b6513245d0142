"""Tomogram files + particle-table files -> a dataset: what ``tomoclass extract`` does, for callers.

:func:`tomoclass.data.build.extract_dataset` takes one table already read; this reads the
tables the way ``extract`` does (each tomogram's size and voxel size given to the reader, so
that RELION 5 centred coordinates and coordinates in another pixel size come out in voxels;
bounds left to extraction, which skips and counts the rows outside) and builds the split
options from plain arguments, so that a script needs no command-line glue.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tomoclass.data.build import ExtractReport, extract_dataset
from tomoclass.data.classmap import ClassMap
from tomoclass.errors import InputError
from tomoclass.io.naming import tomogram_name
from tomoclass.io.particles import read_particles
from tomoclass.io.tomonames import split_table_spec
from tomoclass.io.volume import read_volume

#: A particle table: a path, ``"TABLE=TOMOGRAM"`` (every row gets that tomogram's name), or
#: ``(path, tomogram name or None)``.
TableSpec = str | os.PathLike[str] | tuple[str | os.PathLike[str], str | None]

#: The option that overrides tomogram headers in ``extract``, named in voxel-size errors.
_OVERRIDE = "--tomogram-voxel-size"


def split_options(method: str = "tomogram", *, seed: int = 0, val_fraction: float = 0.0,
                  test_fraction: float = 0.1, test_tomograms: Iterable[str] = ("9",),
                  val_tomograms: Iterable[str] = ()) -> dict[str, Any]:
    """Keyword arguments of :func:`tomoclass.splits.assign_splits` for ``method``.

    Parameters
    ----------
    method
        ``"tomogram"`` (whole tomograms go to test/val: ``test_tomograms``, ``val_tomograms``,
        names or numbers; SHREC's test tomogram is 9) or ``"stratified"`` (by class:
        ``test_fraction``).
    seed, val_fraction
        For both methods.
    test_fraction
        Stratified only.
    test_tomograms, val_tomograms
        By tomogram only.

    Returns
    -------
    dict
        The options, as ``extract_dataset(split_options=...)`` takes them.
    """
    options: dict[str, Any] = {"seed": seed, "val_fraction": val_fraction}
    if method == "tomogram":
        options.update(test_tomograms=[str(t) for t in test_tomograms],
                       val_tomograms=[str(t) for t in val_tomograms])
    else:
        options["test_fraction"] = test_fraction
    return options


def read_tables_for(
    tomograms: Sequence[str | os.PathLike[str]],
    tables: Sequence[TableSpec],
    *,
    table_format: str = "auto",
    class_names: Sequence[str] | str | None = None,
    classes: Sequence[str] | None = None,
    class_column: str | None = None,
    class_from_filename: bool | str = False,
    coordinate_pixel_size_angstrom: float | None = None,
    tomogram_voxel_size_angstrom: float | None = None,
    drop_duplicates: bool = False,
) -> pd.DataFrame:
    """Read particle tables against the tomograms they belong to, as ``extract`` does.

    The tomograms' headers give the sizes and voxel size RELION 5 centred coordinates (and
    ``coordinate_pixel_size_angstrom``) need; bounds are not checked here (extraction skips
    and counts the particles outside). The other arguments are
    :func:`tomoclass.io.read_particles`'s (``classes`` is its ``known_classes``).

    Returns
    -------
    pandas.DataFrame
        The tables concatenated, in the schema.
    """
    vols = [read_volume(t, tomogram_voxel_size_angstrom, check="none",
                        override_option=_OVERRIDE) for t in tomograms]
    shapes = {tomogram_name(v.path): v.shape for v in vols}
    shape_opt = vols[0].shape if len(vols) == 1 else shapes
    read = [read_particles(path, table_format, class_names=class_names, tomogram=tomo,
                           known_classes=classes, tomogram_shape=shape_opt,
                           voxel_size_angstrom=vols[0].voxel_size_angstrom,
                           coordinate_pixel_size_angstrom=coordinate_pixel_size_angstrom,
                           out_of_bounds="keep", class_column=class_column,
                           class_from_filename=class_from_filename,
                           duplicates="drop" if drop_duplicates else "error")
            for path, tomo in map(_table_spec, tables)]
    return pd.concat(read, ignore_index=True) if read else pd.DataFrame()


def extract_from_files(
    out: str | os.PathLike[str],
    tomograms: Sequence[str | os.PathLike[str]],
    tables: Sequence[TableSpec],
    *,
    extra_table: pd.DataFrame | None = None,
    table_format: str = "auto",
    class_names: Sequence[str] | str | None = None,
    classes: Sequence[str] | None = None,
    class_column: str | None = None,
    class_from_filename: bool | str = False,
    coordinate_pixel_size_angstrom: float | None = None,
    tomogram_voxel_size_angstrom: float | None = None,
    drop_duplicates: bool = False,
    split_method: str = "tomogram",
    split: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    **options: Any,
) -> ExtractReport:
    """Extract the particles of table files from tomogram files into a new dataset directory.

    Parameters
    ----------
    out
        Dataset directory (written atomically).
    tomograms
        Tomogram files (MRC or OME-Zarr); rows are matched by tomogram name.
    tables
        Particle tables (:data:`TableSpec`), read by :func:`read_tables_for`.
    extra_table
        Rows read elsewhere (e.g. a copick project's picks), appended to the tables'.
    table_format, class_names, class_column, class_from_filename
        :func:`tomoclass.io.read_particles`'s ``format``, ``class_names``, ``class_column``,
        ``class_from_filename``.
    classes
        The dataset's class order; every protein row's class must be one of them. Default:
        sorted names.
    coordinate_pixel_size_angstrom
        Pixel size (Å) of the tables' coordinates when it is not the tomograms' voxel size.
    tomogram_voxel_size_angstrom
        Override for wrong tomogram headers (Å).
    drop_duplicates
        Keep the first of duplicated particles instead of raising.
    split_method, split
        How rows are split: the method and :func:`split_options`'s keyword arguments.
    provenance
        Extra entries for dataset.yaml's provenance (``tables`` is added).
    **options
        Any other keyword of :func:`tomoclass.data.build.extract_dataset` (``box``,
        ``voxel_size_angstrom``, ``border``, ``background``, ``polarity``, ...).

    Returns
    -------
    ExtractReport
        As :func:`tomoclass.data.build.extract_dataset`.

    Raises
    ------
    InputError
        No tables, a bad table or volume, or what ``extract_dataset`` refuses.
    """
    if not tables and extra_table is None:
        raise InputError("no particle tables given", field="tables")
    read = (read_tables_for(tomograms, tables, table_format=table_format,
                            class_names=class_names, classes=classes, class_column=class_column,
                            class_from_filename=class_from_filename,
                            coordinate_pixel_size_angstrom=coordinate_pixel_size_angstrom,
                            tomogram_voxel_size_angstrom=tomogram_voxel_size_angstrom,
                            drop_duplicates=drop_duplicates)
            if tables else None)
    table = pd.concat([t for t in (read, extra_table) if t is not None], ignore_index=True)
    return extract_dataset(
        out, tomograms, table, tomogram_voxel_size_angstrom=tomogram_voxel_size_angstrom,
        class_map=ClassMap.from_names(list(classes)) if classes else None,
        split_method=split_method, split_options=split_options(split_method, **dict(split or {})),
        provenance={"tables": [_spec_text(t) for t in tables], **dict(provenance or {})},
        **options)


def _table_spec(spec: TableSpec) -> tuple[Path, str | None]:
    """(path, tomogram name or None) of a :data:`TableSpec`."""
    if isinstance(spec, tuple):
        return Path(spec[0]), spec[1]
    return split_table_spec(spec)


def _spec_text(spec: TableSpec) -> str:
    """A :data:`TableSpec` as written on a command line (dataset provenance)."""
    if isinstance(spec, tuple):
        return str(spec[0]) if spec[1] is None else f"{spec[0]}={spec[1]}"
    return str(spec)
