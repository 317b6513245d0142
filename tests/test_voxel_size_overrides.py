"""Every voxel-size override is honoured and errors name the option that works."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd

from tomoclass.cli.main import main
from tomoclass.io import write_particles


def _zero_header(path, shape=(20, 28, 28)):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.random.default_rng(0).normal(size=shape).astype(np.float32))
        m.voxel_size = 0.0
    return path


def _table(tmp_path):
    return write_particles(tmp_path / "TS_01.csv", pd.DataFrame(
        {"tomogram": "TS_01", "x": [8, 12], "y": [10, 10], "z": [9, 9], "class_name": "a"}))


def test_inspect_table_honours_voxel_size(tmp_path, capsys):
    tomo = _zero_header(tmp_path / "TS_01.mrc")
    table = _table(tmp_path)
    # without the override the 0 Å header is refused, naming inspect's own option
    assert main(["inspect", "--tomogram", str(tomo), "--table", str(table)]) == 2
    assert "--voxel-size" in capsys.readouterr().err
    # with it, the table is read against the tomogram too (it was ignored there before)
    assert main(["inspect", "--voxel-size", "10", "--tomogram", str(tomo),
                 "--table", str(table)]) == 0
    out = capsys.readouterr().out
    assert "10 Å/voxel (given)" in out and "0 outside" in out


def test_coords_angpix_without_voxel_size_names_the_options(tmp_path, capsys):
    table = _table(tmp_path)
    assert main(["inspect", "--table", str(table), "--coords-angpix", "2.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(table) in err
    assert "--voxel-size" in err and "--tomogram" in err
    assert "coordinate_pixel_size_angstrom" not in err and "voxel_size_angstrom" not in err
    assert main(["inspect", "--table", str(table), "--coords-angpix", "2.5",
                 "--voxel-size", "10"]) == 0


def test_extract_zero_header_names_tomogram_voxel_size(tmp_path, capsys):
    tomo = _zero_header(tmp_path / "TS_01.mrc")
    table = _table(tmp_path)
    args = ["extract", "--tomograms", str(tomo), "--tables", str(table), "--box", "8",
            "--test-tomograms", "", "--out"]
    assert main([*args, str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "--tomogram-voxel-size" in err and "with --voxel-size" not in err
    assert not (tmp_path / "ds").exists()
    # the option it names works
    assert main([*args, str(tmp_path / "ds"), "--tomogram-voxel-size", "10"]) == 0
