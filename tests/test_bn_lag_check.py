"""benchmarks/bn_lag_check.py: a checkpoint scored with its saved and recomputed BN statistics."""

from __future__ import annotations

import json

import pytest
import torch
from bench_support import load_script
from train_support import TINY_KWARGS, TINY_MODEL, make_dataset, one_thread

from tomoclass.train import fit, preset

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def test_stale_statistics_are_replaced_and_both_scores_recorded(tmp_path, capsys):
    bn = load_script("bn_lag_check")
    ds = make_dataset(tmp_path / "ds")
    cfg = preset("plain", model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6, epochs=1,
                 checkpoint_every=1, deterministic=True, seed=1)
    fit(cfg, ds, tmp_path / "run", progress=False)
    # make the saved statistics absurd: eval mode then predicts garbage
    ck = torch.load(tmp_path / "run" / "checkpoints" / "epoch_001.pt", weights_only=True)
    for k in ck["model_state"]:
        if k.endswith("running_var"):
            ck["model_state"][k].fill_(1e-6)
    torch.save(ck, tmp_path / "run" / "checkpoints" / "epoch_001.pt")
    rec = bn.check(tmp_path / "run", ds, which="1", bn_samples=12, split="val")
    assert rec["epoch"] == 1 and rec["bn_samples"] == 12
    s, p = rec["saved_statistics"], rec["precise_bn"]
    assert p["loss"] < s["loss"]  # recomputed statistics fit the weights again
    assert 1 <= p["classes_predicted"] <= 3 and 0.0 <= p["macro_f1"] <= 1.0
    assert bn.main([str(tmp_path / "run"), str(ds), "--which", "1", "--split", "val", "--out",
                    str(tmp_path / "o")]) == 0
    (out,) = (tmp_path / "o").glob("bn_lag_run_1_*.json")
    assert json.loads(out.read_text())["precise_bn"]["macro_f1"] == pytest.approx(
        p["macro_f1"], abs=0.5)
    assert "after precise BN" in capsys.readouterr().out
    assert bn.main([str(tmp_path / "run"), str(ds), "--split", "nope", "--out",
                    str(tmp_path / "o2")]) == 2
    assert "split 'nope'" in capsys.readouterr().err and not (tmp_path / "o2").exists()
