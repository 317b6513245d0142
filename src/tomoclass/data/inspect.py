"""What tomoclass makes of a user's tomogram or particle table, before anything is run on it.

``tomoclass inspect`` prints it: the checks that otherwise surface mid-run (or never) on data
tomoclass has not seen, from other pipelines and simulators: the voxel size and axis order the
header gives, the contrast polarity (:mod:`tomoclass.data.polarity`), a beam axis along y,
the table format detected, its tomograms and classes, and whether its coordinates fit the
tomograms at all (coordinates several times too large are usually in unbinned tilt-series
pixels: ``--coords-angpix``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.data.polarity import measure_polarity
from tomoclass.errors import InputError
from tomoclass.io import read_particles, read_volume, table_format, tomogram_name
from tomoclass.io import schema as S
from tomoclass.io.bounds import OVERSHOOT_RATIO, outside_tomogram, overshoot
from tomoclass.io.volume import beam_along_y

#: Share of a tomogram's particles outside it above which the table is flagged.
OUTSIDE_FLAG = 0.5


#: Largest tilt-series binning a --coords-angpix hint suggests; beyond it coordinates are
#: not a binning away from the tomogram.
MAX_BINNING = 32

def inspect_tomogram(path: str | os.PathLike[str],
                     voxel_size_angstrom: float | None = None) -> dict[str, Any]:
    """Describe a tomogram as tomoclass reads it.

    Returns
    -------
    dict
        ``path``, ``name`` (:func:`tomoclass.io.tomogram_name`), ``shape_zyx``, ``dtype``,
        ``voxel_size_angstrom`` (and ``voxel_size_source``: header or given), ``axis_order``
        (``mapc, mapr, maps``), ``polarity`` (:meth:`Polarity.to_dict`), ``beam_along_y``
        (thinnest along y), ``sample_mean``/``sample_std`` (16 z-sections) and ``notes``
        (one line per thing to act on).

    Raises
    ------
    tomoclass.errors.InputError
        What :func:`tomoclass.io.read_volume` refuses.
    """
    import mrcfile

    vol = read_volume(path, voxel_size_angstrom)
    order = [1, 2, 3]  # OME-Zarr folders are (z, y, x) by their axes metadata
    if not Path(path).is_dir():
        with mrcfile.open(path, header_only=True, permissive=True) as m:
            order = [int(m.header.mapc), int(m.header.mapr), int(m.header.maps)]
    z, y, x = vol.shape
    idx = np.unique(np.linspace(0, z - 1, min(16, z)).astype(int))
    sample = np.asarray(vol.data[idx], dtype=np.float64)
    pol = measure_polarity(vol.data, vol.voxel_size_angstrom)
    notes = []
    if pol.polarity == "bright":
        notes.append("particles look bright (contrast inverted): extract, predict and locate "
                     "invert it (--polarity auto, the default)")
    elif pol.polarity == "unclear":
        notes.append("contrast polarity unclear: pass --polarity dark|bright to extract, "
                     "predict and locate")
    beam_y = beam_along_y((z, y, x))
    if beam_y:
        notes.append("thinnest along y: the beam may lie along y (IMOD before trimvol -rx); "
                     "tomoclass expects it along z")
    if order not in ([1, 2, 3], [0, 0, 0]):
        notes.append(f"axis order (mapc, mapr, maps) = {tuple(order)}: read as (z, y, x)")
    return {
        "path": str(path), "name": tomogram_name(path), "shape_zyx": [z, y, x],
        "dtype": str(vol.data.dtype), "voxel_size_angstrom": vol.voxel_size_angstrom,
        "voxel_size_source": "given" if voxel_size_angstrom is not None else "header",
        "axis_order": order, "polarity": pol.to_dict(), "beam_along_y": bool(beam_y),
        "sample_mean": float(sample.mean()), "sample_std": float(sample.std()),
        "notes": notes,
    }


def inspect_table(path: str | os.PathLike[str],
                  tomograms: Sequence[str | os.PathLike[str]] = (),
                  *, voxel_size_angstrom: float | None = None,
                  coordinate_pixel_size_angstrom: float | None = None,
                  format: str = "auto", class_column: str | None = None,
                  class_from_filename: bool | str = False,
                  tomogram: str | None = None,
                  table: pd.DataFrame | None = None) -> dict[str, Any]:
    """Describe a particle table as tomoclass reads it, against its tomograms if given.

    Parameters
    ----------
    path
        The table (any format :func:`tomoclass.io.read_particles` reads).
    tomograms
        Tomogram files: their sizes (and the first one's voxel size, unless
        ``voxel_size_angstrom``) place RELION 5 centred and PolNet Å coordinates, and the
        coordinates are checked to lie inside them.
    voxel_size_angstrom, coordinate_pixel_size_angstrom, format, class_column, class_from_filename
        As for :func:`tomoclass.io.read_particles`.
    tomogram
        The tomogram every row belongs to (``TABLE=TOMOGRAM`` on the command line), as for
        :func:`tomoclass.io.read_particles`.
    table
        A table already read (copick picks, :func:`tomoclass.io.copick_io.read_picks`): it is
        described instead of reading ``path`` (then only a label), with format ``copick``.

    Returns
    -------
    dict
        ``path``, ``format``, ``n_rows``, ``n_protein``, ``classes`` (name -> rows),
        ``tomograms`` (name -> rows, coordinate ``min_xyz``/``max_xyz``, and with the
        tomogram file ``extract`` would pair it with (:func:`tomoclass.data.match_tomograms`)
        its ``tomogram_file``, ``shape_zyx`` and ``n_outside``), ``unmatched_tomograms``
        (table tomograms without a file, when files are given) and ``notes``.
    """
    from tomoclass.data.build import match_tomograms

    vols = [read_volume(t, voxel_size_angstrom, check="none") for t in tomograms]
    shapes = {tomogram_name(v.path): v.shape for v in vols}
    if voxel_size_angstrom is None and vols:
        voxel_size_angstrom = vols[0].voxel_size_angstrom
    if coordinate_pixel_size_angstrom is not None and voxel_size_angstrom is None:
        raise InputError("--coords-angpix needs the tomograms' voxel size to convert the "
                         "coordinates: give --voxel-size A or the tomograms (--tomogram)",
                         path=path, field="--coords-angpix")
    fmt = table_format(path, format) if table is None else "copick"
    # as extract reads it: one tomogram file gives its size to every row
    if table is None:
        table = read_particles(path, fmt,
                               tomogram_shape=(vols[0].shape if len(vols) == 1
                                               else shapes or None),
                               voxel_size_angstrom=voxel_size_angstrom,
                               coordinate_pixel_size_angstrom=coordinate_pixel_size_angstrom,
                               out_of_bounds="keep", duplicates="keep",
                               class_column=class_column,
                               class_from_filename=class_from_filename, tomogram=tomogram)
    out: dict[str, Any] = {
        "path": str(path), "format": fmt, "n_rows": len(table),
        "n_protein": int(table[S.IS_PROTEIN].astype(bool).sum()),
        "classes": {str(k): int(v) for k, v in
                    table[S.CLASS_NAME].astype(str).value_counts().sort_index().items()},
        "tomograms": {}, "unmatched_tomograms": [], "notes": [],
    }
    # rows -> tomogram files exactly as extract pairs them
    file_of = np.full(len(table), -1)
    if vols:
        for k, rows in enumerate(match_tomograms([Path(v.path) for v in vols], table).values()):
            file_of[rows] = k
    names = table[S.TOMOGRAM].astype(str).to_numpy()
    for name in sorted(set(names)):
        sel = names == name
        xyz = table[[S.X, S.Y, S.Z]].to_numpy(np.float64)[sel]
        label = name or "(no tomogram name)"
        with np.errstate(over="ignore"):  # rounding 1e308 overflows to inf: reported as such
            lo, hi = xyz.min(0).round(2).tolist(), xyz.max(0).round(2).tolist()
        rec: dict[str, Any] = {"rows": int(sel.sum()), "min_xyz": lo, "max_xyz": hi}
        k = int(file_of[sel][0])
        if k >= 0:
            shape = vols[k].shape
            outside = outside_tomogram(xyz, shape).any(axis=1)
            rec["tomogram_file"] = str(vols[k].path)
            rec["shape_zyx"] = list(shape)
            rec["n_outside"] = int(outside.sum())
            if outside.mean() > OUTSIDE_FLAG:
                ratio = overshoot(xyz, shape)
                hint = ""
                if ratio > MAX_BINNING + 0.5:
                    hint = (f"; the coordinates reach {ratio:.3g}x the tomogram, more than any "
                            "binning: they are not positions in this tomogram (wrong columns "
                            "or a corrupt table?)")
                elif (ratio > OVERSHOOT_RATIO and coordinate_pixel_size_angstrom is None
                        and voxel_size_angstrom):
                    hint = (f"; the coordinates reach {ratio:.1f}x the tomogram: if they are in "
                            "unbinned pixels, give their pixel size: --coords-angpix "
                            f"{voxel_size_angstrom / round(ratio):g}?")
                out["notes"].append(f"{rec['n_outside']} of {rec['rows']} particles of {label} "
                                    f"lie outside its tomogram{hint}")
        elif vols:
            out["unmatched_tomograms"].append(label)
        out["tomograms"][label] = rec
    if out["unmatched_tomograms"]:
        out["notes"].append("no tomogram file for " + ", ".join(out["unmatched_tomograms"][:6])
                            + f" (files: {', '.join(sorted(shapes)[:6])}; name the table's "
                            "tomogram: TABLE=TOMOGRAM)")
    if (table[S.CLASS_NAME].astype(str) == "").all():
        from tomoclass.io.classes import star_class_hint

        out["notes"].append("no class names: prediction tables only (give class names to train)"
                            + (star_class_hint(path) if fmt == "star" else ""))
    return out


def format_report(info: dict[str, Any]) -> str:
    """Plain-text lines of an :func:`inspect_tomogram` or :func:`inspect_table` result."""
    lines = []
    if "shape_zyx" in info:  # a tomogram
        pol = info["polarity"]
        lines += [
            f"{info['path']} (tomogram {info['name']})",
            f"  shape (z, y, x) {tuple(info['shape_zyx'])}, {info['dtype']}, "
            f"{info['voxel_size_angstrom']:g} Å/voxel ({info['voxel_size_source']})",
            f"  axis order (mapc, mapr, maps) {tuple(info['axis_order'])}",
            f"  particles {pol['polarity']} (band-passed skewness {pol['skewness']:+.3f}, "
            f"noise level {pol['noise_se']:.3f})",
            f"  values: mean {info['sample_mean']:.4g}, s.d. {info['sample_std']:.4g}",
        ]
    else:
        lines += [f"{info['path']} ({info['format']}): {info['n_rows']} rows, "
                  f"{info['n_protein']} proteins",
                  "  classes: " + (", ".join(f"{k} {v}" for k, v in info["classes"].items())
                                   or "none")]
        for name, rec in info["tomograms"].items():
            where = (f", tomogram {tuple(rec['shape_zyx'])}: {rec['n_outside']} outside"
                     if "shape_zyx" in rec else "")
            lines.append(f"  {name}: {rec['rows']} rows, x/y/z from "
                         f"{tuple(rec['min_xyz'])} to {tuple(rec['max_xyz'])}{where}")
    lines += [f"  note: {n}" for n in info["notes"]]
    return "\n".join(lines)
