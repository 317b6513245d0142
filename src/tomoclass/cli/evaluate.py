"""``tomoclass evaluate``: per-class F1 (Eq. 2), means, confusion matrix and CAM score of a run."""

from __future__ import annotations

import argparse

from tomoclass.cam.score import DEFAULT_MASK_LEVEL


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="measure a trained run on a dataset split (F1 per class, confusion, CAM score)",
        description="Evaluate a run's checkpoint on one split of a dataset and write "
        "report.md, report.json, confusion.csv and confusion.png.",
    )
    p.add_argument("--run", required=True, help="run folder written by 'tomoclass train'")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", default=None,
                   help="report folder (default: RUN/evaluation_SPLIT, where compare looks)")
    p.add_argument("--checkpoint", default="best",
                   help="best, last or epoch_NNN (default: best)")
    p.add_argument("--no-cam", action="store_true",
                   help="skip the CAM score (computed when the dataset has clean volumes)")
    p.add_argument("--mask-level", type=float, default=DEFAULT_MASK_LEVEL,
                   help="particle-mask threshold of the CAM score, fraction of the peak "
                   f"density (default: {DEFAULT_MASK_LEVEL})")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report, print its summary."""
    from tomoclass.workflows.evaluate import evaluate_run

    rep = evaluate_run(args.run, args.data, args.split, out_dir=args.out,
                       which=args.checkpoint, cam=not args.no_cam, mask_level=args.mask_level,
                       batch_size=args.batch_size, device=args.device)
    print_summary(rep)
    return 0


def print_summary(rep) -> None:
    """Print an evaluation report's macro F1, size-group F1, CAM score and path."""
    s = rep.metrics.summary()
    print(f"{rep.model_name} on {rep.split} ({s['n']} particles): "
          f"macro F1 {_f(s['macro_f1'])}, weighted F1 {_f(s['weighted_f1'])}, "
          f"accuracy {_f(s['accuracy'])}")
    if s["group_f1"]:
        print("mean F1 per size group: " + ", ".join(
            f"{g} {_f(v)}" for g, v in s["group_f1"].items()))
    if rep.cam:
        print(f"CAM score ({rep.cam['method']}): {_f(rep.cam['mean'])} "
              f"(uniform map: {_f(rep.cam['mean_mask_fraction'])})")
    print(f"report: {rep.out_dir / 'report.md'}")


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
