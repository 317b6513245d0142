"""Contrast polarity: measured on tomograms, made uniform in datasets, undone before a network."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from tomoclass.data import open_dataset
from tomoclass.data import polarity as P
from tomoclass.data.build import extract_dataset
from tomoclass.errors import InputError
from tomoclass.io import read_volume, write_volume


def _crowd(sign=-1.0, shape=(48, 96, 96), n=60, radius=3.0, noise=0.3, seed=0):
    """Balls of contrast ``sign`` at random places in band-limited noise; (tomogram, zyx)."""
    rng = np.random.default_rng(seed)
    tomo = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0).astype(np.float32)
    tomo *= noise / tomo.std()
    centres = np.stack([rng.uniform(radius + 2, s - radius - 2, n) for s in shape], 1)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij", sparse=True)
    for z, y, x in centres:
        tomo[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= radius**2] += sign
    return tomo, centres


def test_dark_particles_measure_dark_and_the_inverse_bright():
    tomo, _ = _crowd(-1.0)
    dark = P.measure_polarity(tomo, 10.0)
    bright = P.measure_polarity(-tomo, 10.0)
    assert dark.polarity == "dark" and bright.polarity == "bright"
    assert dark.skewness == pytest.approx(-bright.skewness, rel=1e-5)
    assert dark.octants_agreeing == 8 and abs(dark.skewness) > P.MIN_NOISE_SE * dark.noise_se
    # the lazily inverted view measures the same as the negated array
    assert P.measure_polarity(P.Inverted(tomo), 10.0) == bright


@pytest.mark.parametrize("shape", [(24, 48, 48), (48, 96, 96)])
def test_pure_noise_is_unclear(shape):
    rng = np.random.default_rng(3)
    calls = [P.measure_polarity(ndimage.gaussian_filter(rng.standard_normal(shape), 0.7)
                                .astype(np.float32), 10.0) for _ in range(6)]
    assert {c.polarity for c in calls} == {"unclear"}
    # the noise level it reports is the spread it sees, within a factor 2
    spread = np.std([c.skewness for c in calls])
    assert 0.3 * calls[0].noise_se < spread < 2.0 * calls[0].noise_se


def test_band_pass_is_set_in_angstrom_and_large_volumes_are_cropped(monkeypatch, tmp_path):
    # the same crowd at 2.5 Å voxels (4x finer, particles 4x larger in voxels) is binned by 4
    # first; a budget below the volume reads a centred crop only
    tomo, _ = _crowd(-1.0, shape=(24, 48, 48), n=20)
    fine = np.repeat(np.repeat(np.repeat(tomo, 4, 0), 4, 1), 4, 2)
    path = write_volume(tmp_path / "fine.mrc", fine, 2.5)
    vol = read_volume(path)
    res = P.measure_polarity(vol.data, vol.voxel_size_angstrom)
    assert res.binning == 4 and res.polarity == "dark"
    monkeypatch.setattr(P, "MAX_VOXELS", 24 * 32 * 32)
    cropped = P.measure_polarity(vol.data, vol.voxel_size_angstrom)
    assert cropped.binning == 4 and cropped.noise_se > res.noise_se


def test_inverted_view_reads_only_what_is_sliced():
    a = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    v = P.Inverted(a)
    assert v.shape == (3, 4, 5) and v.ndim == 3 and len(v) == 3 and v.dtype == np.float32
    np.testing.assert_array_equal(v[1:, 2], -a[1:, 2].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(v), -a.astype(np.float32))
    assert P.invert_if(a, False) is a


def test_resolve_inversion(caplog):
    tomo, _ = _crowd(-1.0)
    # the user's word: nothing measured
    assert P.resolve_inversion("dark", tomo, 10.0) == (False, None)
    assert P.resolve_inversion("bright", tomo, 10.0) == (True, None)
    assert P.resolve_inversion("bright", tomo, 10.0, target="bright") == (False, None)
    # a net trained on both conventions: never inverted, nothing measured
    assert P.resolve_inversion("auto", -tomo, 10.0, target="mixed") == (False, None)
    with caplog.at_level(logging.INFO, logger="tomoclass.data.polarity"):
        inv, m = P.resolve_inversion("auto", -tomo, 10.0, what="cell.mrc")
    assert inv and m.polarity == "bright"
    (rec,) = caplog.records
    assert rec.levelno == logging.WARNING and "cell.mrc" in rec.getMessage()
    assert "inverted" in rec.getMessage()
    caplog.clear()
    noise = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((24, 48, 48)), 0.7)
    with caplog.at_level(logging.INFO, logger="tomoclass.data.polarity"):
        assert P.resolve_inversion("auto", noise.astype(np.float32), 10.0)[0] is False
    assert "unclear" in caplog.records[0].getMessage() and "--polarity" in caplog.text
    with pytest.raises(InputError, match="polarity"):
        P.resolve_inversion("grey", tomo, 10.0)
    with pytest.raises(InputError, match="training polarity"):
        P.resolve_inversion("auto", tomo, 10.0, target="grey")


def test_extract_makes_a_dataset_of_dark_particles_from_either_convention(tmp_path):
    tomo, centres = _crowd(-1.0, n=30, seed=1)
    write_volume(tmp_path / "t0.mrc", tomo, 10.0)
    write_volume(tmp_path / "t1.mrc", -tomo, 10.0)   # the same particles, contrast inverted
    rows = [{"tomogram": t, "x": x, "y": y, "z": z, "class_name": "ball", "rot": np.nan,
             "tilt": np.nan, "psi": np.nan, "score": np.nan, "is_protein": True,
             "split": "train"} for t in ("t0", "t1") for z, y, x in centres]
    table = pd.DataFrame(rows)
    tomos = [tmp_path / "t0.mrc", tmp_path / "t1.mrc"]
    rep = extract_dataset(tmp_path / "ds", tomos, table, box=12)
    assert rep.inverted == {"t0": False, "t1": True}
    ds = open_dataset(tmp_path / "ds")
    vols = np.asarray(ds.volumes)
    n = len(centres)
    np.testing.assert_allclose(vols[n:], vols[:n], atol=1e-5)
    meta = yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())
    assert meta["polarity"] == "dark" and ds.summary()["polarity"] == "dark"
    told = meta["provenance"]["polarity"]
    assert told["requested"] == "auto"
    assert told["tomograms"]["t1"]["measured"]["polarity"] == "bright"
    # told instead of measured: "dark" for both keeps t1 as it is
    rep = extract_dataset(tmp_path / "ds2", tomos, table, box=12, polarity="dark")
    assert rep.inverted == {"t0": False, "t1": False}
    np.testing.assert_allclose(np.asarray(open_dataset(tmp_path / "ds2").volumes)[n:],
                               -vols[:n], atol=1e-5)


def test_hollow_particles_measure_dark_too():
    # shells (apoferritin-like: dense wall, solvent inside) have a light centre but are still
    # sparse dense objects: the band-passed tail is on the dark side
    rng = np.random.default_rng(4)
    shape = (48, 96, 96)
    tomo = (0.3 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
            / ndimage.gaussian_filter(rng.standard_normal(shape), 1.0).std()).astype(np.float32)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij", sparse=True)
    for z, y, x in np.stack([rng.uniform(8, s - 8, 40) for s in shape], 1):
        r2 = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2
        tomo[(r2 <= 6.0**2) & (r2 >= 4.0**2)] -= 1.0
    assert P.measure_polarity(tomo, 10.0).polarity == "dark"
    assert P.measure_polarity(-tomo, 10.0).polarity == "bright"


def test_a_volume_too_small_to_measure_is_unclear():
    res = P.measure_polarity(np.random.default_rng(0).normal(size=(6, 40, 40)), 10.0)
    assert res.polarity == "unclear" and np.isnan(res.skewness)
    with pytest.raises(InputError, match="3-D"):
        P.measure_polarity(np.zeros((4, 4)), 10.0)
