"""Measure what DeepFinder's ``phi psi the`` mean, with the function DeepFinder applies them by.

DeepFinder (``deep-finder/cryoet-deepfinder``) places each object of an XML object list by
turning its class's reference with ``deepfinder.utils.common.rotate_array(ref, (phi, psi,
the))`` on a z-first array (``mrcfile``'s order) and stamping it at ``(x, y, z)`` (its target
generation), so that function defines what the three numbers mean. This script gives it the
four-blob test volume of ``euler_blobs.py`` (transposed to z-first), finds where each blob
went, fits the rotation in ``(x, y, z)`` and compares it with the rotation tomoclass reads
from the same attributes (:func:`tomoclass.io.euler.deepfinder_to_relion` ->
:func:`tomoclass.io.euler.relion_matrix`) and with the reading tomoclass used before
(:func:`tomoclass.io.euler.zxz_pytom_to_relion`).

Needs DeepFinder's package without its dependencies (TensorFlow, Qt) and h5py, which its
module imports; neither is a tomoclass dependency::

    pip install --target /tmp/dflib --no-deps cryoet-deepfinder==0.2.1 h5py
    PYTHONPATH=/tmp/dflib python benchmarks/deepfinder_euler_check.py --out OUT

Writes ``OUT/deepfinder_euler_check.json`` (per triple: the angles, the fitted rotation, the
angular error of each reading in degrees) and prints a summary; exit 1 when the current
reading is off by more than ``--tolerance`` degrees for any triple.
"""

from __future__ import annotations

import sys
from importlib import metadata

import numpy as np
from euler_blobs import blob_centroids, blob_volume, measure_triple, parse_check, write_check

from tomoclass.io.euler import deepfinder_to_relion, zxz_pytom_to_relion


def _xyz_centroids(vol_zyx: np.ndarray) -> np.ndarray:
    """Blob centroids of a z-first volume as (x, y, z) rows."""
    return blob_centroids(vol_zyx)[:, ::-1]


def main(argv: list[str] | None = None) -> int:
    args, target = parse_check(argv, __doc__, "deepfinder_euler_check.json", triples=24)
    if target is None:
        return 2
    from deepfinder.utils.common import rotate_array  # not a tomoclass dependency

    vol = np.ascontiguousarray(blob_volume().transpose(2, 1, 0))  # z-first, as DeepFinder's
    before = _xyz_centroids(vol)
    rng = np.random.default_rng(args.seed)
    readers = {"deepfinder_to_relion": deepfinder_to_relion,
               "previous_reading": zxz_pytom_to_relion}
    rows = []
    for _ in range(args.triples):
        # the ranges of DeepFinder's SHREC'19 lists: phi, psi in [-180, 180], the in [0, 180]
        phi, psi = rng.uniform(-180, 180, 2)
        the = np.degrees(np.arccos(2 * rng.uniform() - 1))
        turned = rotate_array(vol, (phi, psi, the))
        rows.append(measure_triple(before, turned, [phi, psi, the], key="angles_phi_psi_the",
                                   readers=readers, centroids=_xyz_centroids))
    return write_check(
        target, rows, what="DeepFinder XML phi psi the vs deepfinder.utils.common.rotate_array",
        versions={"cryoet_deepfinder_version": metadata.version("cryoet-deepfinder")},
        reader="deepfinder_to_relion", tolerance=args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
