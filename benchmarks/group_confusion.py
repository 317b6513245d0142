"""Size found, identity not? Group confusion of evaluation reports, mean over seeds per model.

    # run folders of `tomoclass train` + `tomoclass evaluate` (or their report.json files):
    python benchmarks/group_confusion.py ~/tomoclass_small12/runs/*_seed* \\
        --out benchmarks/results/group_confusion_small12.json

Issue 18: the tiny classes end level with the no-training floor on every small12 run. A group's
F1 mixes two failures, a tiny particle called small (its size missed) and a tiny particle
called another tiny class (its size found, its identity not);
:meth:`tomoclass.metrics.ClassificationMetrics.group_confusion` separates them. Run records of
``benchmarks/small_tier.py`` carry it since it was added (the tier's ``table.md`` shows it);
this reads the evaluation reports of older runs whose records do not. Reports are grouped by
their model name; the seed is taken from a ``_seed<N>`` in the run folder's name (else the
report's position). Writes ``--out`` (JSON: per report and per model) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tomoclass.errors import TomoclassError
from tomoclass.evaluate.report import load_report
from tomoclass.evaluate.seeds import group_confusion_lines, summarize_group_confusion
from tomoclass.provenance import git_commit, new_result_file, write_result


def collect(paths: Sequence[Path]) -> dict[str, Any]:
    """``{"reports": [...], "per_model": {model: summarize_group_confusion}}`` of the reports."""
    by_model: dict[str, dict[Any, dict[str, Any]]] = {}
    reports = []
    for i, p in enumerate(paths):
        rep = load_report(p)
        seed_match = re.search(r"_seed(\d+)", str(Path(rep.run_dir or p).name))
        seed = int(seed_match.group(1)) if seed_match else i
        gc = rep.metrics.group_confusion()
        if seed in by_model.get(rep.model_name, {}):
            raise TomoclassError(f"{p}: a second report of {rep.model_name} seed {seed}")
        by_model.setdefault(rep.model_name, {})[seed] = {"group_confusion": gc}
        reports.append({"path": str(p), "model": rep.model_name, "seed": seed,
                        "checkpoint": rep.checkpoint, "macro_f1": rep.macro_f1,
                        "group_confusion": gc})
    per_model = {m: {"group_confusion": summarize_group_confusion(s)}
                 for m, s in sorted(by_model.items())}
    return {"reports": reports, "per_model": per_model}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(prog="group_confusion.py", description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", type=Path,
                   help="run folders, evaluation folders or report.json files")
    p.add_argument("--out", type=new_result_file, help="JSON result (never replaced)")
    args = p.parse_args(argv)
    try:
        res = collect(args.reports)
    except TomoclassError as exc:
        print(f"group_confusion.py: error: {exc}", file=sys.stderr)
        return 2
    text = "\n".join(group_confusion_lines(res["per_model"], list(res["per_model"])))
    print(text.strip())
    if args.out:
        res.update({"markdown": text.strip(), "git_commit": git_commit(),
                    "command": " ".join(["group_confusion.py", *map(str, argv or sys.argv[1:])])})
        print(f"wrote {write_result('group_confusion', res, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
