"""Seed statistics of a tier from fabricated per-run JSON records (issue 18)."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from tomoclass.errors import InputError
from tomoclass.evaluate.tier import (
    aggregate_tier,
    convergence,
    first_lr_drop,
    load_run_records,
    paired_tests,
    peak_rate,
    relative_trend,
    run_convergence,
    scheduled_epochs,
)
from tomoclass.evaluate.tier_report import (
    plot_accuracy_vs_time,
    plot_tier_curves,
    plot_tier_groups,
    tier_markdown,
)

NAMES = ["t1", "s1", "m1"]
GROUPS = ["tiny", "small", "medium"]


def record(model, seed, tiny, small, medium, seconds=60.0, losses=(1.0, 0.5, 0.5, 0.5)):
    f1 = {"t1": tiny, "s1": small, "m1": medium}
    return {"model": model, "seed": seed, "f1": f1,
            "group_f1": {"tiny": tiny, "small": small, "medium": medium},
            "macro_f1": (tiny + small + medium) / 3, "train_seconds": seconds,
            "epochs": [{"epoch": i + 1, "val_loss": v, "val_macro_f1": 0.5,
                        "epoch_seconds": seconds / len(losses)} for i, v in enumerate(losses)]}


def test_convergence_is_a_flat_validation_loss_over_the_last_k_epochs():
    assert convergence([2.0, 1.0, 0.50, 0.51, 0.50], k=3, tol=0.05)["converged"]
    falling = convergence([2.0, 1.0, 0.8, 0.6], k=3, tol=0.05)
    assert not falling["converged"] and falling["slope_per_epoch"] == pytest.approx(-0.2)
    assert falling["relative_range"] == pytest.approx(0.4 / 0.8)
    assert not convergence([0.5, 0.5], k=3)["converged"]  # too few epochs
    assert not convergence([0.5, None, 0.5, float("nan")], k=3)["converged"]


def test_a_loss_flat_only_after_the_rate_dropped_is_not_flat_at_the_peak_rate():
    # the small12 seed-0 shape: still falling fast when x0.1 came after epoch 4
    val = [1.83, 1.41, 1.24, 1.24, 1.12, 1.10, 1.08, 1.075, 1.071, 1.064]
    lr = [1e-3] * 4 + [1e-4] * 4 + [1e-5] * 2
    c = convergence(val, k=3, tol=0.05, lr=lr)
    assert c["converged"]  # flat at the end ...
    assert not c["flat_at_peak_lr"] and c["epochs_at_peak_lr"] == 4  # ... but not at the peak
    assert c["peak_lr_relative_range"] == pytest.approx((1.41 - 1.24) / ((1.41 + 2 * 1.24) / 3))
    assert c["final_lr_fraction"] == pytest.approx(0.01)
    const = convergence([2.0, 1.0, 0.50, 0.51, 0.50], k=3, lr=[1e-3] * 5)
    assert const["converged"] and const["flat_at_peak_lr"] and const["final_lr_fraction"] == 1
    short = convergence([2.0, 1.0, 0.50, 0.50], k=3, lr=[1e-3, 1e-3, 1e-4, 1e-4])
    assert not short["flat_at_peak_lr"]  # 2 epochs at the peak cannot show a plateau of 3
    with pytest.raises(ValueError, match="one positive rate per epoch"):
        convergence([1.0, 0.5], lr=[1e-3])


def test_the_peak_phase_trend_tells_jitter_from_a_loss_still_falling():
    # issue 18's probes at 1e-3 (val loss on 180 boxes), epochs 1-12 at the peak rate
    plain = [1.954, 1.699, 1.428, 1.281, 1.184, 1.076, 1.173, 0.886, 0.979, 0.911, 0.985,
             0.956]
    dilated = [1.829, 1.41, 1.244, 1.213, 1.136, 0.984, 0.97, 0.894, 0.96, 0.82, 0.869, 0.816]
    lr = [1e-3] * 12 + [1e-4] * 2
    p = convergence(plain + [0.93, 0.93], lr=lr)
    d = convergence(dilated + [0.80, 0.80], lr=lr)
    # the range over 3 noisy epochs calls both "not flat" (7.9 % and 6.3 %) ...
    assert not p["flat_at_peak_lr"] and not d["flat_at_peak_lr"]
    # ... the 5-epoch trend: the plain net's loss had stopped falling, the dilated one's had not
    assert p["stopped_falling_at_peak_lr"] and p["peak_lr_trend"] > 0
    assert not d["stopped_falling_at_peak_lr"] and d["peak_lr_trend"] < -0.05
    assert d["peak_lr_trend"] == pytest.approx(relative_trend(dilated, 5))
    # a loss rising again (overfitting) has stopped falling as well
    assert relative_trend([1.0, 1.0, 1.1, 1.2, 1.3]) > 0
    assert relative_trend([1.0, 0.0, -1.0, -2.0, -3.0], 5) is None  # mean <= 0
    assert relative_trend([1.0, 0.9], 5) is None  # too few
    assert relative_trend([1.0, 0.8, 0.6, 0.4, 0.2], 5) == pytest.approx(-0.8 / 0.6)
    short = convergence([2.0, 1.0, 0.5, 0.5], lr=[1e-3] * 3 + [1e-4])
    assert not short["stopped_falling_at_peak_lr"] and short["peak_lr_trend"] is None


def test_run_convergence_takes_the_rates_from_the_schedule_not_the_log():
    r = record("m", 0, 0.1, 0.2, 0.3, losses=(2.0, 1.0, 0.6, 0.5, 0.5, 0.5))
    r["train_config"] = {"model": "densenet3d", "base_lr": 1e-3, "lr_reference_batch": 16,
                         "batch_size": 16, "lr_step_epochs": 2, "lr_gamma": 0.1}
    for e in r["epochs"]:  # what older runs logged: the next epoch's rate
        e["lr"] = 1e-3 * 0.1 ** (e["epoch"] // 2)
    c = run_convergence(r)
    assert c["epochs_at_peak_lr"] == 2 and c["final_lr_fraction"] == pytest.approx(0.01)
    assert c["converged"] and not c["flat_at_peak_lr"]
    # the figure shades from the same schedule: epoch 3 is the first below the peak, not 2
    assert first_lr_drop(scheduled_epochs(r)) == 3 and first_lr_drop(r["epochs"]) == 2
    del r["train_config"]
    assert first_lr_drop(scheduled_epochs(r)) == 2  # no config: the logged rates
    r["convergence"] = {"converged": False, "stored": True}
    assert run_convergence(r) == {"converged": False, "stored": True, "at_chance": False}


def test_the_table_states_each_models_peak_rate_from_its_runs():
    """A per-model rate (SHREC-CNN's deviation on small12) is printed, not hidden."""
    recs = []
    for s in range(2):
        for m, lr, ref in (("densenet3d", 4e-3, 64), ("shrec_cnn", 3e-4 * (1 + s), 16)):
            r = record(m, s, 0.2, 0.3, 0.4)
            r["train_config"] = {"base_lr": lr, "lr_reference_batch": ref, "batch_size": 16}
            recs.append(r)
    assert peak_rate(recs[0]) == pytest.approx((1e-3, 16))
    assert peak_rate(record("m", 0, 0.1, 0.1, 0.1)) is None
    agg = json.loads(json.dumps(aggregate_tier(recs, NAMES)))  # as summary.json holds it
    assert agg["peak_rates"]["densenet3d"] == [[pytest.approx(1e-3), 16]]
    text = tier_markdown(agg, NAMES, GROUPS, title="tier", models=["densenet3d", "shrec_cnn"])
    assert ("Peak learning rate after the warm-up (from each run's train_config): densenet3d "
            "0.001 at batch 16; shrec_cnn 0.0003 at batch 16, 0.0006 at batch 16.") in text


def test_paired_tests_match_scipy_and_pair_by_seed():
    a = {0: 0.60, 1: 0.55, 2: 0.70, 3: 0.62, 7: 0.9}  # seed 7 has no partner
    b = {0: 0.50, 1: 0.56, 2: 0.61, 3: 0.52, 4: 0.1}
    r = paired_tests(a, b)
    assert r["seeds"] == [0, 1, 2, 3] and r["n"] == 4
    assert r["diff"] == pytest.approx([0.10, -0.01, 0.09, 0.10])
    ref = stats.ttest_rel([0.60, 0.55, 0.70, 0.62], [0.50, 0.56, 0.61, 0.52])
    assert r["t"] == pytest.approx(ref.statistic) and r["p_t"] == pytest.approx(ref.pvalue)
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon([0.10, -0.01, 0.09, 0.10]).pvalue)
    assert r["mean"] == pytest.approx(0.07)
    one = paired_tests({0: 0.5}, {0: 0.4})
    assert one["t"] is None and one["p_wilcoxon"] is None and one["sd"] is None
    same = paired_tests({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})
    assert same["t"] is None and same["wilcoxon"] is None


def test_aggregate_writes_the_tier_answer_from_json_records(tmp_path):
    recs = []
    for s in range(5):
        recs.append(record("dilated_densenet3d", s, 0.5 + 0.01 * s, 0.8, 0.9, seconds=100 + s))
        recs.append(record("densenet3d", s, 0.4 + 0.02 * s, 0.8 - 0.01 * s, 0.9, seconds=90))
        recs.append(record("monai_densenet121", s, 0.2, 0.6, 0.9, seconds=20,
                           losses=(1.0, 0.8, 0.6)))
    runs = tmp_path / "runs"
    runs.mkdir()
    for r in recs:
        (runs / f"{r['model']}_seed{r['seed']}.json").write_text(json.dumps(r))
    agg = aggregate_tier(load_run_records(runs), NAMES)
    assert agg["summary"]["per_model"]["densenet3d"]["seeds"] == [0, 1, 2, 3, 4]
    tiny = agg["paired"]["groups"]["tiny"]
    assert tiny["diff"] == pytest.approx([0.1 - 0.01 * s for s in range(5)])
    assert tiny["sd"] == pytest.approx(stats.tstd([0.1 - 0.01 * s for s in range(5)]))
    assert agg["paired"]["groups"]["medium"]["t"] is None  # identical: no test
    assert agg["paired"]["groups"]["small"]["mean"] == pytest.approx(0.02)
    assert set(agg["paired"]["groups"]) == {"tiny", "small", "medium"}
    assert agg["convergence"]["dilated_densenet3d"]["n_converged"] == 5
    assert agg["convergence"]["monai_densenet121"]["n_converged"] == 0
    ta = agg["time_accuracy"]["dilated_densenet3d"]
    assert ta["train_seconds"]["mean"] == pytest.approx(102.0) and len(ta["points"]) == 5
    text = tier_markdown(agg, NAMES, GROUPS, title="tier", models=[
        "shrec_cnn", "densenet3d", "dilated_densenet3d", "monai_densenet121"],
        paper_f1={"densenet3d": {"t1": 0.5, "s1": 0.6, "m1": 0.8}})
    assert "dilated_densenet3d − densenet3d" in text and "0 / 5" in text
    assert "| densenet3d | paper | 0.500 |" in text
    assert "monai_densenet121 | ours (5 seeds)" in text and "shrec_cnn |" not in text
    assert "class_mean_correlation" not in text
    json.dumps(agg, allow_nan=False)  # the aggregate is plain JSON
    # the baseline's row, in Table 2 and per size group (an undefined F1 prints as –)
    base = {"method": "nearest class mean by correlation", "class_means_from": "train",
            "split": "test", "n": 30, "f1": {"t1": 0.25, "s1": None, "m1": 0.75},
            "group_f1": {"tiny": 0.25, "small": None, "medium": 0.75}, "macro_f1": 0.5,
            "accuracy": 0.5}
    text = tier_markdown({**agg, "baseline": base}, NAMES, GROUPS, title="tier")
    assert ("| class_mean_correlation | floor: no training, class means of the train boxes | "
            "0.250 | – | 0.750 | 0.500 |") in text
    assert "| class_mean_correlation | 0.250 | – | 0.750 |" in text
    for f in (plot_tier_groups(agg, tmp_path / "a.png", "t"),
              plot_accuracy_vs_time(agg, tmp_path / "b.png", "t"),
              plot_tier_curves(agg, tmp_path / "c.png", "t", models=["shrec_cnn", "densenet3d"])):
        assert f.read_bytes()[:4] == b"\x89PNG"


def test_duplicate_or_incomplete_records_are_refused(tmp_path):
    r = record("densenet3d", 0, 0.5, 0.5, 0.5)
    with pytest.raises(InputError, match="two run records"):
        aggregate_tier([r, dict(r)], NAMES)
    (tmp_path / "bad.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(InputError) as err:
        load_run_records(tmp_path)
    assert err.value.field == "seed" and "bad.json" in str(err.value)


def test_first_lr_drop_skips_the_warm_up():
    ep = [{"epoch": i + 1, "lr": r} for i, r in enumerate([1e-4, 5e-4, 1e-3, 1e-3, 1e-4, 1e-5])]
    assert first_lr_drop(ep) == 5
    assert first_lr_drop(ep[:4]) is None  # still at the peak: nothing shaded
    assert first_lr_drop([{"epoch": 1, "val_loss": 1.0}]) is None  # no rates recorded


def test_a_loss_flat_at_a_uniform_guess_is_flagged_at_chance(tmp_path):
    ln3 = math.log(3)  # the fixture's three classes
    stuck = record("shrec_cnn", 0, 0.0, 0.1, 0.0, losses=(1.5, ln3 + 0.01, ln3, ln3 + 0.005))
    learned = record("shrec_cnn", 1, 0.4, 0.6, 0.9, losses=(1.5, 0.85, 0.85, 0.85))
    assert run_convergence(stuck)["converged"] and run_convergence(stuck)["at_chance"]
    assert not run_convergence(learned)["at_chance"]
    # over-confident and over-fitting (MONAI's DenseNet121 on small12): above ln K, not chance
    overfit = record("m", 2, 0.2, 0.3, 0.5, losses=(1.5, 1.2, 2.0, 1.5 * ln3))
    assert not run_convergence(overfit)["at_chance"]
    just_above = record("m", 3, 0.0, 0.1, 0.0, losses=(1.5, ln3 * 1.015, ln3 * 1.015))
    assert run_convergence(just_above)["at_chance"]
    agg = aggregate_tier([stuck, learned], NAMES)
    assert agg["convergence"]["shrec_cnn"]["n_at_chance"] == 1
    text = tier_markdown(agg, NAMES, GROUPS, title="t")
    assert "0: yes (0.009, AT CHANCE), 1: yes (0.000)" in text
