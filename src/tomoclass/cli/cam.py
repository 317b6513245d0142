"""``tomoclass cam``: class activation map figures (paper Fig. 5) and MRC maps of runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``cam`` subcommand."""
    p = sub.add_parser(
        "cam",
        help="class activation maps of one or more runs: Fig. 5-style PNG, MRC maps",
        description="Rows: particles of a dataset split, spread over the classes. Columns: "
        "input centre slice, noise-free ground truth (when the dataset has clean.npy), and the "
        "CAM (Eq. 1; Grad-CAM for nets without a GAP head) of each run.",
    )
    p.add_argument("--run", action="append", required=True, metavar="RUN",
                   help="run folder; repeat for one CAM column per run")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--n", type=int, default=8, help="number of particles (default: 8)")
    p.add_argument("--out", default="cam.png", help="output PNG (default: cam.png)")
    p.add_argument("--mrc-dir", default=None, help="also write every map as MRC here")
    p.add_argument("--orthogonal", action="store_true",
                   help="show xy, xz and yz centre slices (the missing wedge shows in xz/yz)")
    p.add_argument("--split", default="test", help="split to draw particles from (default: test)")
    p.add_argument("--target", choices=("predicted", "true"), default="predicted",
                   help="map the predicted class (default) or the true class")
    p.add_argument("--checkpoint", default="best", help="best, last or epoch_NNN")
    p.add_argument("--seed", type=int, default=0, help="seed of the particle choice")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw the figure (and maps) and say where they are."""
    from tomoclass.workflows.cam import cam_for_runs

    res = cam_for_runs(args.run, args.data, args.out, n=args.n, split=args.split,
                       which=args.checkpoint, target=args.target, mrc_dir=args.mrc_dir,
                       orthogonal=args.orthogonal, seed=args.seed, device=args.device)
    for p in res.panels:
        print(f"{p.label}: {len(p.result.cam)} maps")
    print(f"figure: {res.figure}")
    if res.mrc_files:
        print(f"{len(res.mrc_files)} MRC maps in {res.mrc_files[0].parent}")
    return 0
