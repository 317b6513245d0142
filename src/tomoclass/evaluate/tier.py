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
- the numbers behind Table 2 / Fig. 4A of the tier (:func:`aggregate_tier`); the Markdown and
  the figures are :mod:`tomoclass.evaluate.tier_report`'s.

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
    seed_stats,
    summarize_seeds,
)
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
    "time_accuracy",
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

    ``f1`` per class (None where undefined), ``group_f1`` (groups with a value), ``macro_f1``,
    ``n_test``, the ``confusion`` matrix (rows true, class order) and ``group_confusion``
    (:meth:`~tomoclass.metrics.ClassificationMetrics.group_confusion`).
    """
    m = report.metrics
    return {"f1": {str(n): (None if not np.isfinite(v) else float(v))
                   for n, v in zip(m.class_names, m.f1, strict=True)},
            "group_f1": {g: float(v) for g, v in m.group_f1().items() if np.isfinite(v)},
            "macro_f1": float(report.macro_f1), "n_test": int(m.n),
            "confusion": m.confusion.tolist(), "group_confusion": m.group_confusion()}


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
