"""Training steps with glibc's default malloc vs tomoclass's (``tomoclass.runtime``).

    python benchmarks/malloc_bench.py --model dilated_densenet3d --steps 4 --repeats 2 \\
        --threads 1 --out benchmarks/results

Each variant runs in its own process (malloc settings are per process), alternating, so
that load from other jobs hits both alike: ``system`` (``TOMOCLASS_MALLOC=system``: glibc as
it is) and ``retain`` (:func:`tomoclass.runtime.retain_freed_memory`). A process builds the
model, runs one warm-up step, then ``--steps`` training steps of a random batch (``--batch``
boxes of ``--box``³, Adam, cross-entropy), and reports samples/s, its user and system CPU
seconds, minor page faults and peak resident memory over the timed steps. One JSON per call:
``OUT/malloc_<UTC time>.json`` with the machine, load and commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"system": {"TOMOCLASS_MALLOC": "system"}, "retain": {}}


def worker(model_name: str, steps: int, batch: int, box: int) -> dict:
    """Timed training steps in this process (after the variant's malloc setting)."""
    import torch

    from tomoclass.runtime import retain_freed_memory
    from tomoclass.train.loop import build_model

    applied = retain_freed_memory()
    torch.manual_seed(0)
    model = build_model(model_name, 9, {})
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, box, box, box)
    y = torch.randint(0, 9, (batch,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"retain_applied": applied, "samples_per_s": round(batch * steps / wall, 3),
            "wall_s": round(wall, 2), "user_s": round(r1.ru_utime - r0.ru_utime, 2),
            "sys_s": round(r1.ru_stime - r0.ru_stime, 2),
            "minor_faults": r1.ru_minflt - r0.ru_minflt,
            "max_rss_gib": round(r1.ru_maxrss / 2**20, 2),
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dilated_densenet3d")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--box", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the workers")
    p.add_argument("--out", type=Path, default=None, help="results folder (else print only)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.model, args.steps, args.batch, args.box)))
        return 0
    from tomoclass.provenance import git_commit, machine_info

    rows = []
    load = list(os.getloadavg())
    for rep in range(args.repeats):
        for name, env in VARIANTS.items():
            e = {k: v for k, v in os.environ.items() if k != "TOMOCLASS_MALLOC"}
            e.update(env)
            if args.threads:
                e["OMP_NUM_THREADS"] = str(args.threads)
            cmd = [sys.executable, __file__, "--worker", "--model", args.model,
                   "--steps", str(args.steps), "--batch", str(args.batch), "--box", str(args.box)]
            res = subprocess.run(cmd, env=e, capture_output=True, text=True, check=True)
            last = res.stdout.strip().splitlines()[-1]
            row = {"variant": name, "repeat": rep, **json.loads(last)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    record = {"benchmark": "malloc", "args": {k: v for k, v in vars(args).items()
                                              if k not in ("out", "worker")},
              "rows": rows, "loadavg_start": load, "loadavg_end": list(os.getloadavg()),
              "machine": machine_info(), "git_commit": git_commit(),
              "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["malloc_bench.py", *(argv or sys.argv[1:])])}
    for name in VARIANTS:
        sps = [r["samples_per_s"] for r in rows if r["variant"] == name]
        record[f"{name}_samples_per_s_mean"] = round(sum(sps) / len(sps), 3)
    print(f"samples/s: system {record['system_samples_per_s_mean']}, "
          f"retain {record['retain_samples_per_s_mean']}")
    if args.out:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"malloc_{stamp}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
