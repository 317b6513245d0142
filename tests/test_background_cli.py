"""Background boxes for a detector from the command line: extract and simulate tomograms."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from tomoclass.cli.main import main
from tomoclass.data import open_dataset
from tomoclass.io import read_particles, write_particles, write_volume


def _tomos(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("model_3", "model_9"):
        write_volume(tmp_path / f"{name}.mrc", rng.normal(size=(20, 40, 40)).astype(np.float32),
                     10.0)
    t = pd.DataFrame({"tomogram": ["model_3"] * 4 + ["model_9"] * 2,
                      "x": [8, 16, 24, 32, 10, 20], "y": 20, "z": 10,
                      "class_name": ["a", "b", "a", "b", "a", "b"]})
    return write_particles(tmp_path / "gt.csv", t)


def test_extract_adds_background_boxes(tmp_path):
    gt = _tomos(tmp_path)
    base = ["extract", "--tomograms", str(tmp_path / "model_3.mrc"),
            str(tmp_path / "model_9.mrc"), "--tables", str(gt), "--box", "8",
            "--split", "stratified", "--val-fraction", "0.2", "--test-fraction", "0.2",
            "--background", "5", "--background-offcentre", "3", "--background-radius", "2"]
    assert main([*base, "--out", str(tmp_path / "ds")]) == 0
    ds = open_dataset(tmp_path / "ds")
    assert list(ds.class_map.names) == ["a", "b", "background"]
    t = ds.table
    bg = t[t["class_name"] == "background"]
    assert len(bg) == 16 and set(bg["tomogram"]) == {"model_3", "model_9"}
    assert set(bg["split"]) == {"train", "val", "test"}  # split like any class
    # clear of every particle (radius 2) of its tomogram
    for name, rows in bg.groupby("tomogram"):
        parts = t[(t["tomogram"] == name) & (t["class_name"] != "background")]
        d = np.linalg.norm(rows[["x", "y", "z"]].to_numpy()[:, None]
                           - parts[["x", "y", "z"]].to_numpy()[None], axis=2)
        assert (d > 2).all()
    # same seed, same boxes; a given class order gets 'background' appended
    assert main([*base, "--out", str(tmp_path / "ds2"), "--classes", "b,a"]) == 0
    ds2 = open_dataset(tmp_path / "ds2")
    assert list(ds2.class_map.names) == ["b", "a", "background"]
    cols = ["tomogram", "x", "y", "z"]
    pd.testing.assert_frame_equal(
        bg[cols].sort_values(cols).reset_index(drop=True),
        ds2.table[ds2.table["class_name"] == "background"][cols].sort_values(cols)
        .reset_index(drop=True))


def test_simulate_tomograms_writes_background_tables(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["-q", "simulate", "tomograms", "--classes", "globule", "trimer", "--shape-zyx",
                 "24", "48", "48", "--n-particles", "5", "--tilt-step-deg", "10", "--seed", "2",
                 "--out", str(out), "--background", "6", "--background-offcentre", "4"]) == 0
    assert "tomo_000_background.star" in capsys.readouterr().out
    bg = read_particles(out / "tomo_000_background.star")
    gt = read_particles(out / "tomo_000_gt.txt")
    assert len(bg) == 10 and (bg["class_name"] == "background").all()
    assert not bg["is_protein"].any() and (bg["tomogram"] == "tomo_000").all()
    assert not (set(map(tuple, bg[["x", "y", "z"]].to_numpy()))
                & set(map(tuple, gt[["x", "y", "z"]].to_numpy())))
    # extract takes it beside the ground truth
    assert main(["extract", "--tomograms", str(out / "tomo_000.mrc"), "--tables",
                 str(out / "tomo_000_gt.txt"), str(out / "tomo_000_background.star"),
                 "--box", "8", "--split", "stratified", "--out", str(tmp_path / "ds")]) == 0
    assert "background" in open_dataset(tmp_path / "ds").class_map.names


def test_box_logic_lives_below_locate():
    from tomoclass.data.background import background_boxes
    from tomoclass.locate import background_boxes as from_locate

    assert from_locate is background_boxes  # still importable where it was
    code = ("import sys, tomoclass.data, tomoclass.data.background; "
            "sys.exit(any(m.startswith('tomoclass.locate') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
