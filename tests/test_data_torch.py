import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from tomoclass.data import ClassMap, SubtomogramDataset, WedgePreservingAugment, write_dataset
from tomoclass.data.torch_dataset import _reflect, fourier_shift


def _wedge_missing(d, half_angle_deg=60.0):
    """Boolean (d, d, d) Fourier mask (fftn layout) of the missing wedge of a ±60° y-axis tilt."""
    kz = np.fft.fftfreq(d)[:, None, None]
    kx = np.fft.fftfreq(d)[None, None, :]
    missing = np.abs(kz) > np.abs(kx) * np.tan(np.deg2rad(half_angle_deg))
    return np.broadcast_to(missing, (d, d, d))


def _wedged_volume(d=16, seed=0):
    vol = np.random.default_rng(seed).normal(size=(d, d, d))
    f = np.fft.fftn(vol)
    f[_wedge_missing(d)] = 0
    return np.fft.ifftn(f).real.astype(np.float32)


def test_augmented_wedge_stays_empty():
    d = 16
    vol = _wedged_volume(d)
    missing = _wedge_missing(d)
    ref = np.abs(np.fft.fftn(vol))
    assert ref[missing].max() < 1e-4 * ref.max()
    aug = WedgePreservingAugment(max_shift_voxels=0.5, intensity_scale=0.2, intensity_offset=0.5)
    seen = set()
    for s in range(16):
        out = aug(vol, np.random.default_rng(s))
        amp = np.abs(np.fft.fftn(out))
        assert amp[missing].max() < 1e-4 * amp.max(), s
        seen.add(tuple(np.round(out[:2, :2, :2].ravel(), 3)))
    assert len(seen) == 16  # the draws differ


def test_90_degree_rotation_would_move_the_wedge():
    # the check above is able to fail: a 90° rotation about z turns a wedge about y into one
    # about x, filling part of the original wedge
    d = 16
    vol = _wedged_volume(d)
    rotated = np.transpose(vol, (0, 2, 1))[:, :, ::-1]
    amp = np.abs(np.fft.fftn(rotated))
    assert amp[_wedge_missing(d)].max() > 0.1 * amp.max()
    aug = WedgePreservingAugment(randomized_wedge=True, max_shift_voxels=0, intensity_scale=0,
                                 intensity_offset=0)
    leaks = [np.abs(np.fft.fftn(aug(vol, np.random.default_rng(s))))[_wedge_missing(d)].max()
             for s in range(24)]
    assert max(leaks) > 1.0  # randomized_wedge does draw 90° rotations


@pytest.mark.parametrize("d", [8, 9])
def test_rotations_keep_centre_voxel(d):
    vol = np.zeros((d, d, d), np.float32)
    c = d // 2
    vol[c, c, c] = 1
    vol[c, c, c + 1] = 0.5  # off-centre marker moves to the mirrored side
    for axes in ((0, 1), (0, 2), (1, 2)):
        out = vol
        for ax in axes:
            out = _reflect(out, ax)
        assert out[c, c, c] == 1
    assert _reflect(vol, 2)[c, c, c - 1] == 0.5


def test_fourier_shift_moves_blob():
    d = 16
    z, y, x = np.meshgrid(*[np.arange(d)] * 3, indexing="ij")
    blob = np.exp(-((z - 8) ** 2 + (y - 8) ** 2 + (x - 8) ** 2) / 4.0).astype(np.float32)
    out = fourier_shift(blob, np.array([0.0, 0.0, 0.4]))
    cx = (out * x).sum() / out.sum()
    assert cx == pytest.approx(8.4, abs=1e-3)


@pytest.fixture
def store(tmp_path):
    n, d = 12, 8
    rng = np.random.default_rng(0)
    vols = rng.normal(size=(n, d, d, d)).astype(np.float32)
    t = pd.DataFrame({"tomogram": ["model_0"] * 8 + ["model_9"] * 4, "x": 1.0, "y": 2.0,
                      "z": np.arange(n, dtype=float), "class_name": ["a", "b", "c"] * 4,
                      "split": ["train"] * 8 + ["test"] * 4})
    write_dataset(tmp_path / "ds", vols, t, ClassMap(["a", "b", "c"]), 10.0)
    return tmp_path / "ds", vols


def test_items_and_labels(store):
    path, vols = store
    ds = SubtomogramDataset(path, split="test")
    assert len(ds) == 4
    assert ds.labels.tolist() == [2, 0, 1, 2]
    x, y = ds[1]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8, 8) and y == 0
    np.testing.assert_array_equal(x[0].numpy(), vols[9])
    with pytest.raises(IndexError):
        ds[4]


def test_seeded_and_worker_independent(store):
    path, _ = store
    ds = SubtomogramDataset(path, split="train", augment=True, seed=7)
    a = torch.stack([ds[i][0] for i in range(len(ds))])
    b = torch.stack([SubtomogramDataset(path, augment=True, seed=7)[i][0] for i in range(len(ds))])
    assert torch.equal(a, b)
    c = torch.stack([SubtomogramDataset(path, augment=True, seed=8)[i][0] for i in range(len(ds))])
    assert not torch.equal(a, c)
    ds.set_epoch(1)
    assert not torch.equal(a, torch.stack([ds[i][0] for i in range(len(ds))]))
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    got = torch.cat([xb for xb, _ in loader])
    assert torch.equal(got, a)
