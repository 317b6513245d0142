"""Tomogram mode on tiny volumes: placement, ground truth, projector, round trips."""

import numpy as np
import pytest
from scipy import ndimage

from tomoclass.io import read_particles, read_volume
from tomoclass.simulate.config import SimulationConfig
from tomoclass.simulate.output import simulate_tomograms
from tomoclass.simulate.phantoms import phantom
from tomoclass.simulate.rotation import particle_matrix
from tomoclass.simulate.tomogram import (
    backproject,
    class_counts,
    project,
    simulate_tomogram,
    tilt_order,
)

CLASSES = ("globule", "trimer", "cube8")


def _config(**tomo):
    cfg = SimulationConfig(classes=[{"source": c} for c in CLASSES], seed=5)
    cfg.tomogram.shape_zyx = (32, 64, 64)
    cfg.tomogram.n_particles = 8
    cfg.tomogram.write_density = True
    for k, v in tomo.items():
        setattr(cfg.tomogram, k, v)
    return cfg


@pytest.fixture(scope="module")
def tiny():
    cfg = _config()
    templates = [phantom(c) for c in CLASSES]
    return cfg, templates, simulate_tomogram(templates, cfg)


def test_particles_do_not_overlap_and_are_inside(tiny):
    cfg, templates, res = tiny
    assert len(res.particles) == 8
    pos = np.array([[p.z, p.y, p.x] for p in res.particles], float)
    rad = np.array([templates[p.class_id].radius_voxels for p in res.particles])
    for i in range(len(pos)):
        for j in range(i):
            assert np.linalg.norm(pos[i] - pos[j]) >= rad[i] + rad[j] + cfg.tomogram.min_gap_voxels
    assert np.all(pos - rad[:, None] >= 0)
    assert np.all(pos + rad[:, None] <= np.array(cfg.tomogram.shape_zyx) - 1)
    counts = np.bincount([p.class_id for p in res.particles], minlength=3)
    np.testing.assert_array_equal(counts, class_counts(8, [1, 1, 1]))


def test_ground_truth_sits_on_each_particles_density_peak(tiny):
    _, templates, res = tiny
    dens = res.density
    zz, yy, xx = np.indices(dens.shape)
    for p in res.particles:
        t = templates[p.class_id]
        # bounding spheres do not overlap, so the sphere holds this particle's density only
        sphere = (zz - p.z) ** 2 + (yy - p.y) ** 2 + (xx - p.x) ** 2 <= t.radius_voxels**2
        com = ndimage.center_of_mass(dens * sphere)
        np.testing.assert_allclose(com, [p.z, p.y, p.x], atol=0.5)
        assert 0.85 * t.density.sum() < dens[sphere].sum() < 1.02 * t.density.sum()
        # the density peak (smoothed to the particle's size) is at the listed voxel
        smooth = ndimage.gaussian_filter(dens * sphere, t.radius_voxels / 2)
        peak = np.unravel_index(smooth.argmax(), smooth.shape)
        assert np.abs(np.array(peak) - [p.z, p.y, p.x]).max() <= 1


def test_labels_mark_each_particle(tiny):
    _, templates, res = tiny
    for p in res.particles:
        t = templates[p.class_id]
        h = t.box // 2
        padded = np.pad(res.labels, h)
        region = padded[p.z:p.z + 2 * h + 1, p.y:p.y + 2 * h + 1, p.x:p.x + 2 * h + 1]
        assert (region == p.class_id + 1).sum() >= 0.8 * t.mask.sum()
    assert set(np.unique(res.labels)) <= {0, 1, 2, 3}


def test_tomogram_shows_particles_dark(tiny):
    _, _, res = tiny
    inside = res.labels > 0
    smooth = ndimage.gaussian_filter(res.tomogram, 1.0)
    assert smooth[inside].mean() < smooth[~inside].mean()


def test_tomogram_polarity_is_measured_dark():
    # (tiny's 8 particles in 32x64x64 are too few to call: "unclear")
    from tomoclass.data.polarity import measure_polarity

    cfg = _config(n_particles=40, shape_zyx=(48, 96, 96))
    res = simulate_tomogram([phantom(c) for c in CLASSES], cfg)
    assert measure_polarity(res.tomogram, cfg.voxel_size_angstrom).polarity == "dark"
    assert measure_polarity(-res.tomogram, cfg.voxel_size_angstrom).polarity == "bright"


def test_written_outputs_read_back_with_the_io_readers(tmp_path):
    cfg = _config(n_particles=6)
    templates = [phantom(c) for c in CLASSES]
    written = simulate_tomograms(tmp_path, templates, cfg, prefix="t")
    res = simulate_tomogram(templates, cfg, index=0)
    w = written[0]
    vol = read_volume(w["tomogram"])
    assert vol.voxel_size_angstrom == pytest.approx(10.0)
    assert vol.data.shape == (32, 64, 64)
    np.testing.assert_array_equal(np.asarray(vol.data), res.tomogram)
    labels = read_volume(w["labels"], check="none")
    np.testing.assert_array_equal(np.asarray(labels.data), res.labels)
    table = read_particles(w["ground_truth"])
    assert len(table) == len(res.particles)
    for (_, row), p in zip(table.iterrows(), res.particles, strict=True):
        assert row["class_name"] == p.class_name
        assert (row["x"], row["y"], row["z"]) == (p.x, p.y, p.z)
        np.testing.assert_allclose(particle_matrix(row["rot"], row["tilt"], row["psi"]),
                                   particle_matrix(p.rot, p.tilt, p.psi), atol=1e-4)
    assert len(w["tilts"].read_text().split()) == 61


def test_same_seed_same_tomogram_bytes():
    cfg = _config(n_particles=4, write_density=False)
    templates = [phantom(c) for c in CLASSES]
    a = simulate_tomogram(templates, cfg)
    b = simulate_tomogram(templates, cfg)
    c = simulate_tomogram(templates, cfg, seed=6)
    assert a.tomogram.tobytes() == b.tomogram.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.tomogram.tobytes() != c.tomogram.tobytes()


def test_projection_conserves_mass_and_wbp_round_trip_correlates():
    rng = np.random.default_rng(0)
    shape = (24, 16, 48)
    vol = np.zeros(shape, np.float32)
    for _ in range(6):
        c = rng.integers([6, 3, 8], [18, 13, 40])
        vol[tuple(c)] = 1.0
    vol = ndimage.gaussian_filter(vol, 2.0)
    angles = np.arange(-60.0, 61.0, 2.0)
    proj = project(vol, angles)
    assert proj.shape == (61, 16, 48)
    np.testing.assert_allclose(proj.sum(axis=(1, 2)), vol.sum(), rtol=1e-3)
    rec = backproject(proj, angles, shape)
    # the missing wedge elongates along z; compare within the central slab
    cc = np.corrcoef(rec[4:-4].ravel(), vol[4:-4].ravel())[0, 1]
    assert cc > 0.8
    # weighting puts the reconstruction on the original's scale (in-wedge content)
    scale = (rec * vol).sum() / (vol * vol).sum()
    assert 0.5 < scale < 1.5


def test_dose_symmetric_order():
    a = np.arange(-6.0, 7.0, 2.0)
    order = tilt_order(a)
    assert list(a[order]) == [0.0, 2.0, 4.0, -2.0, -4.0, 6.0, -6.0]
    assert sorted(order) == list(range(7))
    assert list(a[tilt_order(a, "sequential")]) == sorted(a)
