"""Whole-tomogram resampling (``locate --rescale``): a memory-mapped tomogram to another grid.

The case it is for: a tomogram reconstructed at 5 Å located with a classifier trained at
10 Å (step 2), and the reverse. Times :func:`tomoclass.data.resample_volume` on a
memory-mapped float32 MRC and records the peak resident memory of the process. Writes a JSON
result under benchmarks/results/ with the machine, load average, git commit and date.

    PYTHONPATH=src python benchmarks/resample_bench.py [--shape 400 1024 1024] [--step 2]
        [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from synthetic import write_noise_tomogram

from tomoclass.data import resample_volume
from tomoclass.io import read_volume
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"

def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 1024, 1024],
                    metavar=("Z", "Y", "X"))
    ap.add_argument("--step", type=float, nargs="+", default=[2.0],
                    help="input voxels per output voxel (2: 5 Å -> 10 Å)")
    ap.add_argument("--quick", action="store_true", help="a small tomogram (plumbing only)")
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    if args.quick:
        args.shape = [64, 128, 128]
    shape = tuple(args.shape)
    result: dict = {"benchmark": "resample_volume", "shape_zyx": shape, "dtype": "float32",
                    "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "git_commit": git_commit(), "machine": machine_info(), "runs": []}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tomo.mrc"
        write_noise_tomogram(path, shape, 5.0, rng)
        result["rss_gib_before"] = round(_rss_gib(), 2)
        vol = read_volume(path)  # memory-mapped
        for step in args.step:
            t0 = time.perf_counter()
            out = resample_volume(vol.data, step)
            sec = time.perf_counter() - t0
            run = {"step": step, "out_shape_zyx": list(out.shape), "seconds": round(sec, 2),
                   "input_voxels_per_s": round(float(np.prod(shape)) / sec),
                   "peak_rss_gib_so_far": round(_rss_gib(), 2)}
            print(run, flush=True)
            result["runs"].append(run)
            del out
    result["load_average_after"] = list(os.getloadavg())
    if not args.quick:
        print(f"wrote {write_result('resample', result, args.out, results_dir=RESULTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
