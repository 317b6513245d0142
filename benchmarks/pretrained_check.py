"""Record, and later reproduce, a shipped pretrained model's metric on held-out data (issue 20).

    # reproduce the recorded number of a registered model (minutes on a CPU; not part of the tests):
    python benchmarks/pretrained_check.py --name shrec12-detector --out OUT [--work SCRATCH]
    python benchmarks/pretrained_check.py --name shrec12-classifier --out OUT [--work SCRATCH]
    # measure a trained run, or a registered model without a record, to record its metric
    # (the JSON that `tomoclass models --add-pretrained ... --metrics OUT/check.json` keeps):
    python benchmarks/pretrained_check.py --from-run RUN --which last --kind detector \\
        --tier pretrained_cpu --out OUT
    python benchmarks/pretrained_check.py --name NAME --kind detector --tier pretrained_cpu \\
        --out OUT

Both measure the same thing in the same code, so a registered model reproduces its record
unless its weights, threshold or radii did not travel with the name, or the code changed.

The held-out data is rebuilt from a tier of ``benchmarks/configs/shrec12.yaml`` (simulation is
deterministic: tomogram ``i`` draws from the random stream ``[seed, i]``), the tier the model
was trained on; the test tomogram was never trained on, nor used to choose anything:

- **detector** (background class): the tier's test tomogram is located whole as
  ``tomoclass locate --run NAME --tomogram tomo_002.mrc`` does (method candidates, polarity
  auto, the registered pick threshold and radii; ``--from-run``: the run's calibrated
  threshold and the templates' radii), and the picks are scored SHREC-style against all its
  ground-truth particles with the templates' radii (:func:`tomoclass.evaluate.picks.score_picks`);
- **classifier**: the tier's boxes are extracted (``benchmarks/tier_data.py``) and the test
  split is evaluated as ``tomoclass evaluate --run NAME`` does (macro F1, per class).

``OUT/check.json`` holds the measured values (and, with ``--name``, the recorded ones and
whether they agree within ``--tolerance``; exit status 1 if not). A CPU run takes about 10
minutes for the detector (one 200x512x512 tomogram) and 2 for the classifier.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shrec12 as sb
from shrec12_locate_steps import template_radii
from tier_data import open_work, prepare_data

from tomoclass.errors import InputError, TomoclassError
from tomoclass.provenance import git_commit

log = logging.getLogger("pretrained_check")

#: Keys compared between the record and the reproduction.
COMPARED = {"detector": ("loc_f1", "precision", "recall"), "classifier": ("macro_f1",)}


def measure_detector(model: str, bench, work: Path, out: Path, which: str,
                     given_radii: bool) -> dict[str, Any]:
    """Locate the tier's test tomogram with ``model`` and score the picks."""
    from tomoclass.evaluate.picks import score_picks
    from tomoclass.io import read_particles
    from tomoclass.simulate import load_class_templates
    from tomoclass.workflows.locate import locate

    sim_cfg = sb.simulation_config(bench, bench.dose)
    templates = load_class_templates(sim_cfg)
    radii = template_radii(templates)
    written = sb.simulate(work / "tomograms", templates, sim_cfg,
                          processes=int(bench.tier.get("sim_processes", 1)))
    (i,) = [int(t) for t in bench.tier["test_tomograms"]]
    tomo, truth_file = written[i]["tomogram"], written[i]["ground_truth"]
    name = Path(tomo).stem
    t0 = time.perf_counter()
    res = locate(model, tomo, out / f"{name}_picks.star", which=which, progress=False,
                 method="candidates", polarity="auto",
                 radii=radii if given_radii else None)
    seconds = time.perf_counter() - t0
    truth = read_particles(truth_file, tomogram=name)
    score = score_picks(truth, res.picks, radii)
    (out / f"{name}_score.md").write_text(score.to_markdown())
    per_class = score.per_class
    return {
        "kind": "detector", "tomogram": name, "tomogram_index": i,
        "threshold": res.threshold, "threshold_source": res.threshold_source,
        "radii_voxels_used": res.radii, "radii_voxels_scored": radii,
        "n_true": score.n_true, "n_picks": score.n_picks, "tp": score.tp, "fp": score.fp,
        "fn": score.fn, "precision": _num(score.precision), "recall": _num(score.recall),
        "loc_f1": _num(score.f1),
        "classification_accuracy": _num(score.classification_accuracy),
        "per_class": json.loads(per_class.to_json(orient="index")),
        "seconds_locate": round(seconds, 1),
    }


def measure_classifier(model: str, bench, work: Path, out: Path, which: str) -> dict[str, Any]:
    """Evaluate ``model`` on the tier's test boxes."""
    from tomoclass.workflows.evaluate import evaluate_run

    ds = prepare_data(bench, work)
    t0 = time.perf_counter()
    rep = evaluate_run(model, ds, split="test", which=which, out_dir=out / "evaluation",
                       cam=False, batch_size=int(bench.tier.get("eval_batch_size", 32)))
    m = rep.metrics
    return {
        "kind": "classifier", "split": "test", "n_boxes": int(np.sum(m.support)),
        "macro_f1": _num(rep.macro_f1),
        "f1": {n: _num(v) for n, v in zip(m.class_names, m.f1, strict=True)},
        "group_f1": {g: _num(v) for g, v in m.group_f1().items()},
        "seconds_evaluate": round(time.perf_counter() - t0, 1),
    }


def _num(x: Any) -> float | None:
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None


def compare(recorded: dict[str, Any], got: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """``{key: {recorded, reproduced, difference}}`` and ``agree``."""
    rows, agree = {}, True
    for key in COMPARED[got["kind"]]:
        a, b = recorded.get(key), got.get(key)
        diff = None if a is None or b is None else round(abs(float(a) - float(b)), 6)
        agree &= diff is not None and diff <= tolerance
        rows[key] = {"recorded": a, "reproduced": b, "difference": diff}
    return {"values": rows, "tolerance": tolerance, "agree": bool(agree)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; 0 measured (and reproduced), 1 not reproduced, 2 bad input."""
    p = argparse.ArgumentParser(prog="pretrained_check.py", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--name", help="a registered pretrained model (tomoclass models --pretrained)")
    src.add_argument("--from-run", type=Path, help="a trained run, to record its metric")
    p.add_argument("--which", default="last", help="with --from-run: its checkpoint")
    p.add_argument("--kind", choices=("detector", "classifier"),
                   help="with --from-run (or a --name without a record): what to measure")
    p.add_argument("--tier", help="with --from-run (or a --name without a record): the tier "
                   "it was trained on")
    p.add_argument("--out", required=True, type=Path, help="new folder for check.json and picks")
    p.add_argument("--work", type=Path, help="scratch folder for tomograms and boxes "
                   "(default: a temporary one, removed)")
    p.add_argument("--config", type=Path, default=sb.DEFAULT_CONFIG)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--tolerance", type=float, default=0.005,
                   help="largest |recorded - reproduced| that agrees (default 0.005)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        return _run(args)
    except TomoclassError as exc:
        print(f"pretrained_check.py: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from tomoclass.models.pretrained import get_pretrained

    recorded: dict[str, Any] | None = None
    if args.name:
        entry = get_pretrained(args.name)
        if entry is None:
            raise InputError("no such pretrained model (see tomoclass models --pretrained)",
                             field="name", path=args.name)
        recorded = (entry.metrics or {}).get("recorded")
        if isinstance(recorded, dict) and "tier" in recorded:
            kind, tier = recorded["kind"], recorded["tier"]
        elif args.kind and args.tier:  # measure a registered model that has no record yet
            kind, tier, recorded = args.kind, args.tier, None
        else:
            raise InputError("the entry records no check of this script (metrics.recorded "
                             "with a tier): give --kind and --tier to measure it",
                             field="metrics", path=args.name)
        model, which = args.name, "best"
    else:
        if not (args.kind and args.tier):
            raise InputError("--from-run needs --kind and --tier", field="kind")
        kind, tier, model, which = args.kind, args.tier, str(args.from_run), args.which
    if args.out.exists() and any(args.out.iterdir()):
        raise InputError("output folder exists and is not empty; choose a new --out",
                         path=args.out, field="out")
    bench = sb.load_benchmark(args.config, tier, args.data_root)
    args.out.mkdir(parents=True, exist_ok=True)
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory() as tmp:
        work = open_work(args.work or Path(tmp) / "work")
        if kind == "detector":
            got = measure_detector(model, bench, work, args.out, which,
                                   given_radii=args.name is None)
        else:
            got = measure_classifier(model, bench, work, args.out, which)
    got["tier"] = tier
    rec: dict[str, Any] = {
        **got, "model": model, "checkpoint": which, "git_commit": git_commit(),
        "date_utc": date, "machine": sb.machine_record(),
        "command": " ".join(["python", "benchmarks/pretrained_check.py", *sys.argv[1:]]),
    }
    if recorded is not None:
        rec["check"] = compare(recorded, got, args.tolerance)
    sb.write_json(args.out / "check.json", rec)
    keys = COMPARED[kind]
    print(f"{model}: " + ", ".join(f"{k} {got[k]}" for k in keys)
          + ("; recorded " + ", ".join(f"{k} {recorded.get(k)}" for k in keys)
             + (" - reproduced" if rec["check"]["agree"] else " - NOT reproduced")
             if recorded is not None else "") + f"  ({args.out / 'check.json'})")
    return 0 if recorded is None or rec["check"]["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
