"""Joint dose calibration: every model's cells against the paper, least squares (issue 18)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bench_support import BENCH, load_script

from tomoclass.errors import InputError
from tomoclass.evaluate.dose_fit import dose_fit_markdown, joint_dose_fit

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TOMOCLASS_SHARED_DATA", ROOT / ".." / "shared" / "data"))
MODELS = ("shrec_cnn", "densenet3d", "dilated_densenet3d")
NAMES = ["t", "s"]
PAPER = {"shrec_cnn": {"t": 0.2, "s": 0.4}, "densenet3d": {"t": 0.5, "s": 0.6},
         "dilated_densenet3d": {"t": 0.6, "s": 0.7}}


def point(dose, offsets, **kw):
    """F1 = paper + the model's offset at this dose."""
    return {"dose": dose, "f1": {m: {n: PAPER[m][n] + offsets[i] for n in NAMES}
                                 for i, m in enumerate(MODELS)}, **kw}


def test_the_dose_nearest_the_paper_over_all_models_wins_not_the_one_model_match():
    # at 80 the SHREC-CNN matches exactly but the DenseNets are 0.3 high (the trap);
    # at 110 every model is 0.1 off: jointly nearer
    pts = [point(150, (-0.2, -0.2, -0.2)), point(80, (0.0, 0.3, 0.3)),
           point(110, (-0.1, 0.1, 0.1), seeds={"densenet3d": [0, 1]})]
    fit = joint_dose_fit(pts, PAPER, NAMES)
    assert [r["dose"] for r in fit["doses"]] == [80, 110, 150]  # sorted
    assert fit["chosen"]["dose"] == 110 and not fit["at_edge"] and fit["cells"] == 6
    assert fit["chosen"]["mean_abs"] == pytest.approx(0.1)
    assert fit["doses"][0]["mean_sq"] == pytest.approx((0 + 0 + 4 * 0.09) / 6)
    assert fit["doses"][2]["mean_signed"] == pytest.approx(-0.2)
    text = dose_fit_markdown(fit, "t")
    assert "| **110** |" in text and "densenet3d 2" in text and "edge" not in text
    # the best dose at the end of the sweep is flagged
    edge = joint_dose_fit(pts[1:], PAPER, NAMES)
    assert edge["chosen"]["dose"] == 110 and edge["at_edge"]
    assert "edge of the sweep" in dose_fit_markdown(edge, "t")


def test_refusals_name_the_dose():
    pts = [point(80, (0, 0, 0)), point(110, (0, 0, 0))]
    del pts[1]["f1"]["shrec_cnn"]
    with pytest.raises(InputError, match="no runs of shrec_cnn at dose 110"):
        joint_dose_fit(pts, PAPER, NAMES)
    pts = [point(80, (0, 0, 0)), point(110, (0, 0, 0), source="R/d110")]
    pts[1]["f1"]["densenet3d"]["s"] = None  # a class without F1 there: other cells
    with pytest.raises(InputError, match="dose 110 and dose 80 compare different cells"):
        joint_dose_fit(pts, PAPER, NAMES)
    with pytest.raises(InputError, match="given twice"):
        joint_dose_fit([point(80, (0, 0, 0)), point(80, (0, 0, 0))], PAPER, NAMES)
    with pytest.raises(InputError, match="no doses"):
        joint_dose_fit([], PAPER, NAMES)


def _folder(root: Path, dose: float, offset: float, preset: str = "default") -> Path:
    cal = load_script("calibrate_tier")
    bench = cal.load_benchmark(BENCH / "configs" / "shrec12.yaml", "small12")
    paper = bench.paper_f1()
    f = root / f"d{dose:g}"
    (f).mkdir(parents=True)
    (f / "protocol.json").write_text(json.dumps(
        {"tier": "small12", "preset": preset, "epochs": 10, "classes": bench.names,
         "data": {"dose": dose}}))
    per_model = {m: {"seeds": [0, 1], "f1": {n: {"mean": paper[m][n] + offset}
                                             for n in bench.names}} for m in MODELS}
    (f / "summary.json").write_text(json.dumps({"summary": {"per_model": per_model}}))
    return f


@pytest.mark.skipif(not (DATA / "structures" / "pdb").is_dir(), reason="shared data absent")
def test_calibrate_tier_reads_one_results_folder_per_dose(tmp_path, capsys):
    cal = load_script("calibrate_tier")
    dirs = [_folder(tmp_path, d, o) for d, o in ((60, 0.2), (110, -0.05), (200, -0.3))]
    assert cal.main([str(d) for d in dirs] + ["--out", str(tmp_path / "out")]) == 0
    rec = json.loads((tmp_path / "out" / "calibration_small12.json").read_text())
    assert rec["chosen"]["dose"] == 110 and rec["cells"] == 27 and not rec["at_edge"]
    assert "chosen dose 110" in capsys.readouterr().out
    other = _folder(tmp_path / "x", 80, 0.0, preset="plain")
    assert cal.main([str(dirs[0]), str(other), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "preset" in err and "protocol.json" in err and "\n" not in err.strip()
    assert not (tmp_path / "o2").exists()  # nothing half-written
    assert cal.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o3")]) == 2
    assert "protocol.json" in capsys.readouterr().err
