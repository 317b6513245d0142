"""Record a finished demo's numbers with the machine and commit under benchmarks/results/.

Usage: ``make demo && python benchmarks/record_demo.py demo_out --wall-seconds S``
(``S``: the wall time of ``make demo`` as measured by ``time``, venv set-up included when
it was a fresh checkout; omitted if not given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict:
    """CPU, cores, memory, load and torch of this machine."""
    import torch

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "load_average": os.getloadavg(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def main(argv=None) -> int:
    """Write ``benchmarks/results/demo_<UTC time>.json`` from ``DEMO_OUT/demo.json``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("demo_out", type=Path)
    ap.add_argument("--wall-seconds", type=float, default=None)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    demo = json.loads((args.demo_out / "demo.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    now = dt.datetime.now(dt.timezone.utc)
    record = {"command": "make demo", "date_utc": now.isoformat(timespec="seconds"),
              "commit": commit, "machine": machine(), "wall_seconds_make_demo": args.wall_seconds,
              "note": args.note, **demo}
    out = Path(__file__).parent / "results" / f"demo_{now:%Y%m%dT%H%M}.json"
    out.write_text(json.dumps(record, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
