"""``tomoclass extract``: tomograms + particle tables -> a subtomogram dataset directory."""

from __future__ import annotations

import argparse
import json
import sys

from tomoclass.cli import copick_args
from tomoclass.data.fromfiles import extract_from_files
from tomoclass.data.polarity import POLARITY_CHOICES
from tomoclass.data.store import parse_list
from tomoclass.errors import InputError
from tomoclass.io.particles import READ_FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``extract`` subcommand."""
    p = sub.add_parser(
        "extract", help="cut subtomograms out of tomograms into a dataset",
        description="Extract a box around every particle of the tables from its tomogram "
                    "(memory-mapped) and write a dataset directory (subtomograms.npy, "
                    "particles.star, classes.yaml, dataset.yaml).")
    p.add_argument("--tomograms", nargs="+", default=[], metavar="MRC",
                   help="tomogram files (MRC or OME-Zarr); rows are matched by tomogram name "
                   "(file stem); required unless --copick-config")
    p.add_argument("--tables", nargs="+", default=[], metavar="TABLE[=TOMOGRAM]",
                   help="particle tables (SHREC txt, DeepFinder xml, RELION star, csv, PolNet "
                        "tomos_motif_list.csv); TABLE=TOMOGRAM gives every row of TABLE that "
                        "tomogram's name (DeepFinder lists all say tomo_idx=\"0\")")
    p.add_argument("--clean-tomograms", nargs="+", default=None, metavar="MRC",
                   help="noise-free volumes, one per tomogram in the same order (simulator's "
                        "*_density.mrc): their boxes go to clean.npy, not normalized")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--table-format", default="auto", choices=("auto",) + READ_FORMATS)
    p.add_argument("--box", type=int, default=32, help="box edge in voxels (default 32)")
    p.add_argument("--voxel-size", type=float, default=None, metavar="A",
                   help="dataset voxel size in Å (default: the first tomogram's); "
                        "other tomograms are resampled")
    p.add_argument("--tomogram-voxel-size", type=float, default=None, metavar="A",
                   help="override wrong tomogram headers (Å)")
    p.add_argument("--coords-angpix", type=float, default=None, metavar="A",
                   help="pixel size (Å) of the tables' coordinates when it is not the "
                        "tomograms' voxel size (RELION 4 / Warp: unbinned tilt-series pixels)")
    p.add_argument("--class-names", default=None,
                   help="names of numeric labels, comma-separated or 'shrec19'")
    p.add_argument("--class-column", metavar="LABEL",
                   help="STAR/CSV column holding the class (e.g. rlnParticleName)")
    p.add_argument("--class-from-filename", action="store_true",
                   help="each table's class is its file name (one table per class)")
    p.add_argument("--class-pattern", metavar="REGEX",
                   help="each table's class is the 'class' (else first) group of REGEX in its "
                        "file name, e.g. 'class(\\d+)'")
    p.add_argument("--classes", default=None,
                   help="dataset class order, comma-separated (default: sorted names)")
    p.add_argument("--drop-duplicates", action="store_true",
                   help="keep the first of duplicated particles instead of stopping")
    p.add_argument("--include-nonprotein", action="store_true",
                   help="keep vesicle/fiducial rows (background rows are always kept)")
    p.add_argument("--subvoxel", action="store_true", help="centre boxes at sub-voxel precision")
    p.add_argument("--border", choices=("pad", "skip"), default="pad",
                   help="boxes crossing the border: pad and flag (default) or skip")
    p.add_argument("--normalize", choices=("zscore", "none"), default="zscore")
    p.add_argument("--polarity", choices=POLARITY_CHOICES, default="auto",
                   help="how particles look in the tomograms: auto (default: measured per "
                        "tomogram), dark (as reconstructed) or bright (inverted); boxes of "
                        "bright tomograms are inverted so the dataset holds dark particles")
    p.add_argument("--background", type=int, default=0, metavar="N",
                   help="add N random background boxes per tomogram: the 'background' class "
                   "a detector for 'tomoclass locate' needs (docs/locate.md)")
    p.add_argument("--background-offcentre", type=int, default=0, metavar="N",
                   help="add N background boxes per tomogram next to particles, off their "
                   "centres by more than their radius and at most box / 2")
    p.add_argument("--background-radius", nargs="+", default=None, metavar="R|NAME=R",
                   help="particle radius in voxels (all classes, or per class) that background "
                   "boxes keep clear of (default box / 4)")
    p.add_argument("--split", choices=("tomogram", "stratified"), default="tomogram",
                   help="by tomogram (SHREC: test 9) or stratified by class")
    p.add_argument("--test-tomograms", default="9",
                   help="tomograms for the test split (names or numbers, comma-separated)")
    p.add_argument("--val-tomograms", default="", help="tomograms for the val split")
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--test-fraction", type=float, default=0.1, help="stratified split only")
    p.add_argument("--seed", type=int, default=0)
    copick_args.add_input_args(p)
    p.add_argument("--nonfinite", choices=("error", "skip"), default="error",
                   help="a box holding NaN/inf: refuse the job naming it (default) or skip it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the tables, extract, write the dataset and print the counts."""
    class_names = args.class_names
    if class_names and class_names.lower() != "shrec19":
        class_names = parse_list(class_names)
    copick_tomograms, copick_table = copick_args.read_inputs(args)
    args.tomograms = list(args.tomograms) + copick_tomograms
    if not args.tomograms or not (args.tables or copick_table is not None):
        raise InputError("give --tomograms and --tables, or --copick-config", field="--tomograms")
    report = extract_from_files(
        args.out, args.tomograms, args.tables, extra_table=copick_table,
        table_format=args.table_format, class_names=class_names,
        classes=parse_list(args.classes) if args.classes else None,
        class_column=args.class_column,
        class_from_filename=args.class_pattern or args.class_from_filename,
        coordinate_pixel_size_angstrom=args.coords_angpix,
        tomogram_voxel_size_angstrom=args.tomogram_voxel_size,
        drop_duplicates=args.drop_duplicates, split_method=args.split,
        split={"seed": args.seed, "val_fraction": args.val_fraction,
               "test_fraction": args.test_fraction,
               "test_tomograms": parse_list(args.test_tomograms),
               "val_tomograms": parse_list(args.val_tomograms)},
        box=args.box, voxel_size_angstrom=args.voxel_size,
        include_nonprotein=args.include_nonprotein, subvoxel=args.subvoxel, border=args.border,
        normalize=args.normalize, clean_tomograms=args.clean_tomograms, polarity=args.polarity,
        nonfinite=args.nonfinite, background=_background(args),
        provenance={"argv": sys.argv[1:]})
    print(f"wrote {report.n_written} subtomograms to {report.path}")
    print(json.dumps({"per_tomogram": report.per_tomogram, "padded": report.n_padded,
                      "skipped_outside": report.n_outside,
                      "skipped_border": report.n_border_skipped,
                      "unmatched_tomogram": report.n_unmatched,
                      "nonprotein_left_out": report.n_nonprotein,
                      "nonfinite_skipped": report.n_nonfinite,
                      "inverted": sorted(n for n, i in report.inverted.items() if i)}))
    return 0


def _background(args: argparse.Namespace) -> dict | None:
    """The ``background`` option of :func:`extract_dataset` from ``--background*``."""
    if not (args.background or args.background_offcentre):
        return None
    from tomoclass.locate.radii import parse_radii

    return {"n_random": args.background, "n_offcentre": args.background_offcentre,
            "radii": parse_radii(args.background_radius) or args.box / 4, "seed": args.seed}
