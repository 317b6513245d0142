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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tomoclass.errors import InputError
from tomoclass.evaluate.seeds import MODELS, paper_difference

__all__ = ["joint_dose_fit", "dose_fit_markdown"]


def joint_dose_fit(points: Sequence[Mapping[str, Any]],
                   paper_f1: Mapping[str, Mapping[str, float]],
                   class_names: Sequence[str],
                   models: Sequence[str] = MODELS) -> dict[str, Any]:
    """The dose whose (model, class) F1 cells are nearest the paper's in least squares.

    Parameters
    ----------
    points
        One per dose: ``{"dose": e/Å², "f1": {model: {class: mean F1 or None}}}``, optionally
        ``"source"`` (where it came from, for messages) and ``"seeds"`` ({model: [seeds]}).
    paper_f1
        The paper's ``{model: {class: F1}}``.
    class_names
        The classes compared.
    models
        The models whose cells count (default: the paper's three).

    Returns
    -------
    dict
        ``{"criterion", "models", "cells", "doses": [{"dose", "mean_sq", "mean_abs",
        "mean_signed", "per_model", "source", "seeds"}...] (ascending dose), "chosen": that
        entry, "at_edge": bool}``.

    Raises
    ------
    InputError
        No points, a dose twice, a model missing at a dose, or doses with different cells
        (each names the dose and its source).
    """
    if not points:
        raise InputError("no doses to compare", field="doses")
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
        cell_sets[dose] = {(m, n) for m in models for n in class_names
                           if ours[m].get(n) is not None and n in paper_f1.get(m, {})}
        d = paper_difference(ours, paper_f1, class_names)
        rows.append({"dose": dose, "mean_sq": d["sum_sq"] / d["cells"] if d["cells"] else None,
                     "mean_abs": d["mean_abs"], "mean_signed": d["mean_signed"],
                     "cells": d["cells"], "per_model": d["per_model"], "source": src,
                     "seeds": dict(pt.get("seeds") or {})})
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
    rows.sort(key=lambda r: r["dose"])
    best = min(range(len(rows)), key=lambda i: rows[i]["mean_sq"])
    return {"criterion": "least mean squared difference from the paper over all (model, "
                         "class) cells, F1 as mean over seeds",
            "models": list(models), "cells": len(cell_sets[first]), "doses": rows,
            "chosen": rows[best], "at_edge": len(rows) > 1 and best in (0, len(rows) - 1)}


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
    c = fit["chosen"]
    lines += ["", f"Chosen: **{c['dose']:g} e/Å²** (mean absolute difference "
                  f"{c['mean_abs']:.3f} over {fit['cells']} cells)."]
    if fit["at_edge"]:
        lines.append("It is at the edge of the sweep: the optimum may lie beyond it; extend "
                     "the sweep before freezing it.")
    return "\n".join(lines) + "\n"
