"""evaluate.per_class_localization from a SHREC hit-box score."""

from __future__ import annotations

import pandas as pd
import pytest

from tomoclass.evaluate import per_class_localization, score_picks


def test_found_missed_and_false_picks_per_class():
    truth = pd.DataFrame({"tomogram": "t", "class_name": ["a", "a", "b"],
                          "x": [10.0, 30.0, 50.0], "y": 10.0, "z": 10.0})
    picks = pd.DataFrame({"tomogram": "t", "class_name": ["a", "b", "b", "background"],
                          "x": [10.5, 80.0, 50.0, 90.0], "y": 10.0, "z": 10.0,
                          "score": [0.9, 0.8, 0.7, 0.6]})
    score = score_picks(truth, picks, 3.0)
    rec = per_class_localization(score, picks)
    assert rec["a"]["found"] == 1 and rec["a"]["missed"] == 1 and rec["a"]["false_picks"] == 0
    assert rec["b"]["found"] == 1 and rec["b"]["false_picks"] == 1  # background is not counted
    assert rec["a"]["loc_recall"] == pytest.approx(0.5)
    assert rec["b"]["loc_precision"] == pytest.approx(0.5)
    assert rec["b"]["loc_f1"] == pytest.approx(2 / 3)
