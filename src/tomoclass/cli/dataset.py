"""``tomoclass dataset``: inspect, re-split, import and export subtomogram datasets."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from tomoclass.data.finite import describe_rows
from tomoclass.data.fromfiles import split_options
from tomoclass.data.store import (
    SPLITS,
    assign_splits,
    export_subtomograms,
    import_subtomograms,
    open_dataset,
    parse_list,
    set_splits,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` subcommand and its actions."""
    p = sub.add_parser("dataset", help="inspect, split, import or export a dataset")
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    acts.required = True

    info = acts.add_parser("info", help="counts per class and split, box, voxel size")
    info.add_argument("path", help="dataset directory")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=run_info)

    sp = acts.add_parser("split", help="reassign train/val/test")
    sp.add_argument("path")
    sp.add_argument("--by", choices=("tomogram", "stratified"), default="tomogram")
    sp.add_argument("--test-tomograms", default="9")
    sp.add_argument("--val-tomograms", default="")
    sp.add_argument("--val-fraction", type=float, default=0.0)
    sp.add_argument("--test-fraction", type=float, default=0.1)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=run_split)

    imp = acts.add_parser("import", help="from subtomogram MRCs + STAR (RELION/Warp layout)")
    imp.add_argument("star", help="STAR with rlnImageName and a class column (coordinates "
                     "not needed)")
    imp.add_argument("--out", required=True, help="dataset directory to write")
    imp.add_argument("--root", default=None, help="directory the image paths are relative to")
    imp.add_argument("--class-names", default=None,
                     help="names of rlnClassNumber 1..K, comma-separated or 'shrec19'")
    imp.add_argument("--class-column", metavar="LABEL",
                     help="STAR column holding the class (e.g. rlnParticleName); its values "
                     "are the class names")
    imp.add_argument("--class-from-filename", action="store_true",
                     help="the class is the STAR file's name (one STAR per class)")
    imp.add_argument("--class-pattern", metavar="REGEX",
                     help="the class is the 'class' (else first) group of REGEX in the STAR's "
                     "file name, e.g. 'class(\\d+)'")
    imp.add_argument("--voxel-size", type=float, default=None, metavar="A")
    imp.add_argument("--normalize", choices=("zscore", "none"), default="zscore")
    imp.add_argument("--polarity", choices=("dark", "bright"), default="dark",
                     help="how particles look in the subtomograms: dark (as reconstructed, "
                     "default) or bright (contrast inverted); recorded in the dataset")
    imp.set_defaults(func=run_import)

    exp = acts.add_parser("export", help="to subtomogram MRCs + STAR (RELION/Warp layout)")
    exp.add_argument("path", help="dataset directory")
    exp.add_argument("--out", required=True, help="directory to write")
    exp.add_argument("--clean", action="store_true", help="export the noise-free boxes")
    exp.set_defaults(func=run_export)


def run_info(args: argparse.Namespace) -> int:
    """Print the dataset summary (and, on stderr, the rows whose boxes hold NaN/inf)."""
    store = open_dataset(args.path)
    info = store.summary()
    bad = info["nonfinite_rows"]
    if bad:
        print(f"tomoclass dataset info: warning: {args.path}: {len(bad)} subtomogram"
              f"{'s' if len(bad) > 1 else ''} hold NaN/inf values: "
              f"{describe_rows(store, np.asarray(bad))}", file=sys.stderr)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['n_subtomograms']} subtomograms, box {info['box']}^3, "
          f"{info['voxel_size_angstrom']:g} Å/voxel, normalization {info['normalization']}, "
          f"particles {info['polarity']}"
          f"{', with clean volumes' if info['has_clean'] else ''}")
    print(f"tomograms: {', '.join(info['tomograms'])}")
    width = max([5] + [len(n) for n in info["per_class"]])
    print(f"{'class':<{width}}  {'size':<6} " + " ".join(f"{s:>6}" for s in SPLITS) + "  total")
    for name, row in info["per_class"].items():
        print(f"{name:<{width}}  {row['size_group']:<6} "
              + " ".join(f"{row[s]:>6}" for s in SPLITS) + f"  {row['total']:>5}")
    print(f"{'all':<{width}}  {'':<6} " + " ".join(f"{info['per_split'][s]:>6}" for s in SPLITS)
          + f"  {info['n_subtomograms']:>5}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Reassign splits and rewrite particles.star."""
    store = open_dataset(args.path)
    opts = split_options(args.by, seed=args.seed, val_fraction=args.val_fraction,
                         test_fraction=args.test_fraction,
                         test_tomograms=parse_list(args.test_tomograms),
                         val_tomograms=parse_list(args.val_tomograms))
    split = assign_splits(store.table, args.by, **opts)
    set_splits(args.path, split)
    print(" ".join(f"{s}={int((split == s).sum())}" for s in SPLITS))
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Build a dataset from a RELION/Warp subtomogram folder."""
    names = args.class_names
    if names and names.lower() != "shrec19":
        names = parse_list(names)
    out = import_subtomograms(args.star, args.out, class_names=names, root=args.root,
                              voxel_size_angstrom=args.voxel_size, normalize=args.normalize,
                              polarity=args.polarity, class_column=args.class_column,
                              class_from_filename=args.class_pattern or args.class_from_filename)
    print(f"wrote {len(open_dataset(out))} subtomograms to {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write a dataset as subtomogram MRCs + STAR."""
    out = export_subtomograms(args.path, args.out, clean=args.clean)
    print(f"wrote {out / 'particles.star'} and {out / 'Subtomograms'}")
    return 0
