"""Side-by-side comparison of runs: the paper's Table 2, Fig. 4A, Fig. 4B and CAM scores.

- Table 2: models as rows, classes as columns grouped by size (tiny, small, medium, large,
  then classes without a group), per-class F1; the best value of every column in bold
  (ties all bold, as in the paper), followed by each model's macro F1.
- Fig. 4A: mean F1 per size group per model, as grouped bars.
- Fig. 4B: validation F1 against training epoch, one line per model, from each run's
  ``metrics.jsonl`` (one record per epoch with ``val_f1_per_class``, written by
  :func:`tomoclass.train.fit`). The curve is the mean F1 of one size group (the paper
  plots "tiny") or the macro F1 when the group is "macro" or absent.
- CAM scores: per class and mean, per model, when the evaluations carry one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.errors import InputError
from tomoclass.evaluate.report import EvaluationReport, format_score, load_report
from tomoclass.io.atomic import atomic_dir
from tomoclass.metrics import SIZE_GROUPS

#: Value of ``group`` that asks Fig. 4B for the macro F1 over all classes.
MACRO = "macro"


@dataclass
class EpochCurve:
    """F1 against epoch for one run.

    Attributes
    ----------
    label
        Model/run label.
    epochs
        int (E,), 1-based epochs in the order trained.
    f1
        float64 (E,): mean F1 over the group's classes (NaN when none is defined).
    group
        Size group averaged, or "macro".
    split
        Split the F1 was measured on ("val" for the training log).
    """

    label: str
    epochs: np.ndarray
    f1: np.ndarray
    group: str
    split: str = "val"


@dataclass
class Comparison:
    """Everything ``tomoclass compare`` shows, for a list of evaluated runs.

    Attributes
    ----------
    labels
        One unique label per run (row names).
    reports
        The runs' evaluations, in the same order.
    curves
        Fig. 4B curves (may be empty when no run has a metrics log).
    files
        Files written by :func:`write_comparison`, by role.
    """

    labels: list[str]
    reports: list[EvaluationReport]
    curves: list[EpochCurve] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def columns(self) -> list[tuple[str, str]]:
        """(size group, class name) of every class in any report, grouped as in Table 2."""
        seen: dict[str, str] = {}
        for r in self.reports:
            for name, group in zip(r.metrics.class_names, r.metrics.size_groups, strict=True):
                seen.setdefault(name, group)
        order = {g: i for i, g in enumerate(SIZE_GROUPS)}
        keyed = sorted(enumerate(seen.items()), key=lambda t: (order.get(t[1][1], 99), t[0]))
        return [(g, n) for _, (n, g) in keyed]

    def f1_table(self) -> np.ndarray:
        """float64 (runs, classes) F1 in :meth:`columns` order; NaN where undefined/absent."""
        cols = self.columns()
        out = np.full((len(self.reports), len(cols)), np.nan)
        for i, r in enumerate(self.reports):
            f1 = dict(zip(r.metrics.class_names, r.metrics.f1, strict=True))
            for j, (_, name) in enumerate(cols):
                out[i, j] = f1.get(name, np.nan)
        return out

    def group_table(self) -> tuple[list[str], np.ndarray]:
        """Size groups present and float64 (runs, groups) mean F1 (Fig. 4A)."""
        groups = [g for g in SIZE_GROUPS if any(g in r.metrics.group_f1() for r in self.reports)]
        out = np.full((len(self.reports), len(groups)), np.nan)
        for i, r in enumerate(self.reports):
            gf = r.metrics.group_f1()
            for j, g in enumerate(groups):
                out[i, j] = gf.get(g, np.nan)
        return groups, out

    def cam_table(self) -> np.ndarray | None:
        """float64 (runs, classes) CAM score per class, or None when no run has one."""
        if not any(r.cam for r in self.reports):
            return None
        cols = self.columns()
        out = np.full((len(self.reports), len(cols)), np.nan)
        for i, r in enumerate(self.reports):
            per = r.cam_per_class()
            for j, (_, name) in enumerate(cols):
                v = per.get(name)
                out[i, j] = np.nan if v is None else v
        return out

    def to_markdown(self) -> str:
        """Table 2, the size-group means, and the CAM scores as Markdown."""
        cols = self.columns()
        f1 = self.f1_table()
        macro = np.array([r.macro_f1 for r in self.reports])
        lines = ["# Comparison", ""]
        lines += [f"- {lbl}: `{r.run_dir or r.out_dir}` ({r.model_name}, {r.split} split, "
                  f"{r.metrics.n} particles)" for lbl, r in zip(self.labels, self.reports,
                                                                  strict=True)]
        lines += ["", "## F1 per class (Table 2 layout; best per column in bold)", ""]
        lines += _grouped_table(self.labels, cols, f1, extra=("macro F1", macro))
        groups, gt = self.group_table()
        if groups:
            lines += ["", "## Mean F1 per size group (Fig. 4A)", "", "![Fig. 4A](fig4a.png)", ""]
            lines += _plain_table(self.labels, groups, gt)
        if self.curves:
            c0 = self.curves[0]
            lines += ["", f"## F1 against epoch (Fig. 4B; {c0.group}, {c0.split} split)",
                      "", "![Fig. 4B](fig4b.png)"]
        cam = self.cam_table()
        if cam is not None:
            means = np.array([r.cam["mean"] if r.cam and r.cam["mean"] is not None else np.nan
                              for r in self.reports])
            chance = [r.cam["mean_mask_fraction"] if r.cam else None for r in self.reports]
            lines += ["", "## CAM score per class (share of positive CAM energy inside the "
                      "particle mask; higher is better)", ""]
            lines += _grouped_table(self.labels, cols, cam, extra=("mean", means))
            methods = ", ".join(f"{lbl}: {r.cam['method']}" for lbl, r in
                                zip(self.labels, self.reports, strict=True) if r.cam)
            lines += ["", f"Methods: {methods}. A map spread evenly over the box would score "
                      f"the mask volume fraction ({', '.join(format_score(c) for c in chance)})."]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers of the comparison (NaN as None)."""
        cols = self.columns()
        groups, gt = self.group_table()
        cam = self.cam_table()

        def row(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "labels": self.labels,
            "runs": [r.run_dir for r in self.reports],
            "columns": [{"class": n, "size_group": g} for g, n in cols],
            "f1": [row(r) for r in self.f1_table()],
            "macro_f1": row(np.array([r.macro_f1 for r in self.reports])),
            "size_groups": groups,
            "group_f1": [row(r) for r in gt],
            "cam_score": None if cam is None else [row(r) for r in cam],
            "curves": [{"label": c.label, "group": c.group, "split": c.split,
                        "epochs": c.epochs.tolist(),
                        "f1": row(c.f1)} for c in self.curves],
        }


def _best_mask(values: np.ndarray) -> np.ndarray:
    """True where an entry equals its column's best (max) finite value.

    Ties for the best are all marked (as in the paper); a column where every finite entry
    ties (including a single run) has no best and nothing is marked. Equality is within
    5e-4, i.e. equal as printed with three decimals.
    """
    out = np.zeros(values.shape, dtype=bool)
    for j in range(values.shape[1]):
        col = values[:, j]
        ok = np.isfinite(col)
        if ok.any():
            best = ok & np.isclose(col, col[ok].max(), rtol=0, atol=5e-4)
            if best.sum() < ok.sum():
                out[:, j] = best
    return out


def _cell(v: float, bold: bool) -> str:
    s = format_score(v)
    return f"**{s}**" if bold and s != "–" else s


def _grouped_table(
    labels: Sequence[str],
    cols: Sequence[tuple[str, str]],
    values: np.ndarray,
    extra: tuple[str, np.ndarray] | None = None,
) -> list[str]:
    """Markdown: header row of size groups, a row of class names, one row per model."""
    all_vals = values if extra is None else np.column_stack([values, extra[1]])
    best = _best_mask(all_vals)
    group_cells, prev = [], None
    for g, _ in cols:
        group_cells.append((g or "other") if g != prev else "")
        prev = g
    names = [n for _, n in cols]
    if extra is not None:
        group_cells.append("")
        names.append(extra[0])
    lines = [
        "| model | " + " | ".join(group_cells) + " |",
        "|---|" + "---|" * len(group_cells),
        "| | " + " | ".join(f"*{n}*" for n in names) + " |",
    ]
    for i, lbl in enumerate(labels):
        lines.append(f"| {lbl} | " + " | ".join(
            _cell(all_vals[i, j], best[i, j]) for j in range(all_vals.shape[1])) + " |")
    return lines


def _plain_table(labels: Sequence[str], header: Sequence[str], values: np.ndarray) -> list[str]:
    best = _best_mask(values)
    lines = ["| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for i, lbl in enumerate(labels):
        lines.append(f"| {lbl} | " + " | ".join(
            _cell(values[i, j], best[i, j]) for j in range(values.shape[1])) + " |")
    return lines


def unique_labels(names: Sequence[str], paths: Sequence[str | Path]) -> list[str]:
    """Row labels: each model name, with its run folder's name added where names repeat."""
    out = [name if list(names).count(name) == 1 else f"{name} ({Path(path).name})"
           for name, path in zip(names, paths, strict=True)]
    if len(set(out)) != len(out):
        out = [f"{o} #{i + 1}" for i, o in enumerate(out)]
    return out


def read_metrics_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a run's ``metrics.jsonl`` (one JSON object per line; blank lines skipped).

    Raises
    ------
    InputError
        A line that is not a JSON object (names the line).
    """
    path = Path(path)
    records = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read metrics log: {exc.strerror}", path=path) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg}", path=path, line=lineno) from None
        if not isinstance(rec, dict):
            raise InputError("expected a JSON object per line", path=path, line=lineno)
        records.append(rec)
    return records


def epoch_curve(
    records: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    size_groups: Sequence[str],
    *,
    group: str = "tiny",
    label: str = "",
) -> EpochCurve:
    """Fig. 4B curve from per-epoch validation records.

    Parameters
    ----------
    records
        Dicts with ``epoch`` and ``val_f1_per_class`` ({class name: F1 or None}); records
        without per-class F1 fall back to ``val_macro_f1`` when ``group`` is "macro".
    class_names, size_groups
        The run's class map.
    group
        Size group to average ("tiny", ...), or "macro" for all classes. A group the run's
        class map lacks falls back to "macro".
    label
        Curve label.
    """
    if group != MACRO and group not in size_groups:
        group = MACRO
    members = [n for n, g in zip(class_names, size_groups, strict=True)
               if group == MACRO or g == group]
    epochs, values = [], []
    for rec in records:
        if "epoch" not in rec:
            continue
        per = rec.get("val_f1_per_class")
        if isinstance(per, dict):
            v = [per.get(n) for n in members]
            v = [float(x) for x in v if x is not None and np.isfinite(float(x))]
            val = float(np.mean(v)) if v else float("nan")
        elif group == MACRO and rec.get("val_macro_f1") is not None:
            val = float(rec["val_macro_f1"])
        else:
            continue
        epochs.append(int(rec["epoch"]))
        values.append(val)
    return EpochCurve(label=label, epochs=np.asarray(epochs, dtype=np.int64),
                      f1=np.asarray(values, dtype=np.float64), group=group)


def plot_group_bars(comparison: Comparison, path: str | Path) -> Path:
    """Fig. 4A: mean F1 per size group (x) for each model (bars), PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups, values = comparison.group_table()
    if not groups:
        groups, values = ["all"], np.array([[r.macro_f1] for r in comparison.reports])
    k = len(comparison.labels)
    fig = Figure(figsize=(1.2 + 1.3 * len(groups), 3.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(k, 1)
    x = np.arange(len(groups))
    for i, lbl in enumerate(comparison.labels):
        ax.bar(x + (i - (k - 1) / 2) * width, np.nan_to_num(values[i], nan=0.0), width,
               label=lbl)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean F1")
    ax.set_xlabel("size group")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(k, 3),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def plot_epoch_curves(curves: Sequence[EpochCurve], path: str | Path) -> Path:
    """Fig. 4B: F1 against epoch, one line per run, PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for c in curves:
        ax.plot(c.epochs, c.f1, marker="o", markersize=3, label=c.label)
    from matplotlib.ticker import MaxNLocator

    group = curves[0].group if curves else MACRO
    split = curves[0].split if curves else "val"
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"macro F1 ({split})" if group == MACRO else f"mean F1, {group} ({split})")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(curves), 3),
              frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_comparison(comparison: Comparison, out_dir: str | Path) -> Comparison:
    """Write the comparison's files to ``out_dir`` atomically.

    Files: ``compare.md``, ``compare.json``, ``table2.csv``, ``fig4a.png`` and, when there
    are curves, ``fig4b.png``. Returns the comparison with ``files`` filled in.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    names = {"markdown": "compare.md", "json": "compare.json", "table": "table2.csv",
             "fig4a": "fig4a.png"}
    if comparison.curves:
        names["fig4b"] = "fig4b.png"
    with atomic_dir(out_dir, kind="comparison") as tmp:
        (tmp / names["markdown"]).write_text(comparison.to_markdown())
        (tmp / names["json"]).write_text(
            json.dumps(comparison.to_dict(), indent=2, allow_nan=False) + "\n")
        cols = comparison.columns()
        df = pd.DataFrame(comparison.f1_table(), index=comparison.labels,
                          columns=pd.MultiIndex.from_tuples(cols, names=["size_group", "class"]))
        df.index.name = "model"
        df.to_csv(tmp / names["table"], float_format="%.4f")
        plot_group_bars(comparison, tmp / names["fig4a"])
        if comparison.curves:
            plot_epoch_curves(comparison.curves, tmp / names["fig4b"])
    comparison.files = {k: out_dir / v for k, v in names.items()}
    return comparison


def compare_runs(
    paths: Sequence[str | Path],
    *,
    reports: Sequence[EvaluationReport] | None = None,
    group: str = "tiny",
    curves: Sequence[EpochCurve] | None = None,
) -> Comparison:
    """Gather evaluations (and per-epoch logs) of several runs into a :class:`Comparison`.

    Parameters
    ----------
    paths
        Run folders (holding ``metrics.jsonl`` and an ``evaluation_*/report.json``), or
        evaluation folders / ``report.json`` files.
    reports
        Already computed evaluations, one per path (skips reading them from disk).
    group
        Size group of the Fig. 4B curves ("tiny" as in the paper, or "macro").
    curves
        Fig. 4B curves computed elsewhere (e.g. from periodic checkpoints by
        :func:`tomoclass.workflows.evaluate.checkpoint_curve`); default: from each run's
        ``metrics.jsonl``.

    Raises
    ------
    InputError
        Fewer than one run, or a run without an evaluation.
    """
    if not paths:
        raise InputError("compare needs at least one run")
    if reports is None:
        reports = [load_report(p) for p in paths]
    if len(reports) != len(paths):
        raise InputError(f"{len(reports)} reports for {len(paths)} runs")
    labels = unique_labels([r.model_name for r in reports], paths)
    if curves is not None:
        return Comparison(labels=labels, reports=list(reports), curves=list(curves))
    logs = []  # (records, report, label) of the runs that have a per-epoch log
    for p, r, lbl in zip(paths, reports, labels, strict=True):
        for log in ((Path(r.run_dir) / "metrics.jsonl") if r.run_dir else None,
                    Path(p) / "metrics.jsonl"):
            if log is not None and log.is_file():
                logs.append((read_metrics_log(log), r, lbl))
                break

    def curves_for(g: str) -> list[EpochCurve]:
        cs = [epoch_curve(rec, r.metrics.class_names, r.metrics.size_groups, group=g, label=lbl)
              for rec, r, lbl in logs]
        return [c for c in cs if c.epochs.size]

    curves = curves_for(group)
    if len({c.group for c in curves}) > 1:  # one y axis: a run lacks the group, use macro
        curves = curves_for(MACRO)
    return Comparison(labels=labels, reports=list(reports), curves=curves)
