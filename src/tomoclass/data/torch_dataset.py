"""Torch Dataset over a subtomogram store, with augmentation that keeps the missing wedge.

The missing wedge of a single-axis tilt series is a region of Fourier space symmetric under
``k -> -k`` along every axis separately. A 180° rotation about x, y or z negates two of the three
frequency axes, so it maps the wedge onto itself; a 90° rotation does not (it would turn a wedge
about y into one about x or z, which no real tomogram of the dataset has). Sub-voxel shifts are
applied as Fourier phase ramps (amplitudes unchanged) and intensity jitter is an affine map
(changes only the amplitude scale and the zero frequency). So, unless the dataset's wedges are
randomized (``randomized_wedge=True`` adds the 24 proper rotations of the cube), an augmented
subtomogram has its wedge exactly where the original had it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tomoclass.data.store import VOLUMES_FILE, SubtomogramStore, open_dataset
from tomoclass.errors import InputError

#: The four rotations of the D2 group as the pair of (z, y, x) axes they reverse.
WEDGE_ROTATIONS = {
    "identity": (),
    "rot180_x": (0, 1),  # about x: z -> -z, y -> -y
    "rot180_y": (0, 2),  # about y: z -> -z, x -> -x
    "rot180_z": (1, 2),  # about z: y -> -y, x -> -x
}


def _reflect(vol: np.ndarray, axis: int) -> np.ndarray:
    """Reflect about the box centre voxel ``D//2`` (``i -> 2*(D//2) - i`` modulo ``D``).

    Keeps the particle centre on ``D//2`` for even ``D`` too (a plain flip would move it by one
    voxel); in Fourier space this is exactly ``k -> -k`` along ``axis``, with no phase.
    """
    d = vol.shape[axis]
    idx = (2 * (d // 2) - np.arange(d)) % d
    return np.take(vol, idx, axis=axis)


def _cube_rotations() -> list[tuple[tuple[int, int, int], tuple[int, ...]]]:
    """The 24 proper rotations of a cube as (axis permutation, axes to reflect)."""
    out = []
    for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)):
        even = perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1))
        for flips in ((), (0, 1), (0, 2), (1, 2)) if even else ((0,), (1,), (2,), (0, 1, 2)):
            out.append((perm, flips))
    return out


_CUBE = _cube_rotations()


def fourier_shift(vol: np.ndarray, shift_zyx: np.ndarray) -> np.ndarray:
    """Shift a ``(z, y, x)`` volume by a sub-voxel vector (voxels) with a Fourier phase ramp.

    Circular (what leaves one side enters the other); Fourier amplitudes are unchanged except
    at the Nyquist planes of even sizes, which stay zero where they were zero.
    """
    f = np.fft.rfftn(vol)
    kz = np.fft.fftfreq(vol.shape[0])[:, None, None]
    ky = np.fft.fftfreq(vol.shape[1])[None, :, None]
    kx = np.fft.rfftfreq(vol.shape[2])[None, None, :]
    phase = np.exp(-2j * np.pi * (kz * shift_zyx[0] + ky * shift_zyx[1] + kx * shift_zyx[2]))
    return np.fft.irfftn(f * phase, s=vol.shape, axes=(0, 1, 2)).astype(np.float32)


@dataclass(frozen=True)
class WedgePreservingAugment:
    """Random augmentation that keeps the missing wedge in place.

    Parameters
    ----------
    rotations
        Draw one of the identity and the three 180° rotations about x, y, z (uniformly).
    max_shift_voxels
        Each axis is shifted by ``U(-max, max)`` voxels (Fourier phase ramp); 0 disables.
    intensity_scale
        Multiply by ``U(1 - s, 1 + s)``; 0 disables.
    intensity_offset
        Add ``N(0, o)`` (a constant, i.e. the zero frequency only); 0 disables.
    randomized_wedge
        The dataset's wedges are randomly oriented already: draw from all 24 proper cube
        rotations (90° steps) instead of the four wedge-preserving ones.
    """

    rotations: bool = True
    max_shift_voxels: float = 0.5
    intensity_scale: float = 0.1
    intensity_offset: float = 0.1
    randomized_wedge: bool = False

    def __call__(self, vol: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one ``(D, D, D)`` volume with the random draws of ``rng``."""
        out = np.asarray(vol, dtype=np.float32)
        if self.rotations:
            if self.randomized_wedge:
                perm, flips = _CUBE[int(rng.integers(len(_CUBE)))]
                out = np.transpose(out, perm)
            else:
                flips = list(WEDGE_ROTATIONS.values())[int(rng.integers(4))]
            for ax in flips:
                out = _reflect(out, ax)
        if self.max_shift_voxels > 0:
            shift = rng.uniform(-self.max_shift_voxels, self.max_shift_voxels, 3)
            out = fourier_shift(out, shift)
        if self.intensity_scale > 0:
            out = out * np.float32(rng.uniform(1 - self.intensity_scale, 1 + self.intensity_scale))
        if self.intensity_offset > 0:
            out = out + np.float32(rng.normal(0.0, self.intensity_offset))
        return np.ascontiguousarray(out, dtype=np.float32)


class SubtomogramDataset(Dataset):
    """Items ``(tensor float32 (1, D, D, D), int label)`` of one split of a dataset.

    Parameters
    ----------
    store
        :class:`SubtomogramStore` or a dataset directory.
    split
        ``"train"``, ``"val"``, ``"test"`` or ``None`` (all rows).
    augment
        Apply :class:`WedgePreservingAugment` (or pass an instance to configure it).
    seed
        Base seed. Sample ``i`` in epoch ``e`` draws from ``SeedSequence([seed, e, i])``, so
        augmentation is the same whatever the number of DataLoader workers or their order;
        call :meth:`set_epoch` each epoch for fresh draws.
    randomized_wedge
        Shorthand for ``augment=WedgePreservingAugment(randomized_wedge=True)`` (allows 90°
        rotations).

    Notes
    -----
    The memory map is not pickled to DataLoader workers: each worker reopens
    ``subtomograms.npy`` read-only on first access, so workers share the page cache and no
    process copies the array.
    """

    def __init__(self, store: SubtomogramStore | str | os.PathLike[str],
                 split: str | None = "train", augment: bool | WedgePreservingAugment = False,
                 seed: int = 0, *, randomized_wedge: bool = False) -> None:
        if not isinstance(store, SubtomogramStore):
            store = open_dataset(store)
        self.path = Path(store.path)
        self.split = split
        self.indices = store.split_indices(split)
        self.labels = store.table["class_id"].to_numpy()[self.indices].astype(np.int64)
        self.class_map = store.class_map
        self.box = store.box
        if isinstance(augment, WedgePreservingAugment):
            self.augment: WedgePreservingAugment | None = augment
        elif augment or randomized_wedge:
            self.augment = WedgePreservingAugment(randomized_wedge=randomized_wedge)
        else:
            self.augment = None
        self.seed = int(seed)
        self.epoch = 0
        self._volumes: np.ndarray | None = store.volumes

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s augmentation draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_volumes"] = None  # reopened lazily in the worker (never pickle the memmap)
        return state

    def _array(self) -> np.ndarray:
        if self._volumes is None:
            try:
                self._volumes = np.load(self.path / VOLUMES_FILE, mmap_mode="r",
                                        allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot reopen ({exc})", path=self.path / VOLUMES_FILE) from None
        return self._volumes

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        row = int(self.indices[i])
        vol = np.array(self._array()[row], dtype=np.float32)
        if self.augment is not None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, row]))
            vol = self.augment(vol, rng)
        return torch.from_numpy(vol[None]), int(self.labels[i])
