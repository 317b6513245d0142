"""Figures like the paper's Fig. 5: one row per particle, one column per view.

Columns: the input subtomogram, the noise-free ground truth (when the dataset has
``clean.npy``), then the class activation map of each run. Each volume is shown as its
centre slice perpendicular to z (the xy plane, as in the paper) or, with
``orthogonal=True``, as three centre slices xy, xz and yz so the missing wedge (elongation
along z) shows. The particle's ground-truth mask outline is drawn on every CAM panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tomoclass.cam.maps import CamResult
from tomoclass.cam.score import DEFAULT_MASK_LEVEL, particle_mask
from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path

#: Centre-slice planes, named by the axes they show: (title, axis the slice is normal to).
PLANES = (("xy", 0), ("xz", 1), ("yz", 2))


@dataclass(frozen=True)
class CamPanel:
    """The maps of one run for the figure's particles.

    Attributes
    ----------
    label
        Column title (run or model name).
    result
        :class:`CamResult` for the N particles, in the figure's row order.
    class_names
        The run's class names (to label its predictions).
    """

    label: str
    result: CamResult
    class_names: Sequence[str]


def centre_slice(volume: np.ndarray, axis: int = 0) -> np.ndarray:
    """The centre slice of a (D, H, W) volume normal to ``axis`` (0: xy, 1: xz, 2: yz)."""
    return np.take(volume, volume.shape[axis] // 2, axis=axis)


def _robust_limits(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(img.min()), float(img.min()) + 1.0)


def cam_figure(
    path: str | Path,
    inputs: np.ndarray,
    panels: Sequence[CamPanel],
    true_names: Sequence[str],
    *,
    clean: np.ndarray | None = None,
    orthogonal: bool = False,
    mask_level: float = DEFAULT_MASK_LEVEL,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Draw the Fig. 5-style CAM figure and write it as a PNG.

    Parameters
    ----------
    path
        Output PNG (written atomically).
    inputs
        Subtomograms (N, D, H, W), (z, y, x), as the models saw them.
    panels
        One :class:`CamPanel` per run, each with N maps of shape (D, H, W).
    true_names
        N true class names (the row labels).
    clean
        Noise-free volumes (N, D, H, W) for the ground-truth column and the mask outline;
        None to leave both out.
    orthogonal
        Show xy, xz and yz centre slices instead of the xy slice alone.
    mask_level
        Threshold of the mask outline (see :func:`tomoclass.cam.particle_mask`).
    title
        Figure title.
    dpi
        Resolution of the PNG.

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    inputs = np.asarray(inputs)
    if inputs.ndim != 4:
        raise InputError(f"inputs must be (N, D, H, W), got shape {inputs.shape}")
    n = inputs.shape[0]
    if len(true_names) != n:
        raise InputError(f"{len(true_names)} class names for {n} particles")
    for p in panels:
        if p.result.cam.shape != inputs.shape:
            raise InputError(
                f"CAM of {p.label!r} has shape {p.result.cam.shape}, inputs {inputs.shape}"
            )
    if clean is not None and np.shape(clean) != inputs.shape:
        raise InputError(f"clean volumes have shape {np.shape(clean)}, inputs {inputs.shape}")
    planes = PLANES if orthogonal else PLANES[:1]
    columns: list[tuple[str, str]] = [("input", "input")]
    if clean is not None:
        columns.append(("ground truth", "clean"))
    columns += [(p.label, f"panel{i}") for i, p in enumerate(panels)]
    ncols = len(columns) * len(planes)
    size = 1.6
    fig = Figure(figsize=(size * ncols, size * n + (0.5 if title else 0.2)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, ncols, squeeze=False)
    for r in range(n):
        mask = particle_mask(np.asarray(clean[r]), mask_level) if clean is not None else None
        for ci, (label, kind) in enumerate(columns):
            if kind == "input":
                vol, cmap, text = inputs[r], "gray", None
            elif kind == "clean":
                vol, cmap, text = np.asarray(clean[r]), "gray", None
            else:
                p = panels[int(kind[5:])]
                vol, cmap = p.result.cam[r], "inferno"
                k = int(p.result.class_index[r])
                text = f"{p.class_names[k]} p={p.result.class_probability[r]:.2f}"
            if kind.startswith("panel"):  # full range: the map's peak is the point
                lims = (float(vol.min()), max(float(vol.max()), float(vol.min()) + 1e-12))
            else:  # percentiles: a few noise voxels do not wash out the particle
                lims = _robust_limits(vol)
            for pi, (pname, axis) in enumerate(planes):
                ax = axes[r, ci * len(planes) + pi]
                ax.imshow(centre_slice(vol, axis), cmap=cmap, vmin=lims[0], vmax=lims[1],
                          origin="lower", interpolation="nearest")
                if mask is not None and kind.startswith("panel") and mask.any():
                    ax.contour(centre_slice(mask, axis).astype(float), levels=[0.5],
                               colors="cyan", linewidths=0.6)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    head = label if len(planes) == 1 else f"{label}\n{pname}"
                    ax.set_title(head, fontsize=7)
                if text is not None and pi == 0:
                    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=6, color="white",
                            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
            if ci == 0:
                axes[r, 0].set_ylabel(f"true: {true_names[r]}", fontsize=7)
    height = fig.get_figheight()
    if title:
        fig.suptitle(title, fontsize=8)
    # leave the title its own band above the column headers
    fig.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 1.0 - (0.3 / height if title else 0.0)))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
