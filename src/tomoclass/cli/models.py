"""``tomoclass models``: list the registered networks with their size and cost."""

from __future__ import annotations

import argparse
import json

from tomoclass.models import summarize_models


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    p = sub.add_parser(
        "models",
        help="list the networks: parameters, measured GFLOPs per sample, receptive field",
        description="List the registered networks with their parameter count, forward "
        "GFLOPs per sample (measured with torch's flop counter) and the receptive field of "
        "their last conv feature map.",
    )
    p.add_argument("--input-size", type=int, default=32,
                   help="edge of the cubic sample for the FLOP count, voxels (default 32)")
    p.add_argument("--num-classes", type=int, default=12,
                   help="classes of the built models (default 12, as SHREC'19)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g = p.add_argument_group("pretrained models (usable as --run NAME)")
    g.add_argument("--pretrained", action="store_true",
                   help="list the registered pretrained models, their provenance and whether "
                   "their file is present with the registered sha256")
    g.add_argument("--add-pretrained", metavar="NAME",
                   help="register a run's checkpoint as pretrained model NAME (copied)")
    g.add_argument("--from-run", metavar="RUN", help="the run (or .pt) for --add-pretrained")
    g.add_argument("--which", default="best", help="its checkpoint (default best)")
    g.add_argument("--pretrained-dir", metavar="DIR",
                   help="pretrained directory to add to (default $TOMOCLASS_PRETRAINED_DIR or "
                   "~/.cache/tomoclass/pretrained)")
    g.add_argument("--training-command", help="record this command (default: the run's)")
    g.add_argument("--metrics", metavar="JSON",
                   help="record this JSON too (e.g. score-picks output on a held-out tomogram)")
    g.add_argument("--description", default="", help="one line on what the model is for")
    g.add_argument("--radius", action="append", metavar="R|NAME=R",
                   help="a detector's particle radius in the run's voxels, R for every class or "
                   "NAME=R (repeat), recorded in Å; locate --run NAME uses them unless given "
                   "others")
    p.set_defaults(func=run)


def _rf(rf: tuple[int, int, int]) -> str:
    return str(rf[0]) if len(set(rf)) == 1 else "x".join(map(str, rf))


def run(args: argparse.Namespace) -> int:
    """Print one row per model (or the pretrained models, or register one)."""
    if args.add_pretrained or args.pretrained:
        from tomoclass.cli.pretrained_list import add_pretrained, list_pretrained

        return add_pretrained(args) if args.add_pretrained else list_pretrained(args)
    rows = summarize_models(num_classes=args.num_classes, input_size=args.input_size)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    header = ("model", "parameters", f"GFLOPs/{args.input_size}^3", "receptive field (zyx)",
              "input edge", "head")
    table = [header]
    for r in rows:
        edge = f">={r.min_input_size}" if r.max_input_size is None else \
            f"{r.min_input_size}-{r.max_input_size}"
        table.append((r.name, f"{r.parameters:,}", f"{r.gflops_per_sample:.2f}",
                      _rf(r.receptive_field), edge, "GAP+linear" if r.has_gap_head else "FC"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
