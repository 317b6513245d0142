"""Is an eval-mode collapse the batch-norm running statistics' lag? Score a checkpoint both ways.

    python benchmarks/bn_lag_check.py RUN_DIR DATASET_DIR --which last --out benchmarks/results

Issue 18, item 4: the ``plain`` preset (Adam 1e-3, no precise BN) trains faster than the
``default`` preset in train mode but can score near chance in eval mode. This scores one
checkpoint on the dataset's test split twice: with the running statistics it was saved with,
and after precise BN (:func:`tomoclass.train.batchnorm.recalibrate_batchnorm` on
``--bn-samples`` training subtomograms, no augmentation, weights untouched; ``--split``
scores another split). If the second is
far higher, the weights were fine and the statistics were stale. Writes
``OUT/bn_lag_<run>_<which>_<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from shrec12 import machine_record, write_json
from torch.utils.data import DataLoader, Subset

from tomoclass.data.torch_dataset import SubtomogramDataset
from tomoclass.errors import InputError, TomoclassError
from tomoclass.infer.run import load_run
from tomoclass.provenance import git_commit
from tomoclass.runtime import retain_freed_memory
from tomoclass.train import metrics as M
from tomoclass.train.batchnorm import recalibrate_batchnorm


@torch.no_grad()
def score(model: torch.nn.Module, loader: DataLoader, n_classes: int) -> dict[str, Any]:
    """Macro F1, accuracy and mean cross-entropy of ``model`` in eval mode."""
    model.eval()
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    loss, n = 0.0, 0
    for xb, yb in loader:
        logits = model(xb)
        loss += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
        n += len(yb)
        cm += M.confusion_matrix(yb.numpy(), logits.argmax(1).numpy(), n_classes)
    pred_classes = int((cm.sum(0) > 0).sum())
    return {"macro_f1": M.macro_f1(cm), "accuracy": M.accuracy(cm), "loss": loss / max(n, 1),
            "classes_predicted": pred_classes}


def check(run: Path, dataset: Path, which: str = "last", bn_samples: int = 128,
          seed: int = 0, split: str = "test") -> dict[str, Any]:
    """Scores of a checkpoint on ``split`` with its saved and with recomputed BN statistics."""
    model, cmap, info = load_run(run, which=which)
    scored = SubtomogramDataset(dataset, split=split)
    if len(scored) == 0:
        raise InputError(f"no subtomograms in split {split!r}", path=dataset, field="split")
    test = DataLoader(scored, batch_size=32)
    train = SubtomogramDataset(dataset, split="train")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train), size=min(bn_samples, len(train)), replace=False)
    t0 = time.perf_counter()
    saved = score(model, test, len(cmap.names))
    recalibrate_batchnorm(model, DataLoader(Subset(train, pick.tolist()), batch_size=16),
                          torch.device("cpu"), None, False)
    precise = score(model, test, len(cmap.names))
    return {"run": str(run), "which": which, "epoch": info["epoch"],
            "dataset": str(dataset), "split": split, "bn_samples": int(len(pick)), "seed": seed,
            "saved_statistics": saved, "precise_bn": precise,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(prog="bn_lag_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--which", default="last")
    p.add_argument("--bn-samples", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="the split scored (default test)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    malloc_retained = retain_freed_memory()  # big activation buffers reused, not re-faulted
    date = dt.datetime.now(dt.timezone.utc)
    load = list(os.getloadavg())
    try:
        rec = check(args.run, args.dataset, args.which, args.bn_samples, args.seed,
                    args.split)
    except TomoclassError as exc:
        print(f"bn_lag_check.py: error: {exc}", file=sys.stderr)
        return 2
    rec.update({"machine": {**machine_record(), "loadavg": load,
                            "malloc_retained": malloc_retained}, "git_commit": git_commit(),
                "date_utc": date.isoformat(timespec="seconds"),
                "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])})
    path = args.out / f"bn_lag_{args.run.name}_{args.which}_{date:%Y%m%dT%H%M%SZ}.json"
    write_json(path, rec)
    s, b = rec["saved_statistics"], rec["precise_bn"]
    print(f"epoch {rec['epoch']}: macro F1 {s['macro_f1']:.3f} with the saved statistics "
          f"({s['classes_predicted']} classes predicted), {b['macro_f1']:.3f} after precise BN "
          f"on {rec['bn_samples']} training boxes ({b['classes_predicted']} classes)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
