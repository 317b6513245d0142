"""Seed statistics of the demo's models and the Markdown the demo report quotes.

The demo (:mod:`tomoclass.workflows.demo`) evaluates several training seeds of each shipped
model; a single run is never a ranking, so everything here is a mean ± s.d. over seeds and the
dilated - plain difference is paired by seed (:func:`tomoclass.evaluate.tier.paired_tests`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tomoclass.evaluate.seeds import PAIRED, format_mean_sd, summarize_seeds
from tomoclass.evaluate.tier import paired_tests
from tomoclass.metrics import SIZE_GROUPS

__all__ = ["demo_record", "shipped_markdown", "summarize_demo_runs"]


def demo_record(report: Any) -> dict[str, Any]:
    """Macro F1, per-group and per-class F1 and count of an :class:`EvaluationReport`."""
    m = report.metrics
    f1 = {str(n): (None if not np.isfinite(v) else float(v))
          for n, v in zip(m.class_names, m.f1, strict=True)}
    groups = {g: float(v) for g, v in m.group_f1().items() if np.isfinite(v)}
    return {"macro_f1": float(report.macro_f1), "group_f1": groups, "f1": f1,
            "n_test": int(m.n), "cam": None}


def summarize_demo_runs(records: Mapping[tuple[str, int], Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± s.d. over seeds per model and the paired dilated - plain tests.

    Parameters
    ----------
    records
        ``{(model, seed): record}`` with :func:`demo_record`'s keys.

    Returns
    -------
    dict
        :func:`tomoclass.evaluate.seeds.summarize_seeds`'s ``per_model`` and
        ``dilated_minus_plain``, plus ``classes`` and ``paired_tests`` (macro and per size
        group: mean, s.d., paired t and Wilcoxon p-values).
    """
    runs: dict[str, dict[int, Mapping[str, Any]]] = {}
    for (model, seed), rec in records.items():
        runs.setdefault(model, {})[int(seed)] = rec
    classes: list[str] = []
    for rec in records.values():
        classes += [c for c in rec["f1"] if c not in classes]
    out = summarize_seeds(runs, classes)
    out["classes"] = classes
    a, b = runs.get(PAIRED[0], {}), runs.get(PAIRED[1], {})
    tests: dict[str, Any] = {}
    if a and b:
        tests["macro"] = paired_tests({s: r["macro_f1"] for s, r in a.items()},
                                      {s: r["macro_f1"] for s, r in b.items()})
        for g in SIZE_GROUPS:
            tests[g] = paired_tests({s: r["group_f1"].get(g) for s, r in a.items()},
                                    {s: r["group_f1"].get(g) for s, r in b.items()})
    out["paired_tests"] = tests
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
