"""Table 2 and Fig. 4 over several training seeds, beside the paper's values.

:mod:`tomoclass.evaluate.compare` puts single runs side by side; this module summarises
repeated runs (one record per model and seed) as mean ± s.d. over seeds, pairs the dilated
and plain DenseNets seed by seed, and renders the Markdown tables and the two figures of the
paper's Table 2 / Fig. 4A / Fig. 4B layout.

A run record (one model, one seed) is a dict with ``f1`` ({class: F1 or None}),
``group_f1`` ({size group: mean F1}), ``macro_f1``, ``cam`` (the CAM score record or None)
``curve_test_f1`` ({"tiny": {"epochs": [...], "f1": [...]}, ...}: the curve of the split the
run monitored, despite the name) and optionally ``monitored_split`` ("test" or "val").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.io.atomic import save_png
from tomoclass.metrics import SIZE_GROUPS

__all__ = [
    "MODELS",
    "PAIRED",
    "curve_split",
    "format_mean_sd",
    "format_value",
    "group_confusion_lines",
    "ours_row",
    "paper_difference",
    "paper_difference_lines",
    "paper_group_f1",
    "paper_row",
    "plot_epoch_curves",
    "plot_group_f1",
    "seed_means",
    "seed_stats",
    "summarize_group_confusion",
    "summarize_seeds",
    "table2_sections",
]

#: The paper's Table 2 rows, in its order.
MODELS = ("shrec_cnn", "densenet3d", "dilated_densenet3d")
#: The difference the paper is about: dilated minus plain 3D-DenseNet.
PAIRED = ("dilated_densenet3d", "densenet3d")
GROUPS = SIZE_GROUPS

Runs = Mapping[str, Mapping[Any, Mapping[str, Any]]]


def seed_stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, s.d. (ddof 1; None for one value), min, max and count of the values not None."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def summarize_seeds(runs: Runs, class_names: Sequence[str]) -> dict[str, Any]:
    """Means over seeds per model, and the dilated-minus-plain difference paired by seed.

    Parameters
    ----------
    runs
        ``{model: {seed: run record}}`` (see the module docstring).
    class_names
        Classes in table order.

    Returns
    -------
    dict
        ``{"per_model": {model: {"seeds", "f1", "group_f1", "macro_f1", "cam_mean"}},
        "dilated_minus_plain": {...} or None}``; every number a :func:`seed_stats` record.
    """
    out: dict[str, Any] = {"per_model": {}, "dilated_minus_plain": None}
    for model, by_seed in runs.items():
        recs = list(by_seed.values())
        out["per_model"][model] = {
            "seeds": sorted(by_seed),
            "f1": {n: seed_stats([r["f1"].get(n) for r in recs]) for n in class_names},
            "group_f1": {g: seed_stats([r["group_f1"].get(g) for r in recs]) for g in GROUPS},
            "macro_f1": seed_stats([r["macro_f1"] for r in recs]),
            "cam_mean": seed_stats([(r["cam"] or {}).get("mean") for r in recs]),
            "group_confusion": summarize_group_confusion(by_seed),
        }
    a, b = runs.get(PAIRED[0], {}), runs.get(PAIRED[1], {})
    paired = sorted(set(a) & set(b))
    if paired:
        diff = {"seeds": paired,
                "macro_f1": seed_stats([a[s]["macro_f1"] - b[s]["macro_f1"] for s in paired]),
                "group_f1": {}, "f1": {}}
        for g in GROUPS:
            vals = [a[s]["group_f1"][g] - b[s]["group_f1"][g] for s in paired
                    if g in a[s]["group_f1"] and g in b[s]["group_f1"]]
            diff["group_f1"][g] = seed_stats(vals)
        for n in class_names:
            vals = [a[s]["f1"][n] - b[s]["f1"][n] for s in paired
                    if a[s]["f1"].get(n) is not None and b[s]["f1"].get(n) is not None]
            diff["f1"][n] = seed_stats(vals)
        out["dilated_minus_plain"] = diff
    return out


def summarize_group_confusion(by_seed: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Means over seeds of the records' ``group_confusion`` (records without one left out).

    Returns ``{group: {"in_group", "within": seed_stats, "chance", "seeds"}}``; empty when no
    record has one (records older than the key).
    """
    recs = {s: r["group_confusion"] for s, r in by_seed.items() if r.get("group_confusion")}
    out: dict[str, Any] = {}
    for g in GROUPS:
        have = {s: gc[g] for s, gc in recs.items() if g in gc}
        if have:
            out[g] = {"in_group": seed_stats([v["in_group"] for v in have.values()]),
                      "within": seed_stats([v["within"] for v in have.values()]),
                      "chance": next(iter(have.values()))["chance"], "seeds": sorted(have)}
    return out


def group_confusion_lines(per_model: Mapping[str, Mapping[str, Any]],
                          models: Sequence[str]) -> list[str]:
    """Markdown: per model and size group, put in the group and own class within it."""
    rows = [(m, g, v) for m in models for g, v in (per_model[m].get("group_confusion")
                                                   or {}).items()]
    if not rows:
        return []
    return ["", "## Size found, identity not? (per size group)", "",
            "Of a group's test particles, the share predicted as any class of the group, and of "
            "those the share predicted as their own class, mean ± s.d. over the seeds whose "
            "record has the confusion matrix; chance: a guess among the group's classes.", "",
            "| model | group | seeds | put in the group | own class within it | chance within |",
            "|---|---|---|---|---|---|"] + [
        f"| {m} | {g} | {len(v['seeds'])} | {format_mean_sd(v['in_group'])} | "
        f"{format_mean_sd(v['within'])} | {v['chance']:.3f} |" for m, g, v in rows]


def paper_group_f1(paper_f1: Mapping[str, Mapping[str, float]], class_names: Sequence[str],
                   size_groups: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of the paper's per-class F1 per size group, ``{model: {group: mean}}`` (NaN: none)."""
    def mean(f1: Mapping[str, float], g: str) -> float:
        v = [f1[n] for n, gg in zip(class_names, size_groups, strict=True) if gg == g]
        return float(np.mean(v)) if v else float("nan")

    return {m: {g: mean(f1, g) for g in GROUPS} for m, f1 in paper_f1.items()}


def seed_means(per_model: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per-class F1 means of a :func:`summarize_seeds` ``per_model``, ``{model: {class: mean}}``."""
    return {m: {n: v["mean"] for n, v in pm["f1"].items()} for m, pm in per_model.items()}


def paper_difference(per_model_f1: Mapping[str, Mapping[str, float | None]],
                     paper_f1: Mapping[str, Mapping[str, float]],
                     class_names: Sequence[str]) -> dict[str, Any]:
    """How far a table's cells are from the paper's: the (model, class) cells both have.

    Parameters
    ----------
    per_model_f1
        Ours, ``{model: {class: F1 or None}}`` (e.g. the seed means of a summary).
    paper_f1
        The paper's ``{model: {class: F1}}``.
    class_names
        The classes to compare.

    Returns
    -------
    dict
        ``{"cells", "mean_abs", "rms", "mean_signed", "sum_sq", "per_model": {model:
        {"cells", "mean_abs", "mean_signed"}}}`` with ``mean_signed`` = ours − paper (None
        where no cell is shared). ``sum_sq`` is the least-squares objective of a joint
        calibration over all shared cells.
    """
    diffs: dict[str, list[float]] = {}
    for m, ours in per_model_f1.items():
        if m not in paper_f1:
            continue
        d = [float(ours[n]) - float(paper_f1[m][n]) for n in class_names
             if ours.get(n) is not None and n in paper_f1[m]]
        if d:
            diffs[m] = d

    def stats(d: Sequence[float]) -> dict[str, Any]:
        a = np.asarray(d, dtype=np.float64)
        return {"cells": int(a.size), "mean_abs": float(np.abs(a).mean()) if a.size else None,
                "mean_signed": float(a.mean()) if a.size else None}

    every = [x for d in diffs.values() for x in d]
    a = np.asarray(every, dtype=np.float64)
    return {**stats(every), "rms": float(np.sqrt((a ** 2).mean())) if a.size else None,
            "sum_sq": float((a ** 2).sum()),
            "per_model": {m: stats(d) for m, d in diffs.items()}}


def paper_difference_lines(diff: Mapping[str, Any]) -> list[str]:
    """Markdown: the mean absolute difference from the paper's cells, in all and per model."""
    if not diff["cells"]:
        return []
    lines = ["", "## Distance from the paper's Table 2", "",
             f"Mean absolute difference over the {diff['cells']} (model, class) cells: "
             f"**{diff['mean_abs']:.3f}** (RMS {diff['rms']:.3f}; mean ours − paper "
             f"{diff['mean_signed']:+.3f}).", "",
             r"| model | cells | mean \|ours − paper\| | mean ours − paper |", "|---|---|---|---|"]
    for m, d in diff["per_model"].items():
        lines.append(f"| {m} | {d['cells']} | {d['mean_abs']:.3f} | {d['mean_signed']:+.3f} |")
    return lines


def format_value(x: float | None, nd: int = 3) -> str:
    """``x`` with ``nd`` decimals, ``–`` for None (a table cell)."""
    return "–" if x is None else f"{x:.{nd}f}"


_f = format_value


def format_mean_sd(s: Mapping[str, Any]) -> str:
    """``mean ± s.d.`` of a :func:`seed_stats` record (``–`` without values)."""
    if s["mean"] is None:
        return "–"
    return _f(s["mean"]) + (f" ± {s['sd']:.3f}" if s.get("sd") is not None else "")


def ours_row(model: str, per_model_entry: Mapping[str, Any], class_names: Sequence[str]) -> str:
    """A Table 2 row of ours: per class and macro F1, mean ± s.d. over the seeds."""
    n = len(per_model_entry["seeds"])
    return (f"| {model} | ours ({n} seed{'s' if n != 1 else ''}) | "
            + " | ".join(format_mean_sd(per_model_entry["f1"][c]) for c in class_names)
            + f" | {format_mean_sd(per_model_entry['macro_f1'])} |")


def paper_row(model: str, values: Sequence[float]) -> str:
    """A Table 2 row of the paper: its per-class F1 and their mean."""
    return (f"| {model} | paper | " + " | ".join(_f(v) for v in values)
            + f" | {_f(float(np.mean(values)))} |")


def table2_sections(
    summary: Mapping[str, Any],
    runs: Runs,
    *,
    class_names: Sequence[str],
    size_groups: Sequence[str],
    paper_f1: Mapping[str, Mapping[str, float]],
    paper_names: Sequence[str] | None = None,
    checkpoint_every: int = 5,
) -> list[str]:
    """Markdown lines: Table 2, Fig. 4A numbers, the paired difference, Fig. 4B and CAM.

    Parameters
    ----------
    summary
        :func:`summarize_seeds` output.
    runs
        The run records it summarised, ``{model: {seed: record}}``.
    class_names, size_groups
        Classes in table order and their size groups.
    paper_f1
        The paper's F1, ``{model: {class: F1}}`` for every model of :data:`MODELS`.
    paper_names
        The paper's name of each class where ours stands in for it (header "ours (paper: x)").
    checkpoint_every
        Epochs between the points of the Fig. 4B curves (for its caption).

    Returns
    -------
    list of str
        The lines, from the Table 2 header row on; images are linked as ``fig4a.png``,
        ``fig4b.png`` and ``fig5_cam.png``.
    """
    names = list(class_names)
    pnames = list(paper_names) if paper_names is not None else names
    head = ["model", "source"] + [
        n if p == n else f"{n} (paper: {p})" for n, p in zip(names, pnames, strict=True)
    ] + ["mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    per_model = summary["per_model"]
    for m in MODELS:
        if m in per_model:
            lines.append(ours_row(m, per_model[m], names))
        lines.append(paper_row(m, [paper_f1[m][n] for n in names]))
    paper_groups = paper_group_f1(paper_f1, names, size_groups)
    lines += ["", "## Mean F1 per size group (Fig. 4A)", "", "![Fig. 4A](fig4a.png)", "",
              "| model | source | " + " | ".join(GROUPS) + " |", "|---|---|" + "---|" * 4]
    for m in MODELS:
        if m in per_model:
            groups = per_model[m]["group_f1"]
            lines.append(f"| {m} | ours | "
                         + " | ".join(format_mean_sd(groups[g]) for g in GROUPS) + " |")
        lines.append(f"| {m} | paper | "
                     + " | ".join(_f(paper_groups[m][g]) for g in GROUPS) + " |")
    lines += _difference_lines(summary.get("dilated_minus_plain"), paper_f1, names, size_groups)
    lines += paper_difference_lines(paper_difference(seed_means(per_model), paper_f1, names))
    lines += ["", "## F1 against epoch (Fig. 4B)", "", "![Fig. 4B](fig4b.png)", "",
              f"Mean F1 of the tiny classes on the test tomogram every "
              f"{checkpoint_every} epoch(s), mean over seeds (from each run's "
              "per-epoch log: the test tomogram is the monitored split; nothing is selected "
              "on it)."]
    lines += _cam_lines(per_model, runs)
    return lines


def _difference_lines(d: Mapping[str, Any] | None, paper_f1: Mapping[str, Mapping[str, float]],
                      names: Sequence[str], size_groups: Sequence[str]) -> list[str]:
    if not d:
        return []
    hi, lo = paper_f1[PAIRED[0]], paper_f1[PAIRED[1]]
    diffs = {g: [hi[n] - lo[n] for n, gg in zip(names, size_groups, strict=True) if gg == g]
             for g in GROUPS}
    pm_paper = {g: float(np.mean(v)) if v else float("nan") for g, v in diffs.items()}
    pm_all = float(np.mean([hi[n] - lo[n] for n in names]))
    lines = ["", "## Dilated minus plain DenseNet (paired by seed)", "",
             f"Seeds {d['seeds']}. Mean ± s.d. [min, max] over seeds.", "",
             "| quantity | ours | paper |", "|---|---|---|",
             f"| macro F1 | {format_mean_sd(d['macro_f1'])} [{_f(d['macro_f1']['min'])}, "
             f"{_f(d['macro_f1']['max'])}] | {_f(pm_all)} |"]
    for g in GROUPS:
        s = d["group_f1"][g]
        lines.append(f"| {g} F1 | {format_mean_sd(s)} [{_f(s['min'])}, {_f(s['max'])}] | "
                     f"{_f(pm_paper[g])} |")
    mean = d["macro_f1"]["mean"]
    verdict = ("the dilated net scores higher on average" if mean is not None and mean > 0
               else "the dilated net does NOT score higher on average")
    if mean is not None and d["macro_f1"].get("sd") is not None:
        verdict += (" (the spread over seeds is larger than the mean difference)"
                    if abs(mean) < d["macro_f1"]["sd"] else
                    " (the mean difference exceeds the spread over seeds)")
    return lines + ["", f"Here {verdict}."]


def _cam_lines(per_model: Mapping[str, Any], runs: Runs) -> list[str]:
    cam_rows = [(m, per_model[m]["cam_mean"]) for m in MODELS if m in per_model]
    if not any(s["mean"] is not None for _, s in cam_rows):
        return []
    chance = [(r["cam"] or {}).get("mean_mask_fraction") for m in MODELS
              for r in runs.get(m, {}).values() if r.get("cam")]
    lines = ["", "## CAM (Fig. 5) and CAM score", "", "![Fig. 5](fig5_cam.png)", "",
             "CAM score: share of the true class's positive activation energy inside the "
             "particle mask (docs/cam.md); DenseNets by the paper's Eq. 1, shrec_cnn by "
             f"Grad-CAM. A uniform map would score {_f(chance[0] if chance else None)}.", "",
             "| model | mean CAM score over classes |", "|---|---|"]
    return lines + [f"| {m} | {format_mean_sd(s)} |" for m, s in cam_rows]


def plot_group_f1(summary: Mapping[str, Any], paper_groups: Mapping[str, Mapping[str, float]],
                  path: str | Path, title: str) -> Path:
    """Fig. 4A: bars of mean F1 per size group, ours (mean ± s.d. over seeds) and the paper's.

    Parameters
    ----------
    summary
        :func:`summarize_seeds` output.
    paper_groups
        :func:`paper_group_f1` of the paper's values; a model without them (``{}``: all)
        gets no paper bar.
    path
        Output PNG (written atomically).
    title
        Figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_model = summary["per_model"]
    models = [m for m in MODELS if m in per_model]
    fig = Figure(figsize=(8, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / (2 * len(models)) if models else 0.4
    x = np.arange(len(GROUPS))
    for i, m in enumerate(models):
        ours = [per_model[m]["group_f1"][g]["mean"] for g in GROUPS]
        err = [per_model[m]["group_f1"][g]["sd"] or 0.0 for g in GROUPS]
        pos = x - 0.4 + width * (2 * i + 0.5)
        bar = ax.bar(pos, [np.nan if v is None else v for v in ours], width, yerr=err,
                     label=f"{m} (ours)" if paper_groups else m, capsize=2)
        if m in paper_groups:
            ax.bar(pos + width, [paper_groups[m][g] for g in GROUPS], width,
                   color=bar.patches[0].get_facecolor(), alpha=0.4, hatch="//",
                   label=f"{m} (paper)")
    ax.set_xticks(x, GROUPS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean F1 of the group's classes")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_png(fig, path)


def curve_split(runs: Runs) -> str:
    """Which boxes the records' epoch curves were measured on, in words for an axis label.

    ``curve_test_f1`` holds the curve of the split a run monitored (its ``monitored_split``:
    the test tomogram unless the tier monitors a validation tomogram); records without the
    field are from tiers that only watched the test tomogram.
    """
    splits = {r.get("monitored_split") or "test" for by_seed in runs.values()
              for r in by_seed.values()}
    if splits == {"test"}:
        return "test tomogram"
    if splits == {"val"}:
        return "validation tomogram"
    return "monitored split: " + "/".join(sorted(splits))


def plot_epoch_curves(runs: Runs, path: str | Path, title: str, group: str = "tiny") -> Path:
    """Fig. 4B: one group's F1 against epoch, mean ± s.d. over seeds, a line per model.

    The curves are of the split each run monitored (``curve_split`` labels the axis).

    Parameters
    ----------
    runs
        ``{model: {seed: record}}``; each record's ``curve_test_f1[group]``.
    path
        Output PNG (written atomically).
    title
        Figure title.
    group
        Size group of the curves ("tiny" as in the paper).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for m in MODELS:
        by_seed = runs.get(m)
        if not by_seed:
            continue
        curves = [r["curve_test_f1"][group] for r in by_seed.values()]
        epochs = curves[0]["epochs"]
        vals = np.array([[np.nan if v is None else v for v in c["f1"]] for c in curves
                         if c["epochs"] == epochs], dtype=np.float64)
        if not epochs or vals.size == 0:
            continue
        mean = np.nanmean(vals, axis=0)
        sd = np.nanstd(vals, axis=0)
        ax.errorbar(epochs, mean, yerr=sd if len(vals) > 1 else None, marker="o", capsize=3,
                    label=f"{m} ({len(vals)} seed{'s' if len(vals) != 1 else ''})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean F1, {group} classes ({curve_split(runs)})")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
