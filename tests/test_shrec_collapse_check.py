"""benchmarks/shrec_collapse_check.py: SHREC-CNN's activations and logit spread per checkpoint."""

from __future__ import annotations

import json

import pytest
from bench_support import load_script
from train_support import make_dataset, one_thread

from tomoclass.train import fit, preset

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def test_the_profile_of_the_init_and_of_a_trained_checkpoint(tmp_path, capsys):
    check = load_script("shrec_collapse_check")
    ds = make_dataset(tmp_path / "ds", n_per_class=(3, 3, 3), n_val_per_class=1, box=28)
    cfg = preset("plain", model="shrec_cnn", model_kwargs={"fc_width": 16}, batch_size=9,
                 epochs=1, checkpoint_every=1, seed=0)
    fit(cfg, ds, tmp_path / "run", progress=False)
    out = tmp_path / "r.json"
    assert check.main(["--data", str(ds), "--boxes", "6", "--out", str(out), "--checkpoints",
                       str(tmp_path / "run" / "checkpoints" / "epoch_001.pt")]) == 0
    rows = json.loads(out.read_text())["rows"]
    xavier, zeros, trained = rows
    assert zeros["logit_mean_abs"] == 0 and zeros["logit_sd_across_boxes"] == 0
    assert xavier["logit_sd_across_boxes"] > 0 and xavier["logit_mean_abs"] > 0
    assert trained["epoch"] == 1
    assert set(trained["active_fraction"]) == {*(f"relu{i}" for i in range(1, 9)), "fc1", "fc2"}
    assert all(0 <= v <= 1 for r in rows for v in r["active_fraction"].values())
    # the same init (same seed) gives the same convolution activity, whatever the head
    assert xavier["active_fraction"] == zeros["active_fraction"]
    assert "s.d. across boxes" in capsys.readouterr().out
