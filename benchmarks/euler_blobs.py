"""Shared by the Euler-convention checks (``pytom_euler_check.py``, ``deepfinder_euler_check.py``).

An asymmetric test object (four Gaussian blobs of different mass), the blobs' centroids after
another program has turned it, the rotation that fits them against each reading of the
angles, and the check's options and record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tomoclass.io.atomic import atomic_path
from tomoclass.io.euler import relion_matrix
from tomoclass.provenance import git_commit

#: Blob offsets from the box centre (x-first voxels) and their masses (1, 2, 3, 4).
BLOBS = np.array([(14, 0, 0), (0, 10, 0), (0, 0, 6), (-8, -8, 0)], dtype=float)


def blob_volume(n: int = 48) -> np.ndarray:
    """An x-first ``n``^3 volume of four Gaussian blobs of masses 1..4 (sigma 1 voxel)."""
    c = n // 2
    vol = np.zeros((n, n, n), np.float32)
    for mass, (dx, dy, dz) in enumerate(BLOBS.astype(int), 1):
        point = np.zeros_like(vol)
        point[c + dx, c + dy, c + dz] = mass
        vol += ndimage.gaussian_filter(point, 1.0)
    return vol


def blob_centroids(vol: np.ndarray) -> np.ndarray:
    """Centroids of the four blobs, ordered by mass (lightest first); raises if not four."""
    labels, count = ndimage.label(vol > vol.max() * 0.05)
    if count != len(BLOBS):
        raise RuntimeError(f"found {count} blobs, not {len(BLOBS)}")
    found = []
    for k in range(1, count + 1):
        w = vol * (labels == k)
        found.append((float(w.sum()), ndimage.center_of_mass(w)))
    return np.array([c for _, c in sorted(found)], dtype=float)


def fitted_rotation(before: np.ndarray, after: np.ndarray) -> Rotation:
    """The rotation taking the ``before`` points to ``after`` (centred: shift left free)."""
    rot, _ = Rotation.align_vectors(after - after.mean(0), before - before.mean(0))
    return rot


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) of the rotation ``a @ b.T``."""
    return float(np.degrees(Rotation.from_matrix(a @ b.T).magnitude()))


def parse_check(argv: Sequence[str] | None, doc: str, filename: str, *, triples: int
                ) -> tuple[argparse.Namespace, Path | None]:
    """A check's options (``--out --triples --seed --tolerance``) and its record's path,
    ``None`` (after saying so) when that record exists: a check never replaces a result."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--triples", type=int, default=triples, help="random angle triples to try")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=2.0, help="degrees")
    args = p.parse_args(argv)
    target = args.out / filename
    if target.exists():  # refused before any work
        print(f"{target}: exists; this script never replaces a result", file=sys.stderr)
        return args, None
    return args, target


def measure_triple(before: np.ndarray, turned: np.ndarray, angles: list[float], *, key: str,
                   readers: Mapping[str, Callable[..., np.ndarray]],
                   centroids: Callable[[np.ndarray], np.ndarray] = blob_centroids
                   ) -> dict[str, Any]:
    """One row of a check: the rotation that took the blobs from ``before`` to where
    ``centroids(turned)`` finds them, and how far each reading (name -> a function of the
    three angle columns giving RELION ``(n, 3)`` angles, as :mod:`tomoclass.io.euler`'s) is
    from it as ``error_deg_<name>``; a row ``skipped`` when a blob was clipped or merged."""
    try:
        after = centroids(turned)
    except RuntimeError as exc:
        return {key: angles, "skipped": str(exc)}
    measured = fitted_rotation(before, after).as_matrix()
    row: dict[str, Any] = {key: angles, "measured_matrix": measured.round(5).tolist()}
    for name, read in readers.items():
        reading = relion_matrix(*read(*[[v] for v in angles])[0])
        row[f"error_deg_{name}"] = angle_between(reading, measured)
    return row


def write_check(target: Path, rows: list[dict[str, Any]], *, what: str, versions: dict[str, str],
                reader: str, tolerance: float) -> int:
    """Summarise a check's rows (each with ``error_deg_<reader>`` and
    ``error_deg_previous_reading``, or ``skipped``), write ``target`` (JSON, atomically) and
    print a line; returns the exit status: 2 when no triple was measured, 1 when the reader is
    off by more than ``tolerance`` degrees for any triple, else 0."""
    done = [r for r in rows if "skipped" not in r]
    if not done:
        print("no triple could be measured", file=sys.stderr)
        return 2
    worst_now = max(r[f"error_deg_{reader}"] for r in done)
    best_old = min(r["error_deg_previous_reading"] for r in done)
    rec = {"what": what, **versions,
           "numpy": np.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "git_commit": git_commit(),
           "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "triples_measured": len(done), "triples_skipped": len(rows) - len(done),
           f"max_error_deg_{reader}": worst_now,
           "min_error_deg_previous_reading": best_old, "rows": rows}
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:  # nothing half-written
        tmp.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"{len(done)} triples: {reader} off by at most {worst_now:.2f} deg; "
          f"the previous reading off by at least {best_old:.1f} deg -> {target}")
    return 0 if worst_now <= tolerance else 1
