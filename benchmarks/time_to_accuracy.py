"""Minutes for the dilated net to reach a stated macro F1 on a tier, per training variant.

    python benchmarks/time_to_accuracy.py --tier small12 --target-f1 0.6 \\
        --variants default,plain --work ~/tomoclass_small12 --out benchmarks/results
    # also: the CLI's default (with augmentation), a larger batch, memory-efficient mode
    python benchmarks/time_to_accuracy.py --tier small12 --target-f1 0.6 \\
        --variants default,default+augment,plain,plain+batch32,default+memory_efficient+batch64 ...
    # plumbing (about a minute):
    python benchmarks/time_to_accuracy.py --tier small12_smoke --target-f1 0.2 --max-epochs 2 \\
        --variants default,plain --out /tmp/tta --work /tmp/tta_work

Issue 18, item 4. A variant is a train preset (``default``, ``plain``, ``paper``) followed by
``+`` modifiers: ``augment`` (wedge-preserving augmentation on, as ``tomoclass train`` has it;
the tier otherwise follows the benchmark's ``train.augment: false``), ``batchN`` (global
batch N; the preset's lr rule applies), ``stepN`` (the rate x ``lr_gamma`` every N epochs
instead of the tier's: ``default+step100`` keeps the peak rate, to see where the loss
flattens), ``memory_efficient`` (the DenseNet's checkpointed dense layers), ``precisebn``
(the ``default`` preset's precise BN added: ``plain+precisebn`` is the plain loop scored with
BN statistics that match its weights, the floor without the eval-mode lag) and ``nowarmup``
(no warm-up: ``default+nowarmup`` isolates the warm-up among the default's choices). The dilated net
(``--model``) trains one epoch at a time on the tier's
training tomograms (resumed from ``last.pt``, so the schedule is that of one long run),
the test tomogram is scored after every epoch (monitored only), and the run stops at the
first epoch whose macro F1 reaches ``--target-f1`` or at ``--max-epochs``. Minutes to the
target count the training and validation wall time of the epochs (not data preparation).
``--run-to-max`` goes on to ``--max-epochs`` after the target (the curve then shows the plateau).
A variant resumes across calls (its finished epochs in ``RUN/tta_curve.json``): a later call with
a larger ``--max-epochs`` goes on from there. One JSON per call,
``OUT/time_to_accuracy_<tier>_<model>_seed<s>_<date>.json``, rewritten after every epoch
(``"complete": false`` until the end), so an interrupted call keeps what it measured.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shrec12 import (
    DEFAULT_CONFIG,
    Benchmark,
    fit_or_stop,
    load_benchmark,
    machine_record,
    train_config,
    write_json,
)
from tier_data import open_work, prepare_data, start_run

from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.compare import read_metrics_log
from tomoclass.evaluate.tier import curve_convergence, run_convergence
from tomoclass.evaluate.variants import (
    curve_from_run_record,
    plot_variant_curves,
    variants_markdown,
)
from tomoclass.io.atomic import atomic_path
from tomoclass.provenance import git_commit
from tomoclass.train import PRESETS, TrainConfig

log = logging.getLogger("time_to_accuracy")

MODIFIERS = ("augment", "batchN", "stepN", "memory_efficient", "precisebn", "nowarmup")


def variant_config(bench: Benchmark, variant: str, model: str, seed: int, epochs: int,
                   device: str) -> TrainConfig:
    """The :class:`TrainConfig` of a variant name such as ``plain+batch32``.

    Raises
    ------
    InputError
        Unknown preset or modifier (named).
    """
    preset_name, *mods = variant.split("+")
    cfg = train_config(bench, model, seed, epochs=epochs, device=device,
                       preset_name=preset_name)
    data = cfg.model_dump()
    for mod in mods:
        if mod == "augment":
            data["augment"] = True
        elif mod == "precisebn":
            data["bn_recalibration_samples"] = PRESETS["default"]["bn_recalibration_samples"]
        elif mod == "nowarmup":
            data["warmup_epochs"], data["warmup_start_factor"] = 0.0, 1.0
        elif mod == "memory_efficient":
            data["model_kwargs"] = {**data["model_kwargs"], "memory_efficient": True}
        elif mod.startswith("step") and mod[4:].isdigit() and int(mod[4:]) > 0:
            data["lr_step_epochs"] = int(mod[4:])  # step100: the peak rate throughout
        elif mod.startswith("batch") and mod[5:].isdigit() and int(mod[5:]) > 0:
            data["batch_size"] = int(mod[5:])
            if preset_name == "plain":  # plain: the lr does not follow the batch
                data["lr_reference_batch"] = int(mod[5:])
        else:
            raise InputError(f"unknown variant modifier {mod!r} in {variant!r} (known: "
                             f"{', '.join(MODIFIERS)})", field="--variants")
    return TrainConfig.from_dict(data)


def time_to_target(bench: Benchmark, variant: str, ds_dir: Path, work: Path, *, model: str,
                   seed: int, target: float, max_epochs: int, device: str,
                   run_to_max: bool = False,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train epoch by epoch until the monitored macro F1 reaches ``target``.

    With ``run_to_max`` training goes on to ``max_epochs`` after the target is reached (the
    curve then shows the plateau); ``on_epoch`` receives the variant's record so far after
    every epoch (``"complete": False`` until the last), so an interrupted call keeps its
    finished epochs on disk.

    A variant's run resumes across calls (sessions): its finished epochs are kept in
    ``RUN/tta_curve.json`` beside the checkpoints, and a call with a larger ``max_epochs``
    continues from there. A run of another plan (a changed variant definition) is refused,
    not continued; a run without a checkpoint starts over.
    """
    run_dir = work / "tta_runs" / f"{model}_{variant}_seed{seed}"
    curve_file = run_dir / "tta_curve.json"
    # a checkpoint without its curve (killed between the two writes) starts over: the curve's
    # wall times could not be rebuilt
    resume = start_run(run_dir, variant_config(bench, variant, model, seed, 1, device),
                       needs=curve_file)
    curve: list[dict[str, Any]] = []
    if resume:
        curve = json.loads(curve_file.read_text())
        log.info("%s: continuing after epoch %d", variant, len(curve))
    wall = float(curve[-1]["cumulative_wall_seconds"]) if curve else 0.0
    reached = next((c["epoch"] for c in curve if c["val_macro_f1"] is not None
                    and c["val_macro_f1"] >= target), None)
    to_target = next((c["cumulative_wall_seconds"] for c in curve if c["epoch"] == reached), 0.0)
    record: dict[str, Any] = {}
    for epoch in range(len(curve) + 1, max_epochs + 1):
        if reached is not None and not run_to_max:
            break
        cfg = variant_config(bench, variant, model, seed, epoch, device)
        t0 = time.perf_counter()
        fit_or_stop(cfg, ds_dir, run_dir, resume=epoch > 1 or resume, progress=False)
        wall += time.perf_counter() - t0
        h = read_metrics_log(run_dir / "metrics.jsonl")[-1]
        curve.append({"epoch": epoch, "val_macro_f1": h["val_macro_f1"],
                      "val_loss": h["val_loss"], "train_loss": h["train_loss"],
                      "epoch_seconds": h["epoch_seconds"], "samples_per_s": h["samples_per_s"],
                      "cumulative_wall_seconds": round(wall, 1)})
        with atomic_path(curve_file) as tmp:
            tmp.write_text(json.dumps(curve))
        log.info("%s epoch %d: macro F1 %.3f, %.0f s so far", variant, epoch,
                 h["val_macro_f1"], wall)
        if reached is None and h["val_macro_f1"] is not None and h["val_macro_f1"] >= target:
            reached = epoch
            to_target = wall
        done = epoch == max_epochs or (reached is not None and not run_to_max)
        record = _variant_record(variant, cfg, curve, reached, to_target, wall, done)
        if on_epoch is not None:
            on_epoch(record)
        if done:
            break
    if not record:  # nothing left to train: the curve of earlier calls
        cfg = variant_config(bench, variant, model, seed, max(len(curve), 1), device)
        record = _variant_record(variant, cfg, curve, reached, to_target, wall, True)
    return record


def _variant_record(variant: str, cfg: TrainConfig, curve: list[dict[str, Any]],
                    reached: int | None, to_target: float, wall: float,
                    done: bool) -> dict[str, Any]:
    return {"variant": variant, "train_config": cfg.model_dump(mode="json"),
            "reached_at_epoch": reached,
            "minutes_to_target": round(to_target / 60, 2) if reached else None,
            "best_macro_f1": max((c["val_macro_f1"] for c in curve
                                  if c["val_macro_f1"] is not None), default=None),
            "minutes_trained": round(wall / 60, 2), "curve": curve,
            "convergence": curve_convergence(curve, cfg),
            "complete": done}


def report(out: Path, tier: str, model: str, seed: int, target: float,
           with_runs: Sequence[Path]) -> Path:
    """``OUT/time_to_accuracy_<tier>_<model>_seed<s>.md`` and ``.png`` from the records in
    ``out`` (the newest of every variant) and the tier runs ``with_runs``."""
    newest: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob(f"time_to_accuracy_{tier}_*.json")):  # stamps sort by time
        rec = json.loads(path.read_text())
        if (rec.get("model"), rec.get("seed")) != (model, seed):
            continue
        for v in rec["variants"]:  # older records have no peak-rate verdict: recomputed
            newest[v["variant"]] = {**v, "source": path.name,
                                    "convergence": curve_convergence(v["curve"],
                                                                     v["train_config"])}
    curves = []
    for path in with_runs:
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"unreadable run record ({exc})", path=path) from exc
        if (run.get("model"), run.get("seed")) != (model, seed):
            raise InputError(f"a run of {run.get('model')} seed {run.get('seed')}, not "
                             f"{model} seed {seed}", path=path, field="model")
        run = {**run, "convergence": run_convergence(run)}
        # the schedule in the name: runs of two protocols (small12 v1 and v2) can stand side
        # by side
        step = (run.get("train_config") or {}).get("lr_step_epochs")
        curves.append(curve_from_run_record(
            run, f"{run.get('preset')} (tier run, {len(run['epochs'])} epochs"
            + (f", lr step {step})" if step else ")")))
    curves += list(newest.values())
    if not curves:
        raise InputError(f"no time_to_accuracy_{tier}_*.json of {model} seed {seed} here",
                         path=out)
    title = f"Time to accuracy: {model} seed {seed}, tier {tier}"
    base = out / f"time_to_accuracy_{tier}_{model}_seed{seed}"
    plot_variant_curves(curves, base.with_suffix(".png"), title, target)
    text = variants_markdown(curves, target, title)
    text += (f"\n![curves]({base.with_suffix('.png').name})\n\nSources: "
             + ", ".join(f"{c['variant']}: {c.get('source', '?')}" for c in curves) + "\n")
    with atomic_path(base.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    return base.with_suffix(".md")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="time_to_accuracy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", default="small12")
    p.add_argument("--target-f1", type=float, required=True, help="macro F1 to reach")
    p.add_argument("--variants", default="default,plain", help="comma-separated (see above)")
    p.add_argument("--model", default="dilated_densenet3d")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, help="stop here (default: the tier's epochs)")
    p.add_argument("--report", action="store_true",
                   help="train nothing: table and figure of the records in --out (the newest "
                        "per variant) and of --with-run records")
    p.add_argument("--with-run", type=Path, action="append", default=[],
                   help="with --report: a small_tier.py run record of the same model and seed, "
                        "shown as '<preset> (tier run, N epochs, lr step K)'")
    p.add_argument("--run-to-max", action="store_true",
                   help="go on to --max-epochs after the target is reached (shows the plateau)")
    p.add_argument("--out", type=Path, required=True, help="folder of the result JSON")
    p.add_argument("--work", type=Path, help="scratch folder (shared with small_tier.py: the "
                   "tier's dataset is reused; default <tmp>/tomoclass_small_tier_<tier>)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--device", default="auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        if not 0.0 < args.target_f1 <= 1.0:
            raise InputError("must be in (0, 1]", field="--target-f1")
        if args.report:
            md = report(args.out, args.tier, args.model, args.seed, args.target_f1,
                        args.with_run)
            print(f"wrote {md} and {md.with_suffix('.png')}")
            return 0
        bench = load_benchmark(args.config, args.tier, args.data_root)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for v in variants:  # refuse a bad name before any data is made
            variant_config(bench, v, args.model, args.seed, 1, args.device)
        work = open_work(args.work or Path(tempfile.gettempdir())
                         / f"tomoclass_small_tier_{args.tier}")
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        # model and seed in the name: two calls started in the same second wrote one file
        path = (args.out / f"time_to_accuracy_{bench.tier_name}_{args.model}_seed{args.seed}_"
                f"{stamp}.json")
        load = list(os.getloadavg())
        ds_dir = prepare_data(bench, work)
        max_epochs = int(args.max_epochs or bench.tier["epochs"])
        results: list[dict[str, Any]] = []

        def write(partial: dict[str, Any] | None = None) -> dict[str, Any]:
            rec = {"benchmark": "time to accuracy", "tier": bench.tier_name,
                   "model": args.model, "seed": args.seed, "target_macro_f1": args.target_f1,
                   "max_epochs": max_epochs, "run_to_max": args.run_to_max,
                   "variants": results + ([partial] if partial else []),
                   "complete": partial is None,
                   "machine": {**machine_record(), "loadavg": load,
                               "loadavg_end": list(os.getloadavg())},
                   "git_commit": git_commit(), "date_utc": date,
                   "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
            write_json(path, rec)  # after every epoch: an interrupted call keeps its epochs
            return rec

        for v in variants:
            results.append(time_to_target(
                bench, v, ds_dir, work, model=args.model, seed=args.seed,
                target=args.target_f1, max_epochs=max_epochs, device=args.device,
                run_to_max=args.run_to_max, on_epoch=write))
        write()
    except TomoclassError as exc:
        print(f"time_to_accuracy.py: error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        got = (f"{r['minutes_to_target']:.1f} min (epoch {r['reached_at_epoch']})"
               if r["reached_at_epoch"] else f"not reached in {r['minutes_trained']:.1f} min")
        flat = "flat" if r["convergence"]["converged"] else "not flat"
        print(f"{r['variant']}: macro F1 {args.target_f1} {got}; best {r['best_macro_f1']}; "
              f"validation loss {flat} over the last {r['convergence']['k']} epochs")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
