import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tomoclass.errors import InputError
from tomoclass.evaluate.compare import (
    compare_runs,
    epoch_curve,
    read_metrics_log,
    write_comparison,
)
from tomoclass.evaluate.metrics import classification_metrics
from tomoclass.evaluate.report import (
    EvaluationReport,
    load_report,
    predict_logits,
    write_report,
)
from tomoclass.io.outputs import MARKER

NAMES = ["t1", "t2", "s1", "l1"]
GROUPS = ["tiny", "tiny", "small", "large"]
CAM = {"method": "cam", "target": "true", "mask_level": 0.2, "n": 6, "n_scored": 6,
       "mean": 0.6, "mean_mask_fraction": 0.1,
       "per_class": {"t1": 0.5, "t2": 0.7, "s1": None, "l1": 0.6}}


def _report(cm, name="dilated_densenet3d", run_dir="", cam=None, names=NAMES, groups=GROUPS):
    m = classification_metrics(np.asarray(cm), names, groups)
    return EvaluationReport(model_name=name, metrics=m, split="test", run_dir=str(run_dir),
                            dataset_dir="/data/x", checkpoint="best", cam=cam)


CM_A = [[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 3]]
CM_B = [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 3]]


def test_write_and_load_report_round_trip(tmp_path):
    run = tmp_path / "run"
    rep = write_report(_report(CM_A, run_dir=run, cam=CAM), run / "evaluation_test")
    files = sorted(p.name for p in (run / "evaluation_test").iterdir() if p.name != MARKER)
    assert files == ["confusion.csv", "confusion.png", "report.json", "report.md"]
    back = load_report(run)  # found from the run folder
    np.testing.assert_array_equal(back.metrics.confusion, CM_A)
    assert back.macro_f1 == pytest.approx(rep.macro_f1)
    assert back.cam_per_class()["s1"] is None
    df = pd.read_csv(run / "evaluation_test" / "confusion.csv", index_col=0)
    assert list(df.columns) == NAMES
    np.testing.assert_array_equal(df.to_numpy(), CM_A)
    md = (run / "evaluation_test" / "report.md").read_text()
    # t1: TP 2, FN 0, FP 1 -> F1 = 4/5
    assert "| t1 | tiny | 2 | 2 | 0 | 1 | 0.667 | 1.000 | 0.800 | 0.500 |" in md
    assert "CAM score" in md and "0.600" in md
    # tiny: all 4 put in the group, 3 of them in their own class; a guess between 2: 0.5
    assert "| tiny | 4 | 2 | 1.000 | 0.750 | 0.500 |" in md
    assert "| small | 2 | 1 | 0.500 | 1.000 | 1.000 |" in md
    d = json.loads((run / "evaluation_test" / "report.json").read_text())  # strict JSON
    assert d["group_confusion"]["tiny"]["within"] == pytest.approx(0.75)


def test_load_report_errors(tmp_path):
    with pytest.raises(InputError, match="no evaluation report"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not an evaluation report"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{")
    with pytest.raises(InputError, match="cannot read"):
        load_report(tmp_path)


def test_epoch_curve_group_mean_from_metrics_log(tmp_path):
    log = tmp_path / "metrics.jsonl"
    recs = [
        {"epoch": 1, "val_macro_f1": 0.3, "val_f1_per_class": {"t1": 0.2, "t2": None,
                                                               "s1": 0.5, "l1": 0.9}},
        {"epoch": 2, "val_macro_f1": 0.5, "val_f1_per_class": {"t1": 0.4, "t2": 0.6,
                                                               "s1": 0.5, "l1": 1.0}},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs) + "\n")
    rec = read_metrics_log(log)
    c = epoch_curve(rec, NAMES, GROUPS, group="tiny")
    np.testing.assert_array_equal(c.epochs, [1, 2])
    np.testing.assert_allclose(c.f1, [0.2, 0.5])  # undefined t2 left out at epoch 1
    macro = epoch_curve(rec, NAMES, GROUPS, group="medium")  # absent group -> macro
    assert macro.group == "macro"
    np.testing.assert_allclose(macro.f1, [(0.2 + 0.5 + 0.9) / 3, 0.625])
    log.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        read_metrics_log(log)


def test_compare_table2_layout_best_marked_and_files(tmp_path):
    runs = []
    for name, cm in (("densenet3d", CM_A), ("dilated_densenet3d", CM_B)):
        run = tmp_path / name
        write_report(_report(cm, name=name, run_dir=run, cam=CAM), run / "evaluation_test")
        recs = [{"epoch": e, "val_f1_per_class": {"t1": 0.1 * e, "t2": 0.2 * e}}
                for e in (1, 2, 3)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        runs.append(run)
    comp = compare_runs(runs)
    assert comp.labels == ["densenet3d", "dilated_densenet3d"]
    assert [n for _, n in comp.columns()] == NAMES
    md = comp.to_markdown()
    lines = md.splitlines()
    i = lines.index("| model | tiny |  | small | large |  |")
    assert lines[i + 2] == "| | *t1* | *t2* | *s1* | *l1* | *macro F1* |"
    # A: t1 4/5, t2 2/3, s1 2/3, l1 6/7; B: t1 2/3, t2 4/5, s1 1, l1 1
    assert lines[i + 3].startswith("| densenet3d | **0.800** | 0.667 | 0.667 | 0.857 |")
    assert lines[i + 4].startswith("| dilated_densenet3d | 0.667 | **0.800** | **1.000** | "
                                   "**1.000** |")
    # both runs carry the same CAM scores: no column has a best, nothing is bold
    assert "| densenet3d | 0.500 | 0.700 | – | 0.600 | 0.600 |" in lines
    np.testing.assert_allclose(comp.curves[0].f1, [0.15, 0.3, 0.45])
    out = write_comparison(comp, tmp_path / "cmp")
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir() if p.name != MARKER) == [
        "compare.json", "compare.md", "fig4a.png", "fig4b.png", "table2.csv"]
    d = json.loads(out.files["json"].read_text())
    assert d["size_groups"] == ["tiny", "small", "large"]
    assert d["group_f1"][1] == pytest.approx([(2 / 3 + 0.8) / 2, 1.0, 1.0])
    table = pd.read_csv(out.files["table"], header=[0, 1], index_col=0)
    assert table.loc["dilated_densenet3d", ("small", "s1")] == pytest.approx(1.0)


def test_compare_same_model_twice_gets_unique_labels(tmp_path):
    reps = [_report(CM_A), _report(CM_B)]
    comp = compare_runs([tmp_path / "a", tmp_path / "b"], reports=reps)
    assert comp.labels == ["dilated_densenet3d (a)", "dilated_densenet3d (b)"]
    assert comp.curves == [] and comp.cam_table() is None


def test_predict_logits_batches_and_restores_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2), nn.Flatten(), nn.LazyLinear(3))
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 8)).astype(np.float32)
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[:, None]).numpy()
    model.train()
    out = predict_logits(model, list(x), batch_size=2)
    assert model.training
    np.testing.assert_allclose(out, ref, atol=1e-5)
    with pytest.raises(InputError):
        predict_logits(model, [])


def test_compare_cli_reads_reports(tmp_path, capsys):
    from tomoclass.cli.main import main

    runs = []
    for name, cm in (("densenet3d", CM_A), ("dilated_densenet3d", CM_B)):
        run = tmp_path / name
        write_report(_report(cm, name=name, run_dir=run), run / "evaluation_test")
        runs.append(str(run))
    assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "| dilated_densenet3d | 0.667 | **0.800** |" in out
    assert (tmp_path / "cmp" / "fig4a.png").is_file()
    assert not (tmp_path / "cmp" / "fig4b.png").exists()  # no metrics logs, no curve
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "no evaluation report" in capsys.readouterr().err


def test_ties_for_best_are_all_marked(tmp_path):
    reps = [_report(CM_A, name="a"), _report(CM_B, name="b"), _report(CM_B, name="c")]
    lines = compare_runs([tmp_path / n for n in "abc"], reports=reps).to_markdown().splitlines()
    rows = {}
    for ln in lines:  # the first table (Table 2) comes first
        if ln[:4] in ("| a ", "| b ", "| c "):
            rows.setdefault(ln[2], ln)
    # t1: a alone is best; t2, s1, l1 and macro: b and c tie for best
    assert rows["a"].startswith("| a | **0.800** | 0.667 | 0.667 | 0.857 |")
    for r in ("b", "c"):
        assert rows[r].startswith(f"| {r} | 0.667 | **0.800** | **1.000** | **1.000** |")
