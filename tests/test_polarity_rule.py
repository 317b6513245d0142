"""The polarity rule trusts a clear measurement: one sign of candidates, no detector vote."""

from __future__ import annotations

import numpy as np
from test_locate_cli import _balls, _planted, _save_planted_run

from tomoclass.data.polarity import Polarity, candidate_polarity, measure_polarity
from tomoclass.io import write_volume
from tomoclass.models import registry

CLEAR_DARK = Polarity("dark", -0.5, 8, 0.01, 1)
UNCLEAR = Polarity("unclear", -0.01, 5, 0.01, 1)


def test_candidate_polarity_rule():
    # a clear call: the training sign only (the tomogram was inverted to it if needed)
    assert candidate_polarity("auto", CLEAR_DARK, "dark") == "dark"
    assert candidate_polarity("auto", Polarity("bright", 0.5, 8, 0.01, 1), "dark") == "dark"
    # unclear: both signs (the detector votes)
    assert candidate_polarity("auto", UNCLEAR, "dark") == "both"
    # the user's word and "both" are kept; a mixed run measures nothing
    assert candidate_polarity("bright", None, "dark") == "dark"
    assert candidate_polarity("both", CLEAR_DARK, "dark") == "both"
    assert candidate_polarity("auto", None, "mixed") == "both"
    assert candidate_polarity("bright", None, "mixed") == "bright"


def test_clearly_dark_tomogram_keeps_dark_candidates_only(tmp_path, monkeypatch):
    """Dark balls plus a few bright blobs the detector calls particles: before, auto kept both
    signs (the detector's vote); a clear dark measurement now decides."""
    from tomoclass.workflows.locate import locate

    monkeypatch.setitem(registry._REGISTRY, "planted_test", _planted)
    run = _save_planted_run(tmp_path / "run", "dark")
    tomo, centres = _balls(-1.0)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in tomo.shape), indexing="ij")
    for y, x in ((24, 24), (24, 48), (48, 24), (48, 48)):
        tomo[(zz - 20) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= 4] += 1.0
    measured = measure_polarity(tomo, 10.0)
    assert measured.polarity == "dark" and measured.octants_agreeing == 8
    path = write_volume(tmp_path / "t.mrc", tomo, 10.0)
    radii = {"bright": 3.0, "dark": 3.0}
    auto = locate(run, path, tmp_path / "auto.csv", radii=radii, device="cpu", progress=False)
    both = locate(run, path, tmp_path / "both.csv", radii=radii, polarity="both", device="cpu",
                  progress=False)
    assert "bright" in set(both.picks["class_name"])  # the detector does call them particles
    assert not auto.inverted and auto.candidates.polarity == "dark"
    assert auto.candidates.dark.all() and len(auto.candidates) < len(both.candidates)
    assert set(auto.picks["class_name"]) == {"dark"} and len(auto.picks) == len(centres)


def test_told_and_auto_agree_on_a_clear_tomogram(tmp_path, monkeypatch):
    from tomoclass.workflows.locate import locate

    monkeypatch.setitem(registry._REGISTRY, "planted_test", _planted)
    run = _save_planted_run(tmp_path / "run", "dark")
    tomo, _ = _balls(-1.0)
    path = write_volume(tmp_path / "t.mrc", tomo, 10.0)
    radii = {"bright": 3.0, "dark": 3.0}
    auto = locate(run, path, tmp_path / "a.csv", radii=radii, device="cpu", progress=False)
    told = locate(run, path, tmp_path / "t.csv", radii=radii, polarity="dark",
                  device="cpu", progress=False)
    assert auto.picks.equals(told.picks)
