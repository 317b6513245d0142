"""Record a finished demo's numbers with the machine and commit under benchmarks/results/.

Usage: ``make demo && python benchmarks/record_demo.py demo_out --wall-seconds S``
(``S``: the wall time of ``make demo`` as measured by ``time``, venv set-up included when
it was a fresh checkout; omitted if not given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from tomoclass.provenance import git_commit, machine_info, write_result

RESULTS = Path(__file__).resolve().parent / "results"

def main(argv=None) -> int:
    """Write ``benchmarks/results/demo_<UTC time>.json`` from ``DEMO_OUT/demo.json``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("demo_out", type=Path)
    ap.add_argument("--wall-seconds", type=float, default=None)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    demo = json.loads((args.demo_out / "demo.json").read_text())
    commit = git_commit(short=True)
    now = dt.datetime.now(dt.timezone.utc)
    record = {"command": "make demo", "date_utc": now.isoformat(timespec="seconds"),
              "commit": commit, "machine": machine_info(),
              "wall_seconds_make_demo": args.wall_seconds,
              "note": args.note, **demo}
    out = write_result("demo", record, results_dir=RESULTS)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
