import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomoclass.data.extract import extract_subtomograms
from tomoclass.errors import InputError
from tomoclass.io import read_volume, write_volume


def _blob(shape, centre_zyx, sigma=1.5):
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    c = centre_zyx
    return np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * sigma**2))


def _table(xyz):
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    return pd.DataFrame({"tomogram": "t", "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                         "class_name": "a"})


def _centroid(b):
    b = b - b.min()
    idx = np.indices(b.shape).reshape(3, -1)
    return (idx * b.reshape(-1)).sum(1) / b.sum()


@pytest.fixture
def tomo(tmp_path):
    shape = (30, 40, 50)
    centre = (12, 17, 23)  # z, y, x
    data = (_blob(shape, centre) + 0.001 * np.random.default_rng(0).normal(size=shape))
    p = tmp_path / "t.mrc"
    write_volume(p, data.astype(np.float32), 10.0)
    return read_volume(p), centre


@pytest.mark.parametrize("box", [16, 15])
def test_planted_blob_exactly_centred(tomo, box):
    vol, (cz, cy, cx) = tomo
    ex = extract_subtomograms(vol, _table([cx, cy, cz]), box=box, normalize="none")
    b = ex.subtomograms[0]
    assert b.shape == (box, box, box) and b.dtype == np.float32
    assert np.unravel_index(np.argmax(b), b.shape) == (box // 2,) * 3
    np.testing.assert_allclose(_centroid(np.where(b > 0.05, b, 0)), [box // 2] * 3, atol=0.02)
    # the box is a plain slice of the tomogram: values identical
    h = box // 2
    np.testing.assert_array_equal(
        b, np.asarray(vol.data[cz - h:cz - h + box, cy - h:cy - h + box, cx - h:cx - h + box]))
    assert ex.n_skipped == 0 and ex.n_padded == 0 and not ex.table["padded"][0]


def test_zscore_default(tomo):
    vol, (cz, cy, cx) = tomo
    b = extract_subtomograms(vol, _table([cx, cy, cz]), box=16).subtomograms[0]
    assert b.mean() == pytest.approx(0.0, abs=1e-5)
    assert b.std() == pytest.approx(1.0, abs=1e-4)


def test_subvoxel_centring(tmp_path):
    shape = (32, 32, 32)
    true = (15.3, 16.6, 14.25)  # z, y, x
    data = _blob(shape, true, sigma=2.0).astype(np.float32)
    t = _table([true[2], true[1], true[0]])
    near = extract_subtomograms(data, t, box=16, normalize="none").subtomograms[0]
    sub = extract_subtomograms(data, t, box=16, normalize="none", subvoxel=True).subtomograms[0]
    err_near = np.abs(_centroid(np.where(near > 0.05, near, 0)) - 8)
    err_sub = np.abs(_centroid(np.where(sub > 0.05, sub, 0)) - 8)
    assert err_sub.max() < 0.05
    assert err_near.max() > 0.2  # rounding moves it by the fractional part


def test_border_padded_and_flagged(tomo, caplog):
    vol, _ = tomo
    t = _table([[2, 20, 15], [25, 20, 15]])  # x=2 is 6 voxels short of a 16 box's half
    with caplog.at_level(logging.INFO):
        ex = extract_subtomograms(vol, t, box=16, normalize="none")
    assert ex.table["padded"].tolist() == [True, False] and ex.n_padded == 1
    b = ex.subtomograms[0]
    inner = np.asarray(vol.data[15 - 8:15 + 8, 20 - 8:20 + 8, 0:10])
    np.testing.assert_array_equal(b[:, :, 6:], inner)
    np.testing.assert_allclose(b[:, :, :6], inner.mean(), rtol=1e-5)
    assert "1 padded" in caplog.text


def test_border_skip_and_outside_counts(tomo):
    vol, _ = tomo
    t = _table([[2, 20, 15], [25, 20, 15], [60, 20, 15], [25, -3, 15], [25, 20, 29.4]])
    ex = extract_subtomograms(vol, t, box=16, border="skip")
    assert ex.table["source_row"].tolist() == [1]
    assert ex.n_outside == 2 and ex.n_border_skipped == 2 and ex.n_skipped == 4
    ex = extract_subtomograms(vol, t, box=16)
    assert ex.table["source_row"].tolist() == [0, 1, 4] and ex.n_outside == 2


def test_box_larger_than_tomogram(tomo):
    vol, _ = tomo
    with pytest.raises(InputError) as e:
        extract_subtomograms(vol, _table([10, 10, 10]), box=32)
    assert "larger than the tomogram" in str(e.value) and e.value.field == "box"


def test_bad_options(tomo):
    vol, _ = tomo
    t = _table([10, 10, 10])
    for kw in ({"border": "wrap"}, {"normalize": "minmax"}, {"box": 0}):
        with pytest.raises(InputError):
            extract_subtomograms(vol, t, **kw)
    with pytest.raises(InputError):
        extract_subtomograms(vol, t.drop(columns="z"))


def test_rescaling_halves_the_blob(tmp_path):
    shape = (48, 48, 48)
    c = (24, 24, 24)
    data = _blob(shape, c, sigma=4.0).astype(np.float32)
    p = tmp_path / "r.mrc"
    write_volume(p, data, 5.0)
    vol = read_volume(p)
    half = extract_subtomograms(vol, _table([24, 24, 24]), box=16, normalize="none",
                                voxel_size_angstrom=10.0).subtomograms[0]

    def width(b):
        prof = b[8, 8, :] - b[8, 8, :].min()
        return np.sqrt((prof * (np.arange(16) - 8) ** 2).sum() / prof.sum())

    assert np.unravel_index(np.argmax(half), half.shape) == (8, 8, 8)
    # sigma 4 voxels at 5 Å, widened by the anti-alias filter (sigma = step/2 = 1 voxel),
    # is sqrt(4**2 + 1**2) / 2 voxels at 10 Å.
    assert width(half) == pytest.approx(np.sqrt(17.0) / 2, rel=0.05)


def test_order_kept_and_out_buffer(tomo):
    vol, _ = tomo
    rng = np.random.default_rng(1)
    xyz = np.stack([rng.integers(8, 42, 300), rng.integers(8, 32, 300),
                    rng.integers(8, 22, 300)], 1)
    out = np.zeros((300, 16, 16, 16), np.float32)
    ex = extract_subtomograms(vol, _table(xyz), box=16, normalize="none", out=out)
    assert ex.subtomograms is out
    for i in (0, 137, 299):
        x, y, z = xyz[i]
        np.testing.assert_array_equal(out[i], vol.data[z - 8:z + 8, y - 8:y + 8, x - 8:x + 8])


def test_subvoxel_at_integer_centre_is_the_plain_slice(tomo):
    vol, (cz, cy, cx) = tomo
    t = _table([cx, cy, cz])
    a = extract_subtomograms(vol, t, box=16, normalize="none").subtomograms[0]
    b = extract_subtomograms(vol, t, box=16, normalize="none", subvoxel=True).subtomograms[0]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_resample_volume_is_the_extraction_kernel_on_a_whole_volume():
    from tomoclass.data import extract_subtomograms, resample_volume
    from tomoclass.io.volume import Volume

    rng = np.random.default_rng(0)
    vol = rng.normal(size=(40, 44, 48)).astype(np.float32)
    # step 1 is the identity; a constant stays constant (weights sum to one)
    np.testing.assert_array_equal(resample_volume(vol, 1.0), vol)
    np.testing.assert_allclose(resample_volume(np.full((9, 10, 11), 3.0, np.float32), 1.7),
                               3.0, rtol=1e-5)
    for step in (2.0, 1.5, 0.5):
        out = resample_volume(vol, step, slab=7)  # slabs do not change the result
        assert out.shape == tuple(int(np.floor((n - 1) / step)) + 1 for n in vol.shape)
        np.testing.assert_allclose(out, resample_volume(vol, step, slab=64), atol=1e-5)
        # a box cut at the new voxel size, centred on a grid point of the new grid, is the
        # same region of the resampled volume (away from the border)
        j = np.array(out.shape) // 2
        box = 8
        table = pd.DataFrame({"tomogram": ["t"], "class_name": ["a"],
                              "z": [j[0] * step], "y": [j[1] * step], "x": [j[2] * step]})
        ext = extract_subtomograms(Volume(vol, 1.0, Path("t.mrc")), table, box=box,
                                   voxel_size_angstrom=step, normalize="none", border="pad")
        lo = j - box // 2
        np.testing.assert_allclose(
            ext.subtomograms[0], out[lo[0]:lo[0] + box, lo[1]:lo[1] + box, lo[2]:lo[2] + box],
            atol=1e-4)


def test_resample_volume_moves_a_blob_to_its_scaled_position():
    from tomoclass.data import resample_volume

    centre = np.array([30.4, 21.0, 40.6])  # fine voxels
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in (64, 48, 80)), indexing="ij")
    blob = np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
                  / (2 * 3.0**2)).astype(np.float32)
    out = resample_volume(blob, 2.0)
    w = out.clip(min=0)
    com = np.array([(w * g).sum() / w.sum() for g in np.meshgrid(
        *(np.arange(n) for n in out.shape), indexing="ij")])
    np.testing.assert_allclose(com * 2.0, centre, atol=0.05)
    with pytest.raises(InputError, match="step"):
        resample_volume(blob, 0.0)
