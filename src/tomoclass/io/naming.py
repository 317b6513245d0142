"""Tomogram names from file paths: the naming heuristics every command shares.

A table and a tomogram named this way match in ``extract``, ``predict`` and ``locate``
(``TS_01.mrc`` and ``particle_locations_TS_01.txt`` -> ``TS_01``; SHREC's
``model_3/reconstruction.mrc`` -> ``model_3``). Names said rather than guessed (RELION 5
``tomograms.star``, Warp settings) are :mod:`tomoclass.io.tomonames`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from tomoclass.errors import InputError
from tomoclass.io.omezarr import zarr_tomogram_name

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




def distinct_tomogram_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """:func:`tomogram_name` of each path; InputError when two share one (picks would mix)."""
    names = [tomogram_name(p) for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"several tomograms are named {dup[0]!r}; their picks would mix",
                         field="tomogram")
    return names
