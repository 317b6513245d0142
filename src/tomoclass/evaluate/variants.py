"""Training variants of one model and seed side by side: time to accuracy (issue 18, item 4).

``benchmarks/time_to_accuracy.py`` trains one model (one seed, one dataset) under several
training variants (``default``, ``default+augment``, ``plain``, ``default+step100``, ...) and
records each one's per-epoch curve. A tier run (``benchmarks/small_tier.py``) of the same model
and seed is the same kind of curve under the tier's protocol. This module puts such curves in
one table (epochs and minutes to a target macro F1, F1 at fixed epochs, best F1, whether the
validation loss was flat at the end and at the peak rate) and one figure (macro F1 against
training minutes).

A curve is ``{"variant": name, "curve": [{"epoch", "val_macro_f1", "val_loss",
"cumulative_wall_seconds"}...], "convergence": {...} or None}``; :func:`curve_from_run_record`
turns a tier run record into one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.io.atomic import save_png

__all__ = ["curve_from_run_record", "plot_variant_curves", "variant_summary", "variants_markdown"]


def curve_from_run_record(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A tier run record (``epochs`` with ``epoch_seconds``) as a variant curve named ``name``.

    Its minutes are the epochs' training seconds only; a time_to_accuracy curve also counts
    monitoring and start-up (~5-10 % more on the small12 tier), so read small time differences
    between the two kinds with care.
    """
    wall, curve = 0.0, []
    for e in record["epochs"]:
        wall += float(e.get("epoch_seconds") or 0.0)
        curve.append({"epoch": int(e["epoch"]), "val_macro_f1": e.get("val_macro_f1"),
                      "val_loss": e.get("val_loss"), "cumulative_wall_seconds": wall})
    return {"variant": name, "curve": curve, "convergence": record.get("convergence"),
            "source": f"{record.get('model')} seed {record.get('seed')} tier run"}


def variant_summary(v: Mapping[str, Any], target: float,
                    at_epochs: Sequence[int] = (3, 10)) -> dict[str, Any]:
    """Epoch and minutes at which the curve first reaches ``target``, F1 at fixed epochs, best.

    Minutes count epoch seconds only (training + monitoring), as measured on the machine the
    curve came from; a curve measured beside other jobs is slower than on an idle machine.
    """
    curve = list(v["curve"])
    f1 = {int(c["epoch"]): c.get("val_macro_f1") for c in curve}
    reached = next((c for c in curve if c.get("val_macro_f1") is not None
                    and c["val_macro_f1"] >= target), None)
    vals = [x for x in f1.values() if x is not None]
    conv = v.get("convergence") or {}
    return {"variant": v["variant"], "epochs": len(curve),
            "reached_at_epoch": int(reached["epoch"]) if reached else None,
            "minutes_to_target": (float(reached["cumulative_wall_seconds"]) / 60.0
                                  if reached else None),
            "f1_at": {int(e): f1.get(int(e)) for e in at_epochs},
            "best_macro_f1": max(vals) if vals else None,
            "best_epoch": max(f1, key=lambda e: -1 if f1[e] is None else f1[e]) if vals else None,
            "final_macro_f1": vals[-1] if vals else None,
            "flat_at_end": conv.get("converged"), "flat_at_peak_lr": conv.get("flat_at_peak_lr"),
            "stopped_falling_at_peak_lr": conv.get("stopped_falling_at_peak_lr"),
            "minutes_trained": (float(curve[-1]["cumulative_wall_seconds"]) / 60.0
                                if curve else 0.0)}


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _yn(x: bool | None) -> str:
    return "–" if x is None else ("yes" if x else "NO")


def variants_markdown(variants: Sequence[Mapping[str, Any]], target: float, title: str,
                      at_epochs: Sequence[int] = (3, 10)) -> str:
    """Markdown table of :func:`variant_summary` for every curve, in the order given."""
    rows = [variant_summary(v, target, at_epochs) for v in variants]
    head = (["variant", f"epoch reaching {target:g}", "minutes to it"]
            + [f"F1 at epoch {e}" for e in at_epochs]
            + ["best F1 (epoch)", "final F1", "epochs", "val loss flat at end",
               "flat at peak rate", "stopped falling at peak rate"])
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['reached_at_epoch'] or 'not reached'} | "
            f"{_f(r['minutes_to_target'], 1)} | "
            + " | ".join(_f(r["f1_at"][e]) for e in at_epochs)
            + f" | {_f(r['best_macro_f1'])} ({r['best_epoch']}) | {_f(r['final_macro_f1'])} | "
            f"{r['epochs']} | {_yn(r['flat_at_end'])} | {_yn(r['flat_at_peak_lr'])} | "
            f"{_yn(r['stopped_falling_at_peak_lr'])} |")
    return "\n".join(lines) + "\n"


def plot_variant_curves(variants: Sequence[Mapping[str, Any]], path: str | Path, title: str,
                        target: float | None = None) -> Path:
    """Monitored macro F1 against epoch (left) and against training minutes (right).

    Epochs compare variants whatever the machine's load; minutes only when the curves were
    measured under the same load (each record keeps its load average).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    by_epoch, by_time = fig.subplots(1, 2, sharey=True)
    for v in variants:
        pts = np.array([(c["epoch"], c["cumulative_wall_seconds"] / 60.0, c["val_macro_f1"])
                        for c in v["curve"] if c.get("val_macro_f1") is not None],
                       dtype=np.float64).reshape(-1, 3)
        by_epoch.plot(pts[:, 0], pts[:, 2], marker="o", ms=3, label=v["variant"])
        by_time.plot(pts[:, 1], pts[:, 2], marker="o", ms=3, label=v["variant"])
    for ax in (by_epoch, by_time):
        if target is not None:
            ax.axhline(target, color="grey", lw=0.8, ls="--")
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training + monitoring time (min; load-dependent)")
    by_epoch.set_ylabel("test macro F1 (monitored)")
    by_epoch.set_ylim(0, 1.0)
    by_epoch.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)
