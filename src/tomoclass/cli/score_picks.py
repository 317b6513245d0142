"""``tomoclass score-picks``: SHREC-style localization + classification scores of picks."""

from __future__ import annotations

import argparse
import json

from tomoclass.errors import InputError
from tomoclass.evaluate.picks import MATCHINGS, REGIONS
from tomoclass.evaluate.sweep import parse_thresholds, score_pick_files, sweep_markdown
from tomoclass.io.atomic import atomic_path
from tomoclass.locate.calibration import save_threshold
from tomoclass.locate.radii import merge_radii


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``score-picks`` subcommand."""
    p = sub.add_parser(
        "score-picks",
        help="score picks against ground truth (SHREC hit regions, localization and class F1)",
        description=(
            "A pick is a hit when it lies within the radius of a true particle (sphere, or "
            "cube with --region box); each particle is matched once. Prints localization "
            "precision/recall/F1, per-class F1 among hits and the confusion matrix."
        ),
    )
    p.add_argument("--truth", required=True,
                   help="ground truth (SHREC txt, STAR, CSV, XML, PolNet tomos_motif_list.csv)")
    p.add_argument("--picks", required=True, help="picks (STAR, CSV, SHREC txt)")
    p.add_argument(
        "--radius",
        action="append",
        metavar="R|NAME=R",
        help="hit radius in voxels: R for every class, NAME=R per class (repeat); "
        "overrides --sizes",
    )
    p.add_argument(
        "--sizes",
        metavar="SIZES_TXT",
        help="per-class radii from a SHREC'21 sizes.txt (radius(nm) column)",
    )
    p.add_argument(
        "--voxel-size",
        type=float,
        default=10.0,
        dest="voxel_size",
        help="voxel size of the tomogram in Å (default 10, SHREC's): converts --sizes radii "
        "and the Å coordinates of a PolNet tomos_motif_list.csv",
    )
    p.add_argument("--region", choices=REGIONS, default="sphere")
    p.add_argument("--matching", choices=MATCHINGS, default="greedy")
    p.add_argument("--json", dest="json_out", help="also write the scores as JSON here")
    p.add_argument(
        "--sweep",
        metavar="T1,T2,...",
        help="also print localization P/R/F1 of the picks scoring at least each threshold "
        "(choose locate's --threshold on a tomogram other than the test one)",
    )
    p.add_argument(
        "--calibrate",
        metavar="RUN",
        help="choose the threshold with the best localization F1 on these picks (made at a "
        "low threshold on a labelled tomogram that is not a test tomogram) and store it in "
        "the run directory RUN: 'tomoclass locate' then uses it by default",
    )
    p.add_argument(
        "--which",
        default="best",
        help="with --calibrate: the checkpoint the picks were made with (default best)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read both tables, score, print the report (and write JSON)."""
    radii = merge_radii(args.sizes, args.radius, args.voxel_size)
    if radii is None:
        raise InputError("give --radius or --sizes", field="radius")
    scores = score_pick_files(
        args.truth, args.picks, radii, voxel_size_angstrom=args.voxel_size, region=args.region,
        matching=args.matching, thresholds=parse_thresholds(args.sweep) if args.sweep else None,
        calibrate=bool(args.calibrate))
    print(scores.result.to_markdown(), end="")
    if scores.sweep is not None:
        print("\nThreshold sweep (picks with score >= threshold):\n")
        print(sweep_markdown(scores.sweep), end="")
    if scores.choice is not None:
        choice = scores.choice
        path = save_threshold(args.calibrate, args.which, choice.threshold, scores.record)
        print(f"\nBest localization F1 {choice.f1:.3f} (precision {choice.precision:.3f}, "
              f"recall {choice.recall:.3f}, {choice.n_picks} picks) at threshold "
              f"{choice.threshold:.4g} of {len(choice.sweep)} tried; stored for checkpoint "
              f"{args.which} in {path}")
    if args.json_out:
        with atomic_path(args.json_out) as tmp:
            tmp.write_text(json.dumps(scores.to_dict(), indent=2) + "\n")
    return 0
