"""Does the paper's lr 0.1 with Adam train the 3D-Dilated-DenseNet? Measure it.

Simulates a small labelled set with tomoclass.simulate (built-in phantoms, CTF, missing
wedge, noise), then trains the full-size dilated_densenet3d (paper configuration: growth 12,
3 blocks of 4 layers) with Adam for a few epochs at several peak learning rates, each with
the same seed, data, warm-up and schedule. Writes benchmarks/results/lr_<date>.json.

    PYTHONPATH=src python benchmarks/lr_study.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from tomoclass.data import write_subtomogram_dataset
from tomoclass.simulate import SimulationConfig, load_class_templates
from tomoclass.train import TrainingDiverged, fit, preset


def posthoc(result_path: Path, runs_dir: Path) -> None:
    """Re-evaluate each run's last checkpoint after recomputing BN statistics (precise BN).

    Adds ``posthoc_precise_bn`` (val accuracy, macro F1, per-class F1, and the same without
    recalibration) to every run of ``result_path``; the runs live in ``runs_dir`` (the
    temporary directory a sweep printed).
    """
    import numpy as np

    from tomoclass.data import SubtomogramDataset, open_dataset
    from tomoclass.infer import load_run
    from tomoclass.train import metrics as M
    from tomoclass.train.batchnorm import recalibrate_batchnorm

    result = json.loads(result_path.read_text())
    store = open_dataset(runs_dir / "ds")
    train = SubtomogramDataset(store, split="train")
    val = SubtomogramDataset(store, split="val")
    xv = torch.stack([val[i][0] for i in range(len(val))])
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=False)
    for run in result["runs"]:
        model, cmap, _ = load_run(runs_dir / f"run_{run['peak_lr']:g}", which="last")
        out = {}
        for label in ("running_averages", "recalibrated"):
            if label == "recalibrated":
                recalibrate_batchnorm(model, loader, torch.device("cpu"), None, False)
            model.eval()
            with torch.no_grad():
                pred = model(xv).argmax(1).numpy()
            cm = M.confusion_matrix(val.labels, pred, len(cmap))
            out[label] = {"val_accuracy": M.accuracy(cm), "val_macro_f1": M.macro_f1(cm),
                          "predicted_counts": np.bincount(pred, minlength=len(cmap)).tolist()}
        run["posthoc_precise_bn"] = out
        print(run["peak_lr"], json.dumps(out), flush=True)
    result["posthoc_note"] = ("last checkpoints re-evaluated on the val split after "
                              "recomputing batch-norm statistics over all training samples "
                              "(no augmentation, weights unchanged)")
    result_path.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posthoc", nargs=2, type=Path, metavar=("RESULT_JSON", "RUNS_DIR"),
                    help="only re-evaluate an earlier sweep's checkpoints with precise BN")
    ap.add_argument("--model", default="dilated_densenet3d")
    ap.add_argument("--box", type=int, default=24)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--snr", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lrs", default="0.1,0.025,0.001,0.0001",
                    help="peak learning rates (after warm-up) at --batch-size")
    ap.add_argument("--bn-recalibration-samples", type=int, default=0,
                    help="precise-BN samples after each epoch (0: plain running averages)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    if args.posthoc:
        posthoc(*args.posthoc)
        return

    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="lr_study_"))
    from tomoclass.simulate import list_phantoms

    names = list_phantoms()[: args.classes]
    sim = SimulationConfig.model_validate({
        "seed": 0,
        "classes": [{"source": n} for n in names],
        "subtomograms": {"box_size": args.box, "n_per_class": args.n_per_class,
                         "snr_range": [args.snr, args.snr], "val_fraction": 0.2,
                         "test_fraction": 0.0},
    })
    t0 = time.perf_counter()
    ds = write_subtomogram_dataset(work / "ds", load_class_templates(sim), sim)
    sim_s = time.perf_counter() - t0

    runs = []
    for lr in [float(x) for x in args.lrs.split(",")]:
        cfg = preset("paper", model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                     base_lr=lr, lr_reference_batch=args.batch_size, checkpoint_every=0,
                     seed=0, augment=False,
                     bn_recalibration_samples=args.bn_recalibration_samples)
        t0 = time.perf_counter()
        entry = {"peak_lr": lr, "base_lr_at_batch_64": lr * 64 / args.batch_size}
        try:
            res = fit(cfg, ds, work / f"run_{lr:g}", progress=False, check_resources=False)
            hist = res.history
            entry["diverged"] = False
        except TrainingDiverged as exc:
            hist = []
            entry["diverged"] = True
            entry["error"] = str(exc)
            metrics = work / f"run_{lr:g}" / "metrics.jsonl"
            if metrics.exists():
                hist = [json.loads(x) for x in metrics.read_text().splitlines()]
        entry["seconds"] = time.perf_counter() - t0
        entry["epochs"] = [{k: h[k] for k in ("epoch", "lr", "train_loss", "train_accuracy",
                                              "val_loss", "val_accuracy", "val_macro_f1",
                                              "samples_per_s")} for h in hist]
        entry["final_val_macro_f1"] = hist[-1]["val_macro_f1"] if hist else None
        entry["final_train_loss"] = hist[-1]["train_loss"] if hist else None
        print(json.dumps(entry), flush=True)
        runs.append(entry)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    result = {
        "what": f"Adam peak-lr sweep, {args.model} (default config), simulated phantoms",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "machine": {"nproc": os.cpu_count(), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(), "torch_threads": torch.get_num_threads(),
                    "torch": str(torch.__version__), "device": "cpu",
                    "note": "timings depend on what else ran: see loadavg_start/_end"},
        "data": {"classes": names, "box": args.box, "n_per_class": args.n_per_class,
                 "snr": args.snr, "voxel_size_angstrom": sim.voxel_size_angstrom,
                 "val_fraction": 0.2, "simulate_seconds": sim_s},
        "protocol": {"optimizer": "adam", "batch_size": args.batch_size, "epochs": args.epochs,
                     "warmup_epochs": 1.0, "warmup_start_factor": 0.1, "seed": 0,
                     "augment": False,
                     "bn_recalibration_samples": args.bn_recalibration_samples,
                     "chance_macro_f1": 1.0 / len(names)},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M")
    path = args.out / f"lr_{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
