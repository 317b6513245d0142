"""Helpers for the train/predict tests: tiny datasets, and stand-ins for the contract of
``tomoclass.data`` (docs/architecture.md) used only while those
branches have not been merged. ``install()`` adds a stand-in only where the real function
is missing, so the same tests run against the real packages once they are there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

import tomoclass.data as tdata

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"

#: Model used by the tests: real dilated net with a tiny configuration when available.
TINY_MODEL = "dilated_densenet3d"
TINY_KWARGS: dict = {"growth_rate": 2, "num_blocks": 2, "layers_per_block": 2,
                     "dilations": [1, 2], "bottleneck_width": 2}


# -- stand-ins ----------------------------------------------------------------------------
class _ClassMap:
    def __init__(self, names, size_groups=None):
        self.names = list(names)
        self.size_groups = list(size_groups) if size_groups is not None else [""] * len(names)

    def index(self, name):
        return self.names.index(name)

    def __len__(self):
        return len(self.names)

    def to_dict(self):
        return {"names": self.names, "size_groups": self.size_groups}

    @classmethod
    def from_dict(cls, d):
        return cls(d["names"], d["size_groups"])


class _Store:
    def __init__(self, path):
        self.path = Path(path)
        self.volumes = np.load(self.path / "subtomograms.npy", mmap_mode="r")
        self.clean = None
        self.table = pd.read_csv(self.path / "particles.csv")
        entries = yaml.safe_load((self.path / "classes.yaml").read_text())
        self.class_map = _ClassMap([e["name"] for e in entries], [e["size_group"] for e in entries])
        meta = yaml.safe_load((self.path / "dataset.yaml").read_text())
        self.voxel_size_angstrom = float(meta["voxel_size_angstrom"])
        self.box = int(meta["box"])


def _open_dataset(path):
    return _Store(path)


def _write_dataset(path, volumes, table, class_map, voxel_size_angstrom, clean=None):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "subtomograms.npy", np.asarray(volumes, dtype=np.float32))
    table.to_csv(path / "particles.csv", index=False)
    (path / "classes.yaml").write_text(yaml.safe_dump(
        [{"name": n, "size_group": g}
         for n, g in zip(class_map.names, class_map.size_groups, strict=True)]))
    (path / "dataset.yaml").write_text(yaml.safe_dump(
        {"voxel_size_angstrom": voxel_size_angstrom, "box": int(volumes.shape[-1])}))
    return path


class _SubtomogramDataset(torch.utils.data.Dataset):
    def __init__(self, store, split="train", augment=False, seed=0):
        rows = store.table[store.table["split"] == split]
        self.store = store
        self.index = rows["index"].to_numpy()
        self.labels = rows["class_id"].to_numpy().astype(np.int64)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        v = np.asarray(self.store.volumes[self.index[i]], dtype=np.float32)
        return torch.from_numpy(v.copy())[None], int(self.labels[i])


def install() -> None:
    """Add stand-ins for the contract functions that are not merged yet."""
    if not hasattr(tdata, "open_dataset"):
        tdata.ClassMap = _ClassMap
        tdata.open_dataset = _open_dataset
        tdata.write_dataset = _write_dataset
        tdata.SubtomogramDataset = _SubtomogramDataset


install()


# -- tiny data ----------------------------------------------------------------------------
def blob_volumes(labels: np.ndarray, box: int, rng: np.random.Generator) -> np.ndarray:
    """Class k = a Gaussian blob of radius 1.5 + 1.5 k voxels at the centre, plus noise.

    Returns float32 (N, box, box, box), zyx.
    """
    c = (box - 1) / 2
    z, y, x = np.mgrid[:box, :box, :box]
    r2 = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2
    out = np.empty((len(labels), box, box, box), dtype=np.float32)
    for i, k in enumerate(labels):
        sigma = 1.5 + 1.5 * k
        out[i] = np.exp(-r2 / (2 * sigma**2)) + 0.3 * rng.standard_normal((box, box, box))
    return out


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
        "tomogram": "t0", "x": 0.0, "y": 0.0, "z": 0.0,
        "class_name": [names[c] for c in labels], "rot": np.nan, "tilt": np.nan, "psi": np.nan,
        "score": np.nan, "is_protein": True,
        "class_id": labels, "split": splits, "index": np.arange(len(labels)),
    })
    cmap = tdata.ClassMap(names, ["small"] * k)
    tdata.write_dataset(path, vols, table, cmap, voxel_size_angstrom)
    return path


def runner_prelude() -> str:
    """Python code a subprocess runs first so it sees the same packages as the tests."""
    return (f"import sys; sys.path[:0] = [{str(SRC_DIR)!r}, {str(TESTS_DIR)!r}]; "
            "import test_train_support; ")


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
