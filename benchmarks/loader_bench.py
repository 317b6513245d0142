"""Loader benchmark: SubtomogramDataset + DataLoader samples/s vs the paper net's training rate.

Issue 4 asks that reading keeps up with training: loader throughput >= 5x the training
throughput of the 3D-Dilated-DenseNet on the same machine. This script measures both (the
training rate with ``tomoclass.models`` when it is importable, from ``--models-src`` otherwise)
and writes benchmarks/results/loader_<date>.json with load average, nproc, commit and date.

    PYTHONPATH=src python benchmarks/loader_bench.py [--n 1024] [--models-src ../main/src]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tomoclass.provenance import git_commit, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
#: Used only when no model can be imported: the paper net's training rate measured earlier on
#: this CPU, as stated in the issue brief (about 5 samples/s).
REFERENCE_TRAIN_SAMPLES_PER_S = 5.0



def train_throughput(box: int, batch: int, steps: int) -> dict:
    """Forward + backward + SGD step of dilated_densenet3d on random (batch, 1, box^3) input."""
    import torch

    from tomoclass.models import get_model

    torch.manual_seed(0)
    model = get_model("dilated_densenet3d", num_classes=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, box, box, box)
    y = torch.randint(0, 12, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt_s = time.perf_counter() - t0
    return {"model": "dilated_densenet3d", "batch": batch, "steps": steps,
            "seconds": round(dt_s, 3), "samples_per_s": round(batch * steps / dt_s, 2),
            "torch_threads": torch.get_num_threads()}


def loader_throughput(n: int, box: int, batch: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from tomoclass.data import ClassMap, SubtomogramDataset, write_dataset

    rng = np.random.default_rng(0)
    import pandas as pd

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        vols = rng.standard_normal((n, box, box, box), dtype=np.float32)
        table = pd.DataFrame({"tomogram": "t", "x": 0.0, "y": 0.0, "z": np.arange(n, dtype=float),
                              "class_name": rng.choice(["a", "b", "c"], n)})
        write_dataset(Path(tmp) / "ds", vols, table, ClassMap(["a", "b", "c"]), 10.0)
        del vols
        for augment in (False, True):
            for workers in (0, 2):
                ds = SubtomogramDataset(Path(tmp) / "ds", split="train", augment=augment)
                loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                    generator=torch.Generator().manual_seed(0),
                                    persistent_workers=workers > 0)
                for _ in loader:  # warm-up epoch (worker start, page cache)
                    pass
                t0 = time.perf_counter()
                seen = 0
                for xb, _ in loader:
                    seen += len(xb)
                secs = time.perf_counter() - t0
                out[f"augment={augment},workers={workers}"] = {
                    "samples": seen, "seconds": round(secs, 3),
                    "samples_per_s": round(seen / secs, 1)}
                del loader
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--models-src", default=None,
                    help="a src/ directory with tomoclass.models if this checkout has none")
    ap.add_argument("--part", choices=("all", "train"), default="all", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.part == "train":
        print(json.dumps(train_throughput(args.box, args.train_batch, args.train_steps)))
        return 0
    if args.quick:
        args.n, args.train_steps = 128, 1
    result: dict = {
        "benchmark": "loader", "n_samples": args.n, "box": args.box, "batch": args.batch,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(), "git_commit": git_commit(),
        "nproc": os.cpu_count(), "loadavg_before": os.getloadavg(),
        "note": "shared machine (about 6 developers on 2 cores): absolute rates vary with load; "
                "loader and training measured back to back in one run",
    }
    result["loader"] = loader_throughput(args.n, args.box, args.batch)
    try:
        import tomoclass.models  # noqa: F401

        result["train"] = train_throughput(args.box, args.train_batch, args.train_steps)
        result["train_source"] = "this checkout"
    except ImportError:
        if args.models_src:
            env = dict(os.environ, PYTHONPATH=args.models_src)
            cmd = [sys.executable, __file__, "--part", "train", "--box", str(args.box),
                   "--train-batch", str(args.train_batch), "--train-steps", str(args.train_steps)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            result["train"] = json.loads(res.stdout.strip().splitlines()[-1])
            result["train_source"] = f"tomoclass.models from {args.models_src}"
        else:
            result["train"] = {"samples_per_s": REFERENCE_TRAIN_SAMPLES_PER_S}
            result["train_source"] = "reference value from the issue brief (not measured)"
    train_rate = result["train"]["samples_per_s"]
    result["ratio_loader_over_train"] = {
        k: round(v["samples_per_s"] / train_rate, 1) for k, v in result["loader"].items()}
    result["goal"] = "loader >= 5x training throughput"
    result["goal_met_with_augment_2_workers"] = bool(
        result["ratio_loader_over_train"]["augment=True,workers=2"] >= 5.0)
    result["loadavg_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if not args.quick:
        out = write_result("loader", result, results_dir=RESULTS)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
