"""What the particle-table readers share: the read context, numbers, class labels, text."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.errors import InputError
from tomoclass.io import schema as S

#: DeepFinder's SHREC'19 label order: ``class_label`` k (1-based) is the k-th name.
SHREC19_CLASSES = (
    "1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3qm1", "4b4t", "4d8q",
)

#: Class names (lower case) that are not macromolecules; their rows get ``is_protein`` False.
NON_PROTEIN_CLASSES = frozenset(
    {"vesicle", "vesicles", "fiducial", "fiducials", "gold", "membrane", S.BACKGROUND}
)

#: Extra column holding a STAR file's ``rlnImageName`` (path of a per-particle subtomogram).
IMAGE_NAME = "image_name"



class ReadContext:
    """What a reader needs to know besides the file: the call's options (attributes).

    ``path``, ``tomogram`` (default name), ``tomogram_given``, ``class_names``,
    ``tomogram_shape``, ``voxel_size_angstrom``, ``coordinate_pixel_size_angstrom``,
    ``class_column``, and ``header_names`` (set by the CSV reader).
    """

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def shape_for(self, tomo: str) -> tuple[int, int, int] | None:
        """The ``(z, y, x)`` size of tomogram ``tomo``, or None when not given."""
        shp = self.tomogram_shape
        if shp is None:
            return None
        if isinstance(shp, Mapping):
            got = shp.get(tomo)
            return None if got is None else tuple(int(n) for n in got)  # type: ignore[return-value]
        return tuple(int(n) for n in shp)  # type: ignore[return-value]



def read_text(path: Path) -> str:
    """A table file's text (UTF-8, BOM dropped); binary or undecodable data raises."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=path) from None
    if b"\x00" in raw:
        raise InputError("binary data where a text table is expected", path=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("not UTF-8 text", path=path, line=line) from None


def parse_number(token: str, path: Path, line: int | None, field: str, *,
                 allow_nan: bool) -> float:
    """``token`` as a finite float (NaN only with ``allow_nan``), else InputError at ``line``."""
    try:
        value = float(token)
    except (TypeError, ValueError):
        raise InputError(f"{show_value(token)} is not a number", path=path, line=line,
                         field=field) from None
    if math.isnan(value):
        if not allow_nan:
            raise InputError("NaN where a coordinate is needed", path=path, line=line, field=field)
    elif not math.isfinite(value):
        raise InputError(f"{show_value(token)} is not finite", path=path, line=line, field=field)
    return value


def show_value(token: Any) -> str:
    """``token`` quoted for an error message, cut to 40 characters."""
    text = repr(str(token))
    return text if len(text) <= 40 else text[:37] + "...'"


def is_protein(name: str) -> bool:
    """Whether class ``name`` is a macromolecule (not in :data:`NON_PROTEIN_CLASSES`)."""
    return name.strip().lower() not in NON_PROTEIN_CLASSES


def label_name(label: str, ctx: ReadContext, line: int | None, field: str) -> str:
    """Map a numeric class label through ``class_names`` (1-based) if given."""
    if ctx.class_names is None:
        return label
    try:
        k = int(float(label))
    except ValueError:
        return label
    if float(label) != k or not 1 <= k <= len(ctx.class_names):
        raise InputError(
            f"class label {label} is outside 1..{len(ctx.class_names)} of the given class names",
            path=ctx.path, line=line, field=field)
    return ctx.class_names[k - 1]


# ---------------------------------------------------------------------------------------------
# SHREC text


def strip_tomo(value: str, *, path_like: bool) -> str:
    """Tomogram name from a STAR value.

    ``rlnTomoName``: only a Warp ``.tomostar`` suffix is dropped. ``path_like``
    (``rlnMicrographName``): the directory, RELION's ``:mrc`` and the extension are dropped.
    """
    name = value
    if path_like:
        name = re.sub(r":(mrc|mrcs|st|rec)$", "", name, flags=re.IGNORECASE)
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
        suffixes: tuple[str, ...] = (".tomostar", ".mrc", ".rec", ".st", ".mrcs")
    else:
        suffixes = (".tomostar",)
    for suffix in suffixes:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def maybe_numeric(values: list[str]) -> Any:
    """An extra column's text values as ints, else floats, else text ("nan" missing)."""
    try:
        ints = [int(v) for v in values]
        return np.asarray(ints, dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError:
        # A text column: the writer refuses the text "nan", so a "nan" here is a missing
        # value (e.g. background_kind on particle rows); keep it missing, not a string.
        return [np.nan if v.lower().lstrip("+-") == "nan" else v for v in values]
