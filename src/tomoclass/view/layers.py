"""napari layer data built from tomoclass outputs, without importing napari.

:func:`build_layers` returns napari *LayerDataTuples* ``(data, kwargs, layer_type)``, the form a
napari reader plugin returns and ``napari.layers.Layer.create(*tuple)`` turns into a layer:

- the tomogram as an ``"image"`` layer (grey, contrast from the 1st-99th percentile of up to 16
  sections);
- one ``"points"`` layer per class of each picks table (``locate``/``predict`` output or any
  table :func:`tomoclass.io.read_particles` reads), coloured by class (a fixed palette over the
  sorted class names), each point's opacity its score (0.3 at score 0 to 1 at 1; 1 without
  scores), with ``score`` and ``class_name`` as point features;
- each score map (``locate --score-maps DIR``: one MRC per class and ``objectness.mrc``) and CAM
  volume (``cam --mrc-dir``) as an additive ``"image"`` layer over the tomogram.

Every layer has ``scale`` = its voxel size in Å, so napari's world coordinates are Å and
tomograms, picks and maps at different voxel sizes line up. Points are ``(z, y, x)`` voxels,
napari's axis order for a (z, y, x) array.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import read_particles, read_volume, tomogram_name
from tomoclass.io import schema as S

#: Class colours (matplotlib's tab10), assigned over the sorted class names.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: Opacity of a point of score 0 (score 1 is opaque).
MIN_ALPHA = 0.3
#: Point diameter in voxels when no radius is given.
DEFAULT_POINT_SIZE = 10.0

LayerData = tuple[Any, dict[str, Any], str]


def class_colors(names: Sequence[str]) -> dict[str, str]:
    """Class name -> hex colour, by position in the sorted names (cycles after 10)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(set(map(str, names))))}


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])


def tomogram_layer(path: str | os.PathLike[str],
                   voxel_size_angstrom: float | None = None) -> LayerData:
    """The tomogram (MRC, memory-mapped, or OME-Zarr) as a grey image layer."""
    vol = read_volume(path, voxel_size_angstrom, check="none")
    z = vol.shape[0]
    idx = np.unique(np.linspace(0, z - 1, min(16, z)).astype(int))
    lo, hi = np.percentile(np.asarray(vol.data[idx], dtype=np.float32), [1, 99])
    if not hi > lo:
        hi = lo + 1.0
    return (vol.data, {"name": tomogram_name(path), "scale": (vol.voxel_size_angstrom,) * 3,
                       "colormap": "gray", "contrast_limits": (float(lo), float(hi)),
                       "metadata": {"path": str(path),
                                    "voxel_size_angstrom": vol.voxel_size_angstrom}}, "image")


def points_layers(table: pd.DataFrame, voxel_size_angstrom: float, *,
                  colors: dict[str, str] | None = None,
                  radii: dict[str, float] | None = None, min_score: float | None = None,
                  include_background: bool = False, prefix: str = "") -> list[LayerData]:
    """One points layer per class of a particle table (coordinates in voxels).

    Parameters
    ----------
    table
        Schema table (:mod:`tomoclass.io.schema`); ``score`` optional.
    voxel_size_angstrom
        Voxel size of the coordinates (the layer ``scale``).
    colors
        Class -> hex colour (default :func:`class_colors` of the table's classes).
    radii
        Class -> radius in voxels (point diameter 2 r); default :data:`DEFAULT_POINT_SIZE`.
    min_score
        Leave out points scoring below this.
    include_background
        Keep ``background`` / non-protein rows (default: left out).
    prefix
        Put before each layer name (the table's name when several are shown).
    """
    rows = table
    if not include_background:
        rows = rows[rows[S.CLASS_NAME].astype(str) != S.BACKGROUND]
        if S.IS_PROTEIN in rows:
            rows = rows[rows[S.IS_PROTEIN].fillna(True).astype(bool)]
    scores = (rows[S.SCORE].to_numpy(float) if S.SCORE in rows
              else np.full(len(rows), np.nan))
    if min_score is not None:
        keep = ~(scores < min_score)
        rows, scores = rows[keep], scores[keep]
    names = rows[S.CLASS_NAME].astype(str).to_numpy()
    colors = colors or class_colors(names)
    layers = []
    for name in sorted(set(names)):
        sel = names == name
        score = scores[sel]
        alpha = np.where(np.isfinite(score),
                         MIN_ALPHA + (1 - MIN_ALPHA) * np.clip(score, 0, 1), 1.0)
        color = colors.get(name, PALETTE[len(colors) % len(PALETTE)])
        face = np.column_stack([np.tile(_rgb(color), (sel.sum(), 1)), alpha])
        zyx = rows.loc[sel, [S.Z, S.Y, S.X]].to_numpy(float)
        size = 2.0 * radii[name] if radii and name in radii else DEFAULT_POINT_SIZE
        label = name or "(no class)"
        layers.append((zyx, {
            "name": f"{prefix}{label} ({sel.sum()})", "scale": (voxel_size_angstrom,) * 3,
            "face_color": face, "size": size, "symbol": "ring",
            "features": pd.DataFrame({"class_name": [label] * int(sel.sum()), "score": score}),
            "metadata": {"class_name": label, "color": color},
        }, "points"))
    return layers


def volume_layers(paths: Sequence[str | os.PathLike[str]], *, kind: str,
                  colormap: str = "inferno") -> list[LayerData]:
    """MRC maps (files, or folders of ``*.mrc``) as additive image layers named by file."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.mrc"))
            if not found:
                raise InputError(f"no .mrc {kind} in this folder", path=p)
            files += found
        else:
            files.append(p)
    layers = []
    for f in files:
        vol = read_volume(f, check="none")
        is_prob = kind == "score map"
        layers.append((vol.data, {
            "name": f"{kind}: {f.stem}",
            "scale": (vol.voxel_size_angstrom,) * 3, "colormap": colormap,
            "blending": "additive", "opacity": 0.6,
            "visible": (f.stem == "objectness") if is_prob else True,
            **({"contrast_limits": (0.0, 1.0)} if is_prob else {}),
            "metadata": {"path": str(f), "kind": kind},
        }, "image"))
    return layers


def build_layers(
    tomogram: str | os.PathLike[str] | None = None,
    picks: Sequence[str | os.PathLike[str] | pd.DataFrame] = (),
    score_maps: Sequence[str | os.PathLike[str]] = (),
    cam_volumes: Sequence[str | os.PathLike[str]] = (),
    *,
    voxel_size_angstrom: float | None = None,
    table_format: str = "auto",
    radii: dict[str, float] | None = None,
    min_score: float | None = None,
    include_background: bool = False,
) -> list[LayerData]:
    """Napari layer data for a tomogram, its picks, score maps and CAM volumes.

    Parameters
    ----------
    tomogram
        MRC or OME-Zarr tomogram (first layer); its voxel size places the picks, and with
        several tomograms in a table only its rows are shown.
    picks
        Picks tables (paths, read with :func:`tomoclass.io.read_particles`, or DataFrames).
    score_maps, cam_volumes
        MRC files or folders of them.
    voxel_size_angstrom
        Override of the tomogram header; needed for picks without a tomogram.
    table_format
        Format of the tables (default: by suffix).
    radii, min_score, include_background
        As :func:`points_layers`.

    Returns
    -------
    list
        LayerDataTuples ``(data, kwargs, layer_type)``: image, points per class, then maps.

    Raises
    ------
    InputError
        Unreadable inputs, picks without a voxel size, or a table with no rows of the tomogram.
    """
    layers: list[LayerData] = []
    name = None
    vs = voxel_size_angstrom
    if tomogram is not None:
        layers.append(tomogram_layer(tomogram, voxel_size_angstrom))
        vs = layers[0][1]["scale"][0]
        name = tomogram_name(tomogram)
    tables = []
    for item in picks:
        if isinstance(item, pd.DataFrame):
            tables.append(("", None, item))
            continue
        if vs is None:
            raise InputError("picks need the tomogram's voxel size: give the tomogram or "
                             "--voxel-size", path=item, field="voxel_size")
        table = read_particles(item, table_format, voxel_size_angstrom=vs,
                               out_of_bounds="keep", duplicates="keep", allow_empty=True)
        tables.append((f"{Path(item).stem}: " if len(picks) > 1 else "", item, table))
    if tables and vs is None:
        raise InputError("picks need the tomogram's voxel size: give the tomogram or "
                         "--voxel-size", field="voxel_size")
    colors = class_colors(np.concatenate(
        [t[S.CLASS_NAME].astype(str).to_numpy() for *_, t in tables] or [np.array([], str)]))
    for prefix, path, table in tables:
        if name is not None and S.TOMOGRAM in table and table[S.TOMOGRAM].nunique() > 1:
            table = table[table[S.TOMOGRAM].astype(str) == name]
            if table.empty:
                raise InputError(f"no picks of tomogram {name!r} in this table",
                                 path=path, field="tomogram")
        layers += points_layers(table, vs, colors=colors, radii=radii, min_score=min_score,
                                include_background=include_background, prefix=prefix)
    layers += volume_layers(score_maps, kind="score map")
    layers += volume_layers(cam_volumes, kind="CAM", colormap="magma")
    return layers
