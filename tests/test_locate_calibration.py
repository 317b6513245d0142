import json
import os

import numpy as np
import pandas as pd
import pytest
from test_locate import PLANTED, _planted_tomogram
from test_locate_cli import planted_run  # noqa: F401  (fixture)

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.io import read_particles, write_particles, write_volume
from tomoclass.locate.calibration import (
    CALIBRATION_FILE,
    DEFAULT_THRESHOLD,
    run_threshold,
    save_threshold,
)
from tomoclass.workflows.locate import locate


def test_threshold_is_stored_per_checkpoint_and_voided_by_a_new_checkpoint(planted_run):  # noqa: F811
    assert run_threshold(planted_run) == (DEFAULT_THRESHOLD, "default")
    path = save_threshold(planted_run, "best", 0.93, {"truth": "val_gt.txt", "f1": 0.9})
    assert path == planted_run / CALIBRATION_FILE
    t, source = run_threshold(planted_run, "best")
    assert t == 0.93 and "val_gt.txt" in source
    rec = json.loads(path.read_text())["checkpoints"]["best"]
    assert rec["f1"] == 0.9 and rec["checkpoint"] == "best.pt"
    # another checkpoint has no entry
    (planted_run / "checkpoints" / "last.pt").write_bytes(
        (planted_run / "checkpoints" / "best.pt").read_bytes())
    assert run_threshold(planted_run, "last")[0] == DEFAULT_THRESHOLD
    save_threshold(planted_run, "last", 0.7)
    assert run_threshold(planted_run, "last")[0] == 0.7
    assert run_threshold(planted_run, "best")[0] == 0.93  # kept
    # training resumed and wrote a new best.pt: its old threshold no longer applies
    best = planted_run / "checkpoints" / "best.pt"
    st = best.stat()
    os.utime(best, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    t, source = run_threshold(planted_run, "best")
    assert t == DEFAULT_THRESHOLD and "older" in source


def test_bad_thresholds_and_records_are_one_line_errors(planted_run, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match="within"):
        save_threshold(planted_run, "best", 1.5)
    with pytest.raises(InputError, match="no checkpoint 'epoch_007'"):
        save_threshold(planted_run, "epoch_007", 0.5)
    with pytest.raises(InputError, match="run directory"):
        save_threshold(tmp_path, "best", 0.5)
    assert not (tmp_path / CALIBRATION_FILE).exists()
    (planted_run / CALIBRATION_FILE).write_text('{"checkpoints": {"best": {"f1": 1}}}')
    with pytest.raises(InputError, match="unreadable calibration") as e:
        run_threshold(planted_run)
    assert CALIBRATION_FILE in str(e.value)


def test_score_picks_calibrates_the_run_and_locate_uses_it(planted_run, tmp_path, capsys):  # noqa: F811
    """Calibrate on one labelled tomogram; locating then uses the stored threshold."""
    tomo = tmp_path / "planted.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    truth = pd.DataFrame(
        [{"class_name": c, "z": z, "y": y, "x": x} for c, (z, y, x), _, _ in PLANTED]
    ).assign(tomogram="planted")
    gt = write_particles(tmp_path / "planted_gt.txt", truth)
    first = locate(planted_run, tomo, tmp_path / "first.csv", radii={"bright": 3, "dark": 4},
                   threshold=0.05, progress=False, device="cpu")
    assert first.threshold == 0.05 and first.threshold_source == "given"
    picks = first.picks
    # one false pick, weaker than every true one, far from every particle
    false = picks.iloc[[0]].assign(x=1.0, y=1.0, z=1.0, score=float(picks["score"].min()) / 2)
    p = write_particles(tmp_path / "val_picks.star", pd.concat([picks, false]))
    code = main(["score-picks", "--truth", str(gt), "--picks", str(p), "--radius", "2",
                 "--calibrate", str(planted_run), "--json", str(tmp_path / "s.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Best localization F1 1.000" in out
    chosen = json.loads((tmp_path / "s.json").read_text())["calibration"]["threshold"]
    assert chosen == pytest.approx(float(picks["score"].min()), rel=1e-6)
    assert run_threshold(planted_run)[0] == pytest.approx(chosen)
    # locate without --threshold takes it (and says so)
    code = main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out",
                 str(tmp_path / "again.csv"), "--radius", "bright=3", "--radius", "dark=4",
                 "--no-progress", "--device", "cpu"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"threshold {chosen:g}, calibrated on {gt}" in out
    again = read_particles(tmp_path / "again.csv")
    assert len(again) == len(PLANTED)
    assert (again["score"] >= chosen - 1e-6).all()
    # an explicit --threshold still wins
    res = locate(planted_run, tomo, tmp_path / "explicit.csv", radii={"bright": 3, "dark": 4},
                 threshold=0.99, progress=False, device="cpu")
    assert res.threshold == 0.99 and res.threshold_source == "given"
    assert (res.picks["score"] >= 0.99).all()
    np.testing.assert_array_less(0, len(again))


def test_calibrate_into_a_folder_that_is_no_run_is_a_one_line_error(tmp_path, capsys):
    truth = pd.DataFrame({"class_name": ["a"], "x": [5.0], "y": [5.0], "z": [5.0]})
    picks = truth.assign(score=0.9)
    t = write_particles(tmp_path / "t.csv", truth)
    p = write_particles(tmp_path / "p.csv", picks)
    (tmp_path / "norun").mkdir()
    code = main(["score-picks", "--truth", str(t), "--picks", str(p), "--radius", "2",
                 "--calibrate", str(tmp_path / "norun")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "norun" in err[0] and "run directory" in err[0]
    assert not (tmp_path / "norun" / CALIBRATION_FILE).exists()
