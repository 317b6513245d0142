import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from tomoclass.errors import InputError
from tomoclass.io import read_particles, write_particles
from tomoclass.io import schema as S
from tomoclass.io.euler import (
    deepfinder_to_relion,
    relion_matrix,
    relion_to_deepfinder,
    relion_to_shrec19,
    relion_to_shrec21,
    relion_to_zxz_pytom,
    shrec19_to_relion,
    shrec21_to_relion,
    zxz_pytom_to_relion,
)

BENCH_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _table(n=6, seed=0, tomogram="tomo_a"):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        S.TOMOGRAM: tomogram,
        S.X: rng.uniform(0, 100, n).round(3), S.Y: rng.uniform(0, 100, n).round(3),
        S.Z: rng.uniform(0, 50, n).round(3),
        S.CLASS_NAME: rng.choice(["1bxn", "3cf3", "4v94"], n),
        S.ROT: rng.uniform(-180, 180, n), S.TILT: rng.uniform(1, 179, n),
        S.PSI: rng.uniform(-180, 180, n),
        S.SCORE: rng.uniform(0, 1, n), S.IS_PROTEIN: True,
    })


def _same_rotation(a, b):
    for (r1, t1, p1), (r2, t2, p2) in zip(a, b, strict=True):
        np.testing.assert_allclose(relion_matrix(r1, t1, p1), relion_matrix(r2, t2, p2), atol=1e-6)


# --- Euler conventions ----------------------------------------------------------------------

def test_zxz_to_zyz_is_the_same_rotation():
    rng = np.random.default_rng(3)
    phi, psi, theta = rng.uniform(-180, 180, (3, 20))
    theta = np.abs(theta) % 180
    zyz = zxz_pytom_to_relion(phi, psi, theta)
    for (a, b, c), (rot, tilt, ps) in zip(np.stack([phi, psi, theta], 1), zyz, strict=True):
        # PyTom's triple is read the way RELION's is: both scipy rotations are the same
        m_zxz = Rotation.from_euler("ZXZ", [a, c, b], degrees=True).inv().as_matrix()
        np.testing.assert_allclose(m_zxz, relion_matrix(rot, tilt, ps), atol=1e-9)
    back = relion_to_zxz_pytom(zyz[:, 0], zyz[:, 1], zyz[:, 2])
    np.testing.assert_allclose(back, np.stack([phi, psi, theta], 1), atol=1e-6)


def test_pure_z_rotation_keeps_its_angle():
    # ZXZ (phi=30, psi=0, theta=0) and ZYZ (rot=30 [+psi], tilt=0) are both 30 degrees about z.
    rot, tilt, psi = zxz_pytom_to_relion([30.0], [0.0], [0.0])[0]
    assert tilt == pytest.approx(0.0, abs=1e-9)
    assert (rot + psi) % 360 == pytest.approx(30.0)


def _reads_every_measured_rotation(record: str, key: str, reader) -> None:
    """Every rotation an Euler check (benchmarks/*_euler_check.py) measured, at least 20, is
    the one ``reader`` makes of the row's angles, within 1 degree."""
    rec = json.loads((BENCH_RESULTS / record).read_text())
    rows = [r for r in rec["rows"] if "measured_matrix" in r]
    assert len(rows) >= 20
    for r in rows:
        a = relion_matrix(*reader(*[[v] for v in r[key]])[0])
        err = np.degrees(Rotation.from_matrix(a @ np.array(r["measured_matrix"]).T).magnitude())
        assert err < 1.0, (r[key], err)


def test_shrec21_angles_turn_the_reference_as_voltools_szxz_did():
    """SHREC'21's columns are the angles PyTom's simulator gave voltools (rotation_order
    "szxz") on x-first arrays. benchmarks/pytom_euler_check.py measured the rotation voltools
    applied for 24 triples (blob centroids before and after): every measured matrix must be
    the one tomoclass reads from the same columns. The law it follows: the reference feature
    at v lands at from_euler("ZXZ", [a1, a2, a3]) @ v (a1 alone turns +x to +y about z)."""
    _reads_every_measured_rotation("pytom_euler_20261205/pytom_euler_check.json", "angles",
                                   shrec21_to_relion)
    a = relion_matrix(*shrec21_to_relion([90.0], [0.0], [0.0])[0])
    np.testing.assert_allclose(a @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-9)
    rng = np.random.default_rng(5)
    a = np.stack([rng.uniform(0, 180, 30), rng.uniform(0, 360, 30), rng.uniform(0, 360, 30)], 1)
    zyz = shrec21_to_relion(a[:, 0], a[:, 1], a[:, 2])
    np.testing.assert_allclose(relion_matrix(zyz[:, 0], zyz[:, 1], zyz[:, 2]),
                               Rotation.from_euler("ZXZ", a, degrees=True).as_matrix(), atol=1e-9)
    back = relion_to_shrec21(zyz[:, 0], zyz[:, 1], zyz[:, 2])
    _same_rotation(shrec21_to_relion(back[:, 0], back[:, 1], back[:, 2]), zyz)
    assert np.isnan(shrec21_to_relion([np.nan], [1.0], [2.0])).all()


def test_deepfinder_angles_turn_the_reference_as_its_rotate_array_did():
    """DeepFinder turns a class's reference into the object by rotate_array(ref, (phi, psi,
    the)). benchmarks/deepfinder_euler_check.py measured that rotation with cryoet-deepfinder
    0.2.1 for 24 triples: every measured matrix must be the one tomoclass reads from the same
    attributes. The law: the feature at v lands at from_euler("zxz", [phi, the, psi]) @ v
    (about the fixed axes); phi alone turns +x to +y about z, the alone +y to +z about x."""
    _reads_every_measured_rotation("deepfinder_euler_20261205/deepfinder_euler_check.json",
                                   "angles_phi_psi_the", deepfinder_to_relion)
    a = relion_matrix(*deepfinder_to_relion([90.0], [0.0], [0.0])[0])
    np.testing.assert_allclose(a @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-9)
    a = relion_matrix(*deepfinder_to_relion([0.0], [0.0], [90.0])[0])
    np.testing.assert_allclose(a @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-9)
    rng = np.random.default_rng(6)
    phi, psi = rng.uniform(-180, 180, (2, 30))
    the = rng.uniform(0, 180, 30)
    zyz = deepfinder_to_relion(phi, psi, the)
    np.testing.assert_allclose(back := relion_to_deepfinder(*zyz.T), np.stack([phi, psi, the], 1),
                               atol=1e-6)
    _same_rotation(deepfinder_to_relion(*back.T), zyz)
    assert np.isnan(deepfinder_to_relion([np.nan], [1.0], [2.0])).all()


def test_shrec19_angles_are_z1_x_z2_in_file_order():
    """SHREC'19's simulator called rotate(volume, a1, x=a2, z2=a3): the middle column is the
    x angle, read as PyTom's (phi, theta, psi)."""
    _same_rotation(shrec19_to_relion([10.0], [20.0], [30.0]),
                   zxz_pytom_to_relion([10.0], [30.0], [20.0]))
    zyz = shrec19_to_relion([10.0], [20.0], [30.0])
    np.testing.assert_allclose(relion_to_shrec19(zyz[:, 0], zyz[:, 1], zyz[:, 2]),
                               [[10.0, 20.0, 30.0]], atol=1e-9)


# --- round trips ----------------------------------------------------------------------------

def test_star_round_trip_and_starfile_reads_it(tmp_path):
    df = _table()
    df["split"] = ["train", "test"] * 3
    df["index"] = np.arange(6)
    p = write_particles(tmp_path / "p.star", df, class_map=["1bxn", "3cf3", "4v94"])
    back = read_particles(p)
    pd.testing.assert_frame_equal(back[list(S.PARTICLE_COLUMNS)], df[list(S.PARTICLE_COLUMNS)],
                                  check_dtype=False, atol=1e-6)
    assert list(back["split"]) == list(df["split"])
    assert list(back["index"]) == list(range(6))
    raw = starfile.read(p)  # the reference reader agrees
    assert list(raw["rlnClassNumber"]) == [["1bxn", "3cf3", "4v94"].index(c) + 1
                                           for c in df[S.CLASS_NAME]]
    np.testing.assert_allclose(raw["rlnCoordinateX"], df[S.X], atol=1e-6)


def test_star_of_picks_without_angles_has_no_angle_columns(tmp_path):
    # locate's picks carry no orientation: no NaN angles for RELION, and they read back NaN
    df = _table().assign(rot=np.nan, tilt=np.nan, psi=np.nan)
    p = write_particles(tmp_path / "p.star", df)
    raw = starfile.read(p)
    assert not {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} & set(raw.columns)
    back = read_particles(p)
    assert back[[S.ROT, S.TILT, S.PSI]].isna().all(axis=None)
    np.testing.assert_allclose(back[S.X], df[S.X], atol=1e-6)
    # one row with angles keeps the columns (NaN where unknown)
    df.loc[0, [S.ROT, S.TILT, S.PSI]] = (10.0, 20.0, 30.0)
    raw = starfile.read(write_particles(tmp_path / "q.star", df))
    assert raw["rlnAngleTilt"].iloc[0] == 20.0 and np.isnan(raw["rlnAngleTilt"].iloc[1])


def test_star_written_by_starfile_is_read(tmp_path):
    p = tmp_path / "relion.star"
    starfile.write({"particles": pd.DataFrame({
        "rlnTomoName": ["TS_01", "TS_02"], "rlnCoordinateX": [10.0, 20.0],
        "rlnCoordinateY": [11.0, 21.0], "rlnCoordinateZ": [12.0, 22.0],
        "rlnAngleRot": [1.0, 2.0], "rlnAngleTilt": [3.0, 4.0], "rlnAnglePsi": [5.0, 6.0],
        "rlnClassNumber": [2, 1]})}, p)
    df = read_particles(p, class_names=["ribo", "proteasome"])
    assert list(df[S.TOMOGRAM]) == ["TS_01", "TS_02"]
    assert list(df[S.CLASS_NAME]) == ["proteasome", "ribo"]
    assert df[S.Z].tolist() == [12.0, 22.0]
    assert df[S.PSI].tolist() == [5.0, 6.0]


def test_csv_round_trip(tmp_path):
    df = _table()
    df.loc[2, S.IS_PROTEIN] = False
    df.loc[2, [S.ROT, S.TILT, S.PSI]] = np.nan
    p = write_particles(tmp_path / "p.csv", df)
    back = read_particles(p)
    pd.testing.assert_frame_equal(back, df, check_dtype=False, atol=1e-6)


def test_minimal_csv(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("x,y,z\n1,2,3\n\n4,5,6\n")
    df = read_particles(p)
    assert df[S.TOMOGRAM].tolist() == ["m", "m"]
    assert df[S.CLASS_NAME].tolist() == ["", ""]
    assert np.isnan(df[S.ROT]).all()


def test_shrec21_round_trip_same_rotations(tmp_path):
    df = _table()
    ves = pd.DataFrame([{S.TOMOGRAM: "tomo_a", S.X: 5.0, S.Y: 6.0, S.Z: 7.0,
                         S.CLASS_NAME: "vesicle", S.ROT: np.nan, S.TILT: np.nan, S.PSI: np.nan,
                         S.SCORE: np.nan, S.IS_PROTEIN: False}])
    df = pd.concat([df, ves], ignore_index=True)
    p = write_particles(tmp_path / "tomo_a_gt.txt", df, format="shrec21")
    text = p.read_text().splitlines()
    assert text[-1] == "vesicle 5 6 7 NaN NaN NaN"
    back = read_particles(p)
    assert back[S.TOMOGRAM].unique().tolist() == ["tomo_a"]
    np.testing.assert_allclose(back[[S.X, S.Y, S.Z]], df[[S.X, S.Y, S.Z]], atol=1e-9)
    assert back[S.IS_PROTEIN].tolist() == [True] * 6 + [False]
    _same_rotation(back[[S.ROT, S.TILT, S.PSI]].to_numpy()[:6],
                   df[[S.ROT, S.TILT, S.PSI]].to_numpy()[:6])


def _shrec19_text(rows=24, seed=0):
    """Rows as SHREC'19's simulator wrote them: ``pdb z y x z1 x z2``, integers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(rows):
        z, y, x = rng.integers(0, 200), rng.integers(0, 512), rng.integers(0, 512)
        a1, a2, a3 = rng.integers(-180, 181), rng.integers(0, 181), rng.integers(-180, 181)
        out.append(f"{['1bxn', '3qm1'][i % 2]} {z:4d} {y:4d} {x:4d} {a1:4d} {a2:4d} {a3:4d}")
    return "\n".join(out) + "\n"


def test_shrec19_text_is_z_y_x_first_and_told_from_shrec21(tmp_path, caplog):
    """SHREC'19 tables are ``pdb z y x`` (the contest's evaluation reads pdb_id, Z, Y, X):
    read_particles tells them from SHREC'21's ``class x y z`` by what SHREC'19's simulator
    wrote, and format= says which when the guess would be wrong."""
    p = tmp_path / "particle_locations_model_3.txt"
    p.write_text(_shrec19_text())
    first = p.read_text().split()[:7]
    with caplog.at_level("INFO"):
        df = read_particles(p)
    assert "read as SHREC'19" in caplog.text
    assert (df[S.Z].iloc[0], df[S.Y].iloc[0], df[S.X].iloc[0]) == tuple(float(v)
                                                                       for v in first[1:4])
    _same_rotation(df[[S.ROT, S.TILT, S.PSI]].to_numpy()[:1],
                   shrec19_to_relion(*[[float(v)] for v in first[4:7]]))
    assert df[S.Z].max() < 200  # the thin axis is z
    as21 = read_particles(p, format="shrec21")
    assert as21[S.X].iloc[0] == float(first[1])
    # written back as SHREC'19 it is the same text's numbers
    q = write_particles(tmp_path / "again.txt", df, format="shrec19")
    again = read_particles(q, format="shrec19")
    np.testing.assert_allclose(again[[S.X, S.Y, S.Z]], df[[S.X, S.Y, S.Z]])
    _same_rotation(again[[S.ROT, S.TILT, S.PSI]].to_numpy(), df[[S.ROT, S.TILT, S.PSI]].to_numpy())
    assert q.read_text().split()[1:4] == first[1:4]
    # too few rows to tell, decimals, or SHREC'21's [0, 360) angles: SHREC'21
    short = tmp_path / "short.txt"
    short.write_text("".join(_shrec19_text().splitlines(keepends=True)[:5]))
    assert read_particles(short)[S.X].iloc[0] == float(first[1])
    rng = np.random.default_rng(1)  # SHREC'21's ranges in integers: a1 [0, 180], a2, a3 [0, 360)
    rows21 = [f"1bxn {x} {y} {z} {a1} {a2} {a3}" for x, y, z, a1, a2, a3 in zip(
        *rng.integers(0, 400, (3, 24)), rng.integers(0, 181, 24), *rng.integers(0, 360, (2, 24)),
        strict=True)]
    int21 = tmp_path / "int21.txt"
    int21.write_text("\n".join(rows21) + "\n")
    assert read_particles(int21)[S.X].iloc[0] == float(rows21[0].split()[1])
    headed = tmp_path / "headed.txt"  # a header line says the order, even for a short table
    headed.write_text("pdb z y x a1 a2 a3\n1bxn 5 6 7 0 0 0\n")
    assert read_particles(headed)[[S.X, S.Y, S.Z]].to_numpy().tolist() == [[7, 6, 5]]
    headed.write_text("class x y z a1 a2 a3\n" + _shrec19_text())
    assert read_particles(headed)[S.X].iloc[0] == float(first[1])
    ours = write_particles(tmp_path / "t_gt.txt", _table(), format="shrec21")
    np.testing.assert_allclose(read_particles(ours)[[S.X, S.Y, S.Z]], _table()[[S.X, S.Y, S.Z]])


def test_shrec_text_without_angles(tmp_path):
    """``class x y z`` rows (picks, no orientation) are SHREC text too: angles NaN."""
    p = tmp_path / "picks.txt"
    p.write_text("1bxn 1 2 3\n3qm1 4 5 6.5\n")
    df = read_particles(p)
    assert df[[S.X, S.Y, S.Z]].to_numpy().tolist() == [[1, 2, 3], [4, 5, 6.5]]
    assert df[[S.ROT, S.TILT, S.PSI]].isna().all().all()
    p.write_text("1bxn 1 2 3 4 5\n")
    with pytest.raises(InputError, match="expected 7 columns") as e:
        read_particles(p)
    assert "line 1" in str(e.value)


def test_shrec_writer_refuses_two_tomograms(tmp_path):
    df = pd.concat([_table(2), _table(2, tomogram="other")])
    with pytest.raises(InputError, match="one tomogram"):
        write_particles(tmp_path / "x.txt", df)
    assert list(tmp_path.iterdir()) == []


def test_deepfinder_xml(tmp_path):
    p = tmp_path / "objl.xml"
    p.write_text('<objlist>\n  <object tomo_idx="3" class_label="2" x="1" y="2" z="3" '
                 'phi="10" psi="20" the="30"/>\n  <object tomo_idx="4" class_label="12" x="4" '
                 'y="5" z="6" phi="0" psi="0" the="0"/>\n</objlist>\n')
    df = read_particles(p, class_names="shrec19")
    assert df[S.TOMOGRAM].tolist() == ["3", "4"]
    assert df[S.CLASS_NAME].tolist() == ["1qvr", "4d8q"]
    _same_rotation(df[[S.ROT, S.TILT, S.PSI]].to_numpy()[:1],
                   deepfinder_to_relion([10], [20], [30]))
    # phi 10, psi 20, the 30: z by 10, then the fixed x by 30, then the fixed z by 20
    a = relion_matrix(*df[[S.ROT, S.TILT, S.PSI]].to_numpy()[0])
    np.testing.assert_allclose(a, Rotation.from_euler("zxz", [10, 30, 20], degrees=True)
                               .as_matrix(), atol=1e-9)
    raw = read_particles(p)
    assert raw[S.CLASS_NAME].tolist() == ["2", "12"]


# --- RELION specifics -----------------------------------------------------------------------

def _star(path, cols, block="particles", optics=None):
    data = {}
    if optics is not None:
        data["optics"] = pd.DataFrame(optics)
    data[block] = pd.DataFrame(cols)
    starfile.write(data, path)
    return path


def test_relion5_centred_equals_pixel_coordinates(tmp_path):
    shape = (50, 64, 80)  # z, y, x
    vs = 7.5
    xyz = np.array([[10.0, 20.0, 30.0], [79.0, 0.0, 49.0], [40.25, 31.5, 24.0]])
    pix = _star(tmp_path / "pix.star", {"rlnTomoName": ["t1"] * 3, "rlnCoordinateX": xyz[:, 0],
                                        "rlnCoordinateY": xyz[:, 1], "rlnCoordinateZ": xyz[:, 2]})
    centred = (xyz - np.array(shape[::-1]) / 2.0) * vs
    cen = _star(tmp_path / "cen.star", {
        "rlnTomoName": ["t1"] * 3, "rlnCenteredCoordinateXAngst": centred[:, 0],
        "rlnCenteredCoordinateYAngst": centred[:, 1], "rlnCenteredCoordinateZAngst": centred[:, 2]})
    a = read_particles(pix)
    b = read_particles(cen, tomogram_shape={"t1": shape}, voxel_size_angstrom=vs)
    np.testing.assert_allclose(a[[S.X, S.Y, S.Z]], b[[S.X, S.Y, S.Z]], atol=1e-6)
    with pytest.raises(InputError) as e:
        read_particles(cen, voxel_size_angstrom=vs)
    assert "size of tomogram 't1'" in str(e.value) and "line" in str(e.value)
    with pytest.raises(InputError, match="voxel size"):
        read_particles(cen, tomogram_shape=shape)


def test_star_written_with_relion5_centred_coordinates_too(tmp_path, caplog):
    # with the tomograms' sizes and voxel size the writer adds RELION 5's centred Å columns;
    # they read back to the same voxels, and without that context the voxel columns are read
    shapes = {"t1": (50, 64, 80), "t2": (60, 100, 90)}
    vs = 7.5
    xyz = np.array([[10.0, 20.0, 30.0], [79.0, 0.0, 49.0], [40.25, 31.5, 24.0]])
    df = pd.DataFrame({"tomogram": ["t1", "t2", "t2"], "x": xyz[:, 0], "y": xyz[:, 1],
                       "z": xyz[:, 2], "class_name": "a"})
    path = write_particles(tmp_path / "c.star", df, tomogram_shape=shapes,
                           voxel_size_angstrom=vs)
    raw = starfile.read(path)
    sizes = np.array([shapes[t][::-1] for t in df["tomogram"]], float)
    want = (xyz - sizes / 2.0) * vs
    for k, a in enumerate("XYZ"):
        np.testing.assert_allclose(raw[f"rlnCenteredCoordinate{a}Angst"], want[:, k], atol=1e-4)
    plain = read_particles(path)
    centred = read_particles(path, tomogram_shape=shapes, voxel_size_angstrom=vs)
    for t in (plain, centred):
        np.testing.assert_allclose(t[[S.X, S.Y, S.Z]], xyz, atol=1e-4)
    # the two disagree (another tomogram size): the centred ones win, with a warning
    with caplog.at_level("WARNING", logger="tomoclass.io.particles"):
        other = read_particles(path, tomogram_shape={"t1": (50, 64, 90), "t2": shapes["t2"]},
                               voxel_size_angstrom=vs)
    assert other[S.X][0] == pytest.approx(15.0) and "differ by up to 5.0 voxels" in caplog.text
    # one shape for every row; a table naming a tomogram with no size; one of the two alone
    one = write_particles(tmp_path / "one.star", df.assign(tomogram="t1"),
                          tomogram_shape=shapes["t1"], voxel_size_angstrom=vs)
    assert starfile.read(one)["rlnCenteredCoordinateXAngst"][0] == pytest.approx(-225.0)
    with pytest.raises(InputError, match="no tomogram size for tomogram 't2'"):
        write_particles(tmp_path / "x.star", df, tomogram_shape={"t1": shapes["t1"]},
                        voxel_size_angstrom=vs)
    with pytest.raises(InputError, match="both"):
        write_particles(tmp_path / "y.star", df, voxel_size_angstrom=vs)
    assert not (tmp_path / "x.star").exists() and not (tmp_path / "y.star").exists()
    # CSV and SHREC text carry voxels only
    write_particles(tmp_path / "c.csv", df, tomogram_shape=shapes, voxel_size_angstrom=vs)
    assert "Centered" not in (tmp_path / "c.csv").read_text()


def test_origin_shifts_applied(tmp_path):
    p = _star(tmp_path / "o.star", {
        "rlnTomoName": ["t"], "rlnCoordinateX": [100.0], "rlnCoordinateY": [50.0],
        "rlnCoordinateZ": [20.0], "rlnOriginXAngst": [20.0], "rlnOriginYAngst": [-10.0],
        "rlnOriginZAngst": [0.0]}, optics={"rlnOpticsGroup": [1], "rlnImagePixelSize": [10.0]})
    df = read_particles(p)  # pixel size from the optics block
    assert (df[S.X][0], df[S.Y][0], df[S.Z][0]) == pytest.approx((98.0, 51.0, 20.0))
    df = read_particles(p, voxel_size_angstrom=5.0)  # the override wins
    assert (df[S.X][0], df[S.Y][0]) == pytest.approx((96.0, 52.0))


def test_coordinate_pixel_size_rescales(tmp_path):
    p = _star(tmp_path / "b.star", {"rlnCoordinateX": [100.0], "rlnCoordinateY": [40.0],
                                    "rlnCoordinateZ": [8.0]})
    df = read_particles(p, coordinate_pixel_size_angstrom=2.5, voxel_size_angstrom=10.0)
    assert (df[S.X][0], df[S.Y][0], df[S.Z][0]) == pytest.approx((25.0, 10.0, 2.0))
    assert df[S.TOMOGRAM][0] == "b"
    # the same for CSV and SHREC text; it needs the voxel size to scale to
    (tmp_path / "b.csv").write_text("x,y,z,class_name\n100,40,8,a\n")
    (tmp_path / "b_gt.txt").write_text("a 100 40 8 0 0 0\n")
    for name in ("b.csv", "b_gt.txt"):
        df = read_particles(tmp_path / name, coordinate_pixel_size_angstrom=2.5,
                            voxel_size_angstrom=10.0)
        assert (df[S.X][0], df[S.Y][0], df[S.Z][0]) == pytest.approx((25.0, 10.0, 2.0))
        with pytest.raises(InputError, match="voxel_size_angstrom"):
            read_particles(tmp_path / name, coordinate_pixel_size_angstrom=2.5)


def test_coordinates_in_unbinned_pixels_get_a_hint(tmp_path):
    # 4x too large for the tomogram (unbinned tilt-series pixels): the error says what to pass
    (tmp_path / "u.csv").write_text("x,y,z,class_name\n300,200,40,a\n380,90,30,a\n")
    with pytest.raises(InputError) as e:
        read_particles(tmp_path / "u.csv", tomogram_shape=(50, 100, 100))
    assert "outside tomogram" in str(e.value) and "--coords-angpix" in str(e.value)
    ok = read_particles(tmp_path / "u.csv", tomogram_shape=(50, 100, 100),
                        coordinate_pixel_size_angstrom=2.5, voxel_size_angstrom=10.0)
    assert ok[S.X].tolist() == pytest.approx([75.0, 95.0])
    # one particle just off the edge is no pixel-size problem: no hint
    (tmp_path / "e.csv").write_text("x,y,z,class_name\n10,20,30,a\n100,20,30,a\n")
    with pytest.raises(InputError) as e:
        read_particles(tmp_path / "e.csv", tomogram_shape=(50, 100, 100))
    assert "--coords-angpix" not in str(e.value)


def test_warp_micrograph_name_gives_tomogram(tmp_path):
    p = _star(tmp_path / "w.star", {"rlnMicrographName": ["TS_07.tomostar"],
                                    "rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0],
                                    "rlnCoordinateZ": [3.0]})
    assert read_particles(p)[S.TOMOGRAM].tolist() == ["TS_07"]


# --- real contest tables --------------------------------------------------------------------

# ../shared/data beside the checkout; TOMOCLASS_SHARED_DATA overrides it (e.g. from a worktree).
DATA = Path(os.environ.get("TOMOCLASS_SHARED_DATA",
                           Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
DATA = DATA / "ground_truth"
realdata = pytest.mark.skipif(not DATA.is_dir(), reason=f"real tables absent ({DATA})")


@pytest.mark.realdata
@realdata
def test_shrec19_model9_counts():
    df = read_particles(DATA / "shrec19" / "particle_locations_model_9.txt",
                        known_classes=[c.upper() for c in ("1bxn", "1qvr", "1s3x", "1u6g", "2cg9",
                                       "3cf3", "3d2f", "3gl1", "3h84", "3qm1", "4b4t", "4d8q")])
    assert len(df) == 2540
    counts = df[S.CLASS_NAME].value_counts()
    assert len(counts) == 12
    assert counts["1BXN"] == 220 and counts["4B4T"] == 170  # spelling of known_classes kept
    assert df[S.TOMOGRAM].unique().tolist() == ["model_9"]
    assert df[[S.ROT, S.TILT, S.PSI]].notna().all().all()


@pytest.mark.realdata
@realdata
def test_shrec19_model9_reads_z_first_like_deepfinder_lists_of_the_same_dataset():
    """SHREC'19 model 9's first coordinate is z (< 200, the simulated slab), as DeepFinder's
    x y z lists of the same dataset have it; read as x it would be a 200-voxel-wide x."""
    df = read_particles(DATA / "shrec19" / "particle_locations_model_9.txt")
    lists = read_particles(DATA / "shrec19" / "object_list_train.xml", class_names="shrec19")
    for table in (df, lists):
        assert table[S.Z].max() < 200 and table[S.X].max() > 500 and table[S.Y].max() > 500
    raw = (DATA / "shrec19" / "particle_locations_model_9.txt").read_text().split("\n")[0]
    assert df[S.Z].iloc[0] == float(raw.split()[1])


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize("name,count", [("object_list_train.xml", 22446),
                                        ("object_list_valid.xml", 2490)])
def test_deepfinder_lists_counts(name, count):
    df = read_particles(DATA / "shrec19" / name, class_names="shrec19")
    assert len(df) == count
    assert df[S.CLASS_NAME].nunique() == 12
    assert set(df[S.CLASS_NAME]) == set(read_particles(
        DATA / "shrec19" / "particle_locations_model_9.txt")[S.CLASS_NAME])
    assert set(df[S.TOMOGRAM].astype(int)) <= set(range(9))


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize("name,proteins", [("particle_locations_bin2.txt", 2300),
                                           ("particle_locations_model_x.txt", 1451)])
def test_shrec21_counts_and_nonprotein_rows(name, proteins):
    df = read_particles(DATA / "shrec21" / name)
    prot = df[df[S.IS_PROTEIN]]
    assert len(prot) == proteins
    assert prot[S.CLASS_NAME].nunique() == 13
    other = df[~df[S.IS_PROTEIN]]
    assert set(other[S.CLASS_NAME]) == {"vesicle", "fiducial"}
    assert other[[S.ROT, S.TILT, S.PSI]].isna().all().all()
    assert prot[[S.ROT, S.TILT, S.PSI]].notna().all().all()


def test_star_extra_text_column_with_missing_values_round_trips_twice(tmp_path):
    # background boxes appended to a ground truth: background_kind is missing on the
    # particle rows; reading it back must keep it missing so that writing again works
    t = _table(4)
    t["background_kind"] = [np.nan, np.nan, "random", "offcentre"]
    first = read_particles(write_particles(tmp_path / "a.star", t))
    assert first["background_kind"].isna().tolist() == [True, True, False, False]
    assert first["background_kind"].tolist()[2:] == ["random", "offcentre"]
    second = read_particles(write_particles(tmp_path / "b.star", first))
    assert second["background_kind"].isna().tolist() == [True, True, False, False]


POLNET = (
    "Density\tMicrographs\tPolyData\tTomo3D\tType\tLabel\tCode\tPolymer\tX\tY\tZ\tQ1\tQ2\tQ3\tQ4\n"
    "out/tomos/tomo_den_0.mrc\tout/tomos/tomo_mics_0.mrc\tout/tomos/poly_0.vtp\t"
    "out/tomos/tomo_rec_0.mrc\tSAWLC\t1\tpdb_4v4r\t0\t1000.0\t2500.0\t805.0\t1\t0\t0\t0\n"
    "out/tomos/tomo_den_0.mrc\tout/tomos/tomo_mics_0.mrc\tout/tomos/poly_0.vtp\t"
    "out/tomos/tomo_rec_0.mrc\tSAWLC\t2\tpdb_3j9i\t1\t2000.0\t300.0\t1200.0\t0.5\t0.5\t0.5\t0.5\n"
    "out/tomos/tomo_den_1.mrc\tout/tomos/tomo_mics_1.mrc\tout/tomos/poly_1.vtp\t"
    "out/tomos/tomo_rec_1.mrc\tSAWLC\t1\tpdb_4v4r\t0\t640.0\t640.0\t640.0\t1\t0\t0\t0\n"
)


def test_polnet_motif_list(tmp_path):
    # PolNet (another group's simulator) writes a tab-separated motif list with coordinates in
    # Å, the reconstruction's path and the structure's code: read as schema rows in voxels
    path = tmp_path / "tomos_motif_list.csv"
    path.write_text(POLNET)
    df = read_particles(path, voxel_size_angstrom=10.0)
    assert df[S.TOMOGRAM].tolist() == ["tomo_rec_0", "tomo_rec_0", "tomo_rec_1"]
    assert df[S.CLASS_NAME].tolist() == ["pdb_4v4r", "pdb_3j9i", "pdb_4v4r"]
    np.testing.assert_allclose(df[[S.X, S.Y, S.Z]].to_numpy()[:2], [[100, 250, 80.5],
                                                                     [200, 30, 120]])
    assert df[S.IS_PROTEIN].all() and df[S.ROT].isna().all()
    assert df["Q1"].tolist() == [1.0, 0.5, 1.0] and df["Label"].tolist() == [1, 2, 1]
    # the voxel size is required: the coordinates are in Å
    with pytest.raises(InputError) as e:
        read_particles(path)
    assert "Å" in str(e.value) and "voxel size" in str(e.value)
    # an ordinary tab-separated CSV is still a CSV
    (tmp_path / "tab.csv").write_text("x\ty\tz\tclass\n1\t2\t3\ta\n")
    assert read_particles(tmp_path / "tab.csv")[S.X].tolist() == [1.0]
