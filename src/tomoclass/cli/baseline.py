"""``tomoclass baseline``: the nearest-class-mean correlation floor of a dataset split."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``baseline`` subcommand."""
    p = sub.add_parser(
        "baseline",
        help="score the nearest-class-mean correlation baseline (the floor a net must beat)",
        description="Average each class's training boxes, give every box of a split the class "
        "whose mean it correlates with most, and write the report as 'tomoclass evaluate' "
        "does (report.md, report.json, confusion.csv, confusion.png). No training: seconds.",
    )
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--train-split", default="train",
                   help="split whose boxes make the class means (default: train)")
    p.add_argument("--clean", action="store_true",
                   help="score the noise-free boxes of a simulated dataset (clean.npy): how far "
                   "the classes' mean shapes alone separate them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the baseline, write the report, print its summary."""
    from tomoclass.cli.evaluate import print_summary
    from tomoclass.workflows.evaluate import evaluate_baseline

    rep = evaluate_baseline(args.data, args.out, args.split, train_split=args.train_split,
                            clean=args.clean)
    print_summary(rep)
    return 0
