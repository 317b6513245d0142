"""Per-class particle sizes: the SHREC'21 ``sizes.txt`` table.

SHREC'21 ships one line per class after a header::

    id box(px) radius(nm) maskradius(px)
    5MRC 42 17.5 17.5
    1S3X 12 4.0 4.0

``radius(nm)`` is the particle's radius; :func:`read_class_sizes` turns it into voxels of the
tomogram being scored (``radius_nm * 10 / voxel_size_angstrom``), the unit that
``tomoclass locate --radius`` and ``tomoclass score-picks --radius`` take.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from tomoclass.errors import InputError

#: Columns of SHREC'21 sizes.txt, in order.
SIZES_COLUMNS = ("id", "box(px)", "radius(nm)", "maskradius(px)")


def read_class_sizes(path: str | os.PathLike[str], voxel_size_angstrom: float = 10.0
                     ) -> dict[str, float]:
    """Read a SHREC'21 ``sizes.txt``: class name -> particle radius in voxels.

    Parameters
    ----------
    path
        The table (whitespace-separated, header line first).
    voxel_size_angstrom
        Voxel size of the tomogram the radii are for (Å); SHREC'21 tomograms have 10 Å.

    Raises
    ------
    InputError
        Unreadable file, a header without ``id`` and ``radius(nm)``, a line with too few
        fields, a radius that is not a positive number, a class listed twice, or no classes.
    """
    path = Path(path)
    if not (voxel_size_angstrom > 0 and math.isfinite(voxel_size_angstrom)):
        raise InputError(f"voxel size must be a positive number of Å, got {voxel_size_angstrom}",
                         field="voxel_size_angstrom")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read class sizes ({getattr(exc, 'strerror', None) or exc})",
                         path=path) from None
    rows = [(i, ln.split()) for i, ln in enumerate(lines, 1) if ln.strip()
            and not ln.lstrip().startswith("#")]
    if not rows:
        raise InputError("empty class-size table", path=path)
    head_line, head = rows[0]
    lower = [h.lower() for h in head]
    if "id" not in lower or "radius(nm)" not in lower:
        raise InputError(f"header must name 'id' and 'radius(nm)' (SHREC'21 sizes.txt: "
                         f"{' '.join(SIZES_COLUMNS)}), got {' '.join(head)!r}", path=path,
                         field="header", line=head_line)
    i_id, i_r = lower.index("id"), lower.index("radius(nm)")
    out: dict[str, float] = {}
    for line_no, parts in rows[1:]:
        if len(parts) < len(head):
            raise InputError(f"{len(parts)} fields, the header has {len(head)}", path=path,
                             field="row", line=line_no)
        name, raw = parts[i_id], parts[i_r]
        try:
            radius_nm = float(raw)
        except ValueError:
            raise InputError(f"radius {raw!r} is not a number", path=path, field="radius(nm)",
                             line=line_no) from None
        if not (radius_nm > 0 and math.isfinite(radius_nm)):
            raise InputError(f"radius {raw!r} must be positive", path=path, field="radius(nm)",
                             line=line_no)
        if name.casefold() in {k.casefold() for k in out}:
            raise InputError(f"class {name!r} listed twice", path=path, field="id", line=line_no)
        out[name] = radius_nm * 10.0 / voxel_size_angstrom
    if not out:
        raise InputError("no classes under the header", path=path)
    return out
