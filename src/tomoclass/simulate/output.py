"""Writing simulations to disk: tomogram files, and the split of a subtomogram stream.

A simulated subtomogram stream becomes a dataset store in the data stage
(:func:`tomoclass.data.write_subtomogram_dataset`, which applies :func:`split_labels`): the
simulator does not import the stage above it.

Tomograms are written as ``<name>.mrc`` (float32 reconstruction), ``<name>_labels.mrc``
(int16 class labels, 0 = background, ``k + 1`` = class ``k``), ``<name>_gt.txt`` (SHREC'21
``class x y z a1 a2 a3``, angles as PyTom's simulator gives them to voltools, converted from
RELION by :func:`tomoclass.io.write_particles`), ``<name>.tlt`` (tilt angles),
``<name>_meta.yaml``
(per-tilt defocus and dose, classes, seed, full config) and optionally ``<name>_density.mrc``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from tomoclass import __version__
from tomoclass.io import write_particles, write_volume
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import claim_dir
from tomoclass.simulate.template import Template
from tomoclass.simulate.tomogram import TomogramResult, particles_table, simulate_tomogram
from tomoclass.splits import stratified_splits

__all__ = ["write_tomogram", "simulate_tomograms", "split_labels"]


def split_labels(n_per_class: int, n_classes: int, *, seed: int, val_fraction: float,
                 test_fraction: float) -> np.ndarray:
    """Split of every stream position: :func:`tomoclass.splits.stratified_splits` of its class.

    Returns
    -------
    numpy.ndarray
        ``(n_per_class * n_classes,)`` of ``"train"``/``"val"``/``"test"``, where stream
        position ``i`` is the ``i // n_classes``-th sample of class ``i % n_classes``: the
        split :func:`tomoclass.data.assign_splits` gives the same table with
        ``method="stratified"`` (per class, counts rounded halves up, one seeded shuffle).
    """
    classes = np.tile(np.arange(n_classes), n_per_class)
    return stratified_splits(classes, val_fraction=val_fraction, test_fraction=test_fraction,
                             seed=seed)


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
        "euler_convention": "gt.txt: SHREC'21 (a1 a2 a3 as PyTom's simulator gives voltools "
                            "szxz: the reference turned by scipy ZXZ (a1, a2, a3)), converted "
                            "from RELION ZYZ by tomoclass.io.write_particles",
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


def map_voxel_sizes(templates: list[Template]) -> dict[str, float]:
    """``{class name: voxel size (Å) of its source map}`` for the classes made from maps."""
    return {t.name: float(t.source_voxel_size_angstrom) for t in templates
            if np.isfinite(t.source_voxel_size_angstrom)}


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
            result.info["map_voxel_size_angstrom"] = map_voxel_sizes(templates)
            written.append(write_tomogram(out_dir, result, f"{prefix}_{i:03d}", config))
            del result
    return written
