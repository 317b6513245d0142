"""Benchmark the simulator: subtomograms/s and one full-size tomogram (seconds, peak RSS).

    PYTHONPATH=src python benchmarks/simulate_bench.py [--quick] [--out benchmarks/results]

* Subtomogram mode: 32^3 boxes, CTF + missing wedge + noise, the 14-phantom library at
  10 A/voxel, for 1 and 2 worker processes (throughput from wall time) plus the CPU time per
  subtomogram of the single-process run (less sensitive to other users of a shared machine).
* Streaming: peak RSS of writing a dataset of N and 4N subtomograms (memory must stay flat).
* Tomogram mode: one 512x512x200 tomogram at 1 nm, 2,500 particles, 61 tilts (-60..60 by 2),
  written to a temporary directory; wall seconds and the child process's peak RSS.

Each measurement runs in a child process so its peak RSS is its own. The machine may be
shared: the JSON records load average, nproc, git commit and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import tomoclass
from tomoclass.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]

SUBTOMO_CHILD = r"""
import json, sys, time
from tomoclass.simulate.config import SimulationConfig
from tomoclass.simulate.structures import load_class_templates
from tomoclass.simulate.subtomograms import iter_subtomograms
n, processes = int(sys.argv[1]), int(sys.argv[2])
cfg = SimulationConfig()
cfg.subtomograms.box_size = 32
cfg.subtomograms.n_per_class = max(1, n // len(cfg.classes))
templates = load_class_templates(cfg)
list(iter_subtomograms(templates, cfg, count=64))  # warm caches
t0, c0 = time.perf_counter(), time.process_time()
count = sum(1 for _ in iter_subtomograms(templates, cfg, processes=processes))
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"count": count, "wall_s": wall, "parent_cpu_s": cpu}))
"""

DATASET_CHILD = r"""
import json, sys, tempfile, time
from tomoclass.simulate.config import SimulationConfig
from tomoclass.data.simulated import write_subtomogram_dataset
from tomoclass.simulate.structures import load_class_templates
n = int(sys.argv[1])
cfg = SimulationConfig()
cfg.subtomograms.n_per_class = max(1, n // len(cfg.classes))
templates = load_class_templates(cfg)
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    write_subtomogram_dataset(d + "/ds", templates, cfg)
    print(json.dumps({"count": cfg.subtomograms.n_per_class * len(templates),
                      "wall_s": time.perf_counter() - t0}))
"""

TOMO_CHILD = r"""
import json, sys, tempfile, time
from tomoclass.simulate.config import SimulationConfig
from tomoclass.simulate.output import write_tomogram
from tomoclass.simulate.structures import load_class_templates
from tomoclass.simulate.tomogram import simulate_tomogram
z, y, x, n = (int(v) for v in sys.argv[1:5])
cfg = SimulationConfig()
cfg.tomogram.shape_zyx = (z, y, x)
cfg.tomogram.n_particles = n
templates = load_class_templates(cfg)
stages = {}
t0 = time.perf_counter()
last = [t0]
def tick(name):
    now = time.perf_counter()
    stages[name] = round(now - last[0], 2)
    last[0] = now
res = simulate_tomogram(templates, cfg, progress=tick)
with tempfile.TemporaryDirectory() as d:
    write_tomogram(d, res, "bench")
    tick("written")
print(json.dumps({"wall_s": time.perf_counter() - t0, "stages_s": stages,
                  "n_placed": len(res.particles), "n_tilts": len(res.tilt_angles_deg)}))
"""


def _child(code: str, *args) -> dict:
    # the child imports the tomoclass this process runs (installed, or on $PYTHONPATH)
    env = dict(os.environ, PYTHONPATH=str(Path(tomoclass.__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    err = proc.stderr.read()
    if status != 0:
        raise RuntimeError(f"child failed: {err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    res["child_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    return res



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)

    n_sub = 700 if args.quick else 2800
    tomo = (40, 128, 128, 60) if args.quick else (200, 512, 512, 2500)
    result = {
        "benchmark": "simulate",
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "nproc": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "machine_note": "wall-clock numbers depend on what else ran: see loadavg_before",
        "quick": args.quick,
    }
    sub = {}
    for processes in (1, 2):
        r = _child(SUBTOMO_CHILD, n_sub, processes)
        r["subtomograms_per_s"] = round(r["count"] / r["wall_s"], 1)
        r["subtomograms_per_cpu_s"] = round(r["count"] / r["child_cpu_s"], 1)
        sub[f"processes_{processes}"] = r
        print(f"subtomograms, {processes} process(es): {r['subtomograms_per_s']}/s wall, "
              f"{r['subtomograms_per_cpu_s']}/s per CPU-second", flush=True)
    result["subtomograms_32_ctf_wedge_noise"] = sub
    result["subtomogram_goal_per_s"] = 500
    stream = {}
    for n in (n_sub // 4, n_sub):
        r = _child(DATASET_CHILD, n)
        stream[str(r["count"])] = r
        print(f"dataset of {r['count']}: peak RSS {r['peak_rss_mib']} MiB", flush=True)
    result["dataset_writer_peak_rss"] = stream
    r = _child(TOMO_CHILD, *tomo)
    r["shape_zyx"] = list(tomo[:3])
    r["n_particles_requested"] = tomo[3]
    result["tomogram"] = r
    result["tomogram_goal"] = {"seconds": 300, "peak_rss_mib": 4096}
    print(f"tomogram {tomo[:3]}: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mib']} MiB, "
          f"stages {r['stages_s']}", flush=True)
    result["loadavg_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M")
    path = args.out / f"simulate_{'quick_' if args.quick else ''}{stamp}.json"
    tmp = Path(tempfile.mkstemp(dir=args.out, suffix=".tmp")[1])
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
