"""evaluate.seeds: Table 2 / Fig. 4 over seeds, paired dilated-minus-plain difference."""

from __future__ import annotations

import pytest

from tomoclass.evaluate.seeds import (
    MODELS,
    curve_split,
    paper_difference,
    paper_group_f1,
    plot_epoch_curves,
    plot_group_f1,
    summarize_seeds,
    table2_sections,
)

NAMES, GROUPS = ["a", "b"], ["tiny", "large"]


def _run(fa: float, fb: float) -> dict:
    return {"f1": {"a": fa, "b": fb}, "group_f1": {"tiny": fa, "large": fb},
            "macro_f1": (fa + fb) / 2, "cam": None,
            "curve_test_f1": {"tiny": {"epochs": [1, 2], "f1": [fa / 2, fa]}}}


RUNS = {"densenet3d": {0: _run(0.5, 0.9), 1: _run(0.7, 0.9)},
        "dilated_densenet3d": {0: _run(0.6, 0.9), 1: _run(0.9, 1.0)}}
PAPER = {m: {"a": 0.5, "b": 0.8 + 0.05 * i} for i, m in enumerate(MODELS)}


def test_means_over_seeds_and_the_paired_difference():
    s = summarize_seeds(RUNS, NAMES)
    assert s["per_model"]["densenet3d"]["f1"]["a"]["mean"] == pytest.approx(0.6)
    assert s["per_model"]["densenet3d"]["f1"]["a"]["sd"] == pytest.approx(0.1414, abs=1e-4)
    d = s["dilated_minus_plain"]
    assert d["seeds"] == [0, 1]
    assert d["f1"]["a"]["mean"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2
    assert d["group_f1"]["large"]["max"] == pytest.approx(0.1)


def test_table_and_figures(tmp_path):
    s = summarize_seeds(RUNS, NAMES)
    lines = table2_sections(s, RUNS, class_names=NAMES, size_groups=GROUPS, paper_f1=PAPER,
                            paper_names=["a", "x"])
    text = "\n".join(lines)
    assert lines[0] == "| model | source | a | b (paper: x) | mean |"
    assert "| densenet3d | ours (2 seeds) | 0.600 ± 0.141 | 0.900 ± 0.000 | 0.750 ± 0.071 |" in text
    assert "| dilated_densenet3d | paper | 0.500 | 0.900 | 0.700 |" in text
    assert "Here the dilated net scores higher on average" in text
    groups = paper_group_f1(PAPER, NAMES, GROUPS)
    assert (groups["shrec_cnn"]["tiny"], groups["shrec_cnn"]["large"]) == (0.5, 0.8)
    assert groups["shrec_cnn"]["small"] != groups["shrec_cnn"]["small"]  # NaN: no class
    png = b"\x89PNG\r\n\x1a\n"
    assert plot_group_f1(s, groups, tmp_path / "a.png", "4A").read_bytes()[:8] == png
    assert plot_epoch_curves(RUNS, tmp_path / "b.png", "4B").read_bytes()[:8] == png


def test_epoch_curves_are_labelled_with_the_split_they_were_measured_on():
    """A tier that monitors a validation tomogram must not have its curves called test F1."""
    assert curve_split(RUNS) == "test tomogram"  # records from before the field: test
    val = {m: {s: {**r, "monitored_split": "val"} for s, r in by.items()} for m, by in RUNS.items()}
    assert curve_split(val) == "validation tomogram"
    val["densenet3d"][0] = {**RUNS["densenet3d"][0], "monitored_split": "test"}
    assert curve_split(val) == "monitored split: test/val"


def test_distance_from_the_paper_counts_only_shared_cells():
    ours = {"densenet3d": {"a": 0.6, "b": 0.9}, "dilated_densenet3d": {"a": 0.75, "b": None},
            "monai_densenet121": {"a": 0.1, "b": 0.1}}  # not in the paper: no cells
    d = paper_difference(ours, PAPER, NAMES)
    # densenet3d: +0.1, +0.05 (paper b 0.85); dilated: +0.25 (b missing)
    assert d["cells"] == 3 and set(d["per_model"]) == {"densenet3d", "dilated_densenet3d"}
    assert d["mean_abs"] == pytest.approx((0.1 + 0.05 + 0.25) / 3)
    assert d["sum_sq"] == pytest.approx(0.01 + 0.0025 + 0.0625)
    assert d["rms"] == pytest.approx(((0.01 + 0.0025 + 0.0625) / 3) ** 0.5)
    assert d["per_model"]["densenet3d"]["mean_signed"] == pytest.approx(0.075)
    below = paper_difference({"densenet3d": {"a": 0.4, "b": 0.85}}, PAPER, NAMES)
    assert below["mean_signed"] == pytest.approx(-0.05) and below["mean_abs"] == pytest.approx(0.05)
    text = "\n".join(table2_sections(summarize_seeds(RUNS, NAMES), RUNS, class_names=NAMES,
                                     size_groups=GROUPS, paper_f1=PAPER))
    assert "Mean absolute difference over the 4 (model, class) cells" in text
