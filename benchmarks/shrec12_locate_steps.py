"""The whole-tomogram stage of the shrec12 benchmark, shared by its two drivers.

``reproduce_table2.py --locate`` and ``shrec12_locate.py`` (see its docstring for the task)
call :func:`build_dataset` (every ground-truth particle plus background boxes, 13 classes),
then :func:`locate_and_score` (locate each test tomogram with the trained run, score the picks
with :func:`tomoclass.evaluate.score_picks` and
:func:`tomoclass.evaluate.per_class_localization`) and :func:`markdown` (the report section).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.data import select_particles
from tomoclass.evaluate import per_class_localization
from tomoclass.io.schema import BACKGROUND

__all__ = ["SWEEP", "build_dataset", "fmt", "locate_and_score", "markdown", "settings",
           "template_radii"]

log = logging.getLogger("reproduce_table2.locate")

#: Thresholds of the sweep recorded beside each located tomogram (those not below the
#: threshold used).
SWEEP = (0.5, 0.7, 0.9, 0.95, 0.99)


def settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The YAML's ``locate`` section with defaults."""
    s = dict(raw.get("locate") or {})
    return {
        "model": str(s.get("model", "dilated_densenet3d")),
        "n_random": int(s.get("background_random_per_tomogram", 250)),
        "n_offcentre": int(s.get("background_offcentre_per_tomogram", 250)),
        "threshold": float(s.get("threshold", 0.5)),
        "seed": int(s.get("seed", 0)),
        "method": str(s.get("method", "candidates")),
        "stride": int(s.get("stride", 4)),
        "polarity": str(s.get("polarity", "auto")),
        "candidate_threshold": float(s.get("candidate_threshold", 3.0)),
    }


def template_radii(templates) -> dict[str, float]:
    """Class name -> bounding radius of the template's mask, voxels (rounded to 0.1)."""
    return {t.name: round(float(t.radius_voxels), 1) for t in templates}


def build_dataset(ds_dir: Path, written: list[dict[str, str]], bench, sim_cfg, radii,
                  cfg: dict[str, Any]):
    """Every ground-truth particle (border ones padded) plus background boxes, 13 classes.

    Train tomograms get ``n_random + n_offcentre`` background boxes each; the test tomograms
    as many (they form the monitored split only). Returns the extract report and the counts.
    """
    from tomoclass.data import ClassMap, extract_dataset
    from tomoclass.io import read_particles
    from tomoclass.io import schema as S
    from tomoclass.locate import background_boxes

    names = [Path(w["tomogram"]).stem for w in written]
    split = {names[i]: "train" for i in bench.tier["train_tomograms"]}
    split.update({names[i]: "test" for i in bench.tier["test_tomograms"]})
    shape = tuple(int(v) for v in sim_cfg.tomogram.shape_zyx)
    ext = bench.raw.get("extraction") or {}
    tables, use, n_bg = [], [], 0
    for k, (w, name) in enumerate(zip(written, names, strict=True)):
        if name not in split:
            continue
        gt = read_particles(w["ground_truth"], tomogram=name)
        # Centres anywhere in the tomogram, and every particle, border ones included, all
        # boxes padded at the border alike: the detector then never learns "padded box =
        # particle" (or "= background"), and it is run over the whole tomogram, borders too.
        bg = background_boxes(gt, shape, radii, n_random=cfg["n_random"],
                              n_offcentre=cfg["n_offcentre"], seed=[cfg["seed"], k],
                              tomogram=name,
                              max_offset=max(bench.box / 2, max(radii.values()) + 1.0))
        n_bg += len(bg)
        sel = select_particles(gt, shape, bench.box, border="pad",
                                  cap=bench.tier.get("max_per_class_per_tomogram"),
                                  seed=sim_cfg.seed)
        t = pd.concat([sel, bg.drop(columns=["background_kind"])], ignore_index=True)
        t["split"] = split[name]
        tables.append(t)
        use.append(w)
    table = pd.concat(tables, ignore_index=True)
    table[S.TOMOGRAM] = table[S.TOMOGRAM].astype(str)
    cmap = ClassMap(list(bench.names) + [BACKGROUND], list(bench.size_groups) + [""])
    rep = extract_dataset(
        ds_dir, [w["tomogram"] for w in use], table, box=bench.box, class_map=cmap,
        include_nonprotein=True, normalize=str(ext.get("normalize", "zscore")), border="pad",
        provenance={"made_by": "benchmarks/reproduce_table2.py --locate", "benchmark": "shrec12",
                    "tier": bench.tier_name, "background_boxes": n_bg,
                    "simulation": sim_cfg.to_dict()})
    return rep, {"background_boxes": n_bg, "boxes_written": rep.n_written}


def _candidate_record(cands, truth: pd.DataFrame, radii: dict[str, float]
                      ) -> dict[str, Any] | None:
    """Proposals of ``method="candidates"``: how many, at which scales, and their recall per
    class (share of the true particles with a proposal within the class radius), which
    tells proposal misses from classifier misses."""
    if cands is None:
        return None
    from scipy.spatial import cKDTree

    from tomoclass.io import schema as S

    zyx = truth[[S.Z, S.Y, S.X]].to_numpy(dtype=np.float64)
    cls = truth[S.CLASS_NAME].astype(str).to_numpy()
    r = np.array([radii[c] for c in cls])
    if len(cands) and len(zyx):
        dist, _ = cKDTree(cands.zyx.astype(np.float64)).query(zyx)
    else:
        dist = np.full(len(zyx), np.inf)
    hit = dist <= r
    return {
        "n_candidates": len(cands),
        "polarity": cands.polarity,
        "sigmas": [round(float(v), 4) for v in cands.sigmas],
        "noise": [float(v) for v in cands.noise],
        "recall": float(hit.mean()) if len(hit) else None,
        "recall_per_class": {c: float(hit[cls == c].mean()) for c in sorted(set(cls))},
    }


def _scored(truth: pd.DataFrame, picks: pd.DataFrame, radii: dict[str, float], bench):
    """Score, per-class localization and size-group means of one tomogram's picks: the
    :class:`PickScore` and the JSON-ready record."""
    from tomoclass.evaluate.picks import score_picks

    score = score_picks(truth, picks, radii)
    per_class = per_class_localization(score, picks.reset_index(drop=True))
    groups: dict[str, dict[str, Any]] = {}
    for g in ("tiny", "small", "medium", "large"):
        members = [n for n, gg in zip(bench.names, bench.size_groups, strict=True) if gg == g]
        vals = [per_class[n] for n in per_class if n in members]
        f1s = [v["loc_f1"] for v in vals if v["loc_f1"] is not None]
        cls = [v["cls_f1"] for v in vals if v["cls_f1"] is not None]
        groups[g] = {"loc_f1_mean": float(np.mean(f1s)) if f1s else None,
                     "loc_f1_min": float(np.min(f1s)) if f1s else None,
                     "cls_f1_mean": float(np.mean(cls)) if cls else None}
    return score, {"score": score.to_dict(), "per_class_localization": per_class,
                   "size_groups": groups}


def _locate_one(run_dir: Path, w: dict[str, str], bench, radii: dict[str, float],
                cfg: dict[str, Any], out_dir: Path, dev, locate_kwargs: dict[str, Any]):
    from tomoclass.workflows.locate import locate

    name = Path(w["tomogram"]).stem
    stride = int(bench.tier.get("locate_stride", cfg["stride"]))
    kw = dict(locate_kwargs)
    if cfg["method"] == "boxes":
        kw.setdefault("stride", stride)
    if cfg["method"] == "candidates":
        kw.setdefault("polarity", cfg["polarity"])
        kw.setdefault("candidate_threshold", cfg["candidate_threshold"])
    t0 = time.perf_counter()
    res = locate(run_dir, w["tomogram"], out_dir / f"{name}_picks.star", which="last",
                 threshold=cfg["threshold"], radii=radii, device=dev, progress=False,
                 method=cfg["method"], **kw)
    return name, res, time.perf_counter() - t0


def locate_and_score(run_dir: Path, written: list[dict[str, str]], bench, radii: dict[str, float],
                     cfg: dict[str, Any], out_dir: Path, device: str = "auto", *,
                     test: bool = True, store_threshold: bool = False,
                     **locate_kwargs: Any) -> dict[str, Any]:
    """Locate every validation and test tomogram with the trained run and score the picks.

    With ``val_tomograms`` in the tier, the pick threshold is also chosen on them
    (:func:`tomoclass.evaluate.thresholds.choose_threshold`, best localization F1 of their picks)
    and each test tomogram's picks are scored at it too (the picks scoring at least it: what
    locating at it gives, since non-maximum suppression keeps picks in decreasing score).
    ``store_threshold`` also stores it with the run's last checkpoint
    (:func:`tomoclass.locate.calibration.save_threshold`, as ``tomoclass score-picks
    --calibrate`` does), so that locating with the run uses it; ``test=False`` skips the test
    tomograms (measured elsewhere, e.g. ``pretrained_check.py --from-run``).

    ``locate_kwargs`` go to :func:`tomoclass.locate.locate` as they are."""
    from tomoclass.evaluate.thresholds import choose_threshold, threshold_sweep
    from tomoclass.io import read_particles

    dev = None if device == "auto" else device
    calibration = None
    val = [int(i) for i in bench.tier.get("val_tomograms") or []]
    if val:
        truths, picks, seconds = [], [], {}
        for i in val:
            name, res, _ = _locate_one(run_dir, written[i], bench, radii, cfg, out_dir, dev,
                                       locate_kwargs)
            truths.append(read_particles(written[i]["ground_truth"], tomogram=name))
            picks.append(res.picks.assign(tomogram=name))
            seconds[name] = round(res.seconds, 2)
        all_picks = pd.concat(picks, ignore_index=True)
        if len(all_picks):
            choice = choose_threshold(pd.concat(truths, ignore_index=True), all_picks, radii)
            calibration = {**choice.to_dict(), "val_tomograms": list(seconds),
                           "seconds_locate": seconds}
            log.info("threshold chosen on %s: %.4g (val loc F1 %.3f)", ", ".join(seconds),
                     choice.threshold, choice.f1)
            if store_threshold:
                calibration["stored_in"] = str(_store_threshold(
                    run_dir, choice, [written[i] for i in val], out_dir, radii, cfg))
        else:
            log.warning("no picks on the validation tomograms: no threshold chosen")
    per_tomo = []
    for i in bench.tier["test_tomograms"] if test else []:
        w = written[int(i)]
        name, res, wall = _locate_one(run_dir, w, bench, radii, cfg, out_dir, dev, locate_kwargs)
        truth = read_particles(w["ground_truth"], tomogram=name)
        score, scored = _scored(truth, res.picks, radii, bench)
        # read off the test tomogram: an upper bound on what choosing the threshold gains
        ts = [t for t in SWEEP if t >= cfg["threshold"]]
        sweep = threshold_sweep(truth, res.picks, radii, ts) if ts else None
        (out_dir / f"{name}_score.md").write_text(score.to_markdown())
        rec = {
            "tomogram": name,
            "shape_zyx": list(bench.tier["shape_zyx"]),
            "seconds_locate": round(res.seconds, 2),
            "seconds_with_io": round(wall, 2),
            "stage_seconds": res.stage_seconds,
            "normalize": res.normalize,
            "method": cfg["method"],
            "stride": list(res.maps.stride) if res.maps is not None else None,
            "candidates": _candidate_record(res.candidates, truth, radii),
            "threshold": cfg["threshold"],
            **scored,
            "threshold_sweep_on_test": (json.loads(sweep.to_json(orient="records"))
                                        if sweep is not None else None),
        }
        if calibration is not None:
            kept = res.picks[res.picks["score"] >= calibration["threshold"]]
            _, cal = _scored(truth, kept, radii, bench)
            rec["calibrated"] = {"threshold": calibration["threshold"], **cal}
        per_tomo.append(rec)
        log.info("located %s: %d picks, loc F1 %.3f, %.1f s", name, len(res.picks),
                 score.f1 if np.isfinite(score.f1) else float("nan"), res.seconds)
    return {"radii_voxels": radii, "calibration": calibration, "tomograms": per_tomo}


def _store_threshold(run_dir: Path, choice, val: list[dict[str, str]], out_dir: Path,
                     radii: dict[str, float], cfg: dict[str, Any]) -> Path:
    """Store the chosen threshold with the run's last checkpoint; return the file."""
    from tomoclass.locate.calibration import save_threshold

    names = [Path(w["tomogram"]).stem for w in val]
    record = {**choice.to_dict(), "truth": "; ".join(str(Path(w["ground_truth"]).resolve())
                                                     for w in val),
              "picks": "; ".join(str((out_dir / f"{n}_picks.star").resolve()) for n in names),
              "radii": dict(radii), "method": cfg["method"],
              "chosen_by": "benchmarks/shrec12_locate.py"}
    path = save_threshold(run_dir, "last", choice.threshold, record)
    log.info("stored threshold %.4g for %s's last checkpoint in %s", choice.threshold,
             run_dir.name, path)
    return path


def markdown(rec: dict[str, Any], bench) -> str:
    """The locate section of table2.md."""
    lines = ["", "## Whole-tomogram localization and classification (--locate)", "",
             f"`{rec['settings']['model']}` trained with a background class "
             f"({rec['dataset']['background_boxes']} background boxes: "
             f"{rec['settings']['n_random']} random + {rec['settings']['n_offcentre']} off-centre "
             "per tomogram, the test tomograms' included as monitored validation boxes) on the "
             "tier's training tomograms, then run over each whole test "
             f"tomogram (method `{rec['settings']['method']}`"
             + (f", polarity {rec['settings'].get('polarity')}, candidate threshold "
                f"{rec['settings'].get('candidate_threshold')}"
                if rec["settings"]["method"] == "candidates" else "")
             + ", threshold "
             f"{rec['settings']['threshold']}). Hit region: a sphere of the "
             "class's template radius; every ground-truth particle counts, border ones too.", ""]
    for t in rec["result"]["tomograms"]:
        s = t["score"]
        lines += [f"Tomogram {t['tomogram']} ({'x'.join(map(str, t['shape_zyx']))}): "
                  f"{s['n_picks']} picks for {s['n_true']} particles; localization precision "
                  f"{fmt(s['precision'])}, recall {fmt(s['recall'])}, F1 {fmt(s['f1'])}; "
                  f"classification accuracy among hits {fmt(s['classification_accuracy'])}; "
                  f"{t['seconds_locate']:.1f} s to score and pick."
                  + (f" {t['candidates']['n_candidates']} candidates (polarity "
                     f"{t['candidates'].get('polarity', rec['settings'].get('polarity'))}), recall "
                     f"{fmt(t['candidates']['recall'])} (share of particles with a candidate "
                     "within their radius)." if t.get("candidates") else ""), "",
                  "| class | group | radius | n | found | false picks | loc F1 | cls F1 (hits) |",
                  "|---|---|---|---|---|---|---|---|"]
        radii = rec["result"]["radii_voxels"]
        for n, g in zip(bench.names, bench.size_groups, strict=True):
            c = t["per_class_localization"].get(n)
            if c is None:
                continue
            lines.append(f"| {n} | {g} | {radii.get(n, 0):.1f} | {c['n_true']} | {c['found']} | "
                         f"{c['false_picks']} | {fmt(c['loc_f1'])} | {fmt(c['cls_f1'])} |")
        sw = t.get("threshold_sweep_on_test") or []
        if sw:
            lines += ["", "Localization F1 of the picks scoring at least each threshold, read off "
                      "this test tomogram (an upper bound on choosing the threshold, not a "
                      "result): " + ", ".join(f"{r['threshold']:g}: {fmt(r['f1'])}" for r in sw)
                      + "."]
        cal = t.get("calibrated")
        if cal:
            c, v = cal["score"], rec["result"]["calibration"]
            lines += ["", f"Threshold chosen on {', '.join(v['val_tomograms'])} (best "
                      f"localization F1 there, {fmt(v['f1'])}): {v['threshold']:.4g}. This test "
                      f"tomogram at it: {c['n_picks']} picks, localization precision "
                      f"{fmt(c['precision'])}, recall {fmt(c['recall'])}, F1 {fmt(c['f1'])}."]
        head = "| group | mean loc F1 | min loc F1 | mean cls F1 |"
        lines += ["", head + (" mean loc F1, chosen threshold | min |" if cal else ""),
                  "|---|---|---|---|" + ("---|---|" if cal else "")]
        for g, v in t["size_groups"].items():
            extra = (f" {fmt(cal['size_groups'][g]['loc_f1_mean'])} | "
                     f"{fmt(cal['size_groups'][g]['loc_f1_min'])} |" if cal else "")
            lines.append(f"| {g} | {fmt(v['loc_f1_mean'])} | {fmt(v['loc_f1_min'])} | "
                         f"{fmt(v['cls_f1_mean'])} |" + extra)
        lines.append("")
    cal = rec["result"].get("calibration") or {}
    if not rec["result"]["tomograms"] and cal:
        lines += [f"Threshold chosen on {', '.join(cal['val_tomograms'])} (best localization "
                  f"F1 there, {fmt(cal['f1'])}; precision {fmt(cal['precision'])}, recall "
                  f"{fmt(cal['recall'])}): {cal['threshold']:.6g}"
                  + (f", stored in {cal['stored_in']}" if cal.get("stored_in") else "")
                  + ". The test tomograms were not located here (--threshold-only).", ""]
    return "\n".join(lines)


def fmt(x) -> str:
    """A score with 3 decimals, '–' for None."""
    return "–" if x is None else f"{x:.3f}"
