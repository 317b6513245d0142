"""evaluate.variants: time to accuracy of training variants from their per-epoch curves."""

from __future__ import annotations

import pytest

from tomoclass.evaluate.variants import (
    curve_from_run_record,
    plot_variant_curves,
    variant_summary,
    variants_markdown,
)


def _curve(name, f1s, seconds=60.0, conv=None):
    return {"variant": name, "convergence": conv,
            "curve": [{"epoch": i + 1, "val_macro_f1": f, "val_loss": 1.0,
                       "cumulative_wall_seconds": seconds * (i + 1)} for i, f in enumerate(f1s)]}


def test_first_epoch_reaching_the_target_and_fixed_epoch_values():
    v = _curve("fast", [0.2, 0.5, 0.62, 0.61, 0.7], conv={"converged": False,
                                                         "flat_at_peak_lr": False})
    s = variant_summary(v, 0.6, at_epochs=(3, 10))
    assert s["reached_at_epoch"] == 3 and s["minutes_to_target"] == pytest.approx(3.0)
    assert s["f1_at"] == {3: 0.62, 10: None}  # not trained that long
    assert (s["best_macro_f1"], s["best_epoch"], s["final_macro_f1"]) == (0.7, 5, 0.7)
    assert s["flat_at_end"] is False and s["minutes_trained"] == pytest.approx(5.0)
    slow = variant_summary(_curve("slow", [0.1, None, 0.3]), 0.6)
    assert slow["reached_at_epoch"] is None and slow["minutes_to_target"] is None
    assert slow["best_macro_f1"] == 0.3 and slow["flat_at_end"] is None


def test_a_tier_run_record_becomes_a_curve_and_everything_renders(tmp_path):
    run = {"model": "m", "seed": 0, "convergence": {"converged": True, "flat_at_peak_lr": False},
           "epochs": [{"epoch": 1, "val_macro_f1": 0.3, "val_loss": 2.0, "epoch_seconds": 30},
                      {"epoch": 2, "val_macro_f1": 0.55, "val_loss": 1.5, "epoch_seconds": 90}]}
    c = curve_from_run_record(run, "default (tier run)")
    assert [p["cumulative_wall_seconds"] for p in c["curve"]] == [30.0, 120.0]
    assert variant_summary(c, 0.5)["minutes_to_target"] == pytest.approx(2.0)
    text = variants_markdown([c, _curve("plain", [0.1, 0.2])], 0.5, "T", at_epochs=(2,))
    assert "| default (tier run) | 2 | 2.0 | 0.550 | 0.550 (2) | 0.550 | 2 | yes | NO |" in text
    assert "| plain | not reached | – | 0.200 |" in text
    png = plot_variant_curves([c], tmp_path / "v.png", "T", target=0.5)
    assert png.read_bytes()[:4] == b"\x89PNG"
