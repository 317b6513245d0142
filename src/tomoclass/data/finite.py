"""Non-finite values (NaN, infinity) in a dataset: found once, recorded, named by row.

:class:`tomoclass.data.store.DatasetWriter` checks every box as it writes it and records the
result in ``dataset.yaml`` (``finite_check``: the bad rows and the size and modification time of
``subtomograms.npy`` they were found in). Readers (:func:`nonfinite_rows`) trust that record
while the array is unchanged, and scan the memory-mapped array once otherwise (a dataset of
an older tomoclass, or an array edited since), so the check costs nothing on the usual path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.errors import InputError

#: Key of the record in dataset.yaml.
RECORD_KEY = "finite_check"
_CHUNK_BYTES = 64 << 20


def bad_rows_of(volumes: np.ndarray) -> np.ndarray:
    """Indices of the boxes ``(n, D, D, D)`` holding any NaN or infinity."""
    if len(volumes) == 0:
        return np.zeros(0, dtype=np.int64)
    flat = np.asarray(volumes).reshape(len(volumes), -1)
    return np.flatnonzero(~np.isfinite(flat).all(axis=1))


def scan(volumes: np.ndarray) -> np.ndarray:
    """:func:`bad_rows_of` over a (memory-mapped) array in chunks of about 64 MB."""
    n = len(volumes)
    per = max(1, _CHUNK_BYTES // max(1, volumes[0].nbytes)) if n else 1
    parts = [start + bad_rows_of(volumes[start:start + per]) for start in range(0, n, per)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def make_record(npy: Path, bad_rows: Any) -> dict[str, Any]:
    """The dataset.yaml record for the array file ``npy`` and its bad rows."""
    st = os.stat(npy)
    return {"nonfinite_rows": [int(i) for i in bad_rows], "npy_bytes": int(st.st_size),
            "npy_mtime_ns": int(st.st_mtime_ns)}


def nonfinite_rows(store: Any) -> np.ndarray:
    """Rows of ``store`` whose box holds NaN/inf (from the record, else one scan, cached)."""
    cached = getattr(store, "_nonfinite_cache", None)
    if cached is not None:
        return cached
    rec = (getattr(store, "meta", None) or {}).get(RECORD_KEY)
    path = getattr(store, "path", None)
    rows = None
    if isinstance(rec, dict) and path is not None:
        try:
            st = os.stat(Path(path) / "subtomograms.npy")
            if (st.st_size == rec.get("npy_bytes") and st.st_mtime_ns == rec.get("npy_mtime_ns")
                    and isinstance(rec.get("nonfinite_rows"), list)):
                rows = np.asarray(rec["nonfinite_rows"], dtype=np.int64)
        except OSError:
            rows = None
    if rows is None:
        rows = scan(store.volumes)
    try:
        store._nonfinite_cache = rows
    except AttributeError:
        pass
    return rows


def describe_rows(store: Any, rows: np.ndarray, limit: int = 3) -> str:
    """``row 3 (t0 at x 1, y 2, z 3), ...`` for the first ``limit`` rows."""
    table = store.table
    parts = []
    for i in rows[:limit]:
        r = table.iloc[int(i)]
        where = ", ".join(f"{c} {r[c]:g}" for c in ("x", "y", "z") if c in table.columns)
        parts.append(f"row {int(i)} ({r.get('tomogram', '?')} at {where})")
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(parts) + more


def refuse_nonfinite(store: Any, split: str | None = None, *, what: str = "use") -> None:
    """Raise :class:`InputError` naming the rows of ``split`` whose boxes hold NaN/inf."""
    rows = nonfinite_rows(store)
    if split is not None and len(rows):
        splits = store.table["split"].astype(str).to_numpy()
        rows = rows[splits[rows] == split]
    if len(rows):
        path = getattr(store, "path", None)
        raise InputError(
            f"{len(rows)} subtomogram{'s' if len(rows) > 1 else ''} hold NaN/inf values: "
            f"{describe_rows(store, rows)}; cannot {what} them (re-extract, or drop the rows)",
            path=None if path is None else Path(path) / "subtomograms.npy")
