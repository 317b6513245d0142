"""STAR files as whole documents, through the :mod:`starfile` package.

:func:`read_star` gives every block of a file (a ``loop_`` as a DataFrame, ``_label value``
pairs as a dict) in file order, as text or numbers; :func:`write_star` writes such blocks back
atomically. Both go through ``starfile`` (the field's reader and writer), so that a user's
table (RELION 3.1 / 5 ``data_general``, ``data_optics``, ``data_particles``, Warp's
``data_``) can be annotated and written back with every block and column it had.

Written values: floats as ``%.10g`` (``inf``/``-inf`` as such, missing numbers as ``nan``),
bools as 0/1, text quoted where a STAR reader would otherwise split it or take it for a
number, a label or a comment; text with a quote character or line break, or the text ``nan``,
is refused (neither RELION nor starfile can read it back).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path

#: How floats are written: enough digits for Å coordinates and probabilities alike.
FLOAT_FORMAT = "%.10g"
#: How a missing number is written (RELION and starfile read it as NaN).
NA_REP = "nan"

Block = pd.DataFrame | dict[str, Any]

#: Labels whose values are names (kept as text when read): ``rlnTomoName``, ``rlnImageName``...
_TEXT_LABEL = re.compile(r"Name|File|Tomogram$")


def read_star(path: str | os.PathLike[str], *,
              text_labels: list[str] | None = None) -> dict[str, Block]:
    """Every block of a STAR file, in file order, via ``starfile.read`` (one parse).

    Parameters
    ----------
    path
        The STAR file.
    text_labels
        Labels whose values are kept as text (all of them, for a reader that converts values
        itself). Default: the name-like labels (``rlnTomoName``, ``rlnImageName``...); the file
        is then read a second time when it has such labels, to know them.

    Returns
    -------
    dict
        Block name (without ``data_``) -> DataFrame (a ``loop_``) or dict (label -> value).

    Raises
    ------
    InputError
        Missing or unparseable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    try:
        import starfile

        if text_labels is not None:
            blocks = starfile.read(path, always_dict=True, parse_as_string=list(text_labels))
        else:
            blocks = starfile.read(path, always_dict=True)
            names = sorted({str(c) for b in blocks.values() if isinstance(b, pd.DataFrame)
                            for c in b.columns if _TEXT_LABEL.search(str(c))})
            if names:  # names stay text: tomogram "01" is not the number 1
                blocks = starfile.read(path, always_dict=True, parse_as_string=names)
    except Exception as exc:  # a third-party parser on untrusted text: report, never crash
        text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise InputError(f"starfile cannot parse it ({type(exc).__name__}: {text})",
                         path=path) from None
    if not blocks:
        raise InputError("no data_ block", path=path)
    return dict(blocks)


def write_star(path: str | os.PathLike[str], blocks: Mapping[str, Block], *,
               comments: tuple[str, ...] = ()) -> Path:
    """Write STAR blocks atomically through ``starfile``.

    Parameters
    ----------
    path
        Destination (written to a temporary name and renamed when complete).
    blocks
        Block name (without ``data_``) -> DataFrame (written as a ``loop_``) or dict (written
        as ``_label value`` pairs), in the order to write them.
    comments
        Lines written first, each after ``# ``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        A text value STAR cannot hold (a quote character, a line break, the text ``nan``).
    """
    from starfile.writer import StarWriter

    path = Path(path)
    ready: dict[str, Block] = {}
    for name, block in blocks.items():
        try:
            if isinstance(block, pd.DataFrame):
                ready[name] = _loop_ready(block)
            else:
                ready[name] = {str(k): _simple_value(v) for k, v in dict(block).items()}
        except InputError as exc:
            raise InputError(exc.message, path=path, field=exc.field) from None
    writer = StarWriter(ready, float_format=FLOAT_FORMAT, na_rep=NA_REP)
    # starfile's own header line carries the time of writing; the same table written twice
    # must give the same bytes, so it is replaced by one without
    text = ("".join(f"# {c}\n" for c in comments) + f"# written with starfile {_version()}\n\n\n"
            + "".join(line + "\n" for line in writer.data_block_generator()))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def quote_text(value: Any, field: str | None = None) -> str:
    """``value`` as a STAR token that reads back as this text.

    starfile quotes values with a space and empty ones itself; other values a reader would
    misread (a tab, ``#``, a leading ``_``/``data_``/``loop_``/``$``, a number-like name such
    as a DeepFinder tomogram ``0``) are quoted here.
    """
    s = str(value)
    if "'" in s or '"' in s or "\n" in s or "\r" in s:
        raise InputError(f"value {_show(s)} holds a quote or line break, which STAR cannot hold",
                         field=field)
    if s.lower().lstrip("+-") == "nan":
        raise InputError(f"value {_show(s)} would read back as a missing number from STAR",
                         field=field)
    if s == "" or " " in s:
        return s  # starfile quotes it
    if (any(ch.isspace() for ch in s) or "#" in s
            or s.startswith(("_", "data_", "loop_", "$")) or _looks_numeric(s)):
        return f'"{s}"'
    return s


def _loop_ready(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(df)))
    for col in df.columns:
        values = df[col]
        kind = values.dtype.kind
        if kind == "b":
            out[str(col)] = values.astype(np.int64).to_numpy()
        elif kind in "iuf":
            out[str(col)] = values.to_numpy()
        else:
            out[str(col)] = [_text_or_number(v, str(col)) for v in values]
    return out


def _text_or_number(v: Any, field: str) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return NA_REP
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return FLOAT_FORMAT % float(v)
    return quote_text(v, field)


def _simple_value(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return NA_REP if np.isnan(v) else FLOAT_FORMAT % float(v)
    return quote_text(v)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("starfile")
    except PackageNotFoundError:
        return "?"


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _show(token: Any) -> str:
    text = repr(str(token))
    return text if len(text) <= 40 else text[:37] + "...'"
