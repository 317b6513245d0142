"""CAM volumes as MRC files, to open beside the subtomogram in IMOD, ChimeraX or napari."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tomoclass.cam.maps import CamResult
from tomoclass.errors import InputError
from tomoclass.io import write_volume

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_cam_volumes(
    directory: str | Path,
    result: CamResult,
    stems: Sequence[str],
    voxel_size_angstrom: float,
) -> list[Path]:
    """Write each upsampled map of ``result`` as ``<directory>/<stem>.mrc`` (float32).

    Parameters
    ----------
    directory
        Output folder (created if missing).
    result
        Maps (N, D, H, W), (z, y, x), at the input's sampling.
    stems
        N file names without suffix; characters unsafe in file names become "_".
    voxel_size_angstrom
        The input subtomograms' voxel size in Å, written to every header so the map
        overlays its subtomogram.

    Returns
    -------
    list of Path
        The N files written (each atomically).
    """
    if len(stems) != len(result.cam):
        raise InputError(f"{len(stems)} file names for {len(result.cam)} maps")
    clean = [_UNSAFE.sub("_", str(s)) for s in stems]
    if len(set(clean)) != len(clean):
        raise InputError("CAM file names must be unique")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [
        write_volume(directory / f"{stem}.mrc", np.ascontiguousarray(vol, dtype=np.float32),
                     voxel_size_angstrom)
        for stem, vol in zip(clean, result.cam, strict=True)
    ]
