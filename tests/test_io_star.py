"""STAR writing through starfile: inf/NaN, quoting, blocks kept; ``simulate --no-noise``."""

import numpy as np
import pandas as pd
import pytest
import starfile

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.io import read_particles, write_particles
from tomoclass.io.star import read_star, write_star


def test_inf_and_nan_round_trip_through_starfile(tmp_path):
    df = pd.DataFrame({"tomogram": ["0", "TS 1"], "x": [1.0, 2.5], "y": [3.0, 4.0],
                       "z": [5.0, 6.0], "class_name": ["a", "b"],
                       "snr": [np.inf, 0.1], "note": ["#x", np.nan]})
    path = write_particles(tmp_path / "p.star", df)
    back = starfile.read(path)
    assert np.isinf(back["tomoclass_snr"][0])
    table = read_particles(path)
    assert table["snr"].iloc[0] == np.inf
    assert list(table["tomogram"]) == ["0", "TS 1"]  # number-like and spaced names stay text
    assert table["note"].iloc[0] == "#x" and pd.isna(table["note"].iloc[1])


def test_blocks_of_both_kinds_are_written_in_order(tmp_path):
    blocks = {"general": {"rlnTomoSubTomosAre2DStacks": 1},
              "optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.35]}),
              "particles": pd.DataFrame({"rlnCoordinateX": [1.0], "rlnFlag": [True]})}
    path = write_star(tmp_path / "b.star", blocks, comments=("hello",))
    text = path.read_text()
    assert text.startswith("# hello\n")
    assert " at " not in text.split("data_")[0]  # no time of writing: same table, same bytes
    back = read_star(path)
    assert list(back) == ["general", "optics", "particles"]
    assert back["general"]["rlnTomoSubTomosAre2DStacks"] == 1
    assert back["particles"]["rlnFlag"][0] == 1


def test_text_star_cannot_hold_is_refused(tmp_path):
    with pytest.raises(InputError, match="quote"):
        write_star(tmp_path / "q.star", {"p": pd.DataFrame({"rlnName": ['a"b']})})
    assert not (tmp_path / "q.star").exists()


def test_simulate_subtomograms_without_noise(tmp_path):
    out = tmp_path / "clean"
    rc = main(["-q", "simulate", "subtomograms", "--classes", "globule", "dimer",
               "--box-size", "12", "--n-per-class", "2", "--crowding", "1", "--no-noise",
               "--out", str(out), "--seed", "3"])
    assert rc == 0
    table = read_particles(out / "particles.star", duplicates="keep")
    assert len(table) == 4
