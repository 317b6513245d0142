"""``tomoclass simulate`` end to end on tiny outputs."""

import numpy as np
import starfile
import yaml

from tomoclass.cli.main import main
from tomoclass.io import read_particles, read_volume
from tomoclass.simulate.config import SimulationConfig

SUB = ["simulate", "subtomograms", "--classes", "globule", "dimer", "trimer", "--box-size", "16",
       "--n-per-class", "4", "--crowding", "1"]


def test_subtomograms_write_the_store_and_repeat_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["-q", *SUB, "--out", str(a), "--seed", "11"]) == 0
    assert main(["-q", *SUB, "--out", str(b), "--seed", "11", "--processes", "2"]) == 0
    for name in ("subtomograms.npy", "clean.npy", "particles.star", "classes.yaml",
                 "dataset.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    vols = np.load(a / "subtomograms.npy", mmap_mode="r")
    assert vols.shape == (12, 16, 16, 16) and vols.dtype == np.float32
    np.testing.assert_allclose(vols.reshape(12, -1).std(axis=1), 1.0, rtol=1e-4)
    table = read_particles(a / "particles.star")
    assert list(table["class_name"][:3]) == ["globule", "dimer", "trimer"]
    assert sorted(table["index"]) == list(range(12))
    assert set(table["split"]) <= {"train", "val", "test"}
    assert "rlnAngleRot" in starfile.read(a / "particles.star").columns
    classes = yaml.safe_load((a / "classes.yaml").read_text())
    assert [c["name"] for c in classes] == ["globule", "dimer", "trimer"]
    assert {c["size_group"] for c in classes} == {"tiny", "small"}
    meta = yaml.safe_load((a / "dataset.yaml").read_text())
    assert meta["box"] == 16 and meta["voxel_size_angstrom"] == 10.0
    cfg = SimulationConfig.from_dict(meta["provenance"]["config"])
    assert cfg.seed == 11 and cfg.subtomograms.crowding == 1
    c = tmp_path / "c"
    assert main(["-q", *SUB, "--out", str(c), "--seed", "12"]) == 0
    assert (a / "subtomograms.npy").read_bytes() != (c / "subtomograms.npy").read_bytes()


def test_config_file_plus_overrides(tmp_path, capsys):
    assert main(["simulate", "config"]) == 0
    text = capsys.readouterr().out
    cfg = SimulationConfig.from_yaml(text)
    assert cfg == SimulationConfig()
    cfg.subtomograms.box_size = 16
    cfg.classes = cfg.classes[:2]
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    out = tmp_path / "ds"
    assert main(["-q", "simulate", "subtomograms", "--config", str(path), "--out", str(out),
                 "--n-per-class", "2", "--no-ctf", "--snr-range", "1", "2"]) == 0
    meta = yaml.safe_load((out / "dataset.yaml").read_text())["provenance"]["config"]
    assert meta["subtomograms"]["ctf"] is False
    assert meta["subtomograms"]["snr_range"] == [1.0, 2.0]
    assert meta["subtomograms"]["box_size"] == 16


def test_tomograms_command(tmp_path):
    out = tmp_path / "t"
    assert main(["-q", "simulate", "tomograms", "--out", str(out), "--classes", "globule",
                 "trimer", "--shape-zyx", "24", "48", "48", "--n-particles", "5",
                 "--tilt-step-deg", "5", "--seed", "2"]) == 0
    vol = read_volume(out / "tomo_000.mrc")
    assert vol.data.shape == (24, 48, 48) and vol.voxel_size_angstrom == 10.0
    gt = read_particles(out / "tomo_000_gt.txt")
    assert len(gt) == 5 and set(gt["class_name"]) <= {"globule", "trimer"}
    labels = read_volume(out / "tomo_000_labels.mrc", check="none")
    for _, row in gt.iterrows():
        assert labels.data[int(row.z), int(row.y), int(row.x)] in (0, 1, 2)
    meta = yaml.safe_load((out / "tomo_000_meta.yaml").read_text())
    assert len(meta["tilts"]) == 25


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "empty.pdb"
    bad.write_text("")
    rc = main(["simulate", "subtomograms", "--out", str(tmp_path / "x"), "--classes", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(bad) in err and len(err.splitlines()) == 1
    rc = main(["simulate", "subtomograms", "--out", str(tmp_path / "x"), "--classes", "shell60",
               "--box-size", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and "shell60" in err and "box_size" in err
    assert not (tmp_path / "x").exists()
    rc = main(["simulate", "subtomograms", "--out", str(tmp_path / "x"),
               "--amplitude-contrast", "2"])
    assert rc == 2 and "amplitude_contrast" in capsys.readouterr().err
