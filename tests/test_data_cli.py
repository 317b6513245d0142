import json

import numpy as np

from tomoclass.cli.main import main
from tomoclass.io import write_particles, write_volume


def _setup(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("model_3", "model_9"):
        write_volume(tmp_path / f"{name}.mrc", rng.normal(size=(20, 28, 28)).astype(np.float32),
                     10.0)
    import pandas as pd
    t = pd.DataFrame({"tomogram": ["model_3"] * 4 + ["model_9"] * 2,
                      "x": [8, 12, 16, 20, 10, 14], "y": [10] * 6, "z": [9] * 6,
                      "class_name": ["1bxn", "3qm1", "1bxn", "3qm1", "1bxn", "3qm1"]})
    write_particles(tmp_path / "gt.csv", t)


def test_extract_then_info(tmp_path, capsys):
    _setup(tmp_path)
    rc = main(["extract", "--tomograms", str(tmp_path / "model_3.mrc"),
               str(tmp_path / "model_9.mrc"), "--tables", str(tmp_path / "gt.csv"),
               "--out", str(tmp_path / "ds"), "--box", "8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "wrote 6 subtomograms" in out
    assert main(["dataset", "info", str(tmp_path / "ds"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["per_split"] == {"train": 4, "val": 0, "test": 2}
    assert info["per_class"]["3qm1"] == {"size_group": "tiny", "train": 2, "val": 0, "test": 1,
                                         "total": 3}
    assert main(["dataset", "info", str(tmp_path / "ds")]) == 0
    text = capsys.readouterr().out
    assert "6 subtomograms, box 8^3, 10 Å/voxel" in text and "1bxn" in text
    assert main(["dataset", "split", str(tmp_path / "ds"), "--by", "stratified",
                 "--test-fraction", "0.5"]) == 0
    assert "train=2 val=0 test=4" in capsys.readouterr().out  # 1.5 rounds up per class
    assert main(["dataset", "export", str(tmp_path / "ds"), "--out", str(tmp_path / "rel")]) == 0
    assert main(["dataset", "import", str(tmp_path / "rel" / "particles.star"),
                 "--out", str(tmp_path / "ds2")]) == 0
    assert "wrote 6 subtomograms" in capsys.readouterr().out


def test_bad_input_one_line_exit_2(tmp_path, capsys):
    _setup(tmp_path)
    (tmp_path / "bad.csv").write_text("x,y,z\n1,2,3\n4,five,6\n")
    rc = main(["extract", "--tomograms", str(tmp_path / "model_3.mrc"), "--tables",
               str(tmp_path / "bad.csv"), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "bad.csv, line 3, field 'y'" in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()
    rc = main(["extract", "--tomograms", str(tmp_path / "model_3.mrc"), "--tables",
               str(tmp_path / "gt.csv"), "--out", str(tmp_path / "ds"), "--box", "64"])
    assert rc == 2 and "larger than the tomogram" in capsys.readouterr().err
    rc = main(["dataset", "info", str(tmp_path / "nope")])
    assert rc == 2 and "not a dataset directory" in capsys.readouterr().err


def _bad_mrcs(tmp_path):
    import mrcfile

    rng = np.random.default_rng(0)
    good = tmp_path / "model_3.mrc"
    cases = {}
    raw = good.read_bytes()
    (tmp_path / "trunc.mrc").write_bytes(raw[:-4000])
    cases["trunc.mrc"] = "truncated"
    data = rng.normal(size=(20, 28, 28)).astype(np.float32)
    data[5, 5, 5] = np.nan
    write_volume(tmp_path / "nan.mrc", data, 10.0)
    cases["nan.mrc"] = "field 'data'"
    write_volume(tmp_path / "flat.mrc", np.zeros((20, 28, 28), np.float32), 10.0)
    cases["flat.mrc"] = "zero variance"
    write_volume(tmp_path / "img.mrc", rng.normal(size=(28, 28)).astype(np.float32), 10.0)
    cases["img.mrc"] = "2D image"
    with mrcfile.new(tmp_path / "vs0.mrc") as m:
        m.set_data(rng.normal(size=data.shape).astype(np.float32))
        m.voxel_size = 0
    cases["vs0.mrc"] = "field 'voxel_size'"
    bad_mode = bytearray(raw)
    bad_mode[12:16] = np.int32(3).tobytes()
    (tmp_path / "mode.mrc").write_bytes(bytes(bad_mode))
    cases["mode.mrc"] = "field 'mode'"
    return cases


def test_bad_tomograms_through_the_cli(tmp_path, capsys):
    _setup(tmp_path)
    (tmp_path / "one.csv").write_text("x,y,z,class\n10,10,9,1bxn\n")
    for name, expected in _bad_mrcs(tmp_path).items():
        rc = main(["extract", "--tomograms", str(tmp_path / name), "--tables",
                   str(tmp_path / "one.csv"), "--out", str(tmp_path / "ds")])
        err = capsys.readouterr().err.strip()
        assert rc == 2, name
        assert len(err.splitlines()) == 1 and name in err and expected in err, err
        assert not (tmp_path / "ds").exists()


def test_bad_tables_through_the_cli(tmp_path, capsys):
    _setup(tmp_path)
    tomo = str(tmp_path / "model_3.mrc")
    cases = {
        "empty.csv": ("", [], "no particles"),
        "nocol.csv": ("x,y\n1,2\n", [], "line 1, field 'z': missing column"),
        "text.txt": ("1bxn 10 10 9 0 0 0\n1bxn 10 ten 9 0 0 0\n", [], "line 2, field 'y'"),
        "unknown.txt": ("1bxn 10 10 9 0 0 0\n9xyz 12 10 9 0 0 0\n", ["--classes", "1bxn,3qm1"],
                        "line 2, field 'class': unknown class '9xyz'"),
        "dup.csv": ("x,y,z\n10,10,9\n12,10,9\n10,10,9\n", [], "line 4, field 'x,y,z'"),
        "cen.star": ("data_particles\nloop_\n_rlnTomoName\n_rlnCenteredCoordinateXAngst\n"
                     "_rlnCenteredCoordinateYAngst\n_rlnCenteredCoordinateZAngst\n"
                     "TS_1 0 0 0\n", ["--tomograms", tomo, str(tmp_path / "model_9.mrc")],
                     "line 7, field 'rlnCenteredCoordinateXAngst'"),
    }
    for name, (text, extra, expected) in cases.items():
        (tmp_path / name).write_text(text)
        argv = ["extract", "--tomograms", tomo, "--tables", str(tmp_path / name),
                "--out", str(tmp_path / "ds")]
        if "--tomograms" in extra:
            argv = ["extract", *extra, "--tables", str(tmp_path / name),
                    "--out", str(tmp_path / "ds")]
        else:
            argv += extra
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2, name
        assert len(err.splitlines()) == 1 and name in err and expected in err, err
        assert not (tmp_path / "ds").exists()


def test_cli_relion5_centred_uses_tomogram_header(tmp_path, capsys):
    _setup(tmp_path)
    # model_3 is (z, y, x) = (20, 28, 28) at 10 Å: centre (14, 14, 10) voxels; +20 Å in x -> x=16
    (tmp_path / "c.star").write_text(
        "data_particles\nloop_\n_rlnTomoName\n_rlnCenteredCoordinateXAngst\n"
        "_rlnCenteredCoordinateYAngst\n_rlnCenteredCoordinateZAngst\n_tomoclassClassName\n"
        "model_3 20 0 0 1bxn\nmodel_3 500 0 0 1bxn\n")
    rc = main(["extract", "--tomograms", str(tmp_path / "model_3.mrc"), "--tables",
               str(tmp_path / "c.star"), "--out", str(tmp_path / "ds"), "--box", "8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert '"skipped_outside": 1' in out
    from tomoclass.data import open_dataset

    t = open_dataset(tmp_path / "ds").table
    assert (t["x"][0], t["y"][0], t["z"][0]) == (16.0, 14.0, 10.0)


def test_cli_coordinates_in_unbinned_pixels(tmp_path, capsys, caplog):
    # a Warp/RELION 4 table: model_3's particles in 2.5 Å tilt-series pixels (4x the voxels)
    _setup(tmp_path)
    xs = [8, 12, 16, 20]
    rows = "".join(f"model_3.tomostar {4 * x} 40 36 1bxn\n" for x in xs)
    (tmp_path / "warp.star").write_text(
        "data_particles\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\n"
        "_rlnCoordinateZ\n_tomoclassClassName\n" + rows)
    base = ["extract", "--tomograms", str(tmp_path / "model_3.mrc"), "--tables",
            str(tmp_path / "warp.star"), "--box", "8"]
    assert main(base + ["--out", str(tmp_path / "ds"), "--coords-angpix", "2.5"]) == 0
    from tomoclass.data import open_dataset

    t = open_dataset(tmp_path / "ds").table
    assert t["x"].tolist() == xs and set(t["y"]) == {10.0} and set(t["z"]) == {9.0}
    # without it every particle is outside: a warning that names the option, then the error
    with caplog.at_level("WARNING"):
        assert main(base + ["--out", str(tmp_path / "ds2")]) == 2
    assert "--coords-angpix" in caplog.text and "4 of 4 particles" in caplog.text
    assert "every particle was skipped" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()


def test_cli_extracts_from_a_polnet_motif_list(tmp_path, capsys):
    # PolNet's tomos_motif_list.csv: Å coordinates, tomogram from Tomo3D's stem, class Code
    from test_io_particles import POLNET

    from tomoclass.data import open_dataset

    rng = np.random.default_rng(0)
    for name in ("tomo_rec_0", "tomo_rec_1"):
        write_volume(tmp_path / f"{name}.mrc",
                     rng.normal(size=(130, 260, 260)).astype(np.float32), 10.0)
    (tmp_path / "tomos_motif_list.csv").write_text(POLNET)
    assert main(["extract", "--tomograms", str(tmp_path / "tomo_rec_0.mrc"),
                 str(tmp_path / "tomo_rec_1.mrc"), "--tables",
                 str(tmp_path / "tomos_motif_list.csv"), "--out", str(tmp_path / "ds"),
                 "--box", "8", "--split", "stratified", "--test-fraction", "0"]) == 0
    assert "wrote 3 subtomograms" in capsys.readouterr().out
    t = open_dataset(tmp_path / "ds").table
    assert sorted(t["class_name"]) == ["pdb_3j9i", "pdb_4v4r", "pdb_4v4r"]
    assert sorted(t["x"]) == [64.0, 100.0, 200.0]


def test_cli_shrec_layout_one_folder_per_model(tmp_path, capsys):
    # SHREC'19/'21 keep each model in its folder under generic names: the folder names the
    # tomogram for the tomogram files and the tables alike
    from tomoclass.data import open_dataset
    from tomoclass.io import tomogram_name

    rng = np.random.default_rng(0)
    tomos, tables = [], []
    for k in range(3):
        d = tmp_path / f"model_{k}"
        d.mkdir()
        tomos.append(str(write_volume(d / "reconstruction.mrc",
                                      rng.normal(size=(20, 28, 28)).astype(np.float32), 10.0)))
        (d / "particle_locations.txt").write_text(
            f"1bxn {8 + k} 10 9 0 0 0\n3qm1 {16 + k} 12 9 0 0 0\n")
        tables.append(str(d / "particle_locations.txt"))
    assert tomogram_name(tomos[1]) == tomogram_name(tables[1]) == "model_1"
    assert main(["extract", "--tomograms", *tomos, "--tables", *tables, "--out",
                 str(tmp_path / "ds"), "--box", "8", "--test-tomograms", "2"]) == 0
    assert "wrote 6 subtomograms" in capsys.readouterr().out
    t = open_dataset(tmp_path / "ds").table
    assert sorted(set(t["tomogram"])) == ["model_0", "model_1", "model_2"]
    assert (t[t["tomogram"] == "model_2"]["split"] == "test").all()
    assert t[t["tomogram"] == "model_1"]["x"].tolist() == [9.0, 17.0]
