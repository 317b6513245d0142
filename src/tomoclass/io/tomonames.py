"""Which name a tomogram file has in the user's tables (``rlnTomoName``), said not guessed.

RELION 5 names a tomogram by its tilt series (``TS_01``) while its reconstruction may be
``rec_TS_01.mrc`` or Warp's ``TS_01_10.00Apx.mrc``. :func:`resolve_tomogram_name` takes the
name, in this order, from: the name given (``--tomo-name``); a RELION 5 ``tomograms.star``
(the row whose ``rlnTomoReconstructedTomogram`` is this file, else whose ``rlnTomoName`` the
file name holds); Warp's reconstruction naming ``<tilt series>_<pixel size>Apx.mrc``; the file
name (:func:`tomoclass.io.tomogram_name`). The last two are logged as assumptions.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io.particles import tomogram_name
from tomoclass.io.star import read_star

log = logging.getLogger(__name__)

#: Warp / WarpTools reconstructions: ``reconstruction/<tilt series>_<pixel size>Apx.mrc``.
WARP_RECONSTRUCTION = re.compile(r"^(?P<name>.+)_(?P<apix>\d+(?:\.\d+)?)Apx$")


def resolve_tomogram_name(tomogram: str | os.PathLike[str], *, name: str | None = None,
                          tomograms_star: str | os.PathLike[str] | None = None) -> str:
    """The tomogram's name in particle tables (``rlnTomoName``).

    Parameters
    ----------
    tomogram
        The tomogram's file.
    name
        The name, given by the user: returned as is.
    tomograms_star
        A RELION 5 ``tomograms.star`` (``data_global``: ``rlnTomoName`` and, after RELION's
        reconstruction, ``rlnTomoReconstructedTomogram``).

    Returns
    -------
    str
        The name; what was assumed is logged.

    Raises
    ------
    InputError
        ``tomograms_star`` has no ``rlnTomoName`` or no row for this tomogram.
    """
    if name:
        return str(name)
    path = Path(tomogram)
    stem = tomogram_name(path)
    if tomograms_star is not None:
        return _from_tomograms_star(path, stem, Path(tomograms_star))
    warp = WARP_RECONSTRUCTION.match(stem)
    if warp:
        log.info("%s: tomogram name '%s' assumed from Warp's reconstruction name "
                 "<tilt series>_<pixel size>Apx (--tomo-name says otherwise)", path,
                 warp["name"])
        return warp["name"]
    log.info("%s: tomogram name '%s' taken from the file name (--tomo-name or "
             "--tomograms-star say otherwise)", path, stem)
    return stem


def split_table_spec(spec: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``TABLE=TOMOGRAM`` -> (table path, tomogram name); a plain path -> (path, None).

    The tomogram name is what the table's rows are given, whatever the table says (DeepFinder
    object lists all say ``tomo_idx="0"``); it pairs them with the tomogram file of that name
    (:func:`tomoclass.io.tomogram_name`: ``tomo_3.mrc`` -> ``tomo_3``). A path that exists
    as written is a path even when it holds ``=``.
    """
    text = str(spec)
    if "=" not in text or Path(text).exists():
        return Path(text), None
    table, _, name = text.rpartition("=")
    if not table or not name:
        raise InputError(f"{text!r} is not TABLE=TOMOGRAM", field="--tables")
    if name.lower().endswith((".mrc", ".rec", ".map")):
        name = tomogram_name(name)  # the file itself named: its tomogram name
    return Path(table), name


def _from_tomograms_star(path: Path, stem: str, star: Path) -> str:
    table = None
    for block in read_star(star).values():
        if isinstance(block, dict):
            block = pd.DataFrame({k: [v] for k, v in block.items()})
        if "rlnTomoName" in block.columns:
            table = block
            break
    if table is None:
        raise InputError("no block has rlnTomoName (a RELION 5 tomograms.star)", path=star,
                         field="rlnTomoName")
    names = [str(v) for v in table["rlnTomoName"]]
    if "rlnTomoReconstructedTomogram" in table.columns:
        for tomo_name, rec in zip(names, table["rlnTomoReconstructedTomogram"], strict=True):
            if Path(str(rec)).name == path.name:
                log.info("%s: tomogram name '%s' from %s (rlnTomoReconstructedTomogram)", path,
                         tomo_name, star)
                return tomo_name
    candidates = [n for n in names if n == stem]
    if not candidates:  # rec_TS_01, TS_01_10.00Apx: the longest name the file name holds
        candidates = sorted((n for n in names if re.search(
            rf"(^|[^A-Za-z0-9]){re.escape(n)}($|[^A-Za-z0-9])", stem)), key=len, reverse=True)
    if not candidates:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise InputError(f"no tomogram of {star} matches the file {path.name} (names: {shown});"
                         " pass --tomo-name", path=star, field="rlnTomoName")
    log.info("%s: tomogram name '%s' from %s (rlnTomoName found in the file name)", path,
             candidates[0], star)
    return candidates[0]
