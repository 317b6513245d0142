"""locate names its tomogram as told (--tomo-name, tomograms.star) and splits picks by class."""

import starfile
from test_locate import _planted_tomogram
from test_locate_cli import planted_run  # noqa: F401  (a run holding the planted net)

from tomoclass.cli.main import main
from tomoclass.io import write_volume

ARGS = ["--radius", "bright=3", "--radius", "dark=4", "--no-progress", "--device", "cpu"]


def test_tomo_name_and_split_by_class(planted_run, tmp_path, capsys):  # noqa: F811
    tomo = tmp_path / "rec_TS_01.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    out = tmp_path / "picks.star"
    assert main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out", str(out),
                 "--tomo-name", "TS_01", "--split-by-class", *ARGS]) == 0
    picks = starfile.read(out)
    assert set(picks["rlnTomoName"]) == {"TS_01"}
    parts = {f.name: starfile.read(f) for f in tmp_path.glob("picks_*.star")}
    assert set(parts) == {"picks_bright.star", "picks_dark.star"}
    assert sum(len(p) for p in parts.values()) == len(picks)
    assert set(parts["picks_dark.star"]["tomoclassClassName"]) == {"dark"}


def test_name_from_a_relion5_tomograms_star(planted_run, tmp_path):  # noqa: F811
    tomo = tmp_path / "TS_01_10.00Apx.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    tomos = tmp_path / "tomograms.star"
    starfile.write({"global": {"rlnTomoName": "lamella3",
                               "rlnTomoReconstructedTomogram": "Tomograms/TS_01_10.00Apx.mrc"}},
                   tomos)
    out = tmp_path / "picks.star"
    assert main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out", str(out),
                 "--tomograms-star", str(tomos), *ARGS]) == 0
    assert set(starfile.read(out)["rlnTomoName"]) == {"lamella3"}
    # without it, Warp's naming is recognised (and logged)
    assert main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out",
                 str(tmp_path / "warp.star"), *ARGS]) == 0
    assert set(starfile.read(tmp_path / "warp.star")["rlnTomoName"]) == {"TS_01"}
