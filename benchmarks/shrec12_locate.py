"""The whole-tomogram task on shrec12 (``reproduce_table2.py --locate``, or alone).

The steps are :mod:`shrec12_locate_steps`'s and the benchmark definition :mod:`shrec12`'s,
both shared with ``reproduce_table2.py``; this script is the driver that runs them alone.

    python benchmarks/shrec12_locate.py --tier cpu_locate --out DIR [--work SCRATCH]
        [--methods candidates[,boxes]] [--reuse] [--device auto]
        [--lr LR] [--set KEY=VALUE ...] [--discard-run]

Run alone, the script does steps 1-3 below for one tier of ``benchmarks/configs/shrec12.yaml``
without the Table 2 runs (simulate the tier's tomograms, build the 13-class dataset, train,
locate each test tomogram with every method listed, score). ``--reuse`` keeps the tomograms
and the trained run of an earlier call in the same scratch folder (a run stopped mid-way is
resumed; tomograms the tier has and the folder lacks are simulated), so that locating again
with other settings does not retrain. Without ``--reuse`` the scratch folder is emptied first,
except that a detector run there (stopped mid-way, or finished and perhaps not yet
registered) is refused (``--reuse`` resumes or reuses it, ``--discard-run`` empties it
anyway): rerunning an interrupted command without ``--reuse`` once threw away an epoch of a
multi-hour run. A tier's ``val_tomograms`` are located too and the
pick threshold with the best localization F1 on them is chosen and applied to the test
tomograms' picks (reported beside the fixed threshold); ``--threshold-only`` stops there,
storing that threshold with the run's last checkpoint (``RUN/locate_threshold.json``, as
``tomoclass score-picks --calibrate`` does) and leaving the test tomograms to
``pretrained_check.py --from-run`` (the way to continue the shipped detector, whose check
locates the test tomogram anyway). ``--lr`` and ``--set`` change the
detector's training config (``--set init=shrec12-detector --set augment=true`` continues the
shipped detector); they are recorded in ``results.json`` (``train_overrides``). ``--out`` must
be new, empty or a folder this script made (it writes fixed names there); ``--work`` likewise.

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
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shrec12 as sb
from shrec12_locate_steps import (
    build_dataset,
    fmt,
    locate_and_score,
    markdown,
    settings,
    template_radii,
)

from tomoclass.errors import InputError, TomoclassError
from tomoclass.io.outputs import check_open_dir, open_dir
from tomoclass.provenance import git_commit
from tomoclass.simulate import load_class_templates

log = logging.getLogger("reproduce_table2.locate")
#: Marker of a results folder made before tomoclass.io.outputs markers (still recognised).
OUT_MARKER = ".tomoclass_locate_out"
#: What this script writes into --out: the record, its table, one folder per method.
OUT_PATTERNS = ("results.json", "locate.md", "*/*")


def _made_here(out: Path) -> bool:
    """An unmarked folder of this script: its old marker, or a results.json it wrote."""
    if (out / OUT_MARKER).exists():
        return True
    try:
        return str(json.loads((out / "results.json").read_text()).get(
            "benchmark", "")).endswith("(benchmarks/shrec12_locate.py)")
    except (OSError, ValueError, AttributeError):
        return False


def check_out(out: Path) -> None:
    """Refuse a results folder this script did not make (kind ``shrec12_locate.py
    results``): it writes fixed names there (``results.json``, ``locate.md``, one folder
    per method), which would replace a user's files."""
    check_open_dir(out, "shrec12_locate.py results", legacy=_made_here)


# -- run alone ---------------------------------------------------------------------------------
def _epochs_done(run_dir: Path) -> int:
    """The last epoch ``run_dir``'s metrics.jsonl records (0: none)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return 0
    rows = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
    return int(json.loads(rows[-1]).get("epoch", 0)) if rows else 0


def _trained(run_dir: Path, epochs: int) -> bool:
    """True when ``run_dir`` finished ``epochs`` epochs (its metrics.jsonl says so)."""
    return _epochs_done(run_dir) >= epochs


def refuse_existing_run(work: Path, epochs: int) -> None:
    """Refuse to empty ``work`` while it holds a detector run (a ``checkpoints/last.pt``).

    Without ``--reuse`` the scratch folder is emptied; its run may be hours of training,
    stopped mid-way or finished but not yet registered (``pretrained_check.py --from-run``
    reads it there), so that needs ``--reuse`` (resume or reuse it) or ``--discard-run``."""
    run_dir = work / "runs" / "locate_background"
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        return
    done = _epochs_done(run_dir)
    what = ("a trained run" if done >= epochs
            else f"a training run stopped after epoch {done} of {epochs}")
    raise InputError(f"holds {what}: --reuse resumes or reuses it, --discard-run deletes it",
                     path=run_dir, field="--work")


def run_alone(bench, out: Path, work: Path, *, methods: Sequence[str], reuse: bool,
              device: str = "auto", locate_kwargs: dict[str, Any] | None = None,
              train_overrides: dict[str, Any] | None = None,
              threshold_only: bool = False) -> dict[str, Any]:
    """Simulate, build the 13-class dataset, train and locate, for one tier; returns the
    record written to ``out/results.json`` (and ``out/locate.md``). ``train_overrides``
    replace fields of the detector's training config (after the tier's own).
    ``threshold_only``: locate only the validation tomograms and store the threshold chosen
    there with the run's last checkpoint (the test tomograms are measured elsewhere)."""
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = list(os.getloadavg())
    clock = sb.Clock()
    cfg = settings(bench.raw)
    sim_cfg = sb.simulation_config(bench, bench.dose)
    templates = load_class_templates(sim_cfg)
    radii = template_radii(templates)
    clock.lap("templates")
    written_json = work / "tomograms" / "written.json"
    done = json.loads(written_json.read_text()) if reuse and written_json.is_file() else []
    if done:
        log.info("reusing %d tomograms in %s", len(done), written_json.parent)
    written = sb.simulate(work / "tomograms", templates, sim_cfg,
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
            shutil.rmtree(ds_dir, ignore_errors=True)
            _, data_rec = build_dataset(ds_dir, written, bench, sim_cfg, radii, cfg)
            data_rec_path.write_text(json.dumps(data_rec))
        else:
            data_rec = json.loads(data_rec_path.read_text())
        clock.lap("extract_locate")
        resume = reuse and (run_dir / "checkpoints" / "last.pt").is_file()
        sb.fit_or_stop(sb.train_config(bench, cfg["model"], cfg["seed"], device=device,
                                       overrides=train_overrides),
                       ds_dir, run_dir, progress=False, resume=resume)
    clock.lap("train")
    machine = sb.machine_record()
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
        "train_overrides": train_overrides or {},
        "threshold_only": threshold_only,
        "dataset": data_rec,
        "training_history": history,
        "results": {},
        "machine": machine,
        "git_commit": git_commit(),
        "date_utc": date,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "work_dir": str(work),
    }
    open_dir(out, "shrec12_locate.py results", patterns=OUT_PATTERNS, legacy=_made_here)

    def write() -> None:  # after every method: a later overrun keeps the earlier results
        rec["seconds"] = dict(clock.seconds)
        rec["machine"]["loadavg_end"] = list(os.getloadavg())
        sb.write_json(out / "results.json", rec)
        (out / "locate.md").write_text(render(rec, bench))

    write()
    for method in methods:
        mcfg = dict(cfg, method=method, **{k: v for k, v in (locate_kwargs or {}).items()
                                            if k in cfg})  # as render() shows them
        mdir = out / method
        mdir.mkdir(parents=True, exist_ok=True)
        rec["results"][method] = locate_and_score(
            run_dir, written, bench, radii, mcfg, mdir, device=device, test=not threshold_only,
            store_threshold=threshold_only, **(locate_kwargs or {}))
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
    p = argparse.ArgumentParser(prog="shrec12_locate.py", description=__doc__.split("\n")[0])
    p.add_argument("--tier", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--work", type=Path)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--config", type=Path, default=sb.DEFAULT_CONFIG)
    p.add_argument("--methods", default="candidates",
                   help="comma-separated locate methods (candidates, boxes, stages)")
    p.add_argument("--polarity", choices=("auto", "both", "dark", "bright"),
                   help="candidates: override the YAML's locate.polarity")
    p.add_argument("--reuse", action="store_true",
                   help="keep the scratch folder's tomograms and trained run (a run "
                        "stopped mid-way resumes)")
    p.add_argument("--discard-run", action="store_true",
                   help="without --reuse, empty the scratch folder even when it holds a "
                        "trained or part-trained detector run (refused otherwise)")
    p.add_argument("--device", default="auto")
    p.add_argument("--lr", type=float,
                   help="the detector's learning rate per batch of the tier's batch size")
    p.add_argument("--set", dest="train_set", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the detector's training config (repeatable; YAML values), "
                        "e.g. init=shrec12-detector, augment=true")
    p.add_argument("--threshold-only", action="store_true",
                   help="after training, locate only the tier's validation tomograms, choose "
                        "the pick threshold there and store it with the run's last "
                        "checkpoint; leave the test tomograms to pretrained_check.py "
                        "--from-run (one method)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        check_out(args.out)  # before anything is made or trained
        bench = sb.load_benchmark(args.config, args.tier, args.data_root)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.threshold_only and not bench.tier.get("val_tomograms"):
            raise InputError(f"tier {args.tier} has no val_tomograms to choose a threshold "
                             "on", field="--threshold-only")
        if args.threshold_only and len(methods) != 1:
            raise InputError("one stored threshold per checkpoint: give one method",
                             field="--methods")
        overrides = sb.probe_overrides(bench, args.lr, args.train_set)
        # a field TrainConfig refuses stops here, before any file is made
        sb.train_config(bench, settings(bench.raw)["model"], 0, overrides=overrides)
        work = args.work or Path(tempfile.gettempdir()) / f"tomoclass_locate_{args.tier}"
        if args.reuse:
            work = sb.check_scratch(work)
        else:
            if not args.discard_run:
                refuse_existing_run(work, int(bench.tier["epochs"]))
            work = sb.prepare_work(work)
        rec = run_alone(bench, args.out, work, methods=methods, reuse=args.reuse,
                        device=args.device,
                        locate_kwargs={"polarity": args.polarity} if args.polarity else None,
                        train_overrides=overrides, threshold_only=args.threshold_only)
    except TomoclassError as exc:
        print(f"shrec12_locate.py: error: {exc}", file=sys.stderr)
        return 2
    for method, r in rec["results"].items():
        cal = r.get("calibration")
        if cal and cal.get("stored_in"):
            print(f"{method}: threshold {cal['threshold']:.6g} chosen on "
                  f"{', '.join(cal['val_tomograms'])} (loc F1 {fmt(cal['f1'])}), stored in "
                  f"{cal['stored_in']}")
        for t in r["tomograms"]:
            g = t["size_groups"]
            print(f"{method} {t['tomogram']}: loc F1 {fmt(t['score']['f1'])}; mean loc F1 "
                  + ", ".join(f"{k} {fmt(v['loc_f1_mean'])}" for k, v in g.items())
                  + f"; {t['seconds_locate']:.1f} s")
    print(f"wrote {args.out / 'locate.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
