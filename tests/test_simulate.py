"""Physics and API tests of tomoclass.simulate (tiny volumes, seeded)."""

import numpy as np
import pytest
from scipy import ndimage, stats
from scipy.spatial.transform import Rotation

from tomoclass.errors import InputError
from tomoclass.simulate.config import SimulationConfig
from tomoclass.simulate.fourier import (
    ctf,
    ctf_zeros_inv_angstrom,
    electron_wavelength_angstrom,
    frequency_grid,
    interaction_constant,
    missing_wedge_mask,
)
from tomoclass.simulate.phantoms import PHANTOMS, list_phantoms, phantom
from tomoclass.simulate.rotation import (
    matrix_to_euler,
    particle_matrix,
    random_euler,
    rotate_volume,
)
from tomoclass.simulate.subtomograms import apply_imaging, iter_subtomograms
from tomoclass.simulate.template import SIZE_GROUPS, Template, center_and_crop


def _blobs(n=33):
    """Asymmetric phantom: three Gaussian blobs of different size on +x, +y, +z (voxels)."""
    c = n // 2
    z, y, x = np.indices((n, n, n)) - c
    spots = {"x": (np.array([8.0, 0, 0]), 1.6), "y": (np.array([0, 5.0, 0]), 1.3),
             "z": (np.array([0, 0, 3.0]), 1.0)}
    vol = np.zeros((n, n, n), np.float32)
    for (px, py, pz), s in spots.values():
        vol += np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / (2 * s * s))
    return vol, spots


def _com_near(vol, p_xyz, radius=2.5):
    c = vol.shape[0] // 2
    z, y, x = np.indices(vol.shape) - c
    m = (x - p_xyz[0]) ** 2 + (y - p_xyz[1]) ** 2 + (z - p_xyz[2]) ** 2 <= radius**2
    w = vol * m
    return np.array([(w * x).sum(), (w * y).sum(), (w * z).sum()]) / w.sum(), w.sum()


@pytest.mark.parametrize("angles", [(30.0, 50.0, -70.0), (-120.0, 100.0, 15.0), (90, 90, 0)])
def test_rotation_moves_features_where_scipy_puts_them(angles):
    vol, spots = _blobs()
    r = Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix()  # RELION's matrix
    np.testing.assert_allclose(particle_matrix(*angles), r, atol=1e-12)
    out = rotate_volume(vol, particle_matrix(*angles), order=3)
    for v, _ in spots.values():
        expected = r @ v
        com, mass = _com_near(out, expected)
        assert mass > 1.0
        np.testing.assert_allclose(com, expected, atol=0.35)
    # the centre voxel stays put (rotation about the box centre)
    assert out[16, 16, 16] == pytest.approx(vol[16, 16, 16], rel=1e-3, abs=1e-4)


def test_euler_round_trip_and_haar_uniform():
    rng = np.random.default_rng(0)
    e = random_euler(rng, 20000)
    np.testing.assert_allclose(matrix_to_euler(particle_matrix(*e.T)), e, atol=1e-6)
    m = particle_matrix(*e.T)
    # Haar: the image of any axis is uniform on the sphere -> its z is uniform on [-1, 1]
    for axis in range(3):
        col = m[:, :, axis]
        assert np.abs(col.mean(axis=0)).max() < 0.03
        assert stats.kstest(col[:, 2], "uniform", args=(-1, 2)).pvalue > 1e-3
    # and the rotation angle follows (1 - cos w) / pi
    w = Rotation.from_matrix(m).magnitude()
    cdf = lambda t: (t - np.sin(t)) / np.pi  # noqa: E731
    assert stats.kstest(w, cdf).pvalue > 1e-3


def test_subtomogram_clean_volume_matches_its_angles():
    vol, _ = _blobs(25)
    t = Template(name="blobs", density=vol, voxel_size_angstrom=10.0, source="test")
    cfg = SimulationConfig(classes=[{"source": "globule", "name": "blobs"}])
    cfg.subtomograms.box_size = 32
    cfg.subtomograms.max_shift_voxels = 0.0
    cfg.subtomograms.interpolation_order = 3
    st = next(iter_subtomograms([t], cfg, count=1))
    p = st.params
    ref = rotate_volume(vol, particle_matrix(p.rot, p.tilt, p.psi), output_shape=(32, 32, 32))
    np.testing.assert_allclose(st.clean, ref, atol=1e-4)


def _full_grid_angles(shape):
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.rfftfreq(shape[2])[None, None, :]
    return kz, kx


def test_missing_wedge_zero_inside_nonzero_outside():
    rng = np.random.default_rng(1)
    shape = (32, 32, 32)
    vol = rng.standard_normal((1,) + shape).astype(np.float32)
    out = apply_imaging(vol, voxel_size_angstrom=10.0, defocus_um=None,
                        tilt_range_deg=(-60.0, 60.0), snr=None)
    f = np.abs(np.fft.rfftn(out[0]))
    kz, kx = _full_grid_angles(shape)
    kz = np.broadcast_to(kz, f.shape)
    kx = np.broadcast_to(kx, f.shape)
    inside = np.abs(kz) > np.abs(kx) * np.tan(np.deg2rad(60.0)) + 1e-9
    outside = np.abs(kz) < np.abs(kx) * np.tan(np.deg2rad(60.0)) - 1e-9
    scale = np.abs(np.fft.rfftn(vol[0])).mean()
    assert inside.sum() > 1000 and outside.sum() > 1000
    assert f[inside].max() < 1e-4 * scale
    assert np.median(f[outside]) > 0.3 * scale


def test_wedge_mask_matches_the_tilt_geometry_of_the_projector():
    """An asymmetric tilt range: WBP from those tilts has (almost) no power where the mask is 0."""
    from tomoclass.simulate.tomogram import backproject, project

    rng = np.random.default_rng(2)
    shape = (32, 8, 32)
    vol = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0).astype(np.float32)
    angles = np.arange(-30.0, 61.0, 1.0)
    rec = backproject(project(vol, angles), angles, shape)
    power = np.abs(np.fft.rfftn(rec)) ** 2
    good = missing_wedge_mask(shape, tilt_min_deg=-30, tilt_max_deg=60)
    mirrored = missing_wedge_mask(shape, tilt_min_deg=-60, tilt_max_deg=30)
    kz, ky, kx = frequency_grid(shape, 1.0)
    band = np.broadcast_to((kz**2 + ky**2 + kx**2 > 0.01) & (kz**2 + ky**2 + kx**2 < 0.1),
                           power.shape)
    missing_right = band & (good == 0)
    missing_wrong = band & (mirrored == 0) & (good == 1)
    measured = band & (good == 1)
    assert power[missing_right].mean() < 0.1 * power[measured].mean()
    assert power[missing_wrong].mean() > 0.3 * power[measured].mean()


def test_ctf_zeros_at_theoretical_frequencies():
    rng = np.random.default_rng(3)
    shape = (64, 64, 64)
    voxel, defocus = 4.0, 1.5
    vol = rng.standard_normal((1,) + shape).astype(np.float32)
    out = apply_imaging(vol, voxel_size_angstrom=voxel, defocus_um=np.array([defocus]),
                        tilt_range_deg=None, snr=None)
    ratio = np.fft.rfftn(out[0]) / np.fft.rfftn(vol[0])
    kz, ky, kx = frequency_grid(shape, voxel)
    k = np.broadcast_to(np.sqrt(kz**2 + ky**2 + kx**2), ratio.shape)
    zeros = ctf_zeros_inv_angstrom(defocus_um=defocus, k_max_inv_angstrom=0.5 / voxel)
    assert len(zeros) >= 3
    dk = 1.0 / (shape[0] * voxel)
    for k0 in zeros:
        near = np.abs(k - k0) < 0.1 * dk
        assert near.any()
        assert np.abs(ratio[near]).max() < 0.15
        # the transfer is large half-way to the next zero
    # radial minima of |CTF| fall at the theoretical zeros (within one shell)
    shells = np.round(k / dk).astype(int)
    prof = ndimage.mean(np.abs(ratio), labels=shells, index=np.arange(shells.max() + 1))
    minima = [i for i in range(1, len(prof) - 1) if prof[i] < prof[i - 1] and prof[i] < prof[i + 1]]
    for k0 in zeros:
        assert min(abs(m * dk - k0) for m in minima) <= 1.01 * dk
    # protein dark: the transfer is negative at low frequency
    low = (k > 0) & (k < 0.5 * zeros[0])
    assert np.all(ratio[low].real < 0)


def test_ctf_function_and_constants():
    assert electron_wavelength_angstrom(300) == pytest.approx(0.019687, rel=1e-4)
    assert interaction_constant(300) == pytest.approx(6.526e-4, rel=5e-3)
    k0 = ctf_zeros_inv_angstrom(defocus_um=3.0, k_max_inv_angstrom=0.05)
    vals = ctf(np.array(k0) ** 2, defocus_um=3.0)
    np.testing.assert_allclose(vals, 0.0, atol=1e-4)
    assert ctf(np.array([0.0]), defocus_um=3.0)[0] == pytest.approx(-0.07, abs=1e-6)


def _signal_of(st, templates, cfg, box, *, lone=False):
    from tomoclass.simulate.subtomograms import render_clean

    p = st.params
    clean, scene = render_clean(templates, p, box, order=cfg.subtomograms.interpolation_order)
    return apply_imaging((clean if lone else scene)[None], voxel_size_angstrom=10.0,
                         defocus_um=np.array([p.defocus_um]),
                         tilt_range_deg=cfg.microscope.tilt_range_deg, snr=None)[0]


@pytest.mark.parametrize("snr", [0.05, 0.5, 5.0])
def test_snr_per_subtomogram_is_as_requested(snr):
    cfg = SimulationConfig(classes=[{"source": "trimer"}, {"source": "cube8"}])
    cfg.subtomograms.snr_range = (snr, snr)
    cfg.subtomograms.snr_reference = "subtomogram"
    cfg.subtomograms.crowding = 2
    cfg.subtomograms.box_size = 24
    templates = [phantom("trimer"), phantom("cube8")]
    for st in iter_subtomograms(templates, cfg, count=4):
        signal = _signal_of(st, templates, cfg, 24)
        measured = signal.var() / (st.noisy - signal).var()
        assert measured == pytest.approx(snr, rel=0.10)
        assert st.params.snr == snr


def test_snr_per_dataset_is_one_noise_level_at_the_mean_class_snr():
    from tomoclass.simulate.subtomograms import reference_signal_variance

    names = ("globule", "trimer", "cube8", "barrel28")
    cfg = SimulationConfig(classes=[{"source": n} for n in names])
    cfg.subtomograms.snr_range = (0.2, 0.2)
    assert cfg.subtomograms.snr_reference == "dataset"
    templates = [phantom(n) for n in names]
    ref = reference_signal_variance(templates, cfg)
    sts = list(iter_subtomograms(templates, cfg, count=64))
    noise_var = [(st.noisy - _signal_of(st, templates, cfg, 32)).var() for st in sts[:8]]
    np.testing.assert_allclose(noise_var, ref / 0.2, rtol=1e-3)
    # over random orientations and defoci, the class-mean SNR is the requested one
    lone = [_signal_of(st, templates, cfg, 32, lone=True).var() for st in sts]
    assert np.mean(lone) / (ref / 0.2) == pytest.approx(0.2, rel=0.10)
    # and it grows with particle size
    per_class = [np.mean(lone[k::4]) for k in range(4)]
    assert per_class == sorted(per_class)


def test_same_seed_same_bytes_any_batching_or_processes():
    cfg = SimulationConfig(classes=[{"source": "globule"}, {"source": "dimer"},
                                    {"source": "trimer"}])
    cfg.subtomograms.box_size = 16
    cfg.subtomograms.crowding = 1
    cfg.subtomograms.batch_size = 5
    templates = [phantom(n) for n in ("globule", "dimer", "trimer")]
    a = list(iter_subtomograms(templates, cfg, count=12, seed=7))
    cfg.subtomograms.batch_size = 3
    b = list(iter_subtomograms(templates, cfg, count=12, seed=7, processes=2))
    c = list(iter_subtomograms(templates, cfg, count=12, seed=8))
    for x, y in zip(a, b, strict=True):
        assert x.noisy.tobytes() == y.noisy.tobytes()
        assert x.clean.tobytes() == y.clean.tobytes()
        assert x.params == y.params
    assert a[0].noisy.tobytes() != c[0].noisy.tobytes()
    assert [s.params.class_name for s in a[:3]] == ["globule", "dimer", "trimer"]


def test_crowding_adds_neighbours_but_clean_is_the_particle_alone():
    cfg = SimulationConfig(classes=[{"source": "globule"}])
    cfg.subtomograms.box_size = 24
    cfg.subtomograms.crowding = 4
    cfg.subtomograms.noise = False
    cfg.subtomograms.ctf = False
    cfg.subtomograms.missing_wedge = False
    t = [phantom("globule")]
    sts = list(iter_subtomograms(t, cfg, count=6))
    with_nb = [s for s in sts if s.params.neighbours]
    assert with_nb
    for s in with_nb:
        assert s.noisy.sum() > s.clean.sum() * 1.2
        assert s.clean.sum() == pytest.approx(t[0].density.sum(), rel=0.02)


def test_box_too_small_names_the_structure():
    cfg = SimulationConfig(classes=[{"source": "shell60"}])
    cfg.subtomograms.box_size = 16
    with pytest.raises(InputError, match="shell60.*does not fit") as exc:
        next(iter_subtomograms([phantom("shell60")], cfg))
    assert exc.value.path == "phantom:shell60"


def test_phantom_library():
    names = list_phantoms()
    assert len(names) >= 12 and len(set(names)) == len(names)
    lib = [phantom(n) for n in names]
    groups = {t.size_group for t in lib}
    assert groups == set(SIZE_GROUPS)
    diam = {g: [2 * t.radius_angstrom for t in lib if t.size_group == g] for g in SIZE_GROUPS}
    assert max(diam["tiny"]) <= 70 and min(diam["large"]) >= 200
    assert np.median(diam["tiny"]) < np.median(diam["small"]) < np.median(diam["medium"]) \
        < np.median(diam["large"])
    for t in lib:
        assert t.density.dtype == np.float32 and t.box % 2 == 1
        com = ndimage.center_of_mass(t.density)
        np.testing.assert_allclose(com, [t.box // 2] * 3, atol=0.3)
    # similar size, different shape: a rotation-invariant descriptor (radial profile or
    # principal extents) differs
    for a, b in [("globule", "dimer"), ("trimer", "tetramer"), ("ring6", "capped_ring5"),
                 ("cage24", "shell60"), ("rod", "dumbbell")]:
        ta, tb = phantom(a), phantom(b)
        assert abs(ta.radius_angstrom - tb.radius_angstrom) < 0.2 * ta.radius_angstrom
        pa, pb = _radial_profile(ta.density), _radial_profile(tb.density)
        n = min(len(pa), len(pb))
        ea, eb = _principal_extents(ta), _principal_extents(tb)
        assert np.abs(pa[:n] - pb[:n]).max() > 0.1 or np.abs(ea / eb - 1).max() > 0.15
    # deterministic: rendering again from scratch gives the same bytes
    from tomoclass.simulate import phantoms as ph

    again = ph._phantom_cached.__wrapped__("ring6", 10.0, 20.0)
    assert again.density.tobytes() == phantom("ring6").density.tobytes()
    assert {PHANTOMS[n].symmetry for n in names} >= {"C1", "C2", "C3", "C6", "D2", "D7", "O", "I"}


def _principal_extents(t):
    return np.sqrt(np.linalg.eigvalsh(np.cov(np.argwhere(t.mask).T.astype(float))))


def _radial_profile(d):
    c = d.shape[0] // 2
    r = np.round(np.sqrt(((np.indices(d.shape) - c) ** 2).sum(0))).astype(int)
    return ndimage.mean(d / d.max(), labels=r, index=np.arange(c + 1))


def test_center_and_crop_puts_mass_at_centre():
    vol = np.zeros((24, 24, 24), np.float32)
    vol[6:10, 12:15, 5:9] = 1
    vol = ndimage.gaussian_filter(vol, 1.0)
    out = center_and_crop(vol)
    assert out.shape[0] % 2 == 1
    np.testing.assert_allclose(ndimage.center_of_mass(out), [out.shape[0] // 2] * 3, atol=0.2)
    assert out.sum() == pytest.approx(vol.sum(), rel=0.02)


@pytest.mark.parametrize("shape", [(8, 8, 8), (7, 6, 9)])
def test_white_noise_spectrum_is_the_fft_of_real_white_noise(shape):
    from tomoclass.simulate.fourier import white_noise_spectrum

    rng = np.random.default_rng(4)
    axes = (0, 1, 2)
    xs = []
    for _ in range(400):
        s = white_noise_spectrum(rng, shape)
        x = np.fft.irfftn(s, s=shape, axes=axes)
        # Hermitian-consistent: the inverse is real and transforms back to the same spectrum
        np.testing.assert_allclose(np.fft.rfftn(x, axes=axes), s, atol=1e-3)
        xs.append(x.ravel())
    xs = np.array(xs)
    assert xs.mean() == pytest.approx(0.0, abs=0.03)
    assert xs.var() == pytest.approx(1.0, rel=0.03)
    cov = np.cov(xs[:, :6].T)
    assert np.abs(cov - np.eye(6)).max() < 0.2
    # Gaussian voxel values (central limit over the coefficients)
    assert stats.kstest(xs[:, 5], "norm").pvalue > 1e-3
    assert abs(stats.kurtosis(xs.ravel())) < 0.1


def test_microscope_defaults_are_declared_once():
    import inspect

    from tomoclass.simulate.config import MicroscopeConfig
    from tomoclass.simulate.fourier import ctf_zeros_inv_angstrom

    mc = MicroscopeConfig()
    for fn in (ctf, ctf_zeros_inv_angstrom, apply_imaging):
        params = inspect.signature(fn).parameters
        for name in ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast"):
            assert params[name].default == getattr(mc, name), (fn.__name__, name)
    assert inspect.signature(apply_imaging).parameters["tilt_range_deg"].default == tuple(
        mc.tilt_range_deg)
    wedge = inspect.signature(missing_wedge_mask).parameters
    assert (wedge["tilt_min_deg"].default, wedge["tilt_max_deg"].default) == tuple(
        mc.tilt_range_deg)
