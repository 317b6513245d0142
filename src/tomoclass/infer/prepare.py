"""A trained run made ready for one tomogram: :func:`prepare_tomogram`.

``predict`` (boxes at given picks) and ``locate`` (a whole tomogram) apply a run to a
tomogram the same way, in this order: the device (:func:`tomoclass.train.device.select_device`),
the run (:func:`tomoclass.infer.load_run`), the tomogram (:func:`tomoclass.io.read_volume`,
memory-mapped) with the beam-axis check, its name in particle tables, the resampling step to
the training voxel size, the contrast polarity, and the training spectrum to match. What
depends on where the boxes are (the box filter of spectrum matching) and how the net runs
(:func:`tomoclass.train.device.inference_net`) are methods of the result.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tomoclass.data.extract import resampling_step
from tomoclass.data.polarity import resolve_inversion, training_polarity
from tomoclass.data.spectrum import box_filter_for, resolve_matching, spectrum_at
from tomoclass.infer.run import load_run
from tomoclass.io import Volume, read_volume
from tomoclass.io.tomonames import resolve_tomogram_name
from tomoclass.io.volume import warn_if_beam_along_y
from tomoclass.train.device import inference_net, select_device


@dataclass
class PreparedTomogram:
    """A run and a tomogram, ready for classification.

    Attributes
    ----------
    model, class_map, info
        :func:`tomoclass.infer.load_run`'s results (the model on ``device``, eval mode).
    device
        Where the net runs.
    volume
        The tomogram as read (:class:`tomoclass.io.Volume`, memory-mapped, not inverted).
    name
        The tomogram's name in particle tables (``rlnTomoName``).
    step
        Tomogram voxels per training voxel: 1.0, or with ``rescale`` and another voxel size,
        training voxel size over the tomogram's.
    invert
        The tomogram's contrast is to be inverted to the training data's polarity.
    measured
        The measured polarity (``polarity="auto"``), else None.
    target_polarity
        The training data's polarity (``dark``, ``bright`` or ``mixed``).
    spectrum
        The training spectrum to match (:func:`tomoclass.data.spectrum.resolve_matching`),
        else None.
    seconds
        Wall time of the polarity measurement (``"polarity"``).
    """

    model: nn.Module
    class_map: Any
    info: dict[str, Any]
    device: torch.device
    volume: Any
    name: str
    step: float
    invert: bool
    measured: Any
    target_polarity: str
    spectrum: Any
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The tomogram's file, None for an array given directly."""
        return getattr(self.volume, "path", None)

    @property
    def training_voxel_size_angstrom(self) -> float | None:
        """The training data's voxel size (Å), None when the run does not record it."""
        vs = self.info.get("voxel_size_angstrom")
        return float(vs) if vs else None

    def net(self, precision: str = "auto") -> tuple[nn.Module, torch.dtype | None]:
        """The net to classify boxes with on ``device`` and its autocast dtype (None: float32).

        :func:`tomoclass.train.device.inference_net`: the one rule for all inference.
        """
        return inference_net(self.model, self.device, precision)

    def box_filter(self, data: Any, centres_zyx: np.ndarray, box: int,
                   voxel_size_angstrom: float, source_voxel_size_angstrom: float | None = None
                   ) -> tuple[list[float] | None, np.ndarray | None]:
        """``(gain, box filter)`` that gives the boxes at ``centres_zyx`` the training spectrum.

        ``(None, None)`` when no spectrum is matched. The boxes are as they will be
        classified: ``box`` voxels of ``voxel_size_angstrom`` (cut from ``data`` at
        ``source_voxel_size_angstrom`` when resampled box by box).
        """
        if self.spectrum is None:
            return None, None
        target = spectrum_at(data, centres_zyx, box, voxel_size_angstrom,
                             source_voxel_size_angstrom=source_voxel_size_angstrom)
        return box_filter_for(self.spectrum, target)


def _name(volume: Any, tomogram_name: str | None, tomograms_star: Any,
          warp_settings: Any) -> str:
    path = getattr(volume, "path", None)
    if path is None:
        return tomogram_name or "tomogram"
    return resolve_tomogram_name(path, name=tomogram_name, tomograms_star=tomograms_star,
                                 warp_settings=warp_settings)


def prepare_tomogram(
    run: str | os.PathLike[str],
    tomogram: Any,
    *,
    which: str = "best",
    device: str | None = "auto",
    voxel_size_angstrom: float | None = None,
    rescale: bool = False,
    polarity: str = "auto",
    match_spectrum: str = "auto",
    tomogram_name: str | None = None,
    tomograms_star: str | os.PathLike[str] | None = None,
    warp_settings: str | os.PathLike[str] | None = None,
    rescale_what: str = "boxes",
    allow_both: bool = False,
) -> PreparedTomogram:
    """Load ``run`` for ``tomogram`` and decide how the tomogram is to be classified.

    Parameters
    ----------
    run, which
        Run directory, ``.pt`` file or pretrained name, and its checkpoint.
    tomogram
        MRC/OME-Zarr path or a :class:`tomoclass.io.Volume`.
    device
        ``"auto"`` (or None: CUDA when present), ``"cpu"``, ``"cuda:1"``, ...
    voxel_size_angstrom
        Override of the tomogram header's voxel size (Å).
    rescale
        Resample to the training voxel size when the tomogram's differs (without it more
        than 5 % off is an error).
    rescale_what
        What ``--rescale`` would resample, for that error (``"boxes"``, ``"the tomogram"``).
    polarity
        ``"auto"`` (measured), ``"dark"``, ``"bright"``
        (:func:`tomoclass.data.polarity.resolve_inversion`).
    allow_both
        Also take ``polarity="both"`` (``locate``: the tomogram as given, nothing measured).
    match_spectrum
        ``"auto"``, ``"on"``, ``"off"`` (:func:`tomoclass.data.spectrum.resolve_matching`).
    tomogram_name, tomograms_star, warp_settings
        The tomogram's name, or where to find it
        (:func:`tomoclass.io.tomonames.resolve_tomogram_name`).

    Raises
    ------
    InputError
        A device that is not there, an unreadable/untrusted run, a bad tomogram, a voxel
        size off without ``rescale``, a bad polarity or spectrum option.
    """
    dev = select_device(device or "auto")
    model, class_map, info = load_run(run, which=which, map_location=dev)
    vol = tomogram if isinstance(tomogram, Volume) else read_volume(
        tomogram, voxel_size_angstrom=voxel_size_angstrom)
    warn_if_beam_along_y(vol)
    name = _name(vol, tomogram_name, tomograms_star, warp_settings)
    trained = info.get("voxel_size_angstrom")
    step = 1.0
    if trained:
        step = resampling_step(float(vol.voxel_size_angstrom), float(trained), rescale=rescale,
                               path=getattr(vol, "path", None), what=rescale_what)
    target = training_polarity(info)
    start = time.perf_counter()
    if polarity == "both" and allow_both:
        invert, measured = False, None
    else:
        invert, measured = resolve_inversion(
            polarity, vol.data, float(vol.voxel_size_angstrom), target=target,
            what=str(getattr(vol, "path", None) or name))
    seconds = {"polarity": time.perf_counter() - start}
    spectrum = resolve_matching(match_spectrum, info, resampled=step != 1.0)
    return PreparedTomogram(model, class_map, info, dev, vol, name, step, invert, measured,
                            target, spectrum, seconds)
