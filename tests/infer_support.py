"""Helper for the inference tests: a trained tiny run and a tomogram with its picks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_train import tiny_cfg
from train_support import make_dataset

from tomoclass.io import write_volume
from tomoclass.simulate import blob_volumes
from tomoclass.train import fit

BOX = 12


def make_world(root):
    """A trained tiny run, a 40^3 tomogram at 10 Å with 6 blobs, and their picks as CSV.

    ``root/run``, ``root/tomo.mrc``, ``root/picks.csv`` (a test module's ``world`` fixture).
    """
    ds = make_dataset(root / "ds", box=BOX)
    fit(tiny_cfg(epochs=1), ds, root / "run", progress=False)
    rng = np.random.default_rng(5)
    tomo = 0.3 * rng.standard_normal((40, 40, 40)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    centres = np.array([[8, 8, 8], [8, 30, 20], [20, 20, 20], [30, 10, 30], [31, 31, 9],
                        [20, 8, 32]])  # (z, y, x)
    blobs = blob_volumes(labels, BOX, rng)
    for (z, y, x), b in zip(centres, blobs, strict=True):
        tomo[z - 6:z + 6, y - 6:y + 6, x - 6:x + 6] += b
    write_volume(root / "tomo.mrc", tomo, voxel_size_angstrom=10.0)
    picks = pd.DataFrame({"x": centres[:, 2], "y": centres[:, 1], "z": centres[:, 0],
                          "class": [f"class{k}" for k in labels]})
    picks.to_csv(root / "picks.csv", index=False)
    return root
