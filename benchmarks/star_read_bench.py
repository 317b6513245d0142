"""Reading a RELION STAR particle table: seconds per ``read_particles`` call (issue 19).

The STAR reader parses a file once, with starfile (before issue 19 a hand-written tokenizer
read every row too, for line numbers). Writes a STAR of ``--n`` rows (RELION 5 style, with
angles, class numbers and names), reads it ``--repeats`` times and records the best and median
time, the load average and the git commit under benchmarks/results/ (the machine is shared).

    PYTHONPATH=src python benchmarks/star_read_bench.py [--n 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass.io import read_particles, write_particles
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="rows of the table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="", help="a name for this run in the result")
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.n
    table = pd.DataFrame({
        "tomogram": rng.choice(["TS_01", "TS_02", "TS_03"], n),
        "x": rng.uniform(0, 500, n).round(2), "y": rng.uniform(0, 500, n).round(2),
        "z": rng.uniform(0, 200, n).round(2),
        "class_name": rng.choice(["ribosome", "proteasome", "apoferritin"], n),
        "rot": rng.uniform(-180, 180, n), "tilt": rng.uniform(0, 180, n),
        "psi": rng.uniform(-180, 180, n), "score": rng.uniform(0, 1, n),
    })
    with tempfile.TemporaryDirectory() as tmp:
        path = write_particles(Path(tmp) / "particles.star", table)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            back = read_particles(path)
            times.append(time.perf_counter() - t0)
        assert len(back) == n
        size = path.stat().st_size
    result = {
        "benchmark": "star_read", "label": args.label, "rows": n, "file_bytes": size,
        "repeats": args.repeats, "best_s": round(min(times), 4),
        "median_s": round(statistics.median(times), 4), "times_s": [round(t, 4) for t in times],
        "git_commit": git_commit(), "machine": machine_info(),
    }
    out = write_result("star_read", result, args.out, results_dir=RESULTS)
    print(f"{n} rows ({size / 1e6:.1f} MB): best {min(times):.3f} s, median "
          f"{statistics.median(times):.3f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
