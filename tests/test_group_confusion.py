"""Size found, identity not: the group confusion of runs, mean over seeds (issue 18, the tiny
classes), in the tier table and from old evaluation reports (benchmarks/group_confusion.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_support import load_script

from tomoclass.evaluate.metrics import classification_metrics
from tomoclass.evaluate.report import EvaluationReport, write_report
from tomoclass.evaluate.seeds import (
    group_confusion_lines,
    summarize_group_confusion,
    summarize_seeds,
)

NAMES = ["t1", "t2", "t3", "s1"]
GROUPS = ["tiny", "tiny", "tiny", "small"]
# seed 0: every tiny particle called tiny, 6 of 9 right; seed 1: one tiny called small, 4 of 8
CM = {0: [[2, 1, 0, 0], [0, 2, 1, 0], [1, 0, 2, 0], [0, 0, 0, 3]],
      1: [[2, 0, 0, 1], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 3]]}


def _record(seed):
    m = classification_metrics(np.asarray(CM[seed]), NAMES, GROUPS)
    return {"f1": dict(zip(NAMES, m.f1.tolist(), strict=True)), "group_f1": m.group_f1(),
            "macro_f1": m.macro_f1, "cam": None, "group_confusion": m.group_confusion()}


def test_means_over_seeds_and_the_table_rows():
    s = summarize_group_confusion({0: _record(0), 1: _record(1), 2: {"f1": {}}})  # 2: older
    assert s["tiny"]["seeds"] == [0, 1] and s["tiny"]["chance"] == pytest.approx(1 / 3)
    assert s["tiny"]["in_group"]["mean"] == pytest.approx((1 + 8 / 9) / 2)
    assert s["tiny"]["within"]["mean"] == pytest.approx((6 / 9 + 4 / 8) / 2)
    assert s["small"]["within"]["mean"] == 1.0
    per_model = summarize_seeds({"densenet3d": {0: _record(0), 1: _record(1)}}, NAMES)["per_model"]
    lines = group_confusion_lines(per_model, ["densenet3d"])
    assert "| densenet3d | tiny | 2 | 0.944 ± 0.079 | 0.583 ± 0.118 | 0.333 |" in lines
    # records without the key (older runs): no section, the table as before
    old = summarize_seeds({"densenet3d": {0: {**_record(0), "group_confusion": None}}},
                          NAMES)["per_model"]
    assert group_confusion_lines(old, ["densenet3d"]) == []


def test_script_reads_old_evaluation_reports(tmp_path, capsys):
    gc = load_script("group_confusion")
    for seed, cm in CM.items():
        m = classification_metrics(np.asarray(cm), NAMES, GROUPS)
        run = tmp_path / f"dilated_densenet3d_seed{seed}"
        write_report(EvaluationReport(model_name="dilated_densenet3d", metrics=m, split="test",
                                      run_dir=str(run), dataset_dir="d", checkpoint="last"),
                     run / "evaluation_test")
    runs = sorted(str(p) for p in tmp_path.iterdir())
    out = tmp_path / "gc.json"
    assert gc.main([*runs, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| dilated_densenet3d | tiny | 2 | 0.944 ± 0.079 | 0.583 ± 0.118 |" in text
    rec = json.loads(out.read_text())
    assert [r["seed"] for r in rec["reports"]] == [0, 1]
    # a result file is never replaced; a folder without a report is one line, exit 2
    with pytest.raises(SystemExit) as e:
        gc.main([*runs, "--out", str(out)])
    assert e.value.code == 2
    assert gc.main([str(tmp_path / "nothing")]) == 2
    assert "no evaluation report" in capsys.readouterr().err
