"""Seed statistics of the demo's models and the Markdown the demo report quotes.

The demo (:mod:`tomoclass.workflows.demo`) evaluates several training seeds of each shipped
model; a single run is never a ranking, so everything here is a mean ± s.d. over seeds and the
dilated - plain difference is paired by seed (:func:`tomoclass.evaluate.tier.paired_tests`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tomoclass.evaluate.seeds import format_mean_sd
from tomoclass.evaluate.tier import compare_seeds
from tomoclass.metrics import SIZE_GROUPS

__all__ = ["shipped_markdown", "summarize_demo_runs"]


def summarize_demo_runs(records: Mapping[tuple[str, int], Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± s.d. over seeds per model and the paired dilated - plain tests.

    Parameters
    ----------
    records
        ``{(model, seed): record}`` with :func:`tomoclass.evaluate.tier.report_record`'s keys.

    Returns
    -------
    dict
        :func:`tomoclass.evaluate.seeds.summarize_seeds`'s ``per_model`` and
        ``dilated_minus_plain``, plus ``classes`` and ``paired_tests`` (macro and per size
        group: mean, s.d., paired t and Wilcoxon p-values; :func:`compare_seeds`).
    """
    runs: dict[str, dict[int, Mapping[str, Any]]] = {}
    for (model, seed), rec in records.items():
        runs.setdefault(model, {})[int(seed)] = rec
    classes: list[str] = []
    for rec in records.values():
        classes += [c for c in rec["f1"] if c not in classes]
    out, paired = compare_seeds(runs, classes)
    out["classes"] = classes
    out["paired_tests"] = {"macro": paired["macro"], **paired["groups"]} if paired else {}
    return out


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.2g}"


def shipped_markdown(summary: Mapping[str, Any]) -> str:
    """The seed table (macro and per size group, mean ± s.d.) and the paired difference."""
    groups = [g for g in SIZE_GROUPS
              if any(pm["group_f1"][g]["n"] for pm in summary["per_model"].values())]
    lines = ["| model | seeds | macro F1 | " + " | ".join(groups) + " |",
             "|---|---|---|" + "---|" * len(groups)]
    for model, pm in summary["per_model"].items():
        lines.append(f"| {model} | {len(pm['seeds'])} | {format_mean_sd(pm['macro_f1'])} | "
                     + " | ".join(format_mean_sd(pm["group_f1"][g]) for g in groups) + " |")
    tests = summary.get("paired_tests") or {}
    if tests.get("macro"):
        lines += ["", f"Dilated − plain, paired by seed ({len(tests['macro']['seeds'])} seeds; "
                  "mean ± s.d. of the per-seed difference, paired t-test p):", ""]
        for key in ("macro", *groups):
            t = tests.get(key)
            if t and t["n"]:
                sd = "" if t["sd"] is None else f" ± {t['sd']:.3f}"
                lines.append(f"- {key}: {t['mean']:+.3f}{sd} (p = {_p(t['p_t'])})")
    return "\n".join(lines)
