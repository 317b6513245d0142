"""Writing simulations to disk: the subtomogram dataset store and tomogram files.

Subtomogram datasets are written with :class:`tomoclass.data.DatasetWriter` (the store of
``docs/architecture.md``: ``subtomograms.npy``, ``clean.npy``, ``particles.star``,
``classes.yaml``, ``dataset.yaml``), one batch at a time so memory stays flat; the directory
appears only when complete.

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
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import claim_dir
from tomoclass.simulate.subtomograms import iter_subtomograms
from tomoclass.simulate.template import Template
from tomoclass.simulate.tomogram import TomogramResult, particles_table, simulate_tomogram

__all__ = ["write_subtomogram_dataset", "write_tomogram", "simulate_tomograms", "split_labels"]


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
        ``out_dir``, written by :class:`tomoclass.data.DatasetWriter`.
        ``subtomograms.npy`` holds the noisy volumes, each z-scored (zero mean, unit standard
        deviation); ``clean.npy`` the clean particles in density units; the table's ``index``
        is the stream position.
    """
    from tomoclass.data import ClassMap, DatasetWriter

    sc = config.subtomograms
    n_classes = len(templates)
    d = sc.box_size
    splits = split_labels(sc.n_per_class, n_classes, seed=config.seed,
                          val_fraction=sc.val_fraction, test_fraction=sc.test_fraction)
    class_map = ClassMap([t.name for t in templates], [t.size_group for t in templates])
    provenance = {
        "tool": f"tomoclass {__version__} simulate subtomograms",
        "seed": config.seed,
        "class_sources": [t.source for t in templates],
        "clean_units": "protein density (1 = 1.35 g/cm3), not normalised",
        "config": config.to_dict(),
    }
    c = d // 2
    with DatasetWriter(out_dir, box=d, class_map=class_map,
                       voxel_size_angstrom=config.voxel_size_angstrom, with_clean=True,
                       normalization="zscore", provenance=provenance,
                       # the CTF is negative at low frequency: protein dark; without it the
                       # phase (density) is written as it is: protein bright
                       polarity="dark" if sc.ctf else "bright") as writer:
        rows, noisy, clean = [], [], []

        def flush():
            if rows:
                writer.append(np.stack(noisy), pd.DataFrame(rows), clean=np.stack(clean))
                rows.clear()
                noisy.clear()
                clean.clear()

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
                "split": splits[p.index], "defocus_um": p.defocus_um, "snr": p.snr,
                "n_neighbours": len(p.neighbours),
            })
            if len(rows) >= sc.batch_size:
                flush()
            if progress is not None:
                progress(1)
        flush()
    return Path(out_dir)


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
    label = f"tomoclass {__version__} simulate seed {result.info.get('seed')} {name}"
    paths = {
        "tomogram": _write_mrc(out_dir / f"{name}.mrc", result.tomogram, vs, label),
        "labels": _write_mrc(out_dir / f"{name}_labels.mrc", result.labels, vs, label),
    }
    table = particles_table(result, name)
    paths["ground_truth"] = write_particles(out_dir / f"{name}_gt.txt", table, format="shrec21")
    with atomic_path(out_dir / f"{name}.tlt") as tmp:
        tmp.write_text("".join(f"{a:.2f}\n" for a in result.tilt_angles_deg))
    paths["tilts"] = out_dir / f"{name}.tlt"
    if result.density is not None:
        paths["density"] = _write_mrc(out_dir / f"{name}_density.mrc", result.density, vs, label)
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


def _write_mrc(path: Path, data: np.ndarray, voxel_size_angstrom: float, label: str) -> Path:
    """:func:`tomoclass.io.write_volume`, then replace mrcfile's time-stamped header label.

    mrcfile stamps the creation time into label 0; overwriting it with a fixed text makes the
    same seed give byte-identical files. Done on the temporary file, so the target still
    appears atomically.
    """
    import mrcfile

    with atomic_path(path) as tmp:
        write_volume(tmp, data, voxel_size_angstrom)
        with mrcfile.mmap(tmp, mode="r+") as mrc:
            mrc.header.label[0] = label.encode("ascii", "replace")[:80].ljust(80)
            mrc.header.nlabl = 1
    return Path(path)


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
    ``out_dir`` is a ``tomograms`` output folder (:func:`tomoclass.io.outputs.claim_dir`):
    new or empty, or a previous one replaced only with ``--overwrite``.
    """
    written = []
    with claim_dir(out_dir, "tomograms", patterns=[f"{prefix}_[0-9][0-9][0-9]*"]):
        for i in range(config.tomogram.n_tomograms):
            result = simulate_tomogram(templates, config, index=i, progress=progress)
            written.append(write_tomogram(out_dir, result, f"{prefix}_{i:03d}", config))
            del result
    return written
