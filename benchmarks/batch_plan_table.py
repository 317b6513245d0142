"""The default training batch plan for the dilated DenseNet at several amounts of free memory.

Estimates only (``tomoclass.train.resources``: the model runs on the meta device), no training:

    PYTHONPATH=src python benchmarks/batch_plan_table.py \
        > benchmarks/results/batch_plan_20261203.txt
"""

from __future__ import annotations

from tomoclass.models import get_model
from tomoclass.train.batch_plan import plan_batch
from tomoclass.train.resources import human

GIB = 1024**3

if __name__ == "__main__":
    model = get_model("dilated_densenet3d", num_classes=12)
    print("model dilated_densenet3d (defaults), box 32, batch 64")
    print("available  fits  steps  micro  mem-eff  estimate")
    for avail in (64, 24, 14, 8, 4, 2, 1):
        p = plan_batch(avail * GIB, model, 32, 64)
        print(f"{avail:6d} GiB  {p.fits!s:5s} {p.accumulation_steps:5d} {p.micro_batch:6d}  "
              f"{p.memory_efficient!s:7s}  {human(p.memory_bytes)}")
