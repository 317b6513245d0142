"""OME-Zarr tomograms (the CZ cryoET Data Portal's and copick's format), read with ``ome-zarr``.

An OME-Zarr tomogram is a folder (``TS_01.zarr``) holding a multiscale pyramid: arrays ``0``,
``1``, ... with the voxel size of each level in the ``multiscales`` metadata
(``coordinateTransformations`` ``scale``, in the unit of the spatial axes). tomoclass reads such a
folder wherever it reads an MRC file (:func:`tomoclass.io.read_volume` hands it here):

- ``TS_01.zarr`` reads the finest level (``0``);
- ``TS_01.zarr/1`` (the path of a level's array inside the group) reads that level, at that
  level's voxel size.

The data are read into memory (Zarr chunks are compressed; there is no memory map). Needs the
optional extra ``tomoclass[zarr]`` (``ome-zarr``, ``zarr``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from tomoclass.errors import InputError

#: Å per unit of the OME-NGFF spatial axis units tomograms use (the Portal writes ``angstrom``).
UNIT_ANGSTROM = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7,
                 "meter": 1e10, "picometer": 0.01}

_COPICK_SPACING_PREFIX = "VoxelSpacing"


def _attrs(folder: Path) -> dict:
    """The Zarr v2 ``.zattrs`` (or v3 ``zarr.json`` attributes) of a folder, or ``{}``."""
    for name in (".zattrs", "zarr.json"):
        f = folder / name
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except (OSError, ValueError):
                return {}
            return meta.get("attributes", meta) if name == "zarr.json" else meta
    return {}


def _split(path: Path) -> tuple[Path, str | None]:
    """``(group folder, level or None)``: ``X.zarr/1`` -> ``(X.zarr, "1")``."""
    if "multiscales" in _attrs(path) or "ome" in _attrs(path):
        return path, None
    if "multiscales" in _attrs(path.parent) or "ome" in _attrs(path.parent):
        return path.parent, path.name
    return path, None


def is_omezarr(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is an OME-Zarr multiscale group or one level's array inside one."""
    p = Path(path)
    if not p.is_dir():
        return False
    group, _ = _split(p)
    attrs = _attrs(group)
    return "multiscales" in attrs or "multiscales" in attrs.get("ome", {})


def zarr_tomogram_name(path: str | os.PathLike[str]) -> str | None:
    """The tomogram a Zarr path names, or None if no part of it ends in ``.zarr``.

    ``TS_01.zarr`` and ``TS_01.zarr/1`` -> ``TS_01``; a copick tomogram
    (``ExperimentRuns/TS_01/VoxelSpacing10.000/wbp.zarr``) is named by its run (``TS_01``),
    since its file name is the reconstruction type. Needs no file system access.
    """
    parts = Path(path).parts
    idx = [i for i, part in enumerate(parts) if part.lower().endswith(".zarr") and len(part) > 5]
    if not idx:
        return None
    i = idx[-1]
    if i >= 2 and parts[i - 1].startswith(_COPICK_SPACING_PREFIX):
        return parts[i - 2]
    return parts[i][:-5]


def _level_scale(transforms: list[dict], path: Path) -> float:
    """Isotropic spatial scale of one level (product of its ``scale`` transforms)."""
    scale = None
    for t in transforms or []:
        if t.get("type") == "scale":
            s = np.asarray(t.get("scale", []), dtype=float)[-3:]
            scale = s if scale is None else scale * s
    if scale is None or scale.size != 3:
        raise InputError("no 3D scale in the multiscales coordinateTransformations", path=path,
                         field="multiscales.coordinateTransformations")
    if np.max(scale) - np.min(scale) > 1e-3 * np.max(scale):
        raise InputError(f"anisotropic scale {tuple(float(v) for v in scale)} (z, y, x); give the "
                         "isotropic voxel size with --voxel-size", path=path,
                         field="multiscales.coordinateTransformations")
    return float(scale[0])


def read_omezarr(
    path: str | os.PathLike[str],
    voxel_size_angstrom: float | None = None,
    *,
    level: int | str | None = None,
    check: str = "auto",
):
    """Read one level of an OME-Zarr tomogram into a :class:`tomoclass.io.Volume`.

    Parameters
    ----------
    path
        The ``.zarr`` group, or one level's array inside it (``TS_01.zarr/1``).
    voxel_size_angstrom
        Override for wrong metadata (Å); default: the level's ``scale`` converted to Å from the
        axes' ``unit`` (no unit is taken as Å, as copick and the Portal write).
    level
        Pyramid level (dataset index or path); default the one in ``path``, else ``0``.
    check
        As :func:`tomoclass.io.read_volume` (``"none"`` skips the NaN/constant check).

    Returns
    -------
    Volume
        ``data`` (z, y, x) in memory, ``voxel_size_angstrom``, ``path`` as given.

    Raises
    ------
    InputError
        Not an OME-Zarr group, an unknown level, not 3 spatial axes, an unknown unit, an
        anisotropic or implausible voxel size, or NaN/constant data.
    """
    from tomoclass.io.volume import Volume, check_values, check_voxel_size

    try:
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader
    except ImportError:
        raise InputError("reading OME-Zarr needs the ome-zarr package: pip install "
                         "'tomoclass[zarr]'", path=path) from None
    logging.getLogger("ome_zarr").setLevel(logging.WARNING)  # it logs every level it opens
    given = Path(path)
    group, in_path = _split(given)
    location = parse_url(str(group))
    nodes = list(Reader(location)()) if location is not None else []
    node = next((n for n in nodes if n.metadata.get("coordinateTransformations")), None)
    if node is None:
        raise InputError("not an OME-Zarr image (no multiscales metadata)", path=given,
                         field="multiscales")
    paths = _dataset_paths(group)
    want = level if level is not None else (in_path if in_path is not None else 0)
    try:
        index = paths.index(str(want)) if str(want) in paths else int(want)
        if not 0 <= index < len(node.data):
            raise ValueError
    except ValueError:
        raise InputError(f"no pyramid level {want!r}; the levels are {', '.join(paths)}",
                         path=given, field="multiscales.datasets") from None
    axes = node.metadata.get("axes") or []
    space = [a for a in axes if isinstance(a, dict) and a.get("type") == "space"]
    data = node.data[index]
    if data.ndim != 3 or (axes and len(space) != 3):
        raise InputError(f"expected 3 spatial axes (z, y, x), got shape {tuple(data.shape)}",
                         path=given, field="multiscales.axes")
    if voxel_size_angstrom is None:
        unit = str((space[0].get("unit") if space else None) or "angstrom").lower()
        if unit not in UNIT_ANGSTROM:
            raise InputError(f"unknown axis unit {unit!r} (known: {', '.join(UNIT_ANGSTROM)})",
                             path=given, field="multiscales.axes.unit")
        scale = _level_scale(node.metadata["coordinateTransformations"][index], given)
        voxel = check_voxel_size(scale * UNIT_ANGSTROM[unit], path=given,
                                 field="multiscales.coordinateTransformations")
    else:
        voxel = check_voxel_size(voxel_size_angstrom, path=given)
    array = np.asarray(data.compute())
    if check != "none":
        check_values(array, given, check)
    return Volume(data=array, voxel_size_angstrom=voxel, path=given)


def _dataset_paths(group: Path) -> list[str]:
    """The ``path`` of each multiscales dataset (level) of a group, finest first."""
    attrs = _attrs(group)
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or [{}]
    return [str(d.get("path")) for d in ms[0].get("datasets", [])]
