"""Seed statistics of a benchmark tier whose runs are recorded one JSON per (model, seed).

Issue 18's small-particle tier trains every (model, seed) as its own job, which may run in
another session; each job writes a *run record* (the :mod:`tomoclass.evaluate.seeds` record
plus its training curve and wall time). This module turns a folder of such records into the
tier's answer:

- per model, mean ± s.d. over seeds (:func:`tomoclass.evaluate.seeds.summarize_seeds`);
- the dilated − plain difference per size group, paired by seed (the seeds share the data),
  with its s.d., a paired t test and a Wilcoxon signed-rank test (:func:`paired_tests`);
- whether each run converged: validation loss flat over its last ``k`` epochs
  (:func:`convergence`);
- accuracy against training time for every model (:func:`time_accuracy`);
- Table 2 / Fig. 4A of the tier with error bars (:func:`tier_markdown`,
  :func:`plot_tier_groups`, :func:`plot_accuracy_vs_time`, and every run's validation
  curves, :func:`plot_tier_curves`), with the nearest-class-mean
  baseline's row when ``agg["baseline"]`` holds its record (the floor the nets must beat).

A run record is a dict with at least ``model``, ``seed``, ``f1`` ({class: F1 or None}),
``group_f1`` ({group: F1}), ``macro_f1``, ``train_seconds`` and ``epochs`` (a list of
``{"epoch", "val_loss", "val_macro_f1", "epoch_seconds"}``); ``cam`` and ``curve_test_f1``
are optional.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tomoclass.errors import InputError
from tomoclass.evaluate import baseline
from tomoclass.evaluate.seeds import (
    PAIRED,
    format_mean_sd,
    paper_difference,
    paper_difference_lines,
    seed_means,
    seed_stats,
    summarize_seeds,
)
from tomoclass.io.atomic import save_png
from tomoclass.metrics import SIZE_GROUPS
from tomoclass.train.config import TrainConfig
from tomoclass.train.schedule import epoch_lr

__all__ = [
    "CONVERGENCE_K",
    "CHANCE_TOL",
    "CONVERGENCE_TOL",
    "TREND_WINDOW",
    "aggregate_tier",
    "convergence",
    "curve_convergence",
    "first_lr_drop",
    "load_run_records",
    "paired_tests",
    "relative_trend",
    "run_convergence",
    "scheduled_epochs",
    "plot_accuracy_vs_time",
    "plot_tier_curves",
    "plot_tier_groups",
    "time_accuracy",
    "tier_markdown",
]

#: Epochs over which the validation loss must be flat to call a run converged.
CONVERGENCE_K = 3
#: "Flat": the last k validation losses span at most this fraction of their mean.
CONVERGENCE_TOL = 0.05
#: Epochs of the trend test at the peak rate: a validation loss measured on a few hundred
#: boxes jitters 5-10 % per epoch (issue 18's small12 probes), which a range over 3 epochs
#: reads as "not flat"; a least-squares line over 5 tells "still falling" from jitter.
TREND_WINDOW = 5
#: a final validation loss within CHANCE_TOL x ln K of ln K is a uniform guess's (at chance);
#: one far above ln K is an over-confident net that learned something (and over-fits), not
#: chance (MONAI's DenseNet121 on small12 ends near 3.1 with ln 9 = 2.2 and F1 0.27)
CHANCE_TOL = 0.02

REQUIRED = ("model", "seed", "f1", "group_f1", "macro_f1", "train_seconds", "epochs")

#: Table row of the nearest-class-mean baseline (``agg["baseline"]``,
#: :func:`tomoclass.evaluate.baseline.baseline_record`).
BASELINE_ROW = baseline.NAME


def convergence(val_loss: Sequence[float | None], k: int = CONVERGENCE_K,
                tol: float = CONVERGENCE_TOL, lr: Sequence[float] | None = None
                ) -> dict[str, Any]:
    """Whether the validation loss is flat over the last ``k`` epochs.

    Flat means ``(max - min) / mean <= tol`` over the last ``k`` values (all finite). Fewer
    than ``k`` epochs, or a non-finite value among them, is not converged.

    A step schedule makes any loss flat once the rate is small: a run whose rate fell x100
    while its loss was still dropping ends "flat" without having converged. With ``lr`` (the
    rate each epoch trained at, :func:`tomoclass.train.schedule.epoch_lr`) the record also
    says whether the loss was flat over the last ``k`` epochs *at the peak rate*
    (``flat_at_peak_lr``; False when fewer than ``k`` epochs ran at the peak), how many epochs
    did (``epochs_at_peak_lr``), that stretch's ``peak_lr_relative_range`` and the final
    rate as a fraction of the peak (``final_lr_fraction``). Because a range over ``k`` noisy
    values fails on jitter alone, the peak phase is also judged by its trend: the
    least-squares line through the last :data:`TREND_WINDOW` values at the peak rate changes
    by ``peak_lr_trend`` (a fraction of their mean over the window; negative: falling), and
    ``stopped_falling_at_peak_lr`` is True when that fall is at most ``tol`` (a loss rising
    again, overfitting, has stopped falling too). Fewer epochs at the peak: False and None.

    Returns
    -------
    dict
        ``converged`` (bool), ``k``, ``tol``, ``last_val_loss`` (the last k values),
        ``relative_range`` (None when undefined) and ``slope_per_epoch`` (least-squares slope
        of the last k values; negative: still falling).
    """
    if lr is not None:
        return _with_peak_phase(convergence(val_loss, k, tol), val_loss, lr, k, tol)
    last = [None if v is None else float(v) for v in list(val_loss)[-k:]]
    rec: dict[str, Any] = {"converged": False, "k": int(k), "tol": float(tol),
                           "last_val_loss": last, "relative_range": None,
                           "slope_per_epoch": None}
    if len(last) < k or k < 2 or any(v is None or not math.isfinite(v) for v in last):
        return rec
    arr = np.array(last, dtype=np.float64)
    mean = float(arr.mean())
    rel = float((arr.max() - arr.min()) / mean) if mean > 0 else float("inf")
    rec["relative_range"] = rel if math.isfinite(rel) else None
    rec["slope_per_epoch"] = float(np.polyfit(np.arange(k, dtype=np.float64), arr, 1)[0])
    rec["converged"] = bool(math.isfinite(rel) and rel <= tol)
    return rec


def run_convergence(record: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`convergence` of a run record's ``epochs``, peak-rate phase included.

    The rate of every epoch comes from the record's ``train_config`` (the schedule, not the
    logged rate, which older runs wrote one epoch late); a record without one falls back to
    its stored ``convergence``, else to the plain criterion.

    A loss flat at chance is flat too: ``at_chance`` says whether the last validation loss is
    within ``CHANCE_TOL`` x ln K of ln K (K = the record's classes), the cross-entropy of a
    uniform guess, so a run that never learned is not read as converged. A loss well above
    ln K is not chance: it is a net confidently wrong on many boxes.
    """
    epochs = list(record["epochs"])
    cfg = record.get("train_config")
    if cfg and epochs:
        out = curve_convergence(epochs, cfg)
    else:
        out = dict(record.get("convergence")
                   or convergence([e.get("val_loss") for e in epochs]))
    losses = [e.get("val_loss") for e in epochs if e.get("val_loss") is not None]
    k = len(record.get("f1") or {})
    out["at_chance"] = bool(losses and k > 1 and abs(float(losses[-1]) - math.log(k))
                            <= CHANCE_TOL * math.log(k))
    return out


def curve_convergence(epochs: Sequence[Mapping[str, Any]],
                      train_config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """:func:`convergence` of per-epoch records (``epoch``, ``val_loss``), peak rate included.

    Each epoch's rate comes from the training config's schedule
    (:func:`tomoclass.train.schedule.epoch_lr`); no epochs: the plain criterion.
    """
    tc = _as_train_config(train_config)
    val = [e.get("val_loss") for e in epochs]
    if not epochs:
        return convergence(val)
    return convergence(val, lr=[epoch_lr(tc, int(e["epoch"])) for e in epochs])


def _as_train_config(train_config: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    return (train_config if isinstance(train_config, TrainConfig)
            else TrainConfig.from_dict(dict(train_config)))


def scheduled_epochs(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run record's epochs, each ``lr`` from its ``train_config``'s schedule.

    As :func:`run_convergence` reads them (older runs logged the next epoch's rate); a record
    without a config keeps its logged rates.
    """
    epochs = [dict(e) for e in record["epochs"] if e.get("epoch") is not None]
    cfg = record.get("train_config")
    if not cfg:
        return epochs
    tc = _as_train_config(cfg)
    return [{**e, "lr": epoch_lr(tc, int(e["epoch"]))} for e in epochs]


def _with_peak_phase(rec: dict[str, Any], val_loss: Sequence[float | None],
                     lr: Sequence[float], k: int, tol: float) -> dict[str, Any]:
    lrs = [float(x) for x in lr]
    if len(lrs) != len(val_loss) or not lrs or max(lrs) <= 0:
        raise ValueError(f"lr needs one positive rate per epoch ({len(val_loss)}), "
                         f"got {len(lrs)}")
    peak = max(lrs)
    at_peak = [v for v, r in zip(val_loss, lrs, strict=True) if r >= peak * (1 - 1e-9)]
    flat = convergence(at_peak, k, tol)
    trend = relative_trend(at_peak, TREND_WINDOW)
    return {**rec, "flat_at_peak_lr": flat["converged"], "epochs_at_peak_lr": len(at_peak),
            "peak_lr_relative_range": flat["relative_range"],
            "trend_window": TREND_WINDOW, "peak_lr_trend": trend,
            "stopped_falling_at_peak_lr": trend is not None and trend >= -tol,
            "final_lr_fraction": lrs[-1] / peak}


def relative_trend(values: Sequence[float | None], window: int = TREND_WINDOW) -> float | None:
    """Change of the least-squares line over the last ``window`` values, over their mean.

    ``slope * (window - 1) / mean``: -0.1 means the fitted line fell by 10 % of the mean
    across the window. None with fewer than ``window`` (>= 2) finite values or a mean <= 0.
    """
    fit = convergence(values, k=window)  # its slope; None when too few or not finite
    if fit["slope_per_epoch"] is None:
        return None
    mean = float(np.mean(fit["last_val_loss"]))
    return fit["slope_per_epoch"] * (window - 1) / mean if mean > 0 else None


def paired_tests(a: Mapping[Any, float | None], b: Mapping[Any, float | None]
                 ) -> dict[str, Any]:
    """``a - b`` paired by key (seed): mean, s.d., paired t test and Wilcoxon signed-rank test.

    Parameters
    ----------
    a, b
        ``{seed: value}``; seeds in both with values not None are paired.

    Returns
    -------
    dict
        ``seeds``, ``diff`` (per seed), the :func:`~tomoclass.evaluate.seeds.seed_stats` keys
        of the differences, ``t``/``p_t`` (scipy ``ttest_rel``, two-sided) and
        ``wilcoxon``/``p_wilcoxon`` (``scipy.stats.wilcoxon``, two-sided); a test is None
        when it is undefined (fewer than 2 pairs, or all differences equal / zero).
    """
    from scipy import stats

    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    d = [float(a[s]) - float(b[s]) for s in seeds]
    out: dict[str, Any] = {"seeds": seeds, "diff": d, **seed_stats(d), "t": None, "p_t": None,
                           "wilcoxon": None, "p_wilcoxon": None}
    # equal differences (to rounding) leave t undefined: s.d. 0, or scipy's precision warning
    if len(d) >= 2 and np.ptp(d) > 1e-12 * max(1.0, float(np.max(np.abs(d)))):
        res = stats.ttest_rel([float(a[s]) for s in seeds], [float(b[s]) for s in seeds])
        out["t"], out["p_t"] = float(res.statistic), float(res.pvalue)
    if len(d) >= 2 and any(abs(x) > 1e-12 for x in d):
        res = stats.wilcoxon(d)
        out["wilcoxon"], out["p_wilcoxon"] = float(res.statistic), float(res.pvalue)
    return out


def time_accuracy(runs: Mapping[str, Mapping[Any, Mapping[str, Any]]]) -> dict[str, Any]:
    """Accuracy against training time: per model the runs' (seconds, macro F1) and their means.

    Returns
    -------
    dict
        ``{model: {"points": [[seconds, macro_f1], ...], "train_seconds": stats,
        "macro_f1": stats}}`` with :func:`~tomoclass.evaluate.seeds.seed_stats` records.
    """
    out = {}
    for model, by_seed in runs.items():
        recs = [by_seed[s] for s in sorted(by_seed)]
        out[model] = {
            "points": [[float(r["train_seconds"]), float(r["macro_f1"])] for r in recs],
            "train_seconds": seed_stats([float(r["train_seconds"]) for r in recs]),
            "macro_f1": seed_stats([float(r["macro_f1"]) for r in recs]),
        }
    return out


def load_run_records(folder: str | Path) -> list[dict[str, Any]]:
    """Read every ``*.json`` run record of a folder (sorted by name).

    Raises
    ------
    InputError
        A file that is not JSON or lacks a required key (named, with the key).
    """
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable JSON run record ({exc.__class__.__name__})",
                             path=path) from None
        if not isinstance(rec, dict):
            raise InputError("run record must be a JSON object", path=path)
        for key in REQUIRED:
            if key not in rec:
                raise InputError("run record lacks a required key", path=path, field=key)
        out.append(rec)
    return out


def group_runs(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    """``{model: {seed: record}}`` from records with ``model`` and ``seed`` keys.

    Raises
    ------
    InputError
        The same (model, seed) in two records.
    """
    runs: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        m, s = str(r["model"]), int(r["seed"])
        if s in runs.get(m, {}):
            raise InputError(f"two run records for model {m} seed {s}", field="seed")
        runs.setdefault(m, {})[s] = r
    return runs


def compare_seeds(runs: Mapping[str, Mapping[int, Mapping[str, Any]]],
                  class_names: Sequence[str], pair: tuple[str, str] = PAIRED
                  ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Mean ± s.d. over seeds per model and the paired tests of ``pair`` (seeds in both).

    Returns
    -------
    summary, paired
        :func:`~tomoclass.evaluate.seeds.summarize_seeds` of ``runs``, and
        ``{"pair", "macro": tests, "groups": {group: tests}, "classes": {class: tests}}``
        (:func:`paired_tests`; groups present in some record only), or None when the two
        models share no seed.
    """
    a, b = runs.get(pair[0], {}), runs.get(pair[1], {})
    paired = None
    if set(a) & set(b):
        paired = {
            "pair": list(pair),
            "macro": paired_tests({s: r["macro_f1"] for s, r in a.items()},
                                  {s: r["macro_f1"] for s, r in b.items()}),
            "groups": {g: paired_tests({s: r["group_f1"].get(g) for s, r in a.items()},
                                       {s: r["group_f1"].get(g) for s, r in b.items()})
                       for g in SIZE_GROUPS
                       if any(g in r["group_f1"] for r in (*a.values(), *b.values()))},
            "classes": {n: paired_tests({s: r["f1"].get(n) for s, r in a.items()},
                                        {s: r["f1"].get(n) for s, r in b.items()})
                        for n in class_names},
        }
    summary = summarize_seeds({m: {s: _with_cam(r) for s, r in by.items()}
                               for m, by in runs.items()}, class_names)
    return summary, paired


def report_record(report: Any) -> dict[str, Any]:
    """The accuracy keys of a run record, from an evaluation report.

    ``f1`` per class (None where undefined), ``group_f1`` (groups with a value), ``macro_f1``
    and ``n_test``.
    """
    m = report.metrics
    return {"f1": {str(n): (None if not np.isfinite(v) else float(v))
                   for n, v in zip(m.class_names, m.f1, strict=True)},
            "group_f1": {g: float(v) for g, v in m.group_f1().items() if np.isfinite(v)},
            "macro_f1": float(report.macro_f1), "n_test": int(m.n)}


def peak_rate(record: Mapping[str, Any]) -> tuple[float, int] | None:
    """The (peak learning rate, batch size) a run trained at after its warm-up.

    From its ``train_config`` (:attr:`TrainConfig.peak_lr`, the linear scaling rule); None
    when the record has no config.
    """
    cfg = record.get("train_config")
    if not cfg:
        return None
    tc = _as_train_config(cfg)
    return tc.peak_lr, tc.batch_size


def aggregate_tier(records: Iterable[Mapping[str, Any]], class_names: Sequence[str],
                   pair: tuple[str, str] = PAIRED) -> dict[str, Any]:
    """The tier's statistics from its run records.

    Parameters
    ----------
    records
        Run records (see the module docstring); a (model, seed) given twice is refused.
    class_names
        Classes in table order.
    pair
        (model, reference) of the paired difference; default dilated minus plain DenseNet.

    Returns
    -------
    dict
        ``summary`` (:func:`~tomoclass.evaluate.seeds.summarize_seeds`), ``paired``
        ({"macro": tests, "groups": {group: tests}, "classes": {class: tests}} or None),
        ``convergence`` ({model: {seed: record["convergence"]}} and the count converged),
        ``time_accuracy`` (:func:`time_accuracy`), ``peak_rates`` ({model: the distinct
        [rate, batch] of its runs, :func:`peak_rate`}) and ``runs`` ({model: {seed: record}}).

    Raises
    ------
    InputError
        The same (model, seed) in two records.
    """
    runs = group_runs(records)
    conv: dict[str, Any] = {}
    for m, by_seed in runs.items():
        per = {s: run_convergence(r) for s, r in sorted(by_seed.items())}
        conv[m] = {"runs": per, "n_converged": sum(bool(c["converged"]) for c in per.values()),
                   "n_at_chance": sum(bool(c.get("at_chance")) for c in per.values()),
                   "n": len(per)}
    summary, paired = compare_seeds(runs, class_names, pair)
    return {"summary": summary, "paired": paired, "convergence": conv,
            "time_accuracy": time_accuracy(runs),
            "peak_rates": {m: sorted({p for r in by.values() if (p := peak_rate(r))})
                           for m, by in runs.items()},
            "runs": {m: {str(s): dict(r) for s, r in sorted(by.items())}
                     for m, by in runs.items()}}


def _with_cam(r: Mapping[str, Any]) -> dict[str, Any]:
    return {**r, "cam": r.get("cam")}


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


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
    lines = [f"# {title}", "", "F1 on the test tomogram, mean ± s.d. over seeds (final "
             "checkpoint); paper: Gao et al. 2020 Table 2 on SHREC'19.", "",
             "| model | source | " + " | ".join(class_names) + " | macro |",
             "|---|---|" + "---|" * (len(class_names) + 1)]
    for m in models:
        pm = per_model[m]
        n = len(pm["seeds"])
        lines.append(f"| {m} | ours ({n} seed{'s' if n != 1 else ''}) | "
                     + " | ".join(format_mean_sd(pm["f1"][n]) for n in class_names)
                     + f" | {format_mean_sd(pm['macro_f1'])} |")
        if m in paper_f1:
            pv = [paper_f1[m][n] for n in class_names]
            lines.append(f"| {m} | paper | " + " | ".join(_f(v) for v in pv)
                         + f" | {_f(float(np.mean(pv)))} |")
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


def first_lr_drop(epochs: Sequence[Mapping[str, Any]]) -> int | None:
    """The first epoch after the peak whose recorded ``lr`` is below the peak, or None.

    A warm-up's lower rates before the peak do not count; a run held at its peak rate to the
    end gives None.
    """
    lrs = [(int(e["epoch"]), float(e["lr"])) for e in epochs if e.get("lr") is not None]
    if not lrs:
        return None
    peak = max(r for _, r in lrs)
    i_peak = max(i for i, (_, r) in enumerate(lrs) if r >= peak * (1 - 1e-9))
    later = [ep for ep, r in lrs[i_peak + 1:] if r < peak * (1 - 1e-9)]
    return later[0] if later else None
