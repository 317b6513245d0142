"""CAM figures (and MRC maps) for trained runs on a dataset: :func:`cam_for_runs`.

A workflow (above ``train`` and ``cam``): it loads the runs and the dataset split, then draws
:mod:`tomoclass.cam`'s maps and figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomoclass.cam.figure import CamPanel, cam_figure
from tomoclass.cam.maps import class_activation_maps
from tomoclass.cam.score import DEFAULT_MASK_LEVEL
from tomoclass.cam.volumes import write_cam_volumes
from tomoclass.data import open_dataset
from tomoclass.errors import InputError
from tomoclass.evaluate.compare import unique_labels
from tomoclass.infer import load_run, select_device
from tomoclass.io.outputs import claim_dir
from tomoclass.workflows.evaluate import SplitInputs, check_voxel_size, class_remap


def choose_particles(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Pick ``n`` items spread over the classes: one per class in turn, at random within each.

    Parameters
    ----------
    labels
        int (N,): class index of each item.
    n
        How many to pick (at most N).
    seed
        Seed of the :class:`numpy.random.Generator`; same seed, same picks.

    Returns
    -------
    numpy.ndarray
        int64 (min(n, N),) item positions, sorted by class then position.
    """
    if n < 1:
        raise InputError(f"number of particles must be >= 1, got {n}", field="n")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)}
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for c in sorted(pools):
            if pools[c] and len(picked) < n:
                picked.append(int(pools[c].pop()))
    return np.array(sorted(picked, key=lambda i: (labels[i], i)), dtype=np.int64)


@dataclass
class CamFigureResult:
    """What :func:`cam_for_runs` made.

    Attributes
    ----------
    figure
        The PNG.
    rows
        int64 (n,): dataset rows (``index`` in ``particles.star``) of the figure's particles.
    panels
        One :class:`CamPanel` per run (maps, method, probabilities).
    mrc_files
        CAM volumes written, if any.
    """

    figure: Path
    rows: np.ndarray
    panels: list[CamPanel]
    mrc_files: list[Path] = field(default_factory=list)


def cam_for_runs(
    runs: Sequence[str | Path],
    dataset_dir: str | Path,
    out: str | Path,
    *,
    n: int = 8,
    split: str = "test",
    which: str = "best",
    target: str = "predicted",
    mrc_dir: str | Path | None = None,
    orthogonal: bool = False,
    seed: int = 0,
    mask_level: float = DEFAULT_MASK_LEVEL,
    device: str = "auto",
) -> CamFigureResult:
    """Draw the Fig. 5-style figure of ``n`` particles for one or more runs.

    Parameters
    ----------
    runs
        Run folders (``tomoclass train`` output); one CAM column each.
    dataset_dir
        Dataset folder; its ``clean.npy``, when present, gives the ground-truth column.
    out
        Output PNG.
    n
        Number of particles (rows), spread over the classes (:func:`choose_particles`).
    split
        Split the particles come from.
    which
        Checkpoint of every run ("best", "last", "epoch_005", ...).
    target
        "predicted": map of each run's predicted class; "true": of the true class.
    mrc_dir
        Also write every map as ``<run label>_row<row>_<class>.mrc`` here, at the dataset's
        voxel size.
    orthogonal
        xy, xz and yz centre slices instead of xy only.
    seed
        Seed of the particle choice.
    mask_level
        Threshold of the mask outline drawn on the maps.
    device
        "auto", "cpu", "cuda", ...
    """
    if not runs:
        raise InputError("cam needs at least one --run")
    if target not in ("predicted", "true"):
        raise InputError(f"target must be 'predicted' or 'true', got {target!r}")
    dev = select_device(device)
    store = open_dataset(dataset_dir)
    inputs = SplitInputs(store, split)
    picks = choose_particles(inputs.labels, n, seed)
    x = np.stack([_volume(inputs[int(i)]) for i in picks])
    rows = inputs.rows[picks]
    clean = (np.stack([np.asarray(store.clean[int(r)]) for r in rows])
             if getattr(store, "clean", None) is not None else None)
    data_names = list(store.class_map.names)
    true_names = [data_names[int(c)] for c in inputs.labels[picks]]

    loaded = []
    for run in runs:
        model, class_map, info = load_run(run, which, map_location=dev)
        check_voxel_size(info.get("voxel_size_angstrom"), store.voxel_size_angstrom)
        loaded.append((Path(run), model, list(class_map.names), info))
    labels = unique_labels([str(i.get("model_name", p.name)) for p, _, _, i in loaded],
                           [p for p, _, _, _ in loaded])

    panels, files = [], []
    # the MRC folder is a tomoclass output of its own (tomoclass.io.outputs)
    with (claim_dir(mrc_dir, "cam-volumes", patterns=("*_row[0-9]*.mrc",))
          if mrc_dir is not None else contextlib.nullcontext()):
        for (_, model, names, _), label in zip(loaded, labels, strict=True):
            cls = None
            if target == "true":
                cls = class_remap(data_names, names)[inputs.labels[picks]]
            res = class_activation_maps(model, x, cls)
            panel = CamPanel(f"{label} ({res.method})", res, names)
            panels.append(panel)
            if mrc_dir is not None:
                stems = [f"{label}_row{int(r):06d}_{names[int(k)]}"
                         for r, k in zip(rows, res.class_index, strict=True)]
                files += write_cam_volumes(mrc_dir, res, stems, store.voxel_size_angstrom)
    figure = cam_figure(
        out, x, panels, true_names, clean=clean, orthogonal=orthogonal, mask_level=mask_level,
        title=f"CAM of the {target} class, {split} split of {Path(dataset_dir).name}")
    return CamFigureResult(figure=figure, rows=rows, panels=panels, mrc_files=files)


def _volume(item: np.ndarray) -> np.ndarray:
    """A (D, H, W) float32 volume from a (D, H, W) or (1, D, H, W) dataset item."""
    a = np.asarray(item, dtype=np.float32)
    return a.reshape(a.shape[-3:])
