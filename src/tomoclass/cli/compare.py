"""``tomoclass compare``: Table 2, Fig. 4A/4B and CAM scores of several runs side by side."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    p = sub.add_parser(
        "compare",
        help="compare runs: per-class F1 table (paper Table 2), Fig. 4A/4B, CAM scores",
        description="Compare evaluated runs. Each RUN is a run folder (its "
        "evaluation_SPLIT/report.json is read) or an evaluation folder / report.json. "
        "With --data every run is evaluated on that dataset first.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default="comparison", help="output folder (default: ./comparison)")
    p.add_argument("--data", default=None, help="evaluate every run on this dataset first")
    p.add_argument("--split", default="test", help="split evaluated with --data (default: test)")
    p.add_argument("--group", default="tiny",
                   help="size group of the F1-vs-epoch curve, or 'macro' (default: tiny, as in "
                   "the paper; falls back to macro when a run lacks it)")
    p.add_argument("--curve-from", choices=("log", "checkpoints"), default="log",
                   help="F1 vs epoch from each run's metrics.jsonl (validation, every epoch) or "
                   "by evaluating its periodic checkpoints on --data/--curve-split "
                   "(default: log)")
    p.add_argument("--curve-split", default="val",
                   help="split the periodic checkpoints are evaluated on (default: val)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Gather (or compute) the evaluations, write the comparison, print Table 2."""
    from tomoclass.errors import InputError
    from tomoclass.evaluate.compare import compare_runs, unique_labels, write_comparison
    from tomoclass.evaluate.report import load_report
    from tomoclass.workflows.evaluate import checkpoint_curve, evaluate_run

    if args.data is not None:
        reports = [evaluate_run(r, args.data, args.split, device=args.device) for r in args.runs]
    else:
        reports = [load_report(r) for r in args.runs]
    curves = None
    if args.curve_from == "checkpoints":
        if args.data is None:
            raise InputError("--curve-from checkpoints needs --data", field="curve-from")
        from tomoclass.data import open_dataset

        store = open_dataset(args.data)
        labels = unique_labels([r.model_name for r in reports], args.runs)
        curves = [checkpoint_curve(r, store, args.curve_split, group=args.group, label=lbl,
                                   device=args.device)
                  for r, lbl in zip(args.runs, labels, strict=True)]
        curves = [c for c in curves if c.epochs.size] or None
    comp = write_comparison(compare_runs(args.runs, reports=reports, group=args.group,
                                         curves=curves), args.out)
    print(comp.to_markdown())
    print(f"comparison: {comp.files['markdown']}")
    return 0
