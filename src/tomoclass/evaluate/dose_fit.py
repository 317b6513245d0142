"""Choose a simulator's dose by matching several models' per-class F1 to the paper jointly.

Issue 18: calibrating the noise on one model (the dose whose SHREC-CNN macro F1 is nearest the
paper's) left the DenseNets far above the paper on the small classes. Here every model of the
paper's Table 2 counts: at each dose of a sweep, the per-class F1 (mean over seeds) of every
model is compared with the paper's cell by cell, and the dose with the least mean squared
difference over all (model, class) cells wins. The mean absolute difference is reported beside
it, because it is the number a reader can picture ("0.14 F1 off per cell").

Every dose must have the same cells (the same models and classes with an F1), so that the
objectives compare; a chosen dose at the edge of the sweep is flagged, since the optimum may lie
beyond it. What the choice is worth depends on the runs: a sweep of unconverged runs calibrates
the training length as much as the noise.

Seeds: a cell's mean over n seeds carries seed noise, which inflates its squared difference from
the paper by about the cell's seed variance / n. Doses compared with different numbers of seeds
would therefore favour the dose with more seeds, so :func:`seed_mean_f1` takes the same seeds at
every dose (:func:`common_seeds`). Where a dose has several seeds, the objective of each single
seed shows how much the objective itself moves with the seed; the margin between the chosen dose
and the runner-up is set against that spread (``margin_in_sd``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tomoclass.errors import InputError
from tomoclass.evaluate.seeds import MODELS, paper_difference, seed_stats

__all__ = ["CRITERIA", "common_seeds", "dose_fit_markdown", "fit_class_names", "joint_dose_fit",
           "one_seed_biases", "one_seed_objectives", "one_seed_readings",
           "seed_mean_f1"]

#: How :func:`joint_dose_fit` may choose the dose.
CRITERIA = ("least_squares", "bias")

#: ``{model: {seed: run record with "f1": {class: F1 or None}}}`` of one dose.
DoseRuns = Mapping[str, Mapping[int, Mapping[str, Any]]]


def common_seeds(runs_by_dose: Sequence[DoseRuns], models: Sequence[str]) -> list[int]:
    """The seeds every model has at every dose (sorted; empty when there are none)."""
    sets = [set(runs.get(m, {})) for runs in runs_by_dose for m in models]
    return sorted(set.intersection(*sets)) if sets else []


def seed_mean_f1(runs: DoseRuns, seeds: Sequence[int], models: Sequence[str],
                 class_names: Sequence[str], source: str = ""
                 ) -> dict[str, dict[str, float | None]]:
    """``{model: {class: mean F1 over seeds}}`` of one dose, the same seeds for every model.

    Raises
    ------
    InputError
        A model without a run of one of the seeds (naming ``source``, the model and seed).
    """
    out: dict[str, dict[str, float | None]] = {}
    for m in models:
        by_seed = runs.get(m, {})
        missing = [s for s in seeds if s not in by_seed]
        if missing:
            raise InputError(f"no run of {m} seed {missing[0]} (the seeds compared must exist "
                             "at every dose)", path=source or None, field="seeds")
        out[m] = {n: seed_stats([by_seed[s]["f1"].get(n) for s in seeds])["mean"]
                  for n in class_names}
    return out


def _one_seed_differences(runs: DoseRuns, paper_f1: Mapping[str, Mapping[str, float]],
                          class_names: Sequence[str], models: Sequence[str]
                          ) -> dict[int, dict[str, Any]]:
    """``{seed: paper_difference record}`` of each seed all models have, alone (with cells)."""
    out = {}
    for s in common_seeds([runs], models):
        f1 = {m: {n: runs[m][s]["f1"].get(n) for n in class_names} for m in models}
        d = paper_difference(f1, paper_f1, class_names)
        if d["cells"]:
            out[s] = d
    return out


def one_seed_readings(runs: DoseRuns, paper_f1: Mapping[str, Mapping[str, float]],
                      class_names: Sequence[str],
                      models: Sequence[str] = MODELS) -> dict[str, dict[int, float]]:
    """Both per-seed readings of one dose, from one pass over its seeds.

    Under the keys a point of :func:`joint_dose_fit` carries them: ``"one_seed"`` (each
    seed's mean squared difference from the paper, :func:`one_seed_objectives`) and
    ``"one_seed_bias"`` (each seed's mean ours − paper, :func:`one_seed_biases`).
    """
    diffs = _one_seed_differences(runs, paper_f1, class_names, models)
    return {"one_seed": {s: d["sum_sq"] / d["cells"] for s, d in diffs.items()},
            "one_seed_bias": {s: d["mean_signed"] for s, d in diffs.items()}}


def one_seed_objectives(runs: DoseRuns, paper_f1: Mapping[str, Mapping[str, float]],
                        class_names: Sequence[str],
                        models: Sequence[str] = MODELS) -> dict[int, float]:
    """``{seed: mean squared difference from the paper}`` of each seed all models have alone."""
    return one_seed_readings(runs, paper_f1, class_names, models)["one_seed"]


def one_seed_biases(runs: DoseRuns, paper_f1: Mapping[str, Mapping[str, float]],
                    class_names: Sequence[str],
                    models: Sequence[str] = MODELS) -> dict[int, float]:
    """``{seed: mean ours − paper}`` of each seed all models have alone.

    The bias reading's counterpart of :func:`one_seed_objectives`.
    """
    return one_seed_readings(runs, paper_f1, class_names, models)["one_seed_bias"]


def joint_dose_fit(points: Sequence[Mapping[str, Any]],
                   paper_f1: Mapping[str, Mapping[str, float]],
                   class_names: Sequence[str],
                   models: Sequence[str] = MODELS,
                   size_groups: Sequence[str] | None = None,
                   fit_groups: Sequence[str] | None = None,
                   criterion: str = "least_squares") -> dict[str, Any]:
    """The dose whose (model, class) F1 cells are nearest the paper's (least squares or bias).

    Parameters
    ----------
    points
        One per dose: ``{"dose": e/Å², "f1": {model: {class: mean F1 or None}}}``, optionally
        ``"source"`` (where it came from, for messages), ``"seeds"`` ({model: [seeds]}),
        ``"one_seed"`` ({seed: objective of that seed alone}, :func:`one_seed_objectives`) and
        ``"one_seed_bias"`` ({seed: mean ours − paper of that seed alone},
        :func:`one_seed_biases`).
    paper_f1
        The paper's ``{model: {class: F1}}``.
    class_names
        The classes compared.
    models
        The models whose cells count (default: the paper's three).
    size_groups
        Each class's size group (aligned with ``class_names``): every dose then also gets
        ``per_group``, ``{group: {"cells", "mean_abs", "mean_signed"}}`` over the models'
        cells of the group, which shows where the distance lies (a group off at every dose
        is one the dose does not calibrate).
    fit_groups
        Only the cells of these size groups count in the objective (needs ``size_groups``):
        a stated criterion for a simulator whose dose moves some groups and not others (on
        small12 the tiny group stays ~0.25 below the paper at every dose). ``per_group``
        still covers every group, so the gap left outside the fit stays in the report.
    criterion
        How the dose is chosen (:data:`CRITERIA`): ``"least_squares"``, the least mean
        squared difference from the paper over the fitted cells; or ``"bias"``, the mean
        ours − paper over them nearest zero, i.e. the dose at which those cells are on
        average as hard as in the paper (it ignores how they scatter about the paper,
        which a dose may not change). Both readings are always computed.

    Returns
    -------
    dict
        ``{"criterion", "models", "cells", "doses": [{"dose", "mean_sq", "mean_abs",
        "mean_signed", "per_model", "per_group", "source", "seeds", "one_seed"}...]
        (ascending dose; ``per_group`` only with ``size_groups``),
        "chosen": that entry, "at_edge": bool, "one_seed_sd", "margin", "margin_in_sd"}``:
        ``one_seed_sd`` is the s.d. of a single seed's objective, pooled over the doses with two
        or more (None without); ``margin`` the runner-up's objective minus the chosen one's and
        ``margin_in_sd`` that margin over its seed s.d. (``one_seed_sd`` scaled by the seeds
        behind each of the two doses; None without). ``zero_bias_dose``: where the mean
        signed difference (ours − paper, the fitted cells) changes sign between two neighbouring
        doses, the dose at which it crosses zero by linear interpolation (None when it does not
        change sign): the dose at which the cells are on average as hard as in the paper, a
        second reading beside the least-squares one, which also counts how the cells scatter
        about the paper; ``least_bias``: ``{"dose", "mean_signed"}`` of the dose whose mean
        signed difference is nearest zero (the reading when it does not change sign).
        ``bias_sd``: the s.d. of one seed's mean signed difference, pooled over the doses
        with two or more (None without); each dose then has ``bias_se`` (that s.d. over the
        root of its seeds) and ``bias_z`` (its mean signed difference in those units: within
        ±2, the dose's cells are as hard as the paper's within seed noise). With
        ``fit_groups`` also ``"fit_groups"``, and every figure but ``per_group`` is over those
        groups' cells. ``"criterion_name"``: the ``criterion`` argument;
        ``"least_squares_dose"``: the dose least squares picks (whatever the criterion);
        ``"rejected_by_bias"``: the doses whose ``bias_z`` lies beyond ±2 (empty without
        ``bias_sd``). ``margin`` and ``margin_in_sd`` are least squares' under either
        criterion.

    Raises
    ------
    InputError
        No points, a dose twice, a model missing at a dose, doses with different cells (each
        names the dose and its source), ``fit_groups`` without ``size_groups`` or naming
        a group no class has, or an unknown ``criterion``.
    """
    if criterion not in CRITERIA:
        raise InputError(f"unknown criterion {criterion!r} (one of {', '.join(CRITERIA)})",
                         field="criterion")
    if not points:
        raise InputError("no doses to compare", field="doses")
    fit_names = fit_class_names(class_names, size_groups, fit_groups)
    rows, n_cells = _dose_rows(points, paper_f1, class_names, models, size_groups, fit_names)
    rows.sort(key=lambda r: r["dose"])
    order = sorted(range(len(rows)), key=lambda i: rows[i]["mean_sq"])
    sd, margin, in_sd = _margin(rows, order)
    bias_sd = _pooled_sd(r["one_seed_bias"] for r in rows)
    for r in rows:
        se = bias_sd / _n_seeds(r) ** 0.5 if bias_sd else None
        r["bias_se"] = se
        r["bias_z"] = r["mean_signed"] / se if se and r["mean_signed"] is not None else None
    where = (f"the (model, class) cells of the {'/'.join(fit_groups)} classes" if fit_groups
             else "all (model, class) cells")
    if criterion == "bias":
        best = min(range(len(rows)), key=lambda i: abs(rows[i]["mean_signed"]))
        text = (f"mean ours − paper nearest zero over {where} (the dose at which they are on "
                "average as hard as in the paper), F1 as mean over seeds")
    else:
        best = order[0]
        text = f"least mean squared difference from the paper over {where}, F1 as mean over seeds"
    return {"criterion": text, "criterion_name": criterion,
            "least_squares_dose": rows[order[0]]["dose"],
            "rejected_by_bias": [r["dose"] for r in rows
                                 if r["bias_z"] is not None and abs(r["bias_z"]) > 2],
            "fit_groups": list(fit_groups) if fit_groups else None, "models": list(models),
            "cells": n_cells, "doses": rows,
            "chosen": rows[best], "at_edge": len(rows) > 1 and best in (0, len(rows) - 1),
            "one_seed_sd": sd, "margin": margin, "margin_in_sd": in_sd, "bias_sd": bias_sd,
            "zero_bias_dose": _zero_crossing(rows), "least_bias": _least_bias(rows)}


def _dose_rows(points: Sequence[Mapping[str, Any]],
               paper_f1: Mapping[str, Mapping[str, float]], class_names: Sequence[str],
               models: Sequence[str], size_groups: Sequence[str] | None,
               fit_names: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    """Every dose's entry (unsorted) and the number of fitted cells.

    The fitted cells must be the same at every dose (refusals as :func:`joint_dose_fit`).
    """
    rows = []
    seen: dict[float, str] = {}
    cell_sets: dict[float, set[tuple[str, str]]] = {}
    for pt in points:
        dose, src = float(pt["dose"]), str(pt.get("source", f"dose {pt['dose']}"))
        if dose in seen:
            raise InputError(f"dose {dose:g} given twice ({seen[dose]} and {src})",
                             field="dose")
        seen[dose] = src
        f1 = pt["f1"]
        missing = [m for m in models if m not in f1]
        if missing:
            raise InputError(f"no runs of {', '.join(missing)} at dose {dose:g}", path=src,
                             field="models")
        ours = {m: f1[m] for m in models}
        cell_sets[dose] = {(m, n) for m in models for n in fit_names
                           if ours[m].get(n) is not None and n in paper_f1.get(m, {})}
        row = _dose_row(pt, dose, src, ours, paper_f1, fit_names)
        if size_groups is not None:
            row["per_group"] = _per_group(ours, paper_f1, class_names, size_groups)
        rows.append(row)
    first = min(cell_sets)
    for dose, cells in cell_sets.items():
        if cells != cell_sets[first]:
            odd = sorted(cells ^ cell_sets[first])
            raise InputError(f"dose {dose:g} and dose {first:g} compare different cells "
                             f"({', '.join(f'{m}/{n}' for m, n in odd[:4])}"
                             f"{' ...' if len(odd) > 4 else ''})", path=seen[dose],
                             field="f1")
    if not cell_sets[first]:
        raise InputError("no (model, class) cell shared with the paper", field="f1")
    return rows, len(cell_sets[first])


def _dose_row(pt: Mapping[str, Any], dose: float, src: str,
              ours: Mapping[str, Mapping[str, float | None]],
              paper_f1: Mapping[str, Mapping[str, float]], fit_names: Sequence[str]
              ) -> dict[str, Any]:
    """One dose's entry: its distance from the paper over the fitted cells and its seeds."""
    d = paper_difference(ours, paper_f1, fit_names)

    def per_seed(key: str) -> dict[int, float]:
        return {int(k): float(v) for k, v in (pt.get(key) or {}).items()}

    return {"dose": dose, "mean_sq": d["sum_sq"] / d["cells"] if d["cells"] else None,
            "mean_abs": d["mean_abs"], "mean_signed": d["mean_signed"], "cells": d["cells"],
            "per_model": d["per_model"], "source": src, "seeds": dict(pt.get("seeds") or {}),
            "one_seed": per_seed("one_seed"), "one_seed_bias": per_seed("one_seed_bias")}


def _least_bias(rows: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """``{"dose", "mean_signed"}`` of the row whose mean signed difference is nearest zero."""
    have = [r for r in rows if r["mean_signed"] is not None]
    if not have:
        return None
    r = min(have, key=lambda r: abs(r["mean_signed"]))
    return {"dose": float(r["dose"]), "mean_signed": float(r["mean_signed"])}


def _zero_crossing(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The first dose (ascending rows) where ``mean_signed`` crosses zero, interpolated."""
    for a, b in zip(rows, rows[1:], strict=False):
        ya, yb = a["mean_signed"], b["mean_signed"]
        if ya is None or yb is None:
            continue
        if ya == 0:
            return float(a["dose"])
        if ya * yb < 0:
            return float(a["dose"] + (b["dose"] - a["dose"]) * ya / (ya - yb))
    last = rows[-1]["mean_signed"] if rows else None
    return float(rows[-1]["dose"]) if last == 0 else None


def fit_class_names(class_names: Sequence[str], size_groups: Sequence[str] | None,
                    fit_groups: Sequence[str] | None) -> list[str]:
    """The classes whose cells count in the objective (all without ``fit_groups``).

    Raises
    ------
    InputError
        ``fit_groups`` without one size group per class, or naming a group no class has.
    """
    if not fit_groups:
        return list(class_names)
    if size_groups is None or len(size_groups) != len(class_names):
        raise InputError("fitting on size groups needs one size group per class",
                         field="fit_groups")
    unknown = [g for g in fit_groups if g not in size_groups]
    if unknown:
        raise InputError(f"no class is in size group {unknown[0]!r} (groups here: "
                         f"{', '.join(dict.fromkeys(size_groups))})", field="fit_groups")
    return [n for n, g in zip(class_names, size_groups, strict=True) if g in fit_groups]


def _per_group(ours: Mapping[str, Mapping[str, float | None]],
               paper_f1: Mapping[str, Mapping[str, float]], class_names: Sequence[str],
               size_groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    """:func:`paper_difference` of each size group's classes, all models pooled."""
    if len(size_groups) != len(class_names):
        raise InputError(f"{len(size_groups)} size groups for {len(class_names)} classes",
                         field="size_groups")
    out = {}
    for g in dict.fromkeys(size_groups):
        names = [n for n, gg in zip(class_names, size_groups, strict=True) if gg == g]
        d = paper_difference(ours, paper_f1, names)
        if d["cells"]:
            out[g] = {k: d[k] for k in ("cells", "mean_abs", "mean_signed")}
    return out


def _n_seeds(row: Mapping[str, Any]) -> int:
    """Seeds behind a dose's means (the fewest of any model; 1 when not given)."""
    return min((len(s) for s in row["seeds"].values()), default=1) or 1


def _pooled_sd(per_dose: Iterable[Mapping[int, float]]) -> float | None:
    """S.d. of a one-seed figure, pooled over the doses with two or more seeds (None without)."""
    var, dof = 0.0, 0
    for by_seed in per_dose:
        v = list(by_seed.values())
        if len(v) > 1:
            var += seed_stats(v)["sd"] ** 2 * (len(v) - 1)
            dof += len(v) - 1
    return (var / dof) ** 0.5 if dof else None


def _margin(rows: Sequence[Mapping[str, Any]], order: Sequence[int]
            ) -> tuple[float | None, float | None, float | None]:
    """(pooled one-seed s.d. of the objective, runner-up margin, margin / its s.d.)."""
    sd = _pooled_sd(r["one_seed"] for r in rows)
    if len(order) < 2:
        return sd, None, None
    a, b = rows[order[0]], rows[order[1]]
    margin = b["mean_sq"] - a["mean_sq"]
    if not sd:
        return sd, margin, None
    return sd, margin, margin / (sd * (1 / _n_seeds(a) + 1 / _n_seeds(b)) ** 0.5)


def dose_fit_markdown(fit: Mapping[str, Any], title: str) -> str:
    """Markdown table of a :func:`joint_dose_fit` result, the chosen dose in bold."""
    models = list(fit["models"])
    lines = [f"# {title}", "", f"Criterion: {fit['criterion']}; {fit['cells']} cells "
             f"({', '.join(models)}).", "",
             "| dose (e/Å²) | mean sq. | mean \\|ours − paper\\| | mean ours − paper | "
             + " | ".join(f"{m} mean abs" for m in models) + " | seeds |",
             "|---|---|---|---|" + "---|" * len(models) + "---|"]
    for r in fit["doses"]:
        mark = "**" if r["dose"] == fit["chosen"]["dose"] else ""
        seeds = "; ".join(f"{m} {len(s)}" for m, s in r["seeds"].items()) or "–"
        lines.append(f"| {mark}{r['dose']:g}{mark} | {r['mean_sq']:.4f} | {r['mean_abs']:.3f} | "
                     f"{r['mean_signed']:+.3f} | "
                     + " | ".join(f"{r['per_model'][m]['mean_abs']:.3f}" for m in models)
                     + f" | {seeds} |")
    groups = list(dict.fromkeys(g for r in fit["doses"] for g in r.get("per_group") or {}))
    if groups:
        lines += ["", "Where the distance lies: mean ours − paper per size group (all models' "
                      "cells of the group; negative: harder here than in the paper).", "",
                  "| dose (e/Å²) | " + " | ".join(groups) + " |",
                  "|---|" + "---|" * len(groups)]
        for r in fit["doses"]:
            pg = r.get("per_group") or {}
            lines.append(f"| {r['dose']:g} | " + " | ".join(
                f"{pg[g]['mean_signed']:+.3f}" if g in pg else "–" for g in groups) + " |")
    c = fit["chosen"]
    by_bias = fit.get("criterion_name") == "bias"
    if by_bias:
        lines += ["", f"Chosen: **{c['dose']:g} e/Å²** by the bias (mean ours − paper "
                      f"{c['mean_signed']:+.3f} over {fit['cells']} cells); least squares "
                      f"would choose {fit['least_squares_dose']:g} e/Å²."]
    else:
        lines += ["", f"Chosen: **{c['dose']:g} e/Å²** (mean absolute difference "
                      f"{c['mean_abs']:.3f} over {fit['cells']} cells)."]
    zb, lb = fit.get("zero_bias_dose"), fit.get("least_bias")
    if lb is not None:
        lines.append(
            f"Bias reading: the fitted cells' mean ours − paper is nearest zero at "
            f"{lb['dose']:g} e/Å² ({lb['mean_signed']:+.3f}); " + (
                f"it crosses zero at ~{zb:.0f} e/Å² (linear between the neighbouring doses), "
                "where they are on average as hard as in the paper." if zb is not None else
                "it has the same sign at every dose of the sweep."))
    if fit.get("bias_sd"):
        lines.append(
            f"Its seed noise: one seed's mean ours − paper has s.d. {fit['bias_sd']:.3f} "
            "(pooled); over the seeds compared, " + "; ".join(
                f"{r['dose']:g}: {r['mean_signed']:+.3f} ± {r['bias_se']:.3f} "
                f"({r['bias_z']:+.1f} s.e.)" for r in fit["doses"]
                if r.get("bias_z") is not None)
            + " (within ±2 s.e.: as hard as in the paper within seed noise).")
        rejected = fit.get("rejected_by_bias") or []
        lines.append("Beyond ±2 s.e. (not as hard as in the paper, beyond seed noise): "
                     + (", ".join(f"{d:g}" for d in rejected) + " e/Å²." if rejected
                        else "none."))
    if fit["at_edge"]:
        lines.append("It is at the edge of the sweep: the optimum may lie beyond it; extend "
                     "the sweep before freezing it.")
    if fit.get("one_seed_sd") is not None:
        ones = "; ".join(f"{r['dose']:g}: " + ", ".join(f"seed {s} {v:.4f}" for s, v in
                                                     sorted(r["one_seed"].items()))
                         for r in fit["doses"] if r["one_seed"])
        lines += ["", f"Seed noise: the objective of one seed alone ({ones}) has s.d. "
                      f"{fit['one_seed_sd']:.4f} (pooled over the doses with two or more)."]
        if fit.get("margin_in_sd") is not None:
            lines.append(("Least squares: its runner-up" if by_bias else "The runner-up")
                         + f" is {fit['margin']:.4f} worse, {fit['margin_in_sd']:.1f} "
                         "s.d. of that difference from seed noise alone"
                         + (": within seed noise, not a choice to freeze." if
                            fit["margin_in_sd"] < 2 else "."))
    return "\n".join(lines) + "\n"
