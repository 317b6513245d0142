"""Issue 18's small-particle tier: one resumable job per (model, seed), then the aggregate.

    # the full tier, a few runs per session (each run ~30 min on 2 idle cores):
    python benchmarks/small_tier.py --tier small12 --out benchmarks/results/small12 \\
        --work ~/tomoclass_small12 --models dilated_densenet3d --seeds 0-4
    # the tables and figures of whatever runs exist:
    python benchmarks/small_tier.py --tier small12 --out benchmarks/results/small12 --aggregate-only
    # how long a run takes here: one epoch of every model on a reduced synthetic set:
    python benchmarks/small_tier.py --tier small12 --out benchmarks/results --estimate
    # a dose of a calibration sweep (its own --out and --work), then the joint choice:
    python benchmarks/small_tier.py --tier small12 --dose 80 --out R/small12_dose80 \
        --work ~/tomoclass_small12_dose80 --models shrec_cnn,densenet3d,dilated_densenet3d
    python benchmarks/calibrate_tier.py R/small12_dose80 R/small12 R/small12_dose150 --out R
    # several processes sharing one --out (a GPU): the data once, then records only, then the
    # tables (benchmarks/gpu_small12.sh does this):
    python benchmarks/small_tier.py --tier small12 --out R --work W --data-only
    python benchmarks/small_tier.py --tier small12 --out R --work W --models densenet3d \
        --seeds 3 --no-aggregate &   # ... one per (model, seed)
    python benchmarks/small_tier.py --tier small12 --out R --work W --aggregate-only
    # early stopping on a validation tomogram (tiny3_val: monitor val, best.pt scored):
    python benchmarks/small_tier.py --tier tiny3_val --out R/tiny3_val_es3 --work W \
        --seeds 0-2 --set early_stopping_patience=3 --set augment=true
    # plumbing (about a minute):
    python benchmarks/small_tier.py --tier small12_smoke --out /tmp/small_smoke

The tier is defined in ``benchmarks/configs/shrec12.yaml`` (``small12``: the paper's tiny and
small classes plus two medium anchors at 32³). The tomograms and the dataset are made once in
``--work`` and reused by later sessions (a fingerprint of the tier settings decides); every
(model, seed) trains into ``--work/runs/<model>_seed<s>`` (an interrupted run resumes from its
``last.pt``) and, when done, writes ``--out/runs/<model>_seed<s>.json``: per-class F1 of the
final checkpoint on the test tomogram, the per-epoch validation loss / macro F1 / seconds, the
convergence verdict (validation loss flat over the last epochs) and the wall time. A run
whose JSON exists is skipped. The aggregate (:func:`tomoclass.evaluate.tier.aggregate_tier`)
writes ``summary.json``, ``table.md``, ``fig4a.png``, ``time_f1.png`` and ``curves.png`` (every
run's validation loss and macro F1 per epoch) into ``--out``.

A tier's "validation" is its test tomogram, only watched, unless it says ``monitor: val``: then
its ``val_tomograms`` are extracted as the val split and monitored, so that early stopping
(``--set early_stopping_patience=N``) and ``evaluate_checkpoint: best`` (``best.pt``, the epoch
of the best validation macro F1) choose nothing on the test boxes.
"""

from __future__ import annotations

import argparse
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

import numpy as np
from shrec12 import (
    DEFAULT_CONFIG,
    EXTRA_MODELS,
    MODELS,
    Benchmark,
    evaluate,
    fit_or_stop,
    load_benchmark,
    machine_record,
    parse_settings,  # noqa: F401  (part of this script's interface: --set)
    probe_overrides,
    run_record,
    train_config,
    write_json,
)
from tier_data import (
    data_fingerprint,
    existing_dataset,
    open_work,
    parse_seeds,
    prepare_data,
    read_protocol,
    start_run,
)

from tomoclass.data import open_dataset
from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.baseline import baseline_record, class_mean_baseline
from tomoclass.evaluate.compare import read_metrics_log
from tomoclass.evaluate.seeds import format_mean_sd
from tomoclass.evaluate.tier import aggregate_tier, load_run_records, run_convergence
from tomoclass.evaluate.tier_report import (
    plot_accuracy_vs_time,
    plot_tier_curves,
    plot_tier_groups,
    tier_markdown,
)
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import check_open_dir, open_dir
from tomoclass.provenance import git_commit
from tomoclass.train.config import complete_plan

log = logging.getLogger("small_tier")

ORDER = (*MODELS, *EXTRA_MODELS)


def training_plan(bench: Benchmark, preset_name: str, epochs: int,
                  overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the tier's runs train with (lr, schedule, warm-up, batch, augmentation, precise
    BN, ...), as the dilated net's seed-0 config; the preset's per-model overrides (SHREC-CNN's
    lr) and the tier's ``train_overrides`` apply on top of it."""
    plan = train_config(bench, "dilated_densenet3d", 0, epochs=epochs, preset_name=preset_name,
                        overrides=overrides).model_dump(mode="json")
    for k in ("seed", "device", "num_workers", "model", "model_kwargs", "checkpoint_every"):
        plan.pop(k, None)
    return plan


#: Files small_tier.py writes into its results folder (a user's README beside them is kept).
RESULT_PATTERNS = ("protocol.json", "runs/*.json", "summary.json", "table.md", "*.png")


def check_results_folder(out: Path, *, must_exist: bool, make: bool = False) -> None:
    """Refuse a results folder this script did not make (kind ``small_tier.py results``): it
    writes fixed names there (``table.md``, ``summary.json``, figures), which would replace a
    user's files. Folders of this script from before the package's markers are recognised by
    their ``protocol.json``. ``make`` creates (and marks) a new folder."""
    def made_here(folder: Path) -> bool:
        return (folder / "protocol.json").is_file()

    if must_exist and not made_here(out):
        raise InputError("no small_tier.py results here (no protocol.json): nothing to "
                         "aggregate", path=out, field="--out")
    if make:
        open_dir(out, "small_tier.py results", patterns=RESULT_PATTERNS, legacy=made_here)
    else:
        check_open_dir(out, "small_tier.py results", legacy=made_here)


def protocol(bench: Benchmark, preset_name: str, epochs: int,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a results folder's runs share: tier, preset, length, training plan, data, and the
    tier's per-model ``train_overrides`` (recorded only when the tier has some, so that the
    folders of tiers without them keep their protocol)."""
    want: dict[str, Any] = {"tier": bench.tier_name, "preset": preset_name, "epochs": epochs,
                            "classes": bench.names,
                            "train": training_plan(bench, preset_name, epochs, overrides),
                            "data": data_fingerprint(bench)}
    per_model = {m: bench.train_overrides(m) for m in ORDER if bench.train_overrides(m)}
    if per_model:
        want["train_overrides"] = per_model
    return json.loads(json.dumps(want, default=str))


def check_protocol(out: Path, bench: Benchmark, preset_name: str, epochs: int,
                   overrides: dict[str, Any] | None = None, *, write: bool = True) -> None:
    """Refuse to mix runs of another tier, preset, length, schedule or data in one folder;
    a new folder gets the protocol written (unless ``write`` is false: a check only)."""
    want = protocol(bench, preset_name, epochs, overrides)
    path = out / "protocol.json"
    check_results_folder(out, must_exist=False, make=write)
    if path.exists():
        have = json.loads(path.read_text())
        if isinstance(have.get("train"), dict):  # fields added to TrainConfig since
            have["train"] = complete_plan(have["train"], want["train"])
        if have != want:
            diff = sorted(k for k in {*want, *have} if have.get(k) != want.get(k))
            raise InputError(f"the results folder holds runs of another protocol (differs in "
                             f"{', '.join(diff)}); use another --out", path=path,
                             field="protocol")
        return
    if write:
        write_json(path, want)


def results_dose(out: Path, given: float | None, default: float) -> float:
    """The dose a results folder's runs were made at (its ``protocol.json``), so that
    ``--aggregate-only`` finds the baseline's dataset of that dose without ``--dose``; a
    ``--dose`` that contradicts it is refused. ``default`` when the folder records none."""
    path = out / "protocol.json"
    fallback = default if given is None else float(given)
    if not path.is_file():
        return fallback
    have = read_protocol(path)[1]
    if have is None:
        return fallback
    if given is not None and float(given) != have:
        raise InputError(f"the runs here were made at {have:g} e/A^2, not --dose {given:g}",
                         path=path, field="data.dose")
    return have


def run_one(bench: Benchmark, model: str, seed: int, ds_dir: Path, work: Path, out: Path, *,
            preset_name: str, epochs: int, device: str = "auto",
            overrides: dict[str, Any] | None = None) -> Path | None:
    """Train, evaluate and record one (model, seed); None when its record already exists."""
    res = out / "runs" / f"{model}_seed{seed}.json"
    if res.exists():
        log.info("%s seed %d: done before (%s), skipped", model, seed, res)
        return None
    run_dir = work / "runs" / f"{model}_seed{seed}"
    cfg = train_config(bench, model, seed, epochs=epochs, device=device,
                       preset_name=preset_name, overrides=overrides)
    resume = start_run(run_dir, cfg)  # refuses a checkpoint of another plan
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load = list(os.getloadavg())
    t0 = time.perf_counter()
    fit_or_stop(cfg, ds_dir, run_dir, resume=resume, progress=False)
    wall = time.perf_counter() - t0
    rep = evaluate(run_dir, ds_dir, bench, device=device)
    rec = run_record(rep, run_dir, bench)
    hist = read_metrics_log(run_dir / "metrics.jsonl")
    rec.update({
        "model": model, "seed": seed, "tier": bench.tier_name, "preset": preset_name,
        "epochs": [{k: h.get(k) for k in ("epoch", "train_loss", "val_loss", "val_macro_f1",
                                         "lr", "epoch_seconds", "samples_per_s")}
                   for h in hist],
        "wall_seconds_this_session": round(wall, 1), "resumed": resume,
        "train_config": cfg.model_dump(mode="json"),
        "machine": {**machine_record(), "loadavg": load, "loadavg_end": list(os.getloadavg())},
        "git_commit": git_commit(), "date_utc": date,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    })
    rec["convergence"] = run_convergence(rec)
    write_json(res, rec)
    log.info("%s seed %d: macro F1 %.3f, %s, %.0f s", model, seed, rec["macro_f1"],
             "converged" if rec["convergence"]["converged"] else "NOT converged", wall)
    return res


def dataset_baseline(ds_dir: Path) -> dict[str, Any]:
    """The nearest-class-mean baseline's record on a dataset's test boxes (no training;
    :mod:`tomoclass.evaluate.baseline`)."""
    return baseline_record(class_mean_baseline(open_dataset(ds_dir)))


def aggregate(out: Path, bench: Benchmark, work: Path | None = None) -> dict[str, Any]:
    """Summary JSON, Markdown table and figures of every run record in ``out/runs``.

    With the tier's dataset in ``work``, the table also gets the nearest-class-mean baseline
    on the test boxes (seconds; :mod:`tomoclass.evaluate.baseline`).
    """
    agg = aggregate_tier(load_run_records(out / "runs"), bench.names)
    ds = existing_dataset(bench, work) if work is not None else None
    if ds is not None:
        agg["baseline"] = dataset_baseline(ds)
    else:
        log.info("no dataset of this tier in %s: the table has no baseline row", work)
    agg["tier"] = bench.tier_name
    agg["tier_settings"] = bench.tier
    agg["classes"] = [{"name": n, "size_group": g} for n, g in
                      zip(bench.names, bench.size_groups, strict=True)]
    agg["git_commit"] = git_commit()
    agg["date_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json(out / "summary.json", agg)
    title = f"Small-particle tier `{bench.tier_name}` (shrec12 classes {', '.join(bench.names)})"
    text = tier_markdown(agg, bench.names, bench.size_groups, title=title,
                         paper_f1=bench.paper_f1(), models=ORDER)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(text)
    plot_tier_groups(agg, out / "fig4a.png", f"Fig. 4A, tier {bench.tier_name}", models=ORDER)
    plot_accuracy_vs_time(agg, out / "time_f1.png", f"Accuracy vs time, {bench.tier_name}")
    plot_tier_curves(agg, out / "curves.png", f"Validation curves per run, {bench.tier_name}",
                     models=ORDER)
    return agg


def estimate(bench: Benchmark, models: Sequence[str], boxes: int, out: Path, work: Path,
             device: str = "cpu", epochs_timed: int = 1) -> dict[str, Any]:
    """Time epochs of each model on ``boxes`` random 32³ boxes; extrapolate to the tier.

    The epochs run through :func:`tomoclass.train.fit` (the real loop: loader, Adam, the
    tier's preset and batch); the last one's samples/s is used (with ``epochs_timed`` 2 the
    first epoch's one-off costs, such as oneDNN kernel creation, are left out). Evaluation
    speed is timed on the same boxes in eval mode.
    """
    import pandas as pd
    import torch

    from tomoclass.data import ClassMap, write_dataset
    from tomoclass.models import get_model

    k = len(bench.names)
    rng = np.random.default_rng(0)
    labels = np.arange(boxes) % k
    ds = write_dataset(
        work / "estimate_dataset", rng.standard_normal((boxes, bench.box, bench.box, bench.box)
                                                       ).astype(np.float32),
        pd.DataFrame({"tomogram": "t0", "x": 0.0, "y": 0.0, "z": np.arange(boxes, dtype=float),
                      "class_name": [bench.names[i] for i in labels], "rot": np.nan,
                      "tilt": np.nan, "psi": np.nan, "score": np.nan, "is_protein": True,
                      "split": ["train"] * (boxes - k) + ["test"] * k}),
        ClassMap(bench.names, bench.size_groups), 10.0)
    n_train = int(bench.tier.get("max_per_class_per_tomogram") or 0) * k * len(
        bench.tier["train_tomograms"])
    n_test = int(bench.tier.get("max_per_class_per_tomogram") or 0) * k * len(
        bench.tier["test_tomograms"])
    epochs = int(bench.tier["epochs"])
    res: dict[str, Any] = {"tier": bench.tier_name, "boxes": boxes, "box": bench.box,
                           "epochs_timed": epochs_timed, "loadavg_start": list(os.getloadavg()),
                           "tier_train_boxes": n_train, "tier_test_boxes": n_test,
                           "tier_epochs": epochs, "torch_threads": torch.get_num_threads(),
                           "machine": machine_record(), "git_commit": git_commit(),
                           "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(
                               timespec="seconds"), "models": {}}
    for model in models:
        run_dir = work / f"estimate_{model}"
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = train_config(bench, model, 0, epochs=epochs_timed, device=device)
        fit_or_stop(cfg, ds, run_dir, progress=False, check_resources=False)
        hist = read_metrics_log(run_dir / "metrics.jsonl")[-1]
        net = get_model(model, num_classes=k, **bench.model_kwargs(model)).eval()
        x = torch.randn(min(boxes, 32), 1, bench.box, bench.box, bench.box)
        with torch.inference_mode():
            net(x[:2])
            t0 = time.perf_counter()
            net(x)
            eval_sps = len(x) / (time.perf_counter() - t0)
        train_sps = float(hist["samples_per_s"])
        epoch_s = n_train / train_sps + n_test / eval_sps
        res["models"][model] = {
            "train_samples_per_s": round(train_sps, 2), "eval_samples_per_s": round(eval_sps, 2),
            "measured_epoch_seconds": round(float(hist["epoch_seconds"]), 1),
            "tier_epoch_seconds_extrapolated": round(epoch_s, 1),
            "tier_run_minutes_extrapolated": round(epoch_s * epochs / 60, 1),
            "epochs_in_30_minutes": round(1800 / epoch_s, 1)}
        log.info("%s: %s", model, res["models"][model])
    res["loadavg_end"] = list(os.getloadavg())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    write_json(out / f"small_tier_estimate_{bench.tier_name}_{stamp}.json", res)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="small_tier.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", default="small12", help="tier of the benchmark YAML")
    p.add_argument("--out", required=True, type=Path, help="results folder (small files)")
    p.add_argument("--work", type=Path, help="scratch folder kept between sessions "
                   "(default <tmp>/tomoclass_small_tier_<tier>)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--models", help="comma-separated (default: the tier's seeds: keys)")
    p.add_argument("--seeds", type=parse_seeds, help="e.g. 0-4 (default: the tier's)")
    p.add_argument("--preset", help="train preset (default: the tier's, else 'default')")
    p.add_argument("--epochs", type=int, help="override the tier's epochs")
    p.add_argument("--lr", type=float,
                   help="learning rate per batch of the tier's batch size for every run of "
                        "this call, replacing the preset's and the tier's (a probe: it is "
                        "recorded in protocol.json, so it needs its own --out)")
    p.add_argument("--set", dest="train_set", action="append", default=[], metavar="KEY=VALUE",
                   help="a training config field for every run of this call (repeatable, "
                        "e.g. batch_size=4; YAML values): a probe, recorded in protocol.json "
                        "like --lr")
    p.add_argument("--dose", type=float,
                   help="total dose per tilt series in e/A^2 instead of the benchmark's frozen "
                        "one (a calibration sweep: one --out and one --work per dose; "
                        "benchmarks/calibrate_tier.py compares the folders)")
    p.add_argument("--device", default="auto")
    what = p.add_mutually_exclusive_group()  # what a call does besides (or instead of) training
    what.add_argument("--aggregate-only", action="store_true",
                      help="only the tables and figures (at the dose in --out/protocol.json)")
    what.add_argument("--no-aggregate", action="store_true",
                      help="train and record only, no tables or figures (for several calls "
                           "sharing one --out at once; aggregate afterwards with "
                           "--aggregate-only)")
    what.add_argument("--data-only", action="store_true",
                      help="make (or find) the tier's dataset in --work and print the "
                           "nearest-class-mean baseline on its test boxes (identical data give "
                           "an identical baseline), then stop; nothing is written to --out")
    what.add_argument("--estimate", action="store_true",
                      help="time one epoch per model on --boxes random boxes and extrapolate")
    p.add_argument("--boxes", type=int, default=48, help="with --estimate (default 48)")
    p.add_argument("--epochs-timed", type=int, default=2,
                   help="with --estimate: epochs run, the last one timed (default 2)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    import tempfile

    try:
        bench = load_benchmark(args.config, args.tier, args.data_root)
        if args.dose is not None:
            if not args.dose > 0:
                raise InputError(f"must be > 0, got {args.dose}", field="--dose")
            bench.dose = float(args.dose)
        if args.aggregate_only:
            bench.dose = results_dose(args.out, args.dose, bench.dose)
        models = ([m.strip() for m in args.models.split(",") if m.strip()] if args.models
                  else [m for m in ORDER if bench.seeds(m)])
        unknown = [m for m in models if m not in ORDER]
        if unknown:
            raise InputError(f"unknown models {unknown} (known: {', '.join(ORDER)})",
                             field="--models")
        preset_name = str(args.preset or bench.tier.get("preset")
                          or (bench.raw.get("train") or {}).get("preset", "default"))
        epochs = int(args.epochs or bench.tier["epochs"])
        overrides = probe_overrides(bench, args.lr, args.train_set)
        if not (args.aggregate_only or args.estimate or args.data_only):
            # refuse before making anything
            check_protocol(args.out, bench, preset_name, epochs, overrides, write=False)
        dose_tag = "" if args.dose is None else f"_dose{args.dose:g}"
        work = open_work(args.work or Path(tempfile.gettempdir())
                         / f"tomoclass_small_tier_{args.tier}{dose_tag}")
        if args.estimate:
            estimate(bench, models, args.boxes, args.out, work,
                     device="cpu" if args.device == "auto" else args.device,
                     epochs_timed=args.epochs_timed)
            return 0
        if args.data_only:
            ds_dir = prepare_data(bench, work)
            b = dataset_baseline(ds_dir)
            print(f"dataset {ds_dir}: nearest-class-mean baseline macro F1 {b['macro_f1']:.3f}")
            return 0
        if not args.aggregate_only:
            check_protocol(args.out, bench, preset_name, epochs, overrides)
            ds_dir = prepare_data(bench, work)
            for model in models:
                for seed in args.seeds if args.seeds is not None else bench.seeds(model):
                    run_one(bench, model, seed, ds_dir, work, args.out, preset_name=preset_name,
                            epochs=epochs, device=args.device, overrides=overrides)
        if args.no_aggregate:
            return 0
        if args.aggregate_only:
            check_results_folder(args.out, must_exist=True)
        agg = aggregate(args.out, bench, work)
    except TomoclassError as exc:
        print(f"small_tier.py: error: {exc}", file=sys.stderr)
        return 2
    for m, pm in agg["summary"]["per_model"].items():
        c = agg["convergence"][m]
        peak = sum(bool(r.get("flat_at_peak_lr")) for r in c["runs"].values())
        print(f"{m}: macro F1 {format_mean_sd(pm['macro_f1'])} over seeds {pm['seeds']}; "
              f"validation loss flat at the end {c['n_converged']}/{c['n']}, "
              f"at the peak rate {peak}/{c['n']}")
    if agg["paired"]:
        d = agg["paired"]["macro"]
        print(f"dilated - plain macro F1: {format_mean_sd(d)} (seeds {d['seeds']}, paired t p = "
              f"{d['p_t']}, Wilcoxon p = {d['p_wilcoxon']})")
    if agg.get("baseline"):
        b = agg["baseline"]
        print(f"nearest-class-mean baseline (no training): macro F1 {b['macro_f1']:.3f}, "
              + ", ".join(f"{g} {v:.3f}" for g, v in b["group_f1"].items() if v is not None))
    print(f"wrote {args.out / 'table.md'} and {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
