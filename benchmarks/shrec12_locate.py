"""The whole-tomogram task on shrec12 (``reproduce_table2.py --locate``, or alone).

    python benchmarks/shrec12_locate.py --tier cpu_locate --out DIR [--work SCRATCH]
        [--methods candidates[,boxes]] [--reuse] [--device auto]

Run alone, the script does steps 1-3 below for one tier of ``benchmarks/configs/shrec12.yaml``
without the Table 2 runs (simulate the tier's tomograms, build the 13-class dataset, train,
locate each test tomogram with every method listed, score). ``--reuse`` keeps the tomograms
and the trained run of an earlier call in the same scratch folder (a run stopped mid-way is
resumed; tomograms the tier has and the folder lacks are simulated), so that locating again
with other settings does not retrain. A tier's ``val_tomograms`` are located too and the
pick threshold with the best localization F1 on them is chosen and applied to the test
tomograms' picks (reported beside the fixed threshold).

SHREC'19 scored localization and classification together; Table 2 only classifies boxes at
known positions. With ``--locate`` the Table 2 run also

1. builds a 13-class dataset from the same training tomograms: every ground-truth particle
   (border ones too, padded), plus background boxes per tomogram (random boxes holding no
   particle centre within its radius, and boxes off-centre by more than the particle's radius,
   as the SHREC'19 CNN was trained; :func:`tomoclass.locate.background_boxes`), drawn over the
   whole tomogram so that background boxes are padded at the border as often as particles;
2. trains ``locate.model`` on it with the tier's protocol, in parallel with the Table 2 runs;
3. runs :func:`tomoclass.locate.locate` over each whole test tomogram and scores the picks
   with :func:`tomoclass.evaluate.picks.score_picks` against *all* its ground-truth particles
   (border particles included: the detector sees the whole tomogram).

Radii (non-maximum suppression and hit region) are each class's template radius: the
bounding radius of its density mask about the centre, in voxels
(:attr:`tomoclass.simulate.ClassTemplate.radius_voxels`), not a per-box guess.

Per-class localization F1 (the issue's goal is >= 0.9 for medium and large classes): a class's
particles found by any pick are its true positives, those not found its false negatives, and
the picks that hit nothing and were labelled with the class its false positives.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomoclass.io.schema import BACKGROUND

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
    import reproduce_table2 as rt

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
        sel = rt.select_particles(gt, shape, bench.box, border="pad",
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


def per_class_localization(score, picks: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per ground-truth class: found, missed, false picks labelled with it, loc P/R/F1."""
    from tomoclass.io import schema as S

    hit_rows = set(int(i) for i in score.matches["pick"]) if len(score.matches) else set()
    pred = picks[S.CLASS_NAME].astype(str).str.casefold().to_numpy()
    false_by_class: dict[str, int] = {}
    for i, c in enumerate(pred):
        if i not in hit_rows and c != BACKGROUND:
            false_by_class[c] = false_by_class.get(c, 0) + 1
    out = {}
    for name, r in score.per_class.iterrows():
        tp, n = int(r["found"]), int(r["n_true"])
        fn, fp = n - tp, false_by_class.get(str(name).casefold(), 0)
        out[str(name)] = {
            "n_true": n, "found": tp, "missed": fn, "false_picks": fp,
            "loc_precision": tp / (tp + fp) if tp + fp else None,
            "loc_recall": tp / n if n else None,
            "loc_f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None,
            "cls_f1": None if not np.isfinite(r["cls_f1"]) else float(r["cls_f1"]),
            "det_f1": None if not np.isfinite(r["det_f1"]) else float(r["det_f1"]),
        }
    return out


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
    from tomoclass.locate import locate

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
                     cfg: dict[str, Any], out_dir: Path, device: str = "auto",
                     **locate_kwargs: Any) -> dict[str, Any]:
    """Locate every validation and test tomogram with the trained run and score the picks.

    With ``val_tomograms`` in the tier, the pick threshold is also chosen on them
    (:func:`tomoclass.evaluate.picks.choose_threshold`, best localization F1 of their picks)
    and each test tomogram's picks are scored at it too (the picks scoring at least it: what
    locating at it gives, since non-maximum suppression keeps picks in decreasing score).

    ``locate_kwargs`` go to :func:`tomoclass.locate.locate` as they are."""
    from tomoclass.evaluate.picks import choose_threshold, threshold_sweep
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
        else:
            log.warning("no picks on the validation tomograms: no threshold chosen")
    per_tomo = []
    for i in bench.tier["test_tomograms"]:
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
                  f"{_f(s['precision'])}, recall {_f(s['recall'])}, F1 {_f(s['f1'])}; "
                  f"classification accuracy among hits {_f(s['classification_accuracy'])}; "
                  f"{t['seconds_locate']:.1f} s to score and pick."
                  + (f" {t['candidates']['n_candidates']} candidates (polarity "
                     f"{t['candidates'].get('polarity', rec['settings'].get('polarity'))}), recall "
                     f"{_f(t['candidates']['recall'])} (share of particles with a candidate "
                     "within their radius)." if t.get("candidates") else ""), "",
                  "| class | group | radius | n | found | false picks | loc F1 | cls F1 (hits) |",
                  "|---|---|---|---|---|---|---|---|"]
        radii = rec["result"]["radii_voxels"]
        for n, g in zip(bench.names, bench.size_groups, strict=True):
            c = t["per_class_localization"].get(n)
            if c is None:
                continue
            lines.append(f"| {n} | {g} | {radii.get(n, 0):.1f} | {c['n_true']} | {c['found']} | "
                         f"{c['false_picks']} | {_f(c['loc_f1'])} | {_f(c['cls_f1'])} |")
        sw = t.get("threshold_sweep_on_test") or []
        if sw:
            lines += ["", "Localization F1 of the picks scoring at least each threshold, read off "
                      "this test tomogram (an upper bound on choosing the threshold, not a "
                      "result): " + ", ".join(f"{r['threshold']:g}: {_f(r['f1'])}" for r in sw)
                      + "."]
        cal = t.get("calibrated")
        if cal:
            c, v = cal["score"], rec["result"]["calibration"]
            lines += ["", f"Threshold chosen on {', '.join(v['val_tomograms'])} (best "
                      f"localization F1 there, {_f(v['f1'])}): {v['threshold']:.4g}. This test "
                      f"tomogram at it: {c['n_picks']} picks, localization precision "
                      f"{_f(c['precision'])}, recall {_f(c['recall'])}, F1 {_f(c['f1'])}."]
        head = "| group | mean loc F1 | min loc F1 | mean cls F1 |"
        lines += ["", head + (" mean loc F1, chosen threshold | min |" if cal else ""),
                  "|---|---|---|---|" + ("---|---|" if cal else "")]
        for g, v in t["size_groups"].items():
            extra = (f" {_f(cal['size_groups'][g]['loc_f1_mean'])} | "
                     f"{_f(cal['size_groups'][g]['loc_f1_min'])} |" if cal else "")
            lines.append(f"| {g} | {_f(v['loc_f1_mean'])} | {_f(v['loc_f1_min'])} | "
                         f"{_f(v['cls_f1_mean'])} |" + extra)
        lines.append("")
    return "\n".join(lines)


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


# -- run alone ---------------------------------------------------------------------------------
def _trained(run_dir: Path, epochs: int) -> bool:
    """True when ``run_dir`` finished ``epochs`` epochs (its metrics.jsonl says so)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return False
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    return bool(rows) and int(rows[-1].get("epoch", 0)) >= epochs


def run_alone(bench, out: Path, work: Path, *, methods: Sequence[str], reuse: bool,
              device: str = "auto", locate_kwargs: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """Simulate, build the 13-class dataset, train and locate, for one tier; returns the
    record written to ``out/results.json`` (and ``out/locate.md``)."""
    import reproduce_table2 as rt

    from tomoclass.simulate import load_class_templates

    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = list(os.getloadavg())
    clock = rt.Clock()
    cfg = settings(bench.raw)
    sim_cfg = rt.simulation_config(bench, bench.dose)
    templates = load_class_templates(sim_cfg)
    radii = template_radii(templates)
    clock.lap("templates")
    written_json = work / "tomograms" / "written.json"
    done = json.loads(written_json.read_text()) if reuse and written_json.is_file() else []
    if done:
        log.info("reusing %d tomograms in %s", len(done), written_json.parent)
    written = rt.simulate(work / "tomograms", templates, sim_cfg,
                          processes=int(bench.tier.get("sim_processes", 1)), done=done)
    if written != done:
        written_json.write_text(json.dumps(written, indent=1))
    clock.lap("simulate")
    ds_dir, run_dir = work / "dataset_locate", work / "runs" / "locate_background"
    epochs = int(bench.tier["epochs"])
    data_rec_path = work / "dataset_locate.json"
    if reuse and _trained(run_dir, epochs) and data_rec_path.is_file():
        data_rec = json.loads(data_rec_path.read_text())
        log.info("reusing the trained run %s", run_dir)
    else:
        if not (reuse and (ds_dir / "manifest.json").is_file() and data_rec_path.is_file()):
            import shutil

            shutil.rmtree(ds_dir, ignore_errors=True)
            _, data_rec = build_dataset(ds_dir, written, bench, sim_cfg, radii, cfg)
            data_rec_path.write_text(json.dumps(data_rec))
        else:
            data_rec = json.loads(data_rec_path.read_text())
        clock.lap("extract_locate")
        from tomoclass.train import fit

        resume = reuse and (run_dir / "checkpoints" / "last.pt").is_file()
        fit(rt.train_config(bench, cfg["model"], cfg["seed"], device=device), ds_dir, run_dir,
            progress=False, resume=resume)
    clock.lap("train")
    machine = rt.machine_record()
    machine["loadavg"] = load_start
    history = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()
               if ln.strip()]
    rec = {
        "benchmark": "shrec12 whole-tomogram localization (benchmarks/shrec12_locate.py)",
        "tier": bench.tier_name,
        "tier_settings": bench.tier,
        "dose": bench.dose,
        "settings": cfg,
        "locate_kwargs": locate_kwargs or {},
        "dataset": data_rec,
        "training_history": history,
        "results": {},
        "machine": machine,
        "git_commit": rt.git_commit(),
        "date_utc": date,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "work_dir": str(work),
    }
    out.mkdir(parents=True, exist_ok=True)

    def write() -> None:  # after every method: a later overrun keeps the earlier results
        rec["seconds"] = dict(clock.seconds)
        rec["machine"]["loadavg_end"] = list(os.getloadavg())
        rt._write_json(out / "results.json", rec)
        (out / "locate.md").write_text(render(rec, bench))

    write()
    for method in methods:
        mcfg = dict(cfg, method=method, **{k: v for k, v in (locate_kwargs or {}).items()
                                            if k in cfg})  # as render() shows them
        mdir = out / method
        mdir.mkdir(parents=True, exist_ok=True)
        rec["results"][method] = locate_and_score(run_dir, written, bench, radii, mcfg, mdir,
                                                  device=device, **(locate_kwargs or {}))
        clock.lap(f"locate_{method}")
        write()
    return rec


def render(rec: dict[str, Any], bench) -> str:
    """``locate.md`` of a :func:`run_alone` record."""
    history, machine = rec["training_history"], rec["machine"]
    text = [f"# shrec12 localization, tier {rec['tier']}", "",
            f"{rec['tier_settings']['reduces'].strip()}", "",
            "Training (validation = the test tomogram's boxes, monitored only): "
            + "; ".join(f"epoch {h.get('epoch')}: val macro F1 "
                        f"{h.get('val_macro_f1', float('nan')):.3f}"
                        for h in history if "epoch" in h) + "."]
    overrides = {k: v for k, v in rec.get("locate_kwargs", {}).items() if k in rec["settings"]}
    for method, r in rec["results"].items():
        text.append(markdown({"settings": dict(rec["settings"], method=method, **overrides),
                              "dataset": rec["dataset"], "result": r}, bench))
    text += ["", "## Time per stage (s)", ""] + [f"- {k}: {v}" for k, v in rec["seconds"].items()]
    text += ["", f"Machine: {machine.get('gpu', 'CPU only')}, {machine['nproc']} CPUs, "
             f"torch {machine['torch']}, load average {machine['loadavg'][0]:.1f} at the start, "
             f"{machine['loadavg_end'][0]:.1f} at the end; commit {rec['git_commit']}; "
             f"{rec['date_utc']}.", ""]
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    root = Path(__file__).resolve().parents[1]
    if str(root / "benchmarks") not in sys.path:
        sys.path.insert(0, str(root / "benchmarks"))
    import reproduce_table2 as rt

    from tomoclass.errors import InputError, TomoclassError

    p = argparse.ArgumentParser(prog="shrec12_locate.py", description=__doc__.split("\n")[0])
    p.add_argument("--tier", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--work", type=Path)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--config", type=Path, default=rt.DEFAULT_CONFIG)
    p.add_argument("--methods", default="candidates",
                   help="comma-separated locate methods (candidates, boxes, stages)")
    p.add_argument("--polarity", choices=("auto", "both", "dark", "bright"),
                   help="candidates: override the YAML's locate.polarity")
    p.add_argument("--reuse", action="store_true",
                   help="keep the scratch folder's tomograms and trained run")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        bench = rt.load_benchmark(args.config, args.tier, args.data_root)
        work = args.work or Path(tempfile.gettempdir()) / f"tomoclass_locate_{args.tier}"
        if not args.reuse:
            work = rt.prepare_work(work)
        elif not work.is_dir():
            raise InputError("--reuse: no scratch folder to reuse", path=work, field="work")
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        rec = run_alone(bench, args.out, work, methods=methods, reuse=args.reuse,
                        device=args.device,
                        locate_kwargs={"polarity": args.polarity} if args.polarity else None)
    except TomoclassError as exc:
        print(f"shrec12_locate.py: error: {exc}", file=sys.stderr)
        return 2
    for method, r in rec["results"].items():
        for t in r["tomograms"]:
            g = t["size_groups"]
            print(f"{method} {t['tomogram']}: loc F1 {_f(t['score']['f1'])}; mean loc F1 "
                  + ", ".join(f"{k} {_f(v['loc_f1_mean'])}" for k, v in g.items())
                  + f"; {t['seconds_locate']:.1f} s")
    print(f"wrote {args.out / 'locate.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    if str(root / "src") not in sys.path:
        try:
            import tomoclass  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(root / "src"))
    sys.exit(main())
