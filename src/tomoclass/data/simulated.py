"""A simulated subtomogram stream written as a dataset store (the data stage's job).

:func:`tomoclass.simulate.iter_subtomograms` simulates; :func:`write_subtomogram_dataset`
writes what it yields with :class:`~tomoclass.data.store.DatasetWriter` (the store of
``docs/architecture.md``: ``subtomograms.npy``, ``clean.npy``, ``particles.star``,
``classes.yaml``, ``dataset.yaml``), one batch at a time so memory stays flat; the directory
appears only when complete. Splits: :func:`tomoclass.simulate.output.split_labels` (the
store's stratified rule, :mod:`tomoclass.splits`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass import __version__
from tomoclass.data.classmap import ClassMap
from tomoclass.data.store import DatasetWriter
from tomoclass.io import schema
from tomoclass.simulate.output import map_voxel_sizes, split_labels
from tomoclass.simulate.subtomograms import iter_subtomograms
from tomoclass.simulate.template import Template

__all__ = ["write_subtomogram_dataset"]


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
        "map_voxel_size_angstrom": map_voxel_sizes(templates),
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
