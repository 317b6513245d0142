"""Spectrum matching: measure boxes' amplitude spectra, filter other boxes to match them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from tomoclass.data import spectrum as SP
from tomoclass.errors import InputError


def _noise_boxes(n=64, box=16, sigma=0.0, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, box, box, box))
    if sigma:
        b = ndimage.gaussian_filter(b, (0, sigma, sigma, sigma), mode="wrap")
    b = (b - b.mean(axis=(1, 2, 3), keepdims=True)) / b.std(axis=(1, 2, 3), keepdims=True)
    return b.astype(np.float32)


def test_white_noise_is_flat_and_a_low_pass_falls():
    white = SP.box_spectrum(_noise_boxes(), 10.0)
    amp = np.asarray(white.amplitude)
    assert len(amp) == 9 and white.box == 16 and white.n_boxes == 64
    assert np.ptp(amp[2:]) < 0.15 * amp[2:].mean()  # flat (band 1 holds few frequencies)
    low = np.asarray(SP.box_spectrum(_noise_boxes(sigma=1.0), 10.0).amplitude)
    assert low[2] > 2 * low[7]  # falling


def test_filtered_boxes_take_the_training_spectrum():
    train = SP.box_spectrum(_noise_boxes(seed=1), 10.0)
    other = _noise_boxes(sigma=0.8, seed=2)
    target = SP.box_spectrum(other, 10.0)
    gain = SP.matching_gain(train, target)
    assert gain[0] == 1.0 and gain[7] > 2.0  # high frequencies lifted
    out = SP.filter_boxes(torch.from_numpy(other)[:, None],
                          torch.from_numpy(SP.gain_grid(gain, 16))).numpy()[:, 0]
    assert out.shape == other.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1.0, rtol=1e-4)
    matched = np.asarray(SP.box_spectrum(out, 10.0).amplitude)
    # the shape is the training one; the overall level is set by z-scoring the boxes again
    want = np.asarray(train.amplitude)[1:8]
    np.testing.assert_allclose(matched[1:8] / matched[1:8].mean(), want / want.mean(), rtol=0.05)
    before = np.asarray(target.amplitude)[1:8]
    assert np.ptp(before / before.mean()) > 5 * np.ptp(matched[1:8] / matched[1:8].mean())
    # a gain of one changes nothing
    same = SP.filter_boxes(torch.from_numpy(other), torch.ones(16, 16, 16)).numpy()
    np.testing.assert_allclose(same, other, atol=1e-5)


def test_spectra_of_other_boxes_are_refused_and_gains_clipped():
    a = SP.box_spectrum(_noise_boxes(box=16), 10.0)
    with pytest.raises(InputError, match="cannot be matched"):
        SP.matching_gain(a, SP.box_spectrum(_noise_boxes(box=12), 10.0))
    with pytest.raises(InputError, match="cannot be matched"):
        SP.matching_gain(a, SP.box_spectrum(_noise_boxes(box=16), 13.0))
    tiny = SP.Spectrum(tuple(np.full(9, 1e-6)), 16, 10.0, 1)
    assert SP.matching_gain(a, tiny).max() == SP.GAIN_LIMITS[1]
    assert SP.Spectrum.from_dict(a.to_dict()) == a
    with pytest.raises(InputError, match="boxes"):
        SP.box_spectrum(np.zeros((0, 4, 4, 4)), 10.0)


def test_spectrum_at_cuts_boxes_as_training_boxes_are():
    rng = np.random.default_rng(0)
    tomo = ndimage.gaussian_filter(rng.standard_normal((40, 60, 60)), 1.0).astype(np.float32)
    centres = np.stack([rng.uniform(10, s - 10, 50) for s in tomo.shape], 1)
    s = SP.spectrum_at(tomo, centres, 16, 10.0)
    assert s.n_boxes == 50 and s.box == 16
    # the same tomogram at half the voxel size, resampled while cutting: about the same bands
    fine = ndimage.zoom(tomo, 2, order=3)
    s2 = SP.spectrum_at(fine, centres * 2, 16, 10.0, source_voxel_size_angstrom=5.0)
    np.testing.assert_allclose(np.asarray(s2.amplitude)[1:6], np.asarray(s.amplitude)[1:6],
                               rtol=0.25)


def test_resolve_matching():
    info = {"data": {"normalization": "zscore",
                     "spectrum": SP.box_spectrum(_noise_boxes(), 10.0).to_dict()}}
    assert SP.resolve_matching("off", info, True) is None
    assert SP.resolve_matching("auto", info, False) is None
    assert SP.resolve_matching("auto", info, True).box == 16
    assert SP.resolve_matching("on", info, False).box == 16
    assert SP.resolve_matching("auto", {"data": {}}, True) is None
    with pytest.raises(InputError, match="no training spectrum"):
        SP.resolve_matching("on", {"data": {"path": "/nonexistent"}}, False)
    with pytest.raises(InputError, match="z-scored"):
        SP.resolve_matching("on", {"data": {"normalization": "none"}}, False)
    with pytest.raises(InputError, match="match_spectrum"):
        SP.resolve_matching("sometimes", info, False)
