"""``tomoclass view``: a tomogram with its picks, score maps and CAM volumes in napari."""

from __future__ import annotations

import argparse

from tomoclass.cli import copick_args
from tomoclass.errors import InputError
from tomoclass.io import READ_FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``view`` subcommand."""
    p = sub.add_parser(
        "view", help="look at a tomogram, picks, score maps and CAM volumes in napari",
        description="Open napari (pip install 'tomoclass[napari]') with the tomogram, one points "
        "layer per class of each picks table (colour: class; opacity: score; score as a point "
        "feature), and score maps / CAM volumes as additive image layers, all in Å.")
    p.add_argument("--tomogram", metavar="MRC", help="tomogram (MRC or OME-Zarr)")
    p.add_argument("--picks", nargs="+", default=[], metavar="TABLE",
                   help="picks tables (locate/predict output or any table tomoclass reads)")
    p.add_argument("--score-maps", nargs="+", default=[], metavar="DIR|MRC",
                   help="locate --score-maps folders or MRC files")
    p.add_argument("--cam", nargs="+", default=[], metavar="DIR|MRC",
                   help="CAM volumes (cam --mrc-dir) or their folder")
    p.add_argument("--voxel-size", type=float, metavar="A",
                   help="override the tomogram header (Å); needed for picks without --tomogram")
    p.add_argument("--table-format", default="auto", choices=("auto",) + READ_FORMATS)
    p.add_argument("--min-score", type=float, help="hide picks scoring below this")
    p.add_argument("--show-background", action="store_true",
                   help="also show background / non-protein rows")
    copick_args.add_input_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the layers (reading every input first), then open napari."""
    from tomoclass.view.layers import build_layers
    from tomoclass.view.napari_app import open_viewer

    tomograms, copick_table = copick_args.read_inputs(args)
    if len(tomograms) > 1 or (tomograms and args.tomogram):
        raise InputError("view shows one tomogram: give one --copick-run", field="--copick-run")
    tomogram = args.tomogram or (tomograms[0] if tomograms else None)
    picks = list(args.picks) + ([copick_table] if copick_table is not None else [])
    if not (tomogram or picks or args.score_maps or args.cam):
        raise InputError("give --tomogram, --picks, --score-maps and/or --cam", field="tomogram")
    layers = build_layers(tomogram, picks, args.score_maps, args.cam,
                          voxel_size_angstrom=args.voxel_size, table_format=args.table_format,
                          min_score=args.min_score, include_background=args.show_background)
    for _, kwargs, kind in layers:
        print(f"{kind}: {kwargs['name']}")
    open_viewer(layers)
    return 0
