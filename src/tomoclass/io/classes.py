"""Where a table's classes come from when it is not tomoclass's own column.

Labs keep classes in a column of their choosing (RELION 3 ``rlnParticleName``, a CSV ``type``)
or in the file name (one STAR per class: ``ribosome.star``, ``particles_class001.star``).
:func:`set_class_from_column` and :func:`class_name_from_file` serve
:func:`tomoclass.io.read_particles` (``class_column=``, ``class_from_filename=``);
:func:`class_column_candidates` names the columns that look like classes, for the notes of
``tomoclass inspect``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S

#: Extensions dropped from a file name before it becomes a class name.
_SUFFIXES = (".gz", ".bz2", ".star", ".csv", ".txt", ".xml")


def class_name_from_file(path: str | os.PathLike[str], rule: bool | str = True) -> str:
    r"""The class a one-table-per-class file holds, from its name.

    Parameters
    ----------
    path
        The table.
    rule
        ``True``: the file name without its extension(s) (``ribosome.star`` -> ``ribosome``).
        A regular expression searched in that name: its ``class`` group, else its first group,
        else the whole match (``class(\d+)`` on ``run_class003`` -> ``003``).

    Raises
    ------
    InputError
        The expression is invalid or does not match, or the name would be empty.
    """
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    if rule is True or rule == "":
        found = name
    else:
        try:
            pattern = re.compile(str(rule))
        except re.error as exc:
            raise InputError(f"invalid regular expression {rule!r} ({exc})",
                             field="--class-pattern") from None
        match = pattern.search(name)
        if match is None:
            raise InputError(f"the file name {name!r} does not match {rule!r}", path=path,
                             field="--class-pattern")
        if "class" in pattern.groupindex:
            found = match.group("class")
        elif pattern.groups:
            found = match.group(1)
        else:
            found = match.group(0)
    if not found:
        raise InputError("the file name gives an empty class name", path=path,
                         field="--class-from-filename")
    return found


def set_class_from_column(df: pd.DataFrame, column: str, path: str | os.PathLike[str],
                          header: Sequence[str], label: Callable[[str], str]) -> pd.DataFrame:
    """``df`` with ``class_name`` taken from its column ``column`` (a CSV's extra column).

    A column the reader already took as the class (``class``, ``label``...) leaves ``df`` as it
    is. ``label`` maps each value (numeric labels through the user's class names).
    """
    if column not in df.columns:
        if any(h.lower() == column.lower() for h in header):
            return df  # already read as the class column
        raise InputError(f"no such column (columns: {', '.join(header)})", path=path,
                         field=column)
    df = df.copy()
    values = ["" if pd.isna(v) else str(v) for v in df[column]]
    names = [label(_plain_number(v)) if v else "" for v in values]
    df[S.CLASS_NAME] = names  # the caller sets is_protein from the names
    return df


def class_column_candidates(columns: dict[str, Sequence[str]], n_rows: int) -> list[str]:
    """Text columns that look like a class: a few distinct values shared by many rows.

    ``columns`` maps a column label to its values (as text).
    """
    out = []
    for label, values in columns.items():
        distinct = set(values)
        if not 1 <= len(distinct) <= max(2, n_rows // 2):
            continue
        if all(_is_number(v) or not v for v in distinct):
            continue
        if re.search(r"Coordinate|Angle|Origin|Image|Micrograph|TomoName|Tomogram|File",
                     label):
            continue
        out.append(label)
    return out


def star_class_hint(path: str | os.PathLike[str]) -> str:
    """A note naming the text columns of a STAR that look like a class, else ``""``.

    E.g. ``"; rlnParticleName looks like a class (ribosome, ...): --class-column
    rlnParticleName"``.
    """
    from tomoclass.io.star import read_star

    try:
        blocks = read_star(path)
    except InputError:
        return ""
    hints = []
    for block in blocks.values():
        if not isinstance(block, pd.DataFrame) or not len(block):
            continue
        cols = {str(c): [str(v) for v in block[c]] for c in block.columns}
        for label in class_column_candidates(cols, len(block)):
            shown = ", ".join(sorted(set(cols[label]))[:4])
            hints.append(f"{label} looks like a class ({shown}): --class-column {label}")
    return ("; " + "; ".join(hints[:2])) if hints else ""


def _plain_number(v: str) -> str:
    """``"3.0"`` -> ``"3"`` (starfile and pandas give integer labels as floats)."""
    try:
        f = float(v)
    except ValueError:
        return v
    return str(int(f)) if f.is_integer() else v


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True
