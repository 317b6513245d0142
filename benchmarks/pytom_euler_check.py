"""Measure what SHREC'21's three angle columns mean, with the library that applied them.

PyTom's simulator (``pytom/simulation/MicrographModeller.py``, which wrote SHREC'21's
``particle_locations.txt``) turns each particle with ``voltools.transform(particle,
rotation=(a1, a2, a3), rotation_order="szxz")`` on an x-first array and writes ``a1 a2 a3``
after the coordinates. This script does the same to a volume of four Gaussian blobs of
different mass (an asymmetric test object), finds where each blob went (centroids), fits the
rotation (Kabsch, with a free shift: voltools' centre of rotation is not the box centre here)
and compares it with the rotation tomoclass reads from the same columns
(:func:`tomoclass.io.euler.shrec21_to_relion` -> :func:`tomoclass.io.euler.relion_matrix`)
and with the reading tomoclass used before (PyTom ``(phi, psi, theta)`` by
:func:`tomoclass.io.euler.zxz_pytom_to_relion`).

Needs voltools, which tomoclass does not depend on::

    pip install --target /tmp/vtlib --no-deps voltools
    PYTHONPATH=/tmp/vtlib python benchmarks/pytom_euler_check.py --out OUT

Writes ``OUT/pytom_euler_check.json`` (per triple: the angles, the fitted rotation, the angular
error of each reading in degrees) and prints a summary; exit 1 when the current reading is off
by more than ``--tolerance`` degrees for any triple.
"""

from __future__ import annotations

import sys

import numpy as np
from euler_blobs import blob_centroids, blob_volume, measure_triple, parse_check, write_check

from tomoclass.io.euler import shrec21_to_relion, zxz_pytom_to_relion


def main(argv: list[str] | None = None) -> int:
    args, target = parse_check(argv, __doc__, "pytom_euler_check.json", triples=12)
    if target is None:
        return 2
    import voltools  # not a tomoclass dependency (see the module docstring)
    from voltools import transform

    vol = blob_volume()
    before = blob_centroids(vol)
    rng = np.random.default_rng(args.seed)
    readers = {"shrec21_to_relion": shrec21_to_relion, "previous_reading": zxz_pytom_to_relion}
    rows = []
    for _ in range(args.triples):
        # as MicrographModeller draws them: a1 = arccos(2u - 1) in [0, 180], a2, a3 in [0, 360)
        a = np.array([np.degrees(np.arccos(2 * rng.uniform() - 1)), rng.uniform(0, 360),
                      rng.uniform(0, 360)])
        turned = transform(vol, rotation=tuple(a), rotation_order="szxz",
                           interpolation="linear", device="cpu")
        rows.append(measure_triple(before, turned, a.tolist(), key="angles", readers=readers))
    return write_check(
        target, rows, what="SHREC'21 angle columns vs voltools transform(rotation_order='szxz')",
        versions={"voltools_version": getattr(voltools, "__version__", "unknown")},
        reader="shrec21_to_relion", tolerance=args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
