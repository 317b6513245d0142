"""Particle radii per class, in voxels: ``--radius`` options, SHREC'21 ``sizes.txt``, defaults.

:func:`parse_radii` reads ``R`` / ``NAME=R`` options, :func:`merge_radii` and
:func:`radii_for_tomogram` merge them with a ``sizes.txt`` (the options winning), and
:func:`resolve_radii` gives every particle class of a run its radius, and
:func:`pretrained_radii` the radii a pretrained detector was registered with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tomoclass.data.classmap import per_class_values
from tomoclass.errors import InputError
from tomoclass.io import read_volume
from tomoclass.locate.peaks import BACKGROUND
from tomoclass.models.pretrained import pretrained_for_run

log = logging.getLogger(__name__)


def parse_radii(values: Sequence[str] | None) -> float | dict[str, float] | None:
    """Parse ``--radius`` options: ``R`` (every class) or ``NAME=R`` (repeatable), voxels.

    Returns None for no option, a float for a single bare number, else a mapping (a bare
    number then also becomes the value for every class not named, under the key ``"*"``).

    Raises
    ------
    InputError
        A value that is not a positive number.
    """
    if not values:
        return None
    out: dict[str, float] = {}
    for raw in values:
        name, _, num = raw.rpartition("=")
        try:
            r = float(num)
        except ValueError:
            raise InputError(f"radius {raw!r} is not R or NAME=R", field="radius") from None
        if not np.isfinite(r) or r <= 0:
            raise InputError(f"radius {raw!r} must be a positive number of voxels", field="radius")
        out[name.strip() or "*"] = r
    if list(out) == ["*"]:
        return out["*"]
    return out


def merge_radii(
    sizes: str | Path | None, values: Sequence[str] | None, voxel_size_angstrom: float = 10.0
) -> float | dict[str, float] | None:
    """Radii from a SHREC'21 ``sizes.txt`` and ``--radius`` options, the options winning.

    ``sizes`` is read by :func:`tomoclass.io.read_class_sizes` at ``voxel_size_angstrom``,
    ``values`` by :func:`parse_radii`. Returns None when neither is given.
    """
    return _with_sizes(sizes, parse_radii(values), voxel_size_angstrom)


def radii_for_tomogram(
    tomogram: str | Path,
    sizes: str | Path | None,
    radii: float | Mapping[str, float] | None,
    voxel_size_angstrom: float | None = None,
) -> float | dict[str, float] | None:
    """Radii for one tomogram: ``sizes.txt`` converted at its voxel size, ``radii`` winning.

    The voxel size is ``voxel_size_angstrom``, else the tomogram's header (read only when
    ``sizes`` is given); ``radii`` as for :func:`tomoclass.workflows.locate.locate`, merged
    as :func:`merge_radii` does.
    """
    vs = None
    if sizes is not None:
        vs = voxel_size_angstrom or read_volume(tomogram, check="none").voxel_size_angstrom
    return _with_sizes(sizes, radii, vs)


def _with_sizes(sizes: str | Path | None, given: float | Mapping[str, float] | None,
                voxel_size_angstrom: float | None) -> float | dict[str, float] | None:
    """``sizes.txt`` radii at ``voxel_size_angstrom``, overridden by ``given``.

    A mapping's entries win; a bare number covers the classes the file does not name.
    """
    from tomoclass.io import read_class_sizes

    if sizes is None:
        return dict(given) if isinstance(given, Mapping) else given
    out: dict[str, float] = dict(read_class_sizes(sizes, voxel_size_angstrom))
    if isinstance(given, Mapping):
        out.update(given)
    elif given is not None:
        out["*"] = float(given)
    return out


def resolve_radii(
    class_names: Sequence[str], radii: float | Mapping[str, float] | None, box: int
) -> dict[str, float]:
    """Radius per particle class: the given ones, ``"*"`` for the rest, else ``box / 4``.

    ``box / 4`` is a fallback, not a measurement: it assumes the training box was chosen
    about twice the particle's diameter. Pass real radii (e.g. SHREC'21 ``sizes.txt``)
    when known.
    """
    names = [n for n in class_names if n.casefold() != BACKGROUND]
    if radii is None:
        log.info("no --radius given: using box / 4 = %g voxels for every class", box / 4)
        return {n: box / 4 for n in names}
    if not isinstance(radii, Mapping):
        return {n: float(radii) for n in names}
    return per_class_values(names, radii)


def pretrained_radii(run: str | os.PathLike[str]) -> dict[str, float] | None:
    """The radii recorded with pretrained model ``run``, in its training voxels.

    None for a run directory or checkpoint on disk (a path wins over a name, as for
    ``--run``), an unknown name, or an entry without radii.
    """
    entry = pretrained_for_run(run)
    if entry is None or not entry.radii_angstrom or not entry.voxel_size_angstrom:
        return None
    log.info("radii recorded with pretrained %s: %s", entry.name,
             ", ".join(f"{c} {r:g} Å" for c, r in entry.radii_angstrom.items()))
    return {c: float(r) / float(entry.voxel_size_angstrom) for c, r in entry.radii_angstrom.items()}
