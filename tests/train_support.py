"""Helpers for the train/predict tests: tiny labelled datasets, the tiny model configuration,
and what subprocess tests need to import the same code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from tomoclass.data import ClassMap, write_dataset
from tomoclass.simulate import blob_volumes

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"

#: Model used by the tests: real dilated net with a tiny configuration when available.
TINY_MODEL = "dilated_densenet3d"
TINY_KWARGS: dict = {"growth_rate": 2, "num_blocks": 2, "layers_per_block": 2,
                     "dilations": [1, 2], "bottleneck_width": 2}


# -- tiny data ----------------------------------------------------------------------------
def make_dataset(path: Path, *, n_per_class=(6, 6, 6), n_val_per_class=2, box=12, seed=0,
                 voxel_size_angstrom=10.0, names=None) -> Path:
    """Write a labelled blob dataset through ``tomoclass.data.write_dataset``."""
    rng = np.random.default_rng(seed)
    k = len(n_per_class)
    names = names or [f"class{i}" for i in range(k)]
    labels, splits = [], []
    for c, n in enumerate(n_per_class):
        labels += [c] * n
        splits += ["train"] * n
        labels += [c] * n_val_per_class
        splits += ["val"] * n_val_per_class
    labels = np.array(labels)
    vols = blob_volumes(labels, box, rng)
    table = pd.DataFrame({
        "tomogram": "t0", "x": 0.0, "y": 0.0, "z": np.arange(len(labels), dtype=float),
        "class_name": [names[c] for c in labels], "rot": np.nan, "tilt": np.nan, "psi": np.nan,
        "score": np.nan, "is_protein": True, "split": splits,
    })
    cmap = ClassMap(names, ["small"] * k)
    # blob_volumes are positive densities: bright particles
    write_dataset(path, vols, table, cmap, voxel_size_angstrom, polarity="bright")
    return path


def runner_prelude() -> str:
    """Python code a subprocess runs first so it sees the same packages as the tests."""
    return f"import sys; sys.path[:0] = [{str(SRC_DIR)!r}, {str(TESTS_DIR)!r}]; "


PY = sys.executable


#: Environment for subprocesses: one intra-op thread. On the shared 2-core machine torch's
#: default of one thread per core made a 12^3 training step ~40x slower (measured 1-2 s vs
#: 0.03 s) through oversubscription; the tests check behaviour, not speed.
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1"}


def one_thread():
    """Generator for an autouse fixture: one torch thread during a test, restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def tiny_model_args() -> list[str]:
    """``--model-arg KEY=VALUE`` options giving the CLI the tiny model of the tests."""
    out: list[str] = []
    for k, v in TINY_KWARGS.items():
        out += ["--model-arg", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"]
    return out
