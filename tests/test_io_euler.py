"""RELION's Euler convention, from its source, through the simulator, STAR, copick and RELION 5.

The reference matrix here is RELION's ``Euler_angles2matrix`` (``src/euler.cpp``) written out
entry by entry, and a particle is re-aligned the way RELION's tomography code maps particle
(reference) coordinates into the tomogram (``ParticleSet::getMatrix4x4``: ``pos + A (p - c)``).
A convention inverted anywhere (simulator, STAR, copick, RELION 5 composition) fails here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from tomoclass.io import read_particles, write_particles
from tomoclass.io.euler import relion_angles, relion_matrix
from tomoclass.simulate.config import SimulationConfig
from tomoclass.simulate.rotation import particle_matrix, rotate_volume
from tomoclass.simulate.subtomograms import iter_subtomograms
from tomoclass.simulate.template import Template

ANGLES = np.array([[30.0, 50.0, -70.0], [-120.0, 100.0, 15.0], [75.0, 140.0, 160.0]])


def euler_angles2matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's ``Euler_angles2matrix`` (src/euler.cpp), entry by entry."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, cb, cg, sa, sb, sg = np.cos(a), np.cos(b), np.cos(g), np.sin(a), np.sin(b), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def _blobs(n=21):
    """Asymmetric phantom: Gaussian blobs of different size on +x, +y, +z and (-x, +y)."""
    z, y, x = np.indices((n, n, n)) - n // 2
    vol = np.zeros((n, n, n), np.float32)
    for (px, py, pz), s in (((6, 0, 0), 1.6), ((0, 4, 0), 1.3), ((0, 0, 3), 1.0),
                            ((-3, 3, 0), 1.0)):
        vol += np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / (2 * s * s))
    return vol


def _corr(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _realigned(particle, rot, tilt, psi):
    """RELION's alignment of a particle box to the reference: ``ref(p) = particle(A p)``."""
    return rotate_volume(particle, euler_angles2matrix(rot, tilt, psi).T, order=3)


def test_relion_matrix_is_relions_own():
    for rot, tilt, psi in ANGLES:
        a = euler_angles2matrix(rot, tilt, psi)
        np.testing.assert_allclose(relion_matrix(rot, tilt, psi), a, atol=1e-12)
        np.testing.assert_allclose(particle_matrix(rot, tilt, psi), a, atol=1e-12)
    back = relion_angles(relion_matrix(ANGLES[:, 0], ANGLES[:, 1], ANGLES[:, 2]))
    np.testing.assert_allclose(back, ANGLES, atol=1e-9)


@pytest.fixture(scope="module")
def simulated():
    """Clean simulated particles (tomoclass's simulator) of an asymmetric template + the ref."""
    vol = _blobs()
    t = Template(name="blobs", density=vol, voxel_size_angstrom=10.0, source="test")
    cfg = SimulationConfig(classes=[{"source": "globule", "name": "blobs"}], seed=4)
    cfg.subtomograms.box_size = 24
    cfg.subtomograms.max_shift_voxels = 0.0
    cfg.subtomograms.interpolation_order = 3
    subs = list(iter_subtomograms([t], cfg, count=3))
    ref = rotate_volume(vol, np.eye(3), output_shape=(24, 24, 24), order=1)
    return ref, subs


def test_simulated_particle_is_realigned_by_relion_with_its_angles(simulated):
    ref, subs = simulated
    for st in subs:
        p = st.params
        assert _corr(_realigned(st.clean, p.rot, p.tilt, p.psi), ref) > 0.97
        # the other convention (angles of the inverse rotation) does not re-align it
        wrong = relion_angles(euler_angles2matrix(p.rot, p.tilt, p.psi).T)
        assert _corr(_realigned(st.clean, *wrong), ref) < 0.8


def test_angles_through_star_still_realign(simulated, tmp_path):
    ref, subs = simulated
    table = pd.DataFrame({
        "tomogram": "t", "x": [5.0, 9.0, 13.0], "y": 6.0, "z": 7.0, "class_name": "blobs",
        "rot": [s.params.rot for s in subs], "tilt": [s.params.tilt for s in subs],
        "psi": [s.params.psi for s in subs]})
    path = write_particles(tmp_path / "p.star", table)
    raw = starfile.read(path)  # what RELION reads: the same rlnAngle* triple
    back = read_particles(path)
    for st, (_, row), (_, rl) in zip(subs, back.iterrows(), raw.iterrows(), strict=True):
        assert _corr(_realigned(st.clean, row.rot, row.tilt, row.psi), ref) > 0.97
        assert _corr(_realigned(st.clean, rl.rlnAngleRot, rl.rlnAngleTilt, rl.rlnAnglePsi),
                     ref) > 0.97


def test_relion5_subtomogram_prerotation_is_composed(tmp_path):
    sub = np.array([[40.0, 70.0, -20.0], [0.0, 0.0, 0.0], [-150.0, 30.0, 80.0]])
    part = np.array([[10.0, 90.0, 0.0], [30.0, 50.0, -70.0], [0.0, 0.0, 0.0]])
    origin = np.array([[10.0, -20.0, 30.0], [5.0, 0.0, 0.0], [0.0, 15.0, -25.0]])  # Å
    coords = np.array([[40.0, 50.0, 20.0], [10.0, 12.0, 14.0], [30.0, 31.0, 32.0]])
    df = pd.DataFrame({
        "rlnTomoName": ["TS_01"] * 3,
        **{f"rlnCoordinate{a}": coords[:, i] for i, a in enumerate("XYZ")},
        **{f"rlnTomoSubtomogram{a}": sub[:, i] for i, a in enumerate(("Rot", "Tilt", "Psi"))},
        **{f"rlnAngle{a}": part[:, i] for i, a in enumerate(("Rot", "Tilt", "Psi"))},
        **{f"rlnOrigin{a}Angst": origin[:, i] for i, a in enumerate("XYZ")}})
    path = tmp_path / "particles.star"
    starfile.write({"particles": df}, path)
    back = read_particles(path, voxel_size_angstrom=10.0)
    for i, row in back.iterrows():
        a = euler_angles2matrix(*sub[i]) @ euler_angles2matrix(*part[i])  # getMatrix3x3
        np.testing.assert_allclose(euler_angles2matrix(row.rot, row.tilt, row.psi), a,
                                   atol=1e-9)
        # getPosition: coordinate - A_subtomogram @ origin / pixel size
        expected = coords[i] - euler_angles2matrix(*sub[i]) @ origin[i] / 10.0
        np.testing.assert_allclose([row.x, row.y, row.z], expected, atol=1e-9)
    # without rlnAngle* columns the pre-rotation is the orientation (RELION: identity)
    starfile.write({"particles": df.drop(columns=["rlnAngleRot", "rlnAngleTilt",
                                                  "rlnAnglePsi"])}, path, overwrite=True)
    only = read_particles(path, voxel_size_angstrom=10.0)
    for i, row in only.iterrows():
        np.testing.assert_allclose(euler_angles2matrix(row.rot, row.tilt, row.psi),
                                   euler_angles2matrix(*sub[i]), atol=1e-9)


def test_relion5_reading_agrees_with_copicks_reader(tmp_path):
    relion = pytest.importorskip("copick.util.relion")
    rng = np.random.default_rng(2)
    n = 5
    df = pd.DataFrame({
        "rlnTomoName": ["TS_01"] * n,
        **{f"rlnCoordinate{a}": rng.uniform(20, 40, n) for a in "XYZ"},
        **{f"rlnTomoSubtomogram{a}": rng.uniform(-180, 180, n) for a in ("Rot", "Psi")},
        "rlnTomoSubtomogramTilt": rng.uniform(1, 179, n),
        **{f"rlnAngle{a}": rng.uniform(-180, 180, n) for a in ("Rot", "Psi")},
        "rlnAngleTilt": rng.uniform(1, 179, n),
        **{f"rlnOrigin{a}Angst": rng.uniform(-30, 30, n) for a in "XYZ"}})
    path = tmp_path / "particles.star"
    starfile.write({"particles": df}, path)
    back = read_particles(path, voxel_size_angstrom=10.0)
    df = starfile.read(path)  # the values as written (copick's reader takes a table)
    rotations, offsets = relion.relion_rows_to_poses(df)
    ours = relion_matrix(back.rot.to_numpy(), back.tilt.to_numpy(), back.psi.to_numpy())
    np.testing.assert_allclose(ours, rotations, atol=1e-9)
    coords = df[[f"rlnCoordinate{a}" for a in "XYZ"]].to_numpy()
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), coords - offsets / 10.0,
                               atol=1e-9)


def test_copick_picks_carry_the_rotation_both_ways(simulated, tmp_path):
    pytest.importorskip("copick")
    from tomoclass.io import copick_io

    copick = copick_io.import_copick()
    from copick.models import PickableObject
    from copick.util.formats import build_relion_particles_df

    ref, subs = simulated
    cfg = tmp_path / "proj" / "copick.json"
    root = copick.new_config(str(cfg), str(tmp_path / "proj" / "overlay"), pickable_objects=[
        PickableObject(name="blobs", is_particle=True, label=1, radius=60)])
    root.new_run("TS_01")
    angles = np.array([[s.params.rot, s.params.tilt, s.params.psi] for s in subs])
    table = pd.DataFrame({"tomogram": "TS_01", "x": [5.0, 9.0, 13.0], "y": 6.0, "z": 7.0,
                          "class_name": "blobs", "rot": angles[:, 0], "tilt": angles[:, 1],
                          "psi": angles[:, 2], "score": 1.0})
    copick_io.write_picks(copick_io.open_project(cfg), table, 10.0)
    fresh = copick.from_file(str(cfg))
    (picks,) = fresh.get_run("TS_01").get_picks(object_name="blobs", user_id="tomoclass")
    positions, transforms = picks.numpy()
    order = np.argsort(positions[:, 0])
    positions, transforms = positions[order], transforms[order]
    # copick's rotation takes the object (reference) into the tomogram: applied to the
    # reference it gives the simulated particle
    for st, t in zip(subs, transforms, strict=True):
        assert _corr(rotate_volume(ref, t[:3, :3], order=3), st.clean) > 0.97
    # copick's own RELION converter gives back RELION angles of the same rotation
    rows = build_relion_particles_df(positions, transforms, tomo_name="TS_01",
                                     tilt_series_pixel_size=10.0)
    for st, (_, r) in zip(subs, rows.iterrows(), strict=True):
        got = euler_angles2matrix(r.rlnAngleRot, r.rlnAngleTilt, r.rlnAnglePsi)
        np.testing.assert_allclose(got, euler_angles2matrix(st.params.rot, st.params.tilt,
                                                            st.params.psi), atol=1e-9)
    # and tomoclass reads the picks back as angles that still re-align the particles
    back = copick_io.read_picks(copick_io.open_project(cfg), copick_io.select_runs(fresh), 10.0)
    back = back.sort_values("x").reset_index(drop=True)
    for st, (_, row) in zip(subs, back.iterrows(), strict=True):
        assert _corr(_realigned(st.clean, row.rot, row.tilt, row.psi), ref) > 0.97


def test_relion5_prerotation_that_is_not_a_number_names_line_and_field(tmp_path):
    from tomoclass.errors import InputError

    df = pd.DataFrame({"rlnTomoName": ["TS_01"] * 2, "rlnCoordinateX": [1.0, 2.0],
                       "rlnCoordinateY": 3.0, "rlnCoordinateZ": 4.0,
                       "rlnTomoSubtomogramRot": [10.0, np.nan], "rlnTomoSubtomogramTilt": 20.0,
                       "rlnTomoSubtomogramPsi": 30.0, "rlnAngleRot": 0.0, "rlnAngleTilt": 0.0,
                       "rlnAnglePsi": 0.0})
    path = tmp_path / "bad.star"
    starfile.write({"particles": df}, path)
    with pytest.raises(InputError) as e:
        read_particles(path)
    assert e.value.field == "rlnTomoSubtomogramRot" and e.value.line is not None
    assert "NaN subtomogram pre-rotation" in str(e.value)
