"""Reproduce Gao et al. 2020, Table 2 / Fig. 4 / Fig. 5 on the SHREC-like ``shrec12`` benchmark.

    python benchmarks/reproduce_table2.py --tier cpu|gpu|smoke --out DIR
        [--data-root ../shared/data] [--work SCRATCH] [--config benchmarks/configs/shrec12.yaml]
        [--calibrate] [--device auto]

The benchmark (``benchmarks/configs/shrec12.yaml``) builds SHREC-like tomograms from the 12 real
structures of ``shared/data/structures/pdb`` and runs the paper's experiment with the public
tomoclass API, in the order of :mod:`tomoclass.workflows.demo` (the benchmark definition and
the stages are :mod:`shrec12`'s; the tables and figures :mod:`tomoclass.evaluate.seeds`'):

1. ``load_class_templates`` once per run (7p6z, a ribosome, is the slowest: ~2 s);
2. ``simulate_tomograms``-equivalent, one tomogram per process when the tier allows
   (``simulate_tomogram(templates, cfg, index=i)`` + ``write_tomogram``: identical output for
   any number of processes, tomogram ``i`` draws from the stream ``[seed, i]``);
3. ``extract_dataset`` at the ground-truth positions with the noise-free density as
   ``clean.npy`` (for the CAM score), split by tomogram;
4. ``fit`` of shrec_cnn, densenet3d and dilated_densenet3d (train module ``default`` preset =
   the paper's protocol with the working lr) for every seed of the tier;
5. ``evaluate_run`` of each run's final checkpoint on the test tomogram;
6. Table 2 (ours beside the paper's), size-group means (Fig. 4A), F1 against epoch at the
   checkpoint interval (Fig. 4B), the CAM figure (Fig. 5) and CAM scores, and one JSON of
   every number.

``--out DIR`` receives only small files (``results.json``, ``table2.md``, ``fig4a.png``,
``fig4b.png``, ``fig5_cam.png``, ``compare_seed0/``); tomograms, datasets and runs go to the
scratch folder ``--work`` (default ``<tmp>/tomoclass_table2_<tier>``), which is replaced.

``--calibrate`` runs the noise calibration instead: the tier's tomograms at every dose of
``calibration.sweep_dose_e_per_angstrom2``, shrec_cnn trained for the tier's
``calibration_epochs``, the dose whose test macro F1 is nearest the paper's SHREC-CNN mean
chosen; writes ``DIR/calibration.json`` and prints the value to freeze in the YAML (the YAML is
not changed by the script).
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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shrec12_locate_steps as sl
import yaml
from shrec12 import (
    DEFAULT_CONFIG,
    MODELS,
    Benchmark,
    Clock,
    build_data,
    evaluate,
    load_benchmark,
    machine_record,
    prepare_work,
    run_record,
    simulation_config,
    train_config,
    train_runs,
    write_json,
)

from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.compare import compare_runs, write_comparison
from tomoclass.evaluate.seeds import (
    format_mean_sd,
    paper_group_f1,
    plot_epoch_curves,
    plot_group_f1,
    summarize_seeds,
    table2_sections,
)
from tomoclass.io.atomic import atomic_path
from tomoclass.provenance import git_commit
from tomoclass.simulate import load_class_templates
from tomoclass.workflows.cam import cam_for_runs

__all__ = ["MODELS", "choose_dose", "load_benchmark", "main", "prepare_work", "run_calibration",
           "run_table2", "table2_markdown", "train_config"]

log = logging.getLogger("reproduce_table2")


# -- report -----------------------------------------------------------------------------------
def table2_markdown(result: dict[str, Any], bench: Benchmark) -> str:
    """Table 2 (ours beside the paper's), Fig. 4A numbers, the difference and the CAM scores."""
    t = bench.tier
    lines = [
        f"# Table 2 on shrec12 — tier `{bench.tier_name}`",
        "",
        f"{t['n_tomograms']} simulated tomograms of {'x'.join(map(str, t['shape_zyx']))} voxels "
        f"(z, y, x) at 10 Å, {t['n_particles']} particles each, train on tomograms "
        f"{t['train_tomograms']}, test on {t['test_tomograms']}"
        + (f" (locate: pick threshold chosen on {t['val_tomograms']})"
           if t.get("val_tomograms") else "") + f"; {bench.box}³ boxes; "
        f"{t['epochs']} epoch(s) at batch {t['batch_size']}; dose {result['dose']:g} e/Å² "
        f"(calibration status: {result['calibration'].get('status', 'unknown')}). "
        f"Reduced relative to the paper: {' '.join(str(t.get('reduces', '')).split())}",
        "",
        "Ours: F1 on the test tomogram, mean ± s.d. over seeds (final checkpoint). Paper: "
        "Gao et al. 2020 Table 2 on SHREC'19; 3j9i and 7p6z stand in for 4b4t and 4d8q.",
        "",
        "| tiny: 1s3x 3qm1 3gl1 · small: 3d2f 1u6g 2cg9 3h84 · medium: 1qvr 1bxn 3cf3 · "
        "large: 3j9i 7p6z |",
        "",
    ]
    lines += table2_sections(result["summary"], result["runs"], class_names=bench.names,
                             size_groups=bench.size_groups, paper_f1=bench.paper_f1(),
                             paper_names=bench.paper_names,
                             checkpoint_every=t.get("checkpoint_every", 5))
    lines += ["", "## Time per stage (s)", ""]
    lines += [f"- {k}: {v}" for k, v in result["seconds"].items()]
    mach = result["machine"]
    lines += ["", f"Machine: {mach.get('gpu', 'CPU only')}, {mach['nproc']} CPUs, load average "
              f"{', '.join(f'{x:.1f}' for x in mach['loadavg'])} at the start "
              f"({mach['note']}); commit {result['git_commit']}; {result['date_utc']}.", ""]
    return "\n".join(lines)


# -- orchestration ----------------------------------------------------------------------------
def run_table2(bench: Benchmark, out: Path, work: Path, *, device: str = "auto",
               progress: bool = False, locate: bool = False) -> dict[str, Any]:
    """The whole experiment; returns the JSON written to ``out/results.json``.

    With ``locate`` also the whole-tomogram task (:mod:`shrec12_locate`): a background-class
    run trained beside the Table 2 runs, located over the test tomograms and scored."""
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = list(os.getloadavg())
    clock = Clock()
    templates = load_class_templates(simulation_config(bench, bench.dose))
    clock.lap("templates")
    ds_dir, ext, written, sim_cfg = build_data(bench, templates, bench.dose, work, clock, "")
    loc_cfg = loc_radii = loc_data = None
    if locate:
        loc_cfg, loc_radii = sl.settings(bench.raw), sl.template_radii(templates)
        _, loc_data = sl.build_dataset(work / "dataset_locate", written, bench, sim_cfg,
                                       loc_radii, loc_cfg)
        clock.lap("extract_locate")
    machine = machine_record()  # after the forked simulation: CUDA is first touched here
    machine["loadavg"] = load_start

    jobs, keys = [], []
    for model in MODELS:
        for seed in bench.seeds(model):
            jobs.append((train_config(bench, model, seed, device=device),
                         work / "runs" / f"{model}_seed{seed}"))
            keys.append((model, seed))
    loc_run = work / "runs" / "locate_background"
    extra = ([(train_config(bench, loc_cfg["model"], loc_cfg["seed"], device=device), loc_run,
               work / "dataset_locate")] if locate else [])
    train_runs(jobs + extra, ds_dir, parallel=int(bench.tier.get("parallel_runs", 1)),
               progress=progress, log_dir=out / "logs")
    clock.lap("train")

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    reports = {}
    for (model, seed), (_, run_dir) in zip(keys, jobs, strict=True):
        rep = evaluate(run_dir, ds_dir, bench, device=device)
        reports[(model, seed)] = rep
        runs.setdefault(model, {})[seed] = run_record(rep, run_dir, bench)
    clock.lap("evaluate")

    out.mkdir(parents=True, exist_ok=True)
    first = {m: min(s) for m, s in runs.items()}
    seed0 = [(m, first[m]) for m in MODELS if m in first]
    write_comparison(compare_runs([work / "runs" / f"{m}_seed{s}" for m, s in seed0],
                                  reports=[reports[k] for k in seed0]), out / "compare_seed0")
    cam_models = [m for m in ("densenet3d", "dilated_densenet3d") if m in first] or list(first)
    cam_for_runs([work / "runs" / f"{m}_seed{first[m]}" for m in cam_models], ds_dir,
                 out / "fig5_cam.png", n=int(bench.tier.get("cam_particles", 8)), split="test",
                 which=str((bench.raw.get("train") or {}).get("evaluate_checkpoint", "last")),
                 seed=0, device=device)
    clock.lap("cam + compare")
    loc_rec = None
    if locate:
        (out / "locate").mkdir(parents=True, exist_ok=True)
        loc_rec = {"settings": loc_cfg, "dataset": loc_data, "run_dir": str(loc_run),
                   "result": sl.locate_and_score(loc_run, written, bench, loc_radii, loc_cfg,
                                                 out / "locate", device=device)}
        clock.lap("locate")

    result: dict[str, Any] = {
        "benchmark": "shrec12 Table 2 reproduction",
        "tier": bench.tier_name,
        "tier_settings": bench.tier,
        "box": bench.box,
        "dose": bench.dose,
        "classes": [{"name": n, "size_group": g, "paper_name": p, "structure": str(s)}
                    for n, g, p, s in zip(bench.names, bench.size_groups, bench.paper_names,
                                          bench.structures, strict=True)],
        "calibration": bench.calibration,
        "paper_table2": bench.paper_f1(),
        "dataset": {"n_written": ext.n_written, "n_padded": ext.n_padded,
                    "per_tomogram": ext.per_tomogram},
        "train_protocol": json.loads(json.dumps(jobs[0][0].model_dump(mode="json"))) if jobs
        else None,
        "runs": {m: {str(s): r for s, r in by.items()} for m, by in runs.items()},
        "machine": machine,
        "git_commit": git_commit(),
        "date_utc": date,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "work_dir": str(work),
    }
    result["locate"] = loc_rec
    result["summary"] = summarize_seeds(runs, bench.names)
    plot_group_f1(result["summary"],
                  paper_group_f1(bench.paper_f1(), bench.names, bench.size_groups),
                  out / "fig4a.png",
                  f"Fig. 4A on shrec12 ({bench.tier_name} tier; paper: SHREC'19)")
    plot_epoch_curves(result["runs"], out / "fig4b.png",
                      f"Fig. 4B on shrec12 ({bench.tier_name} tier)")
    clock.lap("report")
    result["seconds"] = dict(clock.seconds)
    result["seconds"]["total"] = round(sum(clock.seconds.values()), 1)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["files"] = {k: str(out / v) for k, v in (
        ("json", "results.json"), ("table2", "table2.md"), ("fig4a", "fig4a.png"),
        ("fig4b", "fig4b.png"), ("fig5", "fig5_cam.png"), ("compare_seed0", "compare_seed0"))}
    write_json(out / "results.json", result)
    text = table2_markdown(result, bench)
    if loc_rec is not None:
        text += sl.markdown(loc_rec, bench)
    with atomic_path(out / "table2.md") as tmp:
        tmp.write_text(text)
    return result


def choose_dose(sweep: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """The sweep entry whose ``macro_f1`` is nearest ``target`` (ties: the first listed)."""
    if not sweep:
        raise InputError("empty calibration sweep", field="calibration")
    return min(sweep, key=lambda r: abs(float(r["macro_f1"]) - target))


def run_calibration(bench: Benchmark, out: Path, work: Path, *, device: str = "auto",
                    progress: bool = False, doses_override: Sequence[float] | None = None
                    ) -> dict[str, Any]:
    """Dose sweep with shrec_cnn; writes ``out/calibration.json`` and returns it.

    ``doses_override`` replaces the YAML's sweep (to split a sweep over several runs; the
    records of the parts are then merged by hand, choosing over all doses)."""
    cal = bench.calibration
    target = float(cal.get("target_mean_f1", 0.566))
    model = str(cal.get("target_model", "shrec_cnn"))
    doses = [float(d) for d in bench.tier.get("calibration_sweep_dose_e_per_angstrom2")
             or cal.get("sweep_dose_e_per_angstrom2") or []]
    if not doses:
        raise InputError("no doses to sweep", path=bench.config_path,
                         field="calibration.sweep_dose_e_per_angstrom2")
    if doses_override:
        doses = [float(d) for d in doses_override]
    epochs = int(bench.tier.get("calibration_epochs", bench.tier["epochs"]))
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = list(os.getloadavg())
    clock = Clock()
    templates = load_class_templates(simulation_config(bench, doses[0]))
    clock.lap("templates")
    sweep = []
    for dose in doses:
        t0 = time.perf_counter()
        tag = f"_dose{dose:g}"
        ds_dir, _, _, _ = build_data(bench, templates, dose, work, clock, tag)
        run_dir = work / "runs" / f"{model}{tag}"
        train_runs([(train_config(bench, model, 0, epochs=epochs, device=device), run_dir)],
                   ds_dir, parallel=1, progress=progress)
        rep = evaluate(run_dir, ds_dir, bench, device=device)
        clock.lap(f"train + evaluate{tag}")
        sweep.append({"dose_e_per_angstrom2": dose, "macro_f1": float(rep.macro_f1),
                      "group_f1": {g: float(v) for g, v in rep.metrics.group_f1().items()},
                      "seconds": round(time.perf_counter() - t0, 1)})
        shutil.rmtree(work / f"tomograms{tag}", ignore_errors=True)
    best = choose_dose(sweep, target)
    record = {
        "target_model": model,
        "target_mean_f1": target,
        "frozen_dose_e_per_angstrom2": best["dose_e_per_angstrom2"],
        "status": "calibrated" if bench.tier_name != "smoke" else "smoke (plumbing only)",
        "record": {
            "chosen_by": (f"dose whose test macro F1 of {model} ({epochs} epoch(s), seed 0, "
                          f"tier {bench.tier_name}) is nearest {target}"),
            "date_utc": date,
            "git_commit": git_commit(),
            "tier": bench.tier_name,
            "epochs": epochs,
            "sweep": sweep,
        },
        "machine": {**machine_record(), "loadavg": load_start,
                    "loadavg_end": list(os.getloadavg())},
        "seconds": clock.seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "calibration.json", record)
    snippet = {k: record[k] for k in ("target_model", "target_mean_f1",
                                      "frozen_dose_e_per_angstrom2", "status", "record")}
    snippet["sweep_dose_e_per_angstrom2"] = doses
    with atomic_path(out / "calibration_snippet.yaml") as tmp:
        tmp.write_text("# paste over the `calibration:` section of the benchmark YAML and set "
                       "noise.dose_e_per_angstrom2 to the frozen dose\n"
                       + yaml.safe_dump({"calibration": snippet}, sort_keys=False))
    return record


def _doses(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}"
                                         ) from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"doses must be positive numbers, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reproduce_table2.py",
        description="Reproduce Gao et al. 2020 Table 2 / Fig. 4 / Fig. 5 on the shrec12 "
                    "benchmark (docs/reproduce.md).")
    p.add_argument("--tier", required=True, choices=("cpu", "gpu", "gpu30", "gpu_probe", "smoke"))
    p.add_argument("--out", required=True, type=Path,
                   help="results folder (small files only: JSON, Markdown, PNG)")
    p.add_argument("--data-root", type=Path,
                   help="folder holding structures/pdb (default: $TOMOCLASS_SHARED_DATA, else "
                        "../shared/data beside the repository)")
    p.add_argument("--work", type=Path,
                   help="scratch folder for tomograms, datasets and runs (replaced; default "
                        "<tmp>/tomoclass_table2_<tier>)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="benchmark YAML")
    p.add_argument("--calibrate", action="store_true",
                   help="run the noise calibration sweep instead of the experiment")
    p.add_argument("--doses", type=_doses, metavar="D1,D2,...",
                   help="with --calibrate: sweep these doses (e/A^2) instead of the YAML's")
    p.add_argument("--locate", action="store_true",
                   help="also the whole-tomogram task: train a background-class run beside the "
                        "Table 2 runs, locate particles in the test tomograms and score them")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        if args.doses and not args.calibrate:
            raise InputError("--doses only applies with --calibrate", field="--doses")
        bench = load_benchmark(args.config, args.tier, args.data_root)
        work = prepare_work(args.work or Path(tempfile.gettempdir())
                            / f"tomoclass_table2_{args.tier}")
        if args.out.resolve() == work.resolve() or work.resolve() in args.out.resolve().parents:
            raise InputError("--out must not lie inside the scratch folder", path=args.out)
        if args.calibrate:
            rec = run_calibration(bench, args.out, work, device=args.device,
                                  progress=args.progress, doses_override=args.doses)
            for r in rec["record"]["sweep"]:
                print(f"dose {r['dose_e_per_angstrom2']:g} e/A^2: {rec['target_model']} "
                      f"macro F1 {r['macro_f1']:.3f}")
            print(f"freeze in {args.config}: noise.dose_e_per_angstrom2 and "
                  f"calibration.frozen_dose_e_per_angstrom2 = "
                  f"{rec['frozen_dose_e_per_angstrom2']:g} (record: "
                  f"{args.out / 'calibration.json'})")
            return 0
        if args.locate and args.calibrate:
            raise InputError("--locate does not apply with --calibrate", field="--locate")
        res = run_table2(bench, args.out, work, device=args.device, progress=args.progress,
                         locate=args.locate)
    except TomoclassError as exc:
        print(f"reproduce_table2.py: error: {exc}", file=sys.stderr)
        return 2
    for m, pm in res["summary"]["per_model"].items():
        print(f"{m}: macro F1 {format_mean_sd(pm['macro_f1'])} over seeds {pm['seeds']}")
    d = res["summary"]["dilated_minus_plain"]
    if d:
        print(f"dilated - plain macro F1: {format_mean_sd(d['macro_f1'])} (seeds {d['seeds']})")
    for t in (res.get("locate") or {}).get("result", {}).get("tomograms", []):
        print(f"locate {t['tomogram']}: localization F1 {t['score']['f1']}, "
              f"{t['seconds_locate']:.1f} s")
    print(f"wrote {args.out / 'table2.md'} and {args.out / 'results.json'} "
          f"({res['seconds']['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
