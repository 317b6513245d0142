"""Train the demo's shipped models: the paper's DenseNets on the demo phantoms, several seeds.

    # train (resumable: rerun the same command), evaluate, aggregate:
    python benchmarks/demo_models.py --out benchmarks/results/demo_models \\
        --work ~/tomoclass_demo_models
    # then ship them inside the package (the demo evaluates every demo-phantoms-* model):
    python benchmarks/demo_models.py --out benchmarks/results/demo_models \\
        --work ~/tomoclass_demo_models --register src/tomoclass/models/pretrained_weights
    # reproduce every shipped model's recorded test F1 by name (exit 1 beyond --tolerance):
    python benchmarks/demo_models.py --out OUT --work ~/tomoclass_demo_models --check
    # plumbing (about a minute):
    python benchmarks/demo_models.py --out /tmp/dm --work /tmp/dm_work --smoke

Issue 18, item 3: ``make demo`` must tell the truth in ~10 minutes on a CPU, where a paper net
cannot be trained to convergence. So the demo evaluates converged models trained here, on
tomograms it simulates afresh (another seed than these), beside a short run that shows the loop.

Data: :class:`tomoclass.workflows.demo.DemoConfig` (the demo's classes, tomogram size, dose and
32³ boxes) with seed ``--data-seed`` (1000; the demo uses 0) and ``--n-train`` training
tomograms, 1 validation and 2 test tomograms. Training: the ``default`` preset at batch 16
(lr 1e-3), ``--epochs`` epochs with the lr x0.1 after ``--lr-step`` epochs, no augmentation,
a checkpoint every epoch; the last checkpoint is evaluated on the test tomograms. Every
(model, seed) trains into ``--work/runs/<model>_seed<s>`` (resumed from ``last.pt``) and writes
``--out/runs/<model>_seed<s>.json`` (per-class F1, the per-epoch curve, convergence verdict,
wall time, machine, commit); a run whose JSON exists is skipped. ``--out/summary.json`` and
``table.md`` hold the mean ± s.d. over seeds and the paired dilated - plain difference.
``--register DIR`` copies every recorded run into pretrained directory DIR as
``demo-phantoms-<model>-s<seed>`` (weights only, checksum), with its test record.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shrec12 import fit_or_stop, machine_record, write_json
from tier_data import open_work, parse_seeds, start_run

from tomoclass.errors import TomoclassError
from tomoclass.evaluate.compare import read_metrics_log
from tomoclass.evaluate.tier import report_record, run_convergence
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import open_dir
from tomoclass.provenance import git_commit
from tomoclass.train import preset
from tomoclass.workflows.demo import (
    SHIPPED_PREFIX,
    DemoConfig,
    shipped_markdown,
    simulate_demo_data,
    summarize_demo_runs,
)
from tomoclass.workflows.evaluate import evaluate_run

log = logging.getLogger("demo_models")

MODELS = ("dilated_densenet3d", "densenet3d")
#: What this script writes into --out (records, table, the --check evaluations).
OUT_PATTERNS = ("runs/*", "summary.json", "table.md", "check.json", "check/*")
#: The DemoConfig fields that decide the simulated data and its split.
DATA_FIELDS = ("classes", "shape_zyx", "n_particles", "n_train", "n_val", "n_test",
               "voxel_size_angstrom", "dose_e_per_angstrom2", "box", "border", "seed")


def data_config(args: argparse.Namespace) -> DemoConfig:
    """The demo's data with the training seed and split sizes (smoke: tiny tomograms)."""
    cfg = DemoConfig(seed=args.data_seed, n_train=args.n_train, n_val=1, n_test=2)
    if args.smoke:
        cfg = dataclasses.replace(cfg, shape_zyx=(64, 96, 96), n_particles=40, n_train=1,
                                  n_test=1, classes=("globule", "rod", "ring6"))
    return cfg


def prepare(work: Path, cfg: DemoConfig) -> Path:
    """Simulate and extract once; reuse while the data config is unchanged."""
    data_dir, stamp = work / "data", work / "data.json"
    want = json.loads(json.dumps(dataclasses.asdict(cfg), default=list))
    have = json.loads(stamp.read_text()) if stamp.exists() else {}
    if all(have.get(k) == want[k] for k in DATA_FIELDS):
        log.info("reusing the data in %s", data_dir)
        return data_dir / "dataset"
    if data_dir.exists():
        shutil.rmtree(data_dir)  # our own scratch folder, made by an older data config
    data_dir.mkdir(parents=True)
    data = simulate_demo_data(data_dir, cfg)
    log.info("data: %d boxes (%s)", data.extract.n_written, data.seconds)
    write_json(stamp, want)
    return data.dataset


def train_config(model: str, seed: int, args: argparse.Namespace):
    """The shipped models' protocol (see the module docstring)."""
    smoke = {"growth_rate": 4, "layers_per_block": 2}
    if model == "dilated_densenet3d":
        smoke["dilations"] = [1, 2]
    return preset("default", model=model, seed=seed, epochs=args.epochs,
                  batch_size=4 if args.smoke else 16, lr_step_epochs=args.lr_step,
                  checkpoint_every=1, augment=False, num_workers=0, device=args.device,
                  model_kwargs=smoke if args.smoke else {})


def run_one(model: str, seed: int, ds: Path, args: argparse.Namespace) -> Path | None:
    """Train, evaluate and record one (model, seed); None when recorded before."""
    res = args.out / "runs" / f"{model}_seed{seed}.json"
    if res.exists():
        log.info("%s seed %d: recorded before, skipped", model, seed)
        return None
    run_dir = args.work / "runs" / f"{model}_seed{seed}"
    cfg = train_config(model, seed, args)
    resume = start_run(run_dir, cfg)  # refuses a checkpoint of another plan
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load = list(os.getloadavg())
    t0 = time.perf_counter()
    fit_or_stop(cfg, ds, run_dir, resume=resume, progress=False)
    wall = time.perf_counter() - t0
    rep = evaluate_run(run_dir, ds, split="test", which="last", cam=False, device=args.device)
    hist = read_metrics_log(run_dir / "metrics.jsonl")
    rec = {**report_record(rep), "model": model, "seed": seed, "run_dir": str(run_dir),
           "epochs": [{k: h.get(k) for k in ("epoch", "train_loss", "val_loss",
                                             "val_macro_f1", "lr", "epoch_seconds",
                                             "samples_per_s")} for h in hist],
           "train_seconds": round(sum(float(h.get("epoch_seconds") or 0) for h in hist), 1),
           "wall_seconds_this_session": round(wall, 1), "resumed": resume,
           "train_config": cfg.model_dump(mode="json"),
           # the data only: DemoConfig's epochs/batch_size/models are the demo's own short
           # run, not these models' training (train_config holds that)
           "data": {k: v for k, v in dataclasses.asdict(data_config(args)).items()
                    if k in DATA_FIELDS},
           "machine": {**machine_record(), "loadavg": load, "loadavg_end": list(os.getloadavg()),
                       "torch_threads_env": os.environ.get("OMP_NUM_THREADS")},
           "git_commit": git_commit(), "date_utc": date,
           "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    rec["convergence"] = run_convergence(rec)
    write_json(res, rec)
    log.info("%s seed %d: test macro F1 %.3f, %s, %.0f s", model, seed, rec["macro_f1"],
             "converged" if rec["convergence"]["converged"] else "NOT converged", wall)
    return res


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every ``runs/*.json`` of the results folder."""
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def aggregate(out: Path) -> dict[str, Any]:
    """summary.json and table.md from the recorded runs."""
    records = load_records(out)
    summary = summarize_demo_runs({(r["model"], r["seed"]): r for r in records})
    summary["convergence"] = {f"{r['model']}_seed{r['seed']}": r["convergence"]["converged"]
                              for r in records}
    write_json(out / "summary.json", summary)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(shipped_markdown(summary) + "\n")
    return summary


def register(out: Path, directory: Path) -> list[str]:
    """Copy every recorded run into pretrained directory ``directory`` (names not yet there)."""
    from tomoclass.models.pretrained import get_pretrained
    from tomoclass.train.pretrained import register_run

    done = []
    summary = json.loads((out / "summary.json").read_text())
    for rec in load_records(out):
        name = f"{SHIPPED_PREFIX}-{rec['model']}-s{rec['seed']}"
        have = get_pretrained(name)
        if have is not None and Path(have.directory).resolve() == directory.resolve():
            log.info("%s: registered before", name)
            continue
        with atomic_path(out / "runs" / f".{name}.metrics.json") as tmp:
            tmp.write_text(json.dumps({"test_on_training_simulation": {
                k: rec[k] for k in ("macro_f1", "group_f1", "f1", "n_test")},
                "seed_summary": summary["per_model"].get(rec["model"], {}).get("macro_f1"),
                "dilated_minus_plain": summary.get("dilated_minus_plain"),
                "convergence": rec["convergence"], "train_seconds": rec["train_seconds"],
                "data": rec["data"], "train_config": rec["train_config"]}))
        register_run(rec["run_dir"], name, which="last", directory=directory,
                     metrics_file=str(out / "runs" / f".{name}.metrics.json"),
                     training_command=rec["command"],
                     description=f"{rec['model']} seed {rec['seed']} on the demo phantoms "
                                 f"(benchmarks/demo_models.py, data seed "
                                 f"{rec['data']['seed']}); what `tomoclass demo` evaluates")
        (out / "runs" / f".{name}.metrics.json").unlink()
        done.append(name)
    return done


def check(args: argparse.Namespace) -> int:
    """Evaluate every registered demo model by name on its recorded test split; 1 if any
    macro F1 differs from the recorded one by more than ``--tolerance``."""
    from tomoclass.models.pretrained import get_pretrained
    from tomoclass.workflows.demo import shipped_models

    rows, bad = [], 0
    for (model, seed), name in shipped_models(SHIPPED_PREFIX).items():
        entry = get_pretrained(name)
        recorded = entry.metrics["recorded"]["test_on_training_simulation"]["macro_f1"]
        cfg = DemoConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in entry.metrics["recorded"]["data"].items()
                            if k in DATA_FIELDS})
        ds = prepare(args.work, cfg)
        rep = evaluate_run(name, ds, split="test", out_dir=args.out / "check" / name,
                           cam=False, device=args.device)
        ok = abs(rep.macro_f1 - recorded) <= args.tolerance
        bad += not ok
        rows.append({"name": name, "model": model, "seed": seed, "recorded": recorded,
                     "measured": float(rep.macro_f1), "ok": ok})
        log.info("%s: recorded %.4f, measured %.4f %s", name, recorded, rep.macro_f1,
                 "ok" if ok else "DIFFERS")
    write_json(args.out / "check.json", {"tolerance": args.tolerance, "models": rows,
                                         "git_commit": git_commit(),
                                         "machine": machine_record()})
    return 1 if bad or not rows else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="results folder (small files)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder (data, runs)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr-step", type=int, default=4, help="lr x0.1 after this many epochs")
    p.add_argument("--n-train", type=int, default=4, help="training tomograms")
    p.add_argument("--data-seed", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument("--aggregate-only", action="store_true")
    p.add_argument("--register", type=Path, metavar="DIR",
                   help="register the recorded runs as pretrained models in DIR")
    p.add_argument("--check", action="store_true",
                   help="reproduce the shipped models' recorded test F1 by name")
    p.add_argument("--tolerance", type=float, default=0.005)
    p.add_argument("--smoke", action="store_true", help="tiny data and nets: plumbing only")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        # fixed names (summary.json, table.md, check.json) go into --out: only a new or
        # empty folder, or one this script made
        open_dir(args.out, "demo_models.py results", patterns=OUT_PATTERNS,
                 legacy=lambda folder: any((folder / f).is_file()
                                           for f in ("summary.json", "check.json")))
        # prepare() and run_one() replace stale data and runs inside --work: only in a
        # scratch folder these scripts made (a foreign non-empty one is refused)
        args.work = open_work(args.work)
        if args.check:
            return check(args)
        if not args.aggregate_only:
            ds = prepare(args.work, data_config(args))
            for model in args.models.split(","):
                for seed in parse_seeds(args.seeds):
                    run_one(model, seed, ds, args)
        aggregate(args.out)
        if args.register:
            for name in register(args.out, args.register):
                print(f"registered {name} in {args.register}")
    except TomoclassError as exc:
        print(f"demo_models: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
