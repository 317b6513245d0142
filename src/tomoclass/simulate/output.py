"""Writing simulations to disk: the subtomogram dataset store and tomogram files.

Subtomogram datasets follow the store layout of ``docs/architecture.md`` (a directory with
``subtomograms.npy``, ``clean.npy``, ``particles.star``, ``classes.yaml``, ``dataset.yaml``);
the arrays are streamed into memory-mapped ``.npy`` files so memory stays flat, and the
directory appears only when complete (:func:`tomoclass.io.atomic.atomic_dir`).

Tomograms are written as ``<name>.mrc`` (float32 reconstruction), ``<name>_labels.mrc``
(int16 class labels, 0 = background, ``k + 1`` = class ``k``), ``<name>_gt.txt`` (SHREC'21
``class x y z phi psi theta``, PyTom ZXZ angles converted from RELION by
:func:`tomoclass.io.write_particles`), ``<name>.tlt`` (tilt angles), ``<name>_meta.yaml``
(per-tilt defocus and dose, classes, seed, full config) and optionally ``<name>_density.mrc``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tomoclass import __version__
from tomoclass.io import schema, write_particles, write_volume
from tomoclass.io.atomic import atomic_dir, atomic_path
from tomoclass.simulate.subtomograms import iter_subtomograms
from tomoclass.simulate.template import Template
from tomoclass.simulate.tomogram import TomogramResult, particles_table, simulate_tomogram

__all__ = ["DATASET_FORMAT_VERSION", "write_subtomogram_dataset", "write_tomogram",
           "simulate_tomograms", "split_labels"]

DATASET_FORMAT_VERSION = 1


class _NpyAppender:
    """Write a float32 ``.npy`` of known shape row by row with plain writes.

    Plain appends (not a writable memmap) keep the process's resident memory flat however
    large the array grows; rows must come in order.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.rows = 0

    def __enter__(self) -> _NpyAppender:
        self.fh = open(self.path, "wb")
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                      "fortran_order": False, "shape": self.shape})
        return self

    def append(self, row: np.ndarray) -> None:
        row = np.ascontiguousarray(row, dtype=np.float32)
        if row.shape != self.shape[1:]:
            raise ValueError(f"row shape {row.shape} != {self.shape[1:]}")
        self.fh.write(row.tobytes())
        self.rows += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self.fh.close()
        if exc_type is None and self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} of {self.shape[0]} rows")


def split_labels(n_per_class: int, n_classes: int, *, seed: int, val_fraction: float,
                 test_fraction: float) -> np.ndarray:
    """Split of every stream position: exact per-class fractions, shuffled per class by seed.

    Returns
    -------
    numpy.ndarray
        ``(n_per_class * n_classes,)`` of ``"train"``/``"val"``/``"test"``, where stream
        position ``i`` is the ``i // n_classes``-th sample of class ``i % n_classes``.
    """
    n_val = int(round(val_fraction * n_per_class))
    n_test = int(round(test_fraction * n_per_class))
    out = np.empty(n_per_class * n_classes, dtype=object)
    for c in range(n_classes):
        base = np.array(["train"] * n_per_class, dtype=object)
        perm = np.random.default_rng([seed, 0x5EED, c]).permutation(n_per_class)
        base[perm[:n_val]] = "val"
        base[perm[n_val:n_val + n_test]] = "test"
        out[c::n_classes] = base
    return out


def write_subtomogram_dataset(
    out_dir: str | os.PathLike,
    templates: list[Template],
    config,
    *,
    processes: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Simulate ``config.subtomograms`` and write them as a dataset store.

    Parameters
    ----------
    out_dir
        Dataset directory to create (replaced atomically if it exists).
    templates
        Class templates (class ``k`` = ``templates[k]``).
    config
        :class:`~tomoclass.simulate.config.SimulationConfig`.
    processes
        Worker processes for the simulation (output identical for any value).
    progress
        Called with the number of subtomograms just written (for progress bars).

    Returns
    -------
    Path
        ``out_dir``. ``subtomograms.npy`` holds the noisy volumes, each z-scored (zero mean,
        unit standard deviation); ``clean.npy`` the clean particles in density units.
    """
    sc = config.subtomograms
    n_classes = len(templates)
    n = sc.n_per_class * n_classes
    d = sc.box_size
    splits = split_labels(sc.n_per_class, n_classes, seed=config.seed,
                          val_fraction=sc.val_fraction, test_fraction=sc.test_fraction)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp, \
            _NpyAppender(tmp / "subtomograms.npy", (n, d, d, d)) as noisy, \
            _NpyAppender(tmp / "clean.npy", (n, d, d, d)) as clean:
        rows = []
        c = d // 2
        for st in iter_subtomograms(templates, config, processes=processes):
            p = st.params
            v = st.noisy
            sd = float(v.std())
            noisy.append((v - v.mean()) / np.float32(sd if sd > 0 else 1.0))
            clean.append(st.clean)
            rows.append({
                schema.TOMOGRAM: "simulated", schema.X: c + p.shift_zyx[2],
                schema.Y: c + p.shift_zyx[1], schema.Z: c + p.shift_zyx[0],
                schema.CLASS_NAME: p.class_name, schema.ROT: p.rot, schema.TILT: p.tilt,
                schema.PSI: p.psi, schema.SCORE: np.nan, schema.IS_PROTEIN: True,
                "class_id": p.class_id, "split": splits[p.index], "index": p.index,
                "defocus_um": p.defocus_um, "snr": p.snr, "n_neighbours": len(p.neighbours),
            })
            if progress is not None:
                progress(1)
        table = pd.DataFrame(rows)
        write_particles(tmp / "particles.star", table, format="star",
                        class_map=[t.name for t in templates])
        classes = [{"name": t.name, "size_group": t.size_group} for t in templates]
        (tmp / "classes.yaml").write_text(yaml.safe_dump(classes, sort_keys=False))
        meta = {
            "format_version": DATASET_FORMAT_VERSION,
            "box": d,
            "count": n,
            "voxel_size_angstrom": float(config.voxel_size_angstrom),
            "normalization": "zscore_per_subtomogram",
            "clean_units": "protein density (1 = 1.35 g/cm3), not normalised",
            "provenance": {
                "tool": f"tomoclass {__version__} simulate subtomograms",
                "seed": config.seed,
                "class_sources": [t.source for t in templates],
                "config": config.to_dict(),
            },
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out_dir


def write_tomogram(out_dir: str | os.PathLike, result: TomogramResult, name: str,
                   config=None) -> dict[str, Path]:
    """Write one simulated tomogram and its ground truth (see module notes).

    Returns
    -------
    dict
        ``{"tomogram", "labels", "ground_truth", "tilts", "meta"[, "density"]}`` -> path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vs = result.voxel_size_angstrom
    paths = {
        "tomogram": write_volume(out_dir / f"{name}.mrc", result.tomogram, vs),
        "labels": write_volume(out_dir / f"{name}_labels.mrc", result.labels, vs),
    }
    table = particles_table(result, name)
    paths["ground_truth"] = write_particles(out_dir / f"{name}_gt.txt", table, format="shrec21")
    with atomic_path(out_dir / f"{name}.tlt") as tmp:
        tmp.write_text("".join(f"{a:.2f}\n" for a in result.tilt_angles_deg))
    paths["tilts"] = out_dir / f"{name}.tlt"
    if result.density is not None:
        paths["density"] = write_volume(out_dir / f"{name}_density.mrc", result.density, vs)
    meta = {
        "tomogram": name,
        "shape_zyx": list(result.tomogram.shape),
        "voxel_size_angstrom": vs,
        "n_particles": len(result.particles),
        "classes": [{"label": k + 1, "name": n} for k, n in enumerate(result.class_names)],
        "euler_convention": "gt.txt: SHREC'21/PyTom ZXZ (phi psi theta) converted from RELION "
                            "ZYZ by tomoclass.io.write_particles",
        "tilts": [
            {"angle_deg": float(a), "defocus_um": float(df), "dose_before_e_per_A2": float(db)}
            for a, df, db in zip(result.tilt_angles_deg, result.defocus_um,
                                 result.dose_before_e_per_angstrom2, strict=True)
        ],
        "info": {k: (float(v) if isinstance(v, np.floating) else v)
                 for k, v in result.info.items()},
        "tool": f"tomoclass {__version__}",
    }
    if config is not None:
        meta["config"] = config.to_dict()
    with atomic_path(out_dir / f"{name}_meta.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(meta, sort_keys=False))
    paths["meta"] = out_dir / f"{name}_meta.yaml"
    return paths


def simulate_tomograms(
    out_dir: str | os.PathLike,
    templates: list[Template],
    config,
    *,
    prefix: str = "tomo",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Path]]:
    """Simulate ``config.tomogram.n_tomograms`` tomograms and write each (one at a time).

    Tomogram ``i`` is named ``f"{prefix}_{i:03d}"`` and uses the stream ``[seed, i]``.
    """
    written = []
    for i in range(config.tomogram.n_tomograms):
        result = simulate_tomogram(templates, config, index=i, progress=progress)
        written.append(write_tomogram(out_dir, result, f"{prefix}_{i:03d}", config))
        del result
    return written
