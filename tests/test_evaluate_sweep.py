"""evaluate.sweep: scoring pick files, the sweep table and the calibration record."""

import json

import numpy as np
import pandas as pd
import pytest

from tomoclass.errors import InputError
from tomoclass.evaluate.sweep import parse_thresholds, score_pick_files, sweep_markdown
from tomoclass.io import write_particles


def _files(tmp_path):
    truth = pd.DataFrame({"tomogram": "t0", "x": [10.0, 30.0], "y": [10.0, 10.0],
                          "z": [10.0, 10.0], "class_name": ["A", "B"]})
    picks = pd.DataFrame({"tomogram": "t0", "x": [11.0, 30.0, 80.0], "y": [10.0, 10.0, 80.0],
                          "z": [10.0, 10.0, 80.0], "class_name": ["A", "A", "B"],
                          "score": [0.9, 0.4, 0.8]})
    return (write_particles(tmp_path / "truth.csv", truth),
            write_particles(tmp_path / "picks.csv", picks))


def test_score_pick_files_sweeps_and_calibrates(tmp_path):
    truth, picks = _files(tmp_path)
    scores = score_pick_files(truth, picks, 3.0, thresholds=[0.5, 0.85], calibrate=True)
    assert (scores.result.tp, scores.result.fp, scores.result.fn) == (2, 1, 0)
    assert scores.sweep["tp"].tolist() == [1, 1] and scores.sweep["fp"].tolist() == [1, 0]
    assert scores.choice.threshold == pytest.approx(0.4)  # F1 0.8 beats 0.5, 0.67
    assert scores.record["truth"] == str(truth.resolve()) and scores.record["radii"] == 3.0
    data = json.loads(json.dumps(scores.to_dict()))
    assert [r["threshold"] for r in data["threshold_sweep"]] == [0.5, 0.85]
    assert data["calibration"]["threshold"] == pytest.approx(scores.choice.threshold)
    table = sweep_markdown(scores.sweep).splitlines()
    assert len(table) == 4 and table[2].startswith("| 0.5 | 2 | 1 | 1 | 1 |")


def test_without_sweep_or_calibration_the_record_is_the_scores(tmp_path):
    truth, picks = _files(tmp_path)
    scores = score_pick_files(truth, picks, {"*": 3.0})
    assert scores.sweep is None and scores.choice is None and scores.record is None
    assert set(scores.to_dict()) == set(scores.result.to_dict())


def test_parse_thresholds():
    assert parse_thresholds("0.5, 0.7,") == [0.5, 0.7]
    with pytest.raises(InputError, match="comma-separated") as err:
        parse_thresholds("0.5;0.7")
    assert err.value.field == "sweep"
    assert np.isnan(parse_thresholds("nan")[0])
