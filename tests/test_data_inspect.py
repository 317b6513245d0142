"""tomoclass inspect: what tomoclass reads from a user's tomograms and tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from test_data_polarity import _crowd

from tomoclass.cli.main import main
from tomoclass.data.inspect import format_report, inspect_table, inspect_tomogram
from tomoclass.io import write_particles, write_volume


def test_inspect_tomogram_reports_polarity_and_beam_axis(tmp_path):
    tomo, _ = _crowd(-1.0)
    dark = inspect_tomogram(write_volume(tmp_path / "TS_01.mrc", tomo, 10.0))
    assert dark["name"] == "TS_01" and dark["shape_zyx"] == [48, 96, 96]
    assert dark["polarity"]["polarity"] == "dark" and dark["notes"] == []
    assert dark["voxel_size_source"] == "header" and dark["axis_order"] == [1, 2, 3]
    bright = inspect_tomogram(write_volume(tmp_path / "inv.mrc", -tomo, 10.0),
                              voxel_size_angstrom=8.0)
    assert bright["polarity"]["polarity"] == "bright" and bright["voxel_size_angstrom"] == 8.0
    assert any("inverted" in n for n in bright["notes"])
    imod = inspect_tomogram(write_volume(tmp_path / "imod.mrc",
                                         np.ascontiguousarray(tomo.transpose(1, 0, 2)), 10.0))
    assert imod["beam_along_y"] and any("trimvol" in n for n in imod["notes"])
    assert "particles dark" in format_report(dark)


def test_inspect_table_flags_coordinates_in_another_pixel_size(tmp_path):
    write_volume(tmp_path / "TS_01.mrc", np.random.default_rng(0).normal(
        size=(40, 100, 100)).astype(np.float32), 10.0)
    picks = pd.DataFrame({"tomogram": ["TS_01"] * 3 + ["TS_02"], "x": [20, 50, 90, 10],
                          "y": [30, 60, 80, 10], "z": [10, 20, 30, 10],
                          "class_name": ["a", "a", "b", "a"]})
    binned = write_particles(tmp_path / "binned.star", picks)
    unbinned = write_particles(tmp_path / "unbinned.star",
                               picks.assign(x=picks.x * 4, y=picks.y * 4, z=picks.z * 4))
    ok = inspect_table(binned, [tmp_path / "TS_01.mrc"])
    assert ok["format"] == "star" and ok["n_rows"] == 4 and ok["classes"] == {"a": 3, "b": 1}
    assert ok["tomograms"]["TS_01"]["n_outside"] == 0
    assert ok["unmatched_tomograms"] == ["TS_02"] and len(ok["notes"]) == 1
    bad = inspect_table(unbinned, [tmp_path / "TS_01.mrc"])
    assert bad["tomograms"]["TS_01"]["n_outside"] == 3
    assert any("--coords-angpix 2.5" in n for n in bad["notes"])
    fixed = inspect_table(unbinned, [tmp_path / "TS_01.mrc"], coordinate_pixel_size_angstrom=2.5)
    assert fixed["tomograms"]["TS_01"]["n_outside"] == 0


def test_inspect_cli(tmp_path, capsys):
    tomo, centres = _crowd(-1.0)
    t = write_volume(tmp_path / "TS_01.mrc", tomo, 10.0)
    table = write_particles(tmp_path / "p.csv", pd.DataFrame(
        {"x": centres[:, 2], "y": centres[:, 1], "z": centres[:, 0], "class_name": "ball"}))
    assert main(["inspect", "--tomogram", str(t), "--table", str(table)]) == 0
    text = capsys.readouterr().out
    assert "particles dark" in text and "ball 60" in text and "0 outside" in text
    assert main(["inspect", "--tomogram", str(t), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["polarity"]["polarity"] == "dark"
    assert main(["inspect"]) == 2
    assert "--tomogram" in capsys.readouterr().err
