"""Which name a tomogram file has in the user's tables (``rlnTomoName``), said not guessed.

RELION 5 names a tomogram by its tilt series (``TS_01``) while its reconstruction may be
``rec_TS_01.mrc`` or Warp's ``TS_01_10.00Apx.mrc``. :func:`resolve_tomogram_name` takes the
name, in this order, from: the name given (``--tomo-name``); a RELION 5 ``tomograms.star``
(the row whose ``rlnTomoReconstructedTomogram`` is this file, else whose ``rlnTomoName`` the
file name holds); a Warp settings file (``warp_tiltseries.settings``: the ``.tomostar`` files
of its ``Import/DataFolder`` name the tilt series); Warp's reconstruction naming
``<tilt series>_<pixel size>Apx.mrc``; the file name (:func:`tomoclass.io.tomogram_name`).
The last two are logged as assumptions.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io.naming import tomogram_name
from tomoclass.io.star import read_star

log = logging.getLogger(__name__)

#: Warp / WarpTools reconstructions: ``reconstruction/<tilt series>_<pixel size>Apx.mrc``.
WARP_RECONSTRUCTION = re.compile(r"^(?P<name>.+)_(?P<apix>\d+(?:\.\d+)?)Apx$")


def resolve_tomogram_name(tomogram: str | os.PathLike[str], *, name: str | None = None,
                          tomograms_star: str | os.PathLike[str] | None = None,
                          warp_settings: str | os.PathLike[str] | None = None) -> str:
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
    warp_settings
        A Warp / WarpTools settings file (XML): the tilt-series names are the ``.tomostar``
        files in its ``Import/DataFolder`` (relative to the settings file's folder).

    Returns
    -------
    str
        The name; what was assumed is logged.

    Raises
    ------
    InputError
        ``tomograms_star`` has no ``rlnTomoName`` or no row for this tomogram;
        ``warp_settings`` is not readable or names no ``.tomostar`` matching the file.
    """
    if name:
        return str(name)
    path = Path(tomogram)
    stem = tomogram_name(path)
    if tomograms_star is not None:
        return _from_tomograms_star(path, stem, Path(tomograms_star))
    if warp_settings is not None:
        return _from_warp_settings(path, stem, Path(warp_settings))
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
    found = _name_in(stem, names)
    if found is None:
        raise InputError(f"no tomogram of {star} matches the file {path.name} (names: "
                         f"{_show(names)}); pass --tomo-name", path=star, field="rlnTomoName")
    log.info("%s: tomogram name '%s' from %s (rlnTomoName found in the file name)", path,
             found, star)
    return found


def read_warp_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What tomoclass uses of a Warp / WarpTools settings file (``<Settings>`` XML).

    Returns
    -------
    dict
        ``data_folder`` (Path, resolved against the file's folder, or None), ``extension``
        (e.g. ``*.tomostar``), ``pixel_size`` (``Import/PixelSize``, Å) and
        ``tilt_series_pixel_size`` (``PixelSize * 2**BinTimes``, Warp's ``BinnedPixelSize``),
        None where absent.
    """
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise InputError(f"not a readable Warp settings file ({exc})", path=path) from None
    params = {p.get("Name"): p.get("Value") for p in root.findall("./Import/Param")}
    folder = params.get("DataFolder") or None
    data_folder = None if folder is None else (path.parent / folder.replace("\\", "/"))
    try:
        pixel = float(params["PixelSize"]) if params.get("PixelSize") else None
        bin_times = float(params.get("BinTimes") or 0)
    except ValueError:
        raise InputError("PixelSize or BinTimes is not a number", path=path,
                         field="Import/PixelSize") from None
    return {"data_folder": data_folder, "extension": params.get("Extension"),
            "pixel_size": pixel,
            "tilt_series_pixel_size": None if pixel is None else pixel * 2.0 ** bin_times}


def _from_warp_settings(path: Path, stem: str, settings: Path) -> str:
    info = read_warp_settings(settings)
    folder = info["data_folder"]
    names = sorted(p.name[: -len(".tomostar")] for p in folder.glob("*.tomostar")) if (
        folder is not None and folder.is_dir()) else []
    if not names:
        raise InputError(f"no .tomostar files in its data folder {folder} to name tomograms "
                         "by; pass --tomo-name", path=settings, field="Import/DataFolder")
    found = _name_in(stem, names)
    if found is None:
        raise InputError(f"no tilt series of {folder} matches the file {path.name} (names: "
                         f"{_show(names)}); pass --tomo-name", path=settings,
                         field="Import/DataFolder")
    px = info["tilt_series_pixel_size"]
    log.info("%s: tomogram name '%s' from the .tomostar files of %s%s", path, found, settings,
             "" if px is None else f" (tilt-series pixel size {px:g} Å: --coords-angpix "
             f"{px:g} for tables in its pixels)")
    return found


def _name_in(stem: str, names: list[str]) -> str | None:
    """``stem`` if it is one of ``names``, else the longest name it holds as a whole word.

    ``rec_TS_01`` -> ``TS_01``, not ``TS_011``; None when there is none.
    """
    if stem in names:
        return stem
    hits = sorted((n for n in names if re.search(
        rf"(^|[^A-Za-z0-9]){re.escape(n)}($|[^A-Za-z0-9])", stem)), key=len, reverse=True)
    return hits[0] if hits else None


def _show(names: list[str]) -> str:
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
