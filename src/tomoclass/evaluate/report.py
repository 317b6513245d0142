"""Evaluation reports: metrics (and the CAM score) of one run on one split, on disk.

An evaluation folder holds

``report.md``
    Human-readable summary: means, F1 per size group, per-class table, CAM score,
    confusion matrix.
``report.json``
    The same numbers, machine-readable (NaN written as null); read back by
    :func:`load_report` and ``tomoclass compare``.
``confusion.csv``
    Counts, rows true class, columns predicted class.
``confusion.png``
    Heatmap coloured by row fraction (recall along the diagonal), counts printed.

The folder is written atomically: it appears complete or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_dir
from tomoclass.metrics import ClassificationMetrics

#: Kind of output folder (:mod:`tomoclass.io.outputs`) of an evaluation.
EVALUATION_KIND = "evaluation"

REPORT_JSON = "report.json"
FORMAT_VERSION = 1


def predict_logits(
    model: nn.Module,
    inputs: Sequence[np.ndarray] | np.ndarray,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """Run ``model`` in eval mode over subtomograms and return their logits.

    Parameters
    ----------
    model
        Any classifier taking (B, 1, D, H, W) float32 and returning (B, C) logits; run on
        the device of its parameters, its train/eval mode restored afterwards.
    inputs
        N subtomograms, each (D, H, W) or (1, D, H, W), (z, y, x), indexable by int.
    batch_size
        Subtomograms per forward pass.

    Returns
    -------
    numpy.ndarray
        float32 (N, C).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    n = len(inputs)
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, max(1, batch_size)):
                xb = np.stack(
                    [np.asarray(inputs[i], dtype=np.float32).reshape(np.shape(inputs[i])[-3:])
                     for i in range(start, min(n, start + batch_size))]
                )
                t = torch.from_numpy(xb)[:, None].to(device)
                out.append(model(t).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        raise InputError("no subtomograms to evaluate")
    return np.concatenate(out).astype(np.float32)


def format_score(x: float | None, digits: int = 3) -> str:
    """A score with ``digits`` decimals for the Markdown tables; ``–`` for None or NaN."""
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


_fmt = format_score  # the short name of this module's tables


@dataclass
class EvaluationReport:
    """Metrics of one run on one split of a dataset, plus its CAM score when computed.

    Attributes
    ----------
    model_name
        Registry name of the model.
    metrics
        :class:`ClassificationMetrics` of the split.
    split
        "train", "val" or "test".
    run_dir, dataset_dir
        Where the run and the data came from (strings, as given).
    checkpoint
        Which checkpoint was evaluated ("best", "last", "epoch_010", ...).
    cam
        Summary of the CAM score (:meth:`tomoclass.cam.CamScore.to_dict`), or None when the
        dataset has no clean volumes or CAM was not asked for.
    out_dir
        Folder the report was written to (None before writing).
    info
        Extra facts recorded with the report (checkpoint epoch, device).
    """

    model_name: str
    metrics: ClassificationMetrics
    split: str = "test"
    run_dir: str = ""
    dataset_dir: str = ""
    checkpoint: str = ""
    cam: dict[str, Any] | None = None
    out_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def macro_f1(self) -> float:
        """Macro-mean F1 of the split."""
        return self.metrics.macro_f1

    def cam_per_class(self) -> dict[str, float | None]:
        """CAM score per class name (empty when there is none)."""
        return dict(self.cam["per_class"]) if self.cam else {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as None)."""
        return {
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "run_dir": self.run_dir,
            "dataset_dir": self.dataset_dir,
            "split": self.split,
            "checkpoint": self.checkpoint,
            "info": self.info,
            **self.metrics.to_dict(),
            "cam": self.cam,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], out_dir: Path | None = None) -> EvaluationReport:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(
                model_name=d["model_name"],
                metrics=ClassificationMetrics.from_dict(d),
                split=d.get("split", ""),
                run_dir=d.get("run_dir", ""),
                dataset_dir=d.get("dataset_dir", ""),
                checkpoint=d.get("checkpoint", ""),
                cam=d.get("cam"),
                out_dir=out_dir,
                info=d.get("info", {}),
            )
        except KeyError as exc:
            raise InputError("not an evaluation report", field=str(exc.args[0])) from None

    def to_markdown(self) -> str:
        """The report as Markdown."""
        m = self.metrics
        s = m.summary()
        source = (f"- run: `{self.run_dir}` (checkpoint `{self.checkpoint}`)" if self.run_dir
                  else "- no trained run: " + ", ".join(
                      f"{k.replace('_', ' ')} {v}" for k, v in self.info.items()))
        lines = [
            f"# Evaluation of {self.model_name} on the {self.split} split",
            "",
            source,
            f"- dataset: `{self.dataset_dir}`",
            f"- particles: {m.n}",
            "",
            "| accuracy | macro F1 | weighted F1 | macro precision | macro recall |",
            "|---|---|---|---|---|",
            "| " + " | ".join(_fmt(s[k]) for k in (
                "accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"
            )) + " |",
            "",
            "F1 = 2TP / (2TP + FN + FP) (Eq. 2). A ratio with a zero denominator is undefined "
            "(–) and left out of every mean; macro means are unweighted over classes, weighted "
            "means use the support.",
            "",
        ]
        groups = m.group_f1()
        if groups:
            lines += [
                "## Mean F1 per size group",
                "",
                "| " + " | ".join(groups) + " |",
                "|" + "---|" * len(groups),
                "| " + " | ".join(_fmt(v) for v in groups.values()) + " |",
                "",
            ]
        gc = m.group_confusion()
        if len(gc) > 1:
            lines += [
                "Size found, identity not? Per group, the share of its particles predicted as "
                "a class of the group, and of those the share predicted as their own class "
                "(a guess among the group's classes scores the chance column):",
                "",
                "| size group | particles | classes | put in the group | own class within it "
                "| chance within |",
                "|---|---|---|---|---|---|",
            ] + [f"| {g} | {v['n']} | {v['classes']} | {_fmt(v['in_group'])} | "
                 f"{_fmt(v['within'])} | {_fmt(v['chance'])} |" for g, v in gc.items()] + [""]
        cam = self.cam_per_class()
        head = "| class | size | support | TP | FN | FP | precision | recall | F1 |"
        rule = "|---|---|---|---|---|---|---|---|---|"
        if cam:
            head += " CAM score |"
            rule += "---|"
        lines += ["## Per class", "", head, rule]
        for row in m.per_class():
            cells = [row["class"], row["size_group"] or "–", str(row["support"]),
                     str(row["tp"]), str(row["fn"]), str(row["fp"]),
                     _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"])]
            if cam:
                cells.append(_fmt(cam.get(row["class"])))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if self.cam:
            c = self.cam
            lines += [
                "## CAM score",
                "",
                f"Share of the positive {c['method']} energy (map of the {c['target']} class) "
                "that falls inside the particle's ground-truth mask (noise-free volume "
                f"thresholded at {c['mask_level']:g} of its peak above background), averaged "
                f"per class: **{_fmt(c['mean'])}** over {c['n_scored']} particles. A map spread "
                f"evenly over the box would score the mask's volume fraction, "
                f"{_fmt(c['mean_mask_fraction'])}.",
                "",
            ]
        names = list(m.class_names)
        lines += [
            "## Confusion matrix (rows true, columns predicted)",
            "",
            "![confusion matrix](confusion.png)",
            "",
            "| true \\ predicted | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for i, name in enumerate(names):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in m.confusion[i]) + " |")
        lines.append("")
        return "\n".join(lines)


def confusion_frame(metrics: ClassificationMetrics) -> pd.DataFrame:
    """The confusion matrix as a DataFrame indexed by true class, columns predicted class."""
    df = pd.DataFrame(metrics.confusion, index=list(metrics.class_names),
                      columns=list(metrics.class_names))
    df.index.name = "true\\predicted"
    return df


def plot_confusion(metrics: ClassificationMetrics, path: str | Path, *, title: str = "") -> Path:
    """Write the confusion heatmap (colour: fraction of each true class, text: counts) as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = metrics.confusion
    c = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    side = max(3.5, 0.45 * c + 1.8)
    fig = Figure(figsize=(side + 0.8, side), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(c), metrics.class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(c), metrics.class_names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if frac[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_report(report: EvaluationReport, out_dir: str | Path, *,
                 overwrite: bool | None = None) -> EvaluationReport:
    """Write ``report`` to ``out_dir`` atomically and return it.

    An existing ``out_dir`` is replaced only when it is a previous evaluation and ``overwrite``
    (default: the command's ``--overwrite``) allows it (:mod:`tomoclass.io.outputs`).

    Returns
    -------
    EvaluationReport
        The same report with ``out_dir`` set.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, kind=EVALUATION_KIND, overwrite=overwrite) as tmp:
        (tmp / REPORT_JSON).write_text(
            json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
        )
        (tmp / "report.md").write_text(report.to_markdown())
        confusion_frame(report.metrics).to_csv(tmp / "confusion.csv")
        plot_confusion(report.metrics, tmp / "confusion.png",
                       title=f"{report.model_name}, {report.split} split")
    report.out_dir = out_dir
    return report


def load_report(path: str | Path) -> EvaluationReport:
    """Read an evaluation back: a ``report.json``, an evaluation folder, or a run folder.

    A run folder is searched for ``evaluation_test/``, then ``evaluation_val/``, then any
    ``evaluation_*/`` (the default output folders of :func:`evaluate_run`).

    Raises
    ------
    InputError
        When no report is found or the file is not a report.
    """
    p = Path(path)
    candidates = [p] if p.suffix == ".json" else [p / REPORT_JSON]
    if p.is_dir():
        candidates += [p / f"evaluation_{s}" / REPORT_JSON for s in ("test", "val")]
        candidates += sorted(p.glob(f"evaluation_*/{REPORT_JSON}"))
    for c in candidates:
        if c.is_file():
            try:
                d = json.loads(c.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"cannot read evaluation report: {exc}", path=c) from None
            if not isinstance(d, dict):
                raise InputError("not an evaluation report", path=c)
            return EvaluationReport.from_dict(d, out_dir=c.parent)
    raise InputError(
        "no evaluation report found (run `tomoclass evaluate` first, or pass --data)", path=p
    )
