"""Table-side input problems: class names that do not match, class from a column or file name,
a table's tomogram named on the command line, coordinate-free subtomogram stacks."""

import logging

import pandas as pd

from tomoclass.cli.main import main
from tomoclass.evaluate.picks import score_picks


def _table(names, tomogram="t"):
    return pd.DataFrame({"tomogram": tomogram, "x": [5.0, 20.0], "y": [5.0, 20.0],
                         "z": [5.0, 20.0], "class_name": names, "score": [0.9, 0.8]})


def test_score_picks_warns_once_when_class_names_do_not_match(caplog, tmp_path, capsys):
    truth = _table(["1bxn", "3cf3"])
    with caplog.at_level(logging.WARNING):
        score_picks(truth, _table(["1BXN", "3cf3"]), 2.0)  # case does not matter
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        result = score_picks(truth, _table(["class0", "3cf3"]), 2.0)
    assert result.tp == 2 and len(caplog.records) == 1
    assert "1 of 2 picks" in caplog.text and "class0" in caplog.text
    truth.to_csv(tmp_path / "truth.csv", index=False)
    _table(["ribo", "prot"]).to_csv(tmp_path / "picks.csv", index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["score-picks", "--truth", str(tmp_path / "truth.csv"), "--picks",
                     str(tmp_path / "picks.csv"), "--radius", "2"]) == 0
    assert len([r for r in caplog.records if "ground truth does not have" in r.message]) == 1
    assert "accuracy" in capsys.readouterr().out
