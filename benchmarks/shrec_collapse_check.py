"""Why does SHREC-CNN stay at chance on the small12 tier? Its activations, checkpoint by checkpoint.

    PYTHONPATH=src python benchmarks/shrec_collapse_check.py --data WORK/dataset \\
        --checkpoints RUN/checkpoints/epoch_001.pt RUN/checkpoints/epoch_005.pt --out R.json

For the freshly initialised net (seed 0, the dataset's class count, both ``head_init``s) and for
every checkpoint given, it runs the first ``--boxes`` training boxes of the dataset in eval mode
and records, per ReLU layer, the fraction of positive activations, and for the logits their mean
magnitude and their s.d. across boxes (averaged over classes). A net whose logits barely vary
across boxes predicts the same thing for every box: its loss sits at ln K whatever it is fed.
Writes a JSON record (``--out``, else ``benchmarks/results/shrec_collapse_<UTC time>.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tomoclass.data import open_dataset
from tomoclass.infer import load_run
from tomoclass.models import get_model
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def activation_profile(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Active fraction per ReLU (convs, then fc1, fc2) and the logits' spread over boxes.

    fc1 and fc2 are read before their ReLU: a unit is active where that input is positive.
    """
    active: dict[str, float] = {}
    layers = [(name, m) for name, m in model.features.named_children()
              if isinstance(m, nn.ReLU)] + [("fc1", model.fc1), ("fc2", model.fc2)]
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, name=name: active.__setitem__(name, float((out > 0).float().mean())))
        for name, m in layers]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return {"active_fraction": {k: round(v, 3) for k, v in active.items()},
            "logit_mean_abs": round(float(logits.abs().mean()), 4),
            "logit_sd_across_boxes": float(f"{float(logits.std(0).mean()):.3g}")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a tomoclass dataset directory")
    p.add_argument("--checkpoints", type=Path, nargs="*", default=[])
    p.add_argument("--boxes", type=int, default=64)
    p.add_argument("--out", type=new_result_file)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ds = open_dataset(args.data)
    idx = np.sort(ds.split_indices("train")[:args.boxes])
    x = torch.from_numpy(np.asarray(ds.volumes[idx], dtype=np.float32))[:, None]
    k = len(ds.class_map)
    rows = []
    for head in ("xavier", "zeros"):
        torch.manual_seed(0)
        model = get_model("shrec_cnn", num_classes=k, head_init=head)
        rows.append({"what": f"initialisation, seed 0, head_init {head}",
                     **activation_profile(model, x)})
    for path in args.checkpoints:
        model, _, info = load_run(path)
        rows.append({"what": str(path), "epoch": info["epoch"],
                     **activation_profile(model, x)})
    for r in rows:
        print(f"{r['what']}: |logit| {r['logit_mean_abs']}, s.d. across boxes "
              f"{r['logit_sd_across_boxes']}, active {r['active_fraction']}")
    path = write_result("shrec_collapse", {
        "benchmark": "shrec_cnn activation collapse check",
        "command": " ".join(["benchmarks/shrec_collapse_check.py", *(argv or sys.argv[1:])]),
        "git_commit": git_commit(), "machine": machine_info(),
        "data": {"dataset": str(args.data), "boxes": args.boxes, "classes": k},
        "rows": rows}, args.out, results_dir=RESULTS)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
