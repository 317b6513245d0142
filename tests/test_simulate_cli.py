"""``tomoclass simulate`` end to end on tiny outputs."""

import numpy as np
import starfile
import yaml

from tomoclass.cli.main import main
from tomoclass.data import open_dataset
from tomoclass.io import read_particles, read_volume
from tomoclass.simulate.config import SimulationConfig

SUB = ["simulate", "subtomograms", "--classes", "globule", "dimer", "trimer", "--box-size", "16",
       "--n-per-class", "4", "--crowding", "1"]


def test_subtomograms_write_the_store_and_repeat_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["-q", *SUB, "--out", str(a), "--seed", "11"]) == 0
    assert main(["-q", *SUB, "--out", str(b), "--seed", "11", "--processes", "2"]) == 0
    for name in ("subtomograms.npy", "clean.npy", "particles.star", "classes.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta_a, meta_b = (yaml.safe_load((d / "dataset.yaml").read_text()) for d in (a, b))
    meta_a.pop("created_utc"), meta_b.pop("created_utc")  # the store records its write time
    # ... and the array file's time in its record of non-finite rows
    assert meta_a.pop("finite_check")["nonfinite_rows"] == []
    meta_b.pop("finite_check")
    assert meta_a == meta_b
    store = open_dataset(a)
    assert store.volumes.shape == (12, 16, 16, 16) and store.volumes.dtype == np.float32
    assert store.clean is not None and store.clean.shape == (12, 16, 16, 16)
    np.testing.assert_allclose(store.volumes.reshape(12, -1).std(axis=1), 1.0, rtol=1e-4)
    assert store.voxel_size_angstrom == 10.0 and store.box == 16
    assert list(store.class_map.names) == ["globule", "dimer", "trimer"]
    # with the CTF, protein is dark: the boxes anti-correlate with the density, as recorded
    assert store.meta["polarity"] == "dark"
    assert np.corrcoef(np.asarray(store.volumes).ravel(), np.asarray(store.clean).ravel())[0, 1] < 0
    assert set(store.class_map.size_groups) == {"tiny", "small"}
    table = store.table
    assert list(table["class_name"][:3]) == ["globule", "dimer", "trimer"]
    assert list(table["class_id"][:3]) == [0, 1, 2]
    assert list(table["index"]) == list(range(12))
    assert set(table["split"]) <= {"train", "val", "test"}
    assert "rlnAngleRot" in starfile.read(a / "particles.star").columns
    cfg = SimulationConfig.from_dict(store.meta["provenance"]["config"])
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
    # without it the density is written as it is: bright, as recorded
    store = open_dataset(out)
    assert store.meta["polarity"] == "bright"
    assert np.corrcoef(np.asarray(store.volumes).ravel(), np.asarray(store.clean).ravel())[0, 1] > 0
    assert meta["subtomograms"]["snr_range"] == [1.0, 2.0]
    assert meta["subtomograms"]["box_size"] == 16


def test_tomograms_command(tmp_path):
    out = tmp_path / "t"
    args = ["-q", "simulate", "tomograms", "--classes", "globule", "trimer", "--shape-zyx", "24",
            "48", "48", "--n-particles", "5", "--tilt-step-deg", "5", "--seed", "2"]
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    for f in sorted(out.iterdir()):  # same seed, byte-identical files (MRC headers included)
        assert f.read_bytes() == (tmp_path / "again" / f.name).read_bytes(), f.name
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
