"""Does shrec_cnn train from its initialisation? Xavier (the paper's init for its DenseNets)
against He (what tomoclass uses for this batch-norm-free net), Adam at several learning rates.

    PYTHONPATH=src python benchmarks/shrec_init_check.py --lrs 1e-4,1e-3 --steps 25

Data: 4 classes of Gaussian blobs of different radius in noise (``tomoclass.simulate.blob_volumes``,
the training tests' data), z-scored per box, 24^3, batch 16, fresh samples every step. A net that
learns pulls the loss below ln(4) = 1.386 within a few dozen steps; a dead one stays there.
Writes ``benchmarks/results/shrec_init_<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tomoclass.models import get_model
from tomoclass.models.layers import init_weights
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result
from tomoclass.simulate import blob_volumes

RESULTS = Path(__file__).resolve().parent / "results"


def run(init: str, lr: float, steps: int, batch: int, box: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = get_model("shrec_cnn", num_classes=4)
    if init == "xavier":
        init_weights(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        y = rng.integers(0, 4, batch)
        x = torch.from_numpy(blob_volumes(y, box, rng))[:, None]
        x = (x - x.mean(dim=(2, 3, 4), keepdim=True)) / x.std(dim=(2, 3, 4), keepdim=True)
        loss = nn.functional.cross_entropy(model(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(float(loss), 4))
    tail = float(np.mean(losses[-5:]))
    print(f"{init:6s} lr {lr:g}: last-5 mean loss {tail:.3f} (chance 1.386); {losses}",
          flush=True)
    return {"init": init, "lr": lr, "losses": losses, "last5_mean_loss": tail,
            "learns": tail < 1.30, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lrs", default="1e-4,1e-3")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--box", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=new_result_file)
    args = p.parse_args(argv)
    runs = [run(init, float(lr), args.steps, args.batch, args.box, args.seed)
            for lr in args.lrs.split(",") for init in ("xavier", "he")]
    path = write_result("shrec_init", {
        "benchmark": "shrec_cnn initialisation check",
        "command": " ".join(["benchmarks/shrec_init_check.py", *(argv or sys.argv[1:])]),
        "git_commit": git_commit(), "machine": machine_info(),
        "data": {"classes": 4, "box": args.box, "batch": args.batch, "steps": args.steps,
                 "what": "Gaussian blobs of radius 1.5 + 1.5 k voxels plus noise (s.d. 0.3)"},
        "runs": runs}, args.out, results_dir=RESULTS)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
