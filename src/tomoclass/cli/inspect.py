"""``tomoclass inspect``: what tomoclass makes of tomograms and particle tables, before a run."""

from __future__ import annotations

import argparse
import json

from tomoclass.cli import copick_args
from tomoclass.data.inspect import format_report, inspect_table, inspect_tomogram
from tomoclass.errors import InputError
from tomoclass.io import READ_FORMATS
from tomoclass.io.tomonames import split_table_spec


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand."""
    p = sub.add_parser(
        "inspect", help="check tomograms and particle tables before using them",
        description="Print what tomoclass reads from tomograms (shape, voxel size, axis order, "
        "contrast polarity, beam axis) and particle tables (format, classes, tomograms, "
        "whether the coordinates fit the tomograms), with a note for each thing to act on.")
    p.add_argument("--tomogram", nargs="*", default=[], metavar="MRC",
                   help="tomograms (their sizes also check the tables' coordinates)")
    p.add_argument("--table", nargs="*", default=[], metavar="TABLE[=TOMOGRAM]",
                   help="particle tables (SHREC txt, STAR, CSV, XML, PolNet motif list); "
                   "TABLE=TOMOGRAM names the tomogram of every row, as extract --tables does")
    p.add_argument("--voxel-size", type=float, metavar="A",
                   help="override the tomogram header's voxel size (Å)")
    p.add_argument("--coords-angpix", type=float, metavar="A",
                   help="pixel size (Å) of the tables' coordinates, if not the tomograms'")
    p.add_argument("--table-format", default="auto", choices=("auto",) + READ_FORMATS)
    p.add_argument("--class-column", metavar="LABEL",
                   help="STAR/CSV column holding the class (e.g. rlnParticleName)")
    p.add_argument("--class-from-filename", action="store_true",
                   help="the class is each table's file name (one table per class)")
    p.add_argument("--class-pattern", metavar="REGEX",
                   help="the class is the 'class' (else first) group of REGEX in each table's "
                   "file name, e.g. 'class(\\d+)'")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    copick_args.add_input_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Inspect every tomogram, then every table against them; print the reports."""
    copick_tomograms, copick_table = copick_args.read_inputs(args)
    args.tomogram = list(args.tomogram) + [str(p) for p in copick_tomograms]
    if not args.tomogram and not args.table and copick_table is None:
        raise InputError("give --tomogram and/or --table (or --copick-config)", field="tomogram")
    infos = [inspect_tomogram(t, args.voxel_size) for t in args.tomogram]
    specs = [split_table_spec(t) for t in args.table]
    infos += [inspect_table(t, args.tomogram, voxel_size_angstrom=args.voxel_size, tomogram=tomo,
                            coordinate_pixel_size_angstrom=args.coords_angpix,
                            format=args.table_format, class_column=args.class_column,
                            class_from_filename=args.class_pattern or args.class_from_filename)
              for t, tomo in specs]
    if copick_table is not None:
        infos.append(inspect_table(f"{args.copick_config} (picks)", args.tomogram,
                                   voxel_size_angstrom=args.voxel_spacing, table=copick_table))
    if args.json:
        print(json.dumps(infos, indent=2))
    else:
        print("\n".join(format_report(i) for i in infos))
    return 0
