"""Table 2 / Fig. 4A of a benchmark tier, with error bars: Markdown and figures.

:func:`tier_markdown` writes the tier's table (per class and per size group, mean ± s.d. over
seeds, the paper's values beside them, the nearest-class-mean baseline's row when
``agg["baseline"]`` holds its record: the floor the nets must beat), the paired dilated −
plain statistics, the distance from the paper and every run's convergence;
:func:`plot_tier_groups` (Fig. 4A), :func:`plot_accuracy_vs_time` and :func:`plot_tier_curves`
(every run's validation curves) draw it. ``agg`` is :func:`tomoclass.evaluate.tier.aggregate_tier`'s
record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.evaluate.seeds import (
    format_mean_sd,
    format_value,
    group_confusion_lines,
    ours_row,
    paper_difference,
    paper_difference_lines,
    paper_row,
    seed_means,
)
from tomoclass.evaluate.tier import (
    BASELINE_ROW,
    CHANCE_TOL,
    TREND_WINDOW,
    first_lr_drop,
    scheduled_epochs,
)
from tomoclass.io.atomic import save_png
from tomoclass.metrics import SIZE_GROUPS

__all__ = ["plot_accuracy_vs_time", "plot_tier_curves", "plot_tier_groups", "tier_markdown"]


_f = format_value  # a table cell


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def checkpoint_phrase(agg: Mapping[str, Any]) -> str:
    """Which checkpoint the runs of ``agg`` were scored with, in words.

    ``last`` everywhere: "final checkpoint"; ``best`` everywhere: the checkpoint of the
    best macro F1 on the monitored split (``monitored_split`` of the records, ``test`` when
    absent); a mix is listed run by run.
    """
    runs = [r for by in (agg.get("runs") or {}).values() for r in by.values()]
    which = {str(r.get("checkpoint", "last")) for r in runs}
    monitored = {str(r.get("monitored_split", "test")) for r in runs}
    if which <= {"last"}:
        return "final checkpoint"
    if which == {"best"} and len(monitored) == 1:
        (split,) = monitored
        where = "validation tomograms" if split == "val" else f"{split} split"
        return f"checkpoint of the best macro F1 on the {where}, best.pt"
    return "checkpoints: " + "; ".join(
        f"{m} seed {seed} {r.get('checkpoint')}, monitoring {r.get('monitored_split', 'test')}"
        for m, by in sorted((agg.get("runs") or {}).items()) for seed, r in by.items())


def tier_markdown(agg: Mapping[str, Any], class_names: Sequence[str],
                  size_groups: Sequence[str], *, title: str,
                  paper_f1: Mapping[str, Mapping[str, float]] | None = None,
                  models: Sequence[str] | None = None) -> str:
    """Markdown: Table 2 and Fig. 4A of the tier, the paired difference, convergence, time.

    Parameters
    ----------
    agg
        :func:`aggregate_tier` output.
    class_names, size_groups
        Classes in table order and their groups.
    title
        First heading.
    paper_f1
        The paper's ``{model: {class: F1}}`` for the rows it has (printed beside ours).
    models
        Row order (default: the models of ``agg`` in sorted order).
    """
    per_model = agg["summary"]["per_model"]
    models = [m for m in (models or sorted(per_model)) if m in per_model]
    groups = [g for g in SIZE_GROUPS if g in set(size_groups)]
    paper_f1 = paper_f1 or {}
    lines = [f"# {title}", "", "F1 on the test tomogram, mean ± s.d. over seeds, scored with "
             f"the {checkpoint_phrase(agg)}; paper: Gao et al. 2020 Table 2 on SHREC'19.", "",
             "| model | source | " + " | ".join(class_names) + " | macro |",
             "|---|---|" + "---|" * (len(class_names) + 1)]
    for m in models:
        lines.append(ours_row(m, per_model[m], class_names))
        if m in paper_f1:
            lines.append(paper_row(m, [paper_f1[m][n] for n in class_names]))
    base = agg.get("baseline")
    if base:
        lines.append(f"| {BASELINE_ROW} | floor: no training, class means of the "
                     f"{base['class_means_from']} boxes | "
                     + " | ".join(_f(base["f1"].get(n)) for n in class_names)
                     + f" | {_f(base['macro_f1'])} |")
    rates = agg.get("peak_rates") or {}
    if any(rates.get(m) for m in models):
        lines += ["", "Peak learning rate after the warm-up (from each run's train_config): "
                  + "; ".join(f"{m} " + ", ".join(f"{r:.2g} at batch {b}" for r, b in rates[m])
                              for m in models if rates.get(m)) + "."]
    lines += ["", "## Mean F1 per size group (Fig. 4A)", "", "![Fig. 4A](fig4a.png)", "",
              "| model | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(format_mean_sd(per_model[m]["group_f1"][g])
                                             for g in groups) + " |")
    if base:
        lines.append(f"| {BASELINE_ROW} | "
                     + " | ".join(_f(base["group_f1"].get(g)) for g in groups) + " |")
    lines += group_confusion_lines(per_model, models)
    lines += _paired_lines(agg.get("paired"))
    means = seed_means({m: per_model[m] for m in models})
    lines += paper_difference_lines(paper_difference(means, paper_f1, class_names))
    lines += ["", "## Convergence (validation loss flat over the last epochs)", "",
              "Flat at the end can be the schedule's doing: a loss still falling when the rate "
              "drops x10 and x100 ends flat. The last two columns ask whether the loss was "
              "already flat over the last epochs at the peak rate, and whether its trend there had "
              "stopped falling (least-squares change over the last "
              f"{TREND_WINDOW} epochs at the peak rate, as a fraction of their mean; a "
              "range over 3 noisy epochs can fail on jitter alone). AT CHANCE: the last "
              f"validation loss is within {CHANCE_TOL:.0%} of ln K, a uniform guess's: flat, "
              "but nothing was learned.", "",
              "| model | flat at the end / runs | per seed: flat at the end (relative range "
              "of the last k val losses) | per seed: flat at the peak rate (epochs at it; "
              "range) | per seed: stopped falling at the peak rate (trend) |",
              "|---|---|---|---|---|"]
    for m in models:
        c = agg["convergence"][m]
        per = ", ".join(f"{s}: {'yes' if r['converged'] else 'NO'} "
                        f"({_f(r.get('relative_range'))}"
                        f"{', AT CHANCE' if r.get('at_chance') else ''})"
                        for s, r in c["runs"].items())
        peak = ", ".join(
            f"{s}: {'yes' if r['flat_at_peak_lr'] else 'NO'} ({r['epochs_at_peak_lr']}; "
            f"{_f(r.get('peak_lr_relative_range'))})" if "flat_at_peak_lr" in r else f"{s}: –"
            for s, r in c["runs"].items())
        trend = ", ".join(
            f"{s}: {'yes' if r['stopped_falling_at_peak_lr'] else 'NO'} "
            f"({_f(r.get('peak_lr_trend'))})" if "stopped_falling_at_peak_lr" in r
            else f"{s}: –" for s, r in c["runs"].items())
        lines.append(f"| {m} | {c['n_converged']} / {c['n']} | {per} | {peak} | {trend} |")
    lines += ["", "Every run's validation loss and macro F1 per epoch (epochs after the first "
              "drop of the rate shaded): ![validation curves](curves.png)"]
    lines += ["", "## Accuracy against training time", "", "![accuracy vs time](time_f1.png)",
              "", "| model | training s per run (mean ± s.d.) | macro F1 |", "|---|---|---|"]
    for m in models:
        ta = agg["time_accuracy"][m]
        sec = ta["train_seconds"]
        spread = f" ± {sec['sd']:.0f}" if sec["sd"] is not None else ""
        lines.append(f"| {m} | {sec['mean']:.0f}{spread} | {format_mean_sd(ta['macro_f1'])} |")
    return "\n".join(lines) + "\n"


def _paired_lines(p: Mapping[str, Any] | None) -> list[str]:
    if not p:
        return ["", "No paired difference: the two models share no seed."]
    lines = ["", f"## {p['pair'][0]} − {p['pair'][1]}, paired by seed", "",
             f"Seeds {p['macro']['seeds']} (the seeds share the data; only the training seed "
             "differs). Paired t test and Wilcoxon signed-rank test, two-sided.", "",
             "| quantity | mean ± s.d. | [min, max] | t (p) | Wilcoxon W (p) |",
             "|---|---|---|---|---|"]
    rows = [("macro F1", p["macro"])] + [(f"{g} F1", s) for g, s in p["groups"].items()]
    for name, s in rows:
        lines.append(f"| {name} | {format_mean_sd(s)} | [{_f(s['min'])}, {_f(s['max'])}] | "
                     f"{_f(s['t'], 2)} ({_p(s['p_t'])}) | {_f(s['wilcoxon'], 1)} "
                     f"({_p(s['p_wilcoxon'])}) |")
    m = p["macro"]
    if m["mean"] is not None and m["n"] >= 2:
        sig = m["p_t"] is not None and m["p_t"] < 0.05
        lines += ["", f"Macro F1: mean difference {m['mean']:+.3f} over {m['n']} seeds; "
                  + ("the paired t test rejects no difference at 5%." if sig else
                     "the paired t test does not reject no difference at 5%.")]
    return lines


def plot_tier_groups(agg: Mapping[str, Any], path: str | Path, title: str,
                     models: Sequence[str] | None = None) -> Path:
    """Fig. 4A of the tier: mean F1 per size group per model, error bars = s.d. over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_model = agg["summary"]["per_model"]
    models = [m for m in (models or sorted(per_model)) if m in per_model]
    groups = [g for g in SIZE_GROUPS
              if any(per_model[m]["group_f1"][g]["n"] for m in models)]
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    x = np.arange(len(groups))
    for i, m in enumerate(models):
        st = [per_model[m]["group_f1"][g] for g in groups]
        ax.bar(x - 0.4 + width * (i + 0.5),
               [np.nan if s["mean"] is None else s["mean"] for s in st], width,
               yerr=[s["sd"] or 0.0 for s in st], capsize=2,
               label=f"{m} ({len(per_model[m]['seeds'])} seeds)")
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean F1 of the group's classes")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def plot_accuracy_vs_time(agg: Mapping[str, Any], path: str | Path, title: str) -> Path:
    """Macro F1 against training seconds, one marker per run, a colour per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for m, ta in sorted(agg["time_accuracy"].items()):
        pts = np.array(ta["points"], dtype=np.float64).reshape(-1, 2)
        ax.scatter(pts[:, 0] / 60.0, pts[:, 1], label=m, s=18)
    ax.set_xlabel("training time per run (min)")
    ax.set_ylabel("test macro F1")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def plot_tier_curves(agg: Mapping[str, Any], path: str | Path, title: str,
                     models: Sequence[str] | None = None) -> Path:
    """Convergence per run: validation loss (top) and macro F1 (bottom) against epoch.

    One column per model, one line per seed; the epochs trained below the peak learning rate
    (the schedule's rates, :func:`scheduled_epochs`) are shaded, so a loss that is flat only
    after the rate dropped is told from one that had stopped falling at the peak rate.

    Parameters
    ----------
    agg
        :func:`aggregate_tier` output (its ``runs``).
    path
        Output PNG (written atomically).
    title
        Figure title.
    models
        Column order (default: sorted); models without runs are left out.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = agg["runs"]
    models = [m for m in (models or sorted(runs)) if runs.get(m)]
    fig = Figure(figsize=(3.2 * max(1, len(models)), 5.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, max(1, len(models)), squeeze=False, sharex="col")
    for j, m in enumerate(models):
        top, bottom = axes[0][j], axes[1][j]
        for seed, rec in sorted(runs[m].items(), key=lambda kv: int(kv[0])):
            ep = scheduled_epochs(rec)
            x = [int(e["epoch"]) for e in ep]
            top.plot(x, [np.nan if e.get("val_loss") is None else e["val_loss"] for e in ep],
                     marker=".", lw=1, label=f"seed {seed}")
            bottom.plot(x, [np.nan if e.get("val_macro_f1") is None else e["val_macro_f1"]
                            for e in ep], marker=".", lw=1)
            first_drop = first_lr_drop(ep)
            if first_drop is not None:
                for ax in (top, bottom):
                    ax.axvspan(first_drop - 0.5, x[-1] + 0.5, color="0.9", zorder=0)
        top.set_title(m, fontsize=9)
        top.legend(fontsize=6)
        bottom.set_ylim(0, 1.0)
        bottom.set_xlabel("epoch")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("validation loss")
    axes[1][0].set_ylabel("validation macro F1")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
