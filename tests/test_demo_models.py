"""benchmarks/demo_models.py at smoke size: train two seeds per model on the demo phantoms,
record, aggregate, register the runs as shipped demo models, and reproduce their recorded F1
by name (the plumbing; its F1 values mean nothing)."""

from __future__ import annotations

import json

import pytest
from bench_support import load_script
from train_support import one_thread

from tomoclass.models import pretrained as pretrained_mod
from tomoclass.models.pretrained import ENV_DIR, get_pretrained
from tomoclass.workflows.demo import shipped_models

pytestmark = pytest.mark.slow
_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def test_smoke_train_register_and_check(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "user_models"))
    monkeypatch.setattr(pretrained_mod, "PACKAGE_DIR", tmp_path / "package_models")
    dm = load_script("demo_models")
    out, work, reg = tmp_path / "out", tmp_path / "work", tmp_path / "package_models"
    base = ["--out", str(out), "--work", str(work), "--smoke", "--epochs", "2",
            "--lr-step", "1", "--seeds", "0-1"]
    assert dm.main(base) == 0
    runs = sorted(p.stem for p in (out / "runs").glob("*.json"))
    assert runs == ["densenet3d_seed0", "densenet3d_seed1", "dilated_densenet3d_seed0",
                    "dilated_densenet3d_seed1"]
    rec = json.loads((out / "runs" / "densenet3d_seed1.json").read_text())
    assert len(rec["epochs"]) == 2 and "converged" in rec["convergence"]
    assert rec["train_config"]["seed"] == 1 and rec["data"]["seed"] == 1000
    # "data" holds the data only: the demo's own short-run epochs are not these runs' epochs
    assert "epochs" not in rec["data"] and rec["train_config"]["epochs"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_model"]["densenet3d"]["macro_f1"]["n"] == 2
    assert summary["paired_tests"]["macro"]["seeds"] == [0, 1]
    # a second call trains nothing (records exist) and registers every run
    assert dm.main(base + ["--register", str(reg)]) == 0
    assert set(shipped_models("demo-phantoms")) == {
        ("densenet3d", 0), ("densenet3d", 1), ("dilated_densenet3d", 0),
        ("dilated_densenet3d", 1)}
    entry = get_pretrained("demo-phantoms-densenet3d-s1")
    recorded = entry.metrics["recorded"]
    assert recorded["test_on_training_simulation"]["macro_f1"] == pytest.approx(
        rec["macro_f1"])
    assert recorded["seed_summary"]["n"] == 2
    assert not (out / "runs" / ".demo-phantoms-densenet3d-s1.metrics.json").exists()
    # registering again is a no-op; the check reproduces every recorded F1 by name
    assert dm.main(base + ["--register", str(reg)]) == 0
    assert dm.main(["--out", str(tmp_path / "check"), "--work", str(work), "--check"]) == 0
    check = json.loads((tmp_path / "check" / "check.json").read_text())
    assert len(check["models"]) == 4 and all(r["ok"] for r in check["models"])


def test_a_foreign_work_folder_is_refused_and_left_alone(tmp_path, capsys):
    dm = load_script("demo_models")
    work = tmp_path / "mine"
    (work / "data").mkdir(parents=True)
    (work / "data" / "keep.txt").write_text("a user's file")
    rc = dm.main(["--out", str(tmp_path / "out"), "--work", str(work), "--smoke"])
    assert rc == 2 and "was not made as" in capsys.readouterr().err
    assert (work / "data" / "keep.txt").read_text() == "a user's file"
