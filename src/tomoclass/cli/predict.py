"""``tomoclass predict``: classify the picked particles of a tomogram with a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomoclass.cli import copick_args
from tomoclass.data.polarity import POLARITY_CHOICES
from tomoclass.data.spectrum import MATCH_CHOICES
from tomoclass.errors import InputError
from tomoclass.io.naming import distinct_tomogram_names


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict", help="classify picked particles of a tomogram with a trained run",
        description="Cut a box around every pick, run the trained model and write each "
        "particle's class, confidence and all class probabilities (STAR for RELION: "
        "rlnClassNumber 1-based + tomoclassClassName; or CSV).",
    )
    p.add_argument("--run", required=True, type=Path, help="run directory (or checkpoint .pt)")
    p.add_argument("--tomogram", required=True, type=Path, nargs="+",
                   help="tomogram(s) (MRC); with several, each classifies the picks the table "
                   "names it with (rlnTomoName / tomogram column), into one output table")
    p.add_argument("--coords", required=True, type=Path,
                   help="picks: .star, .csv, .xml or SHREC .txt (voxels of the tomogram)")
    p.add_argument("--out", required=True, type=Path, action="append",
                   help="output .star or .csv (repeat for both)")
    p.add_argument("--which", default="best", help="checkpoint: best (default), last, or an "
                   "epoch number")
    p.add_argument("--voxel-size", type=float, help="override the tomogram header (Å)")
    p.add_argument("--coords-angpix", type=float, metavar="A",
                   help="pixel size (Å) of the picks' coordinates when it is not the "
                   "tomogram's voxel size (RELION 4 / Warp: unbinned tilt-series pixels)")
    p.add_argument("--rescale", action="store_true", help="resample boxes when the voxel size "
                   "differs from the training data's by more than 5%%")
    p.add_argument("--polarity", choices=POLARITY_CHOICES, default="auto",
                   help="how particles look in the tomogram: auto (default: measured), dark "
                   "(as reconstructed) or bright (inverted); boxes are inverted when it is not "
                   "the training data's")
    p.add_argument("--match-spectrum", choices=MATCH_CHOICES, default="auto",
                   help="filter boxes to the training boxes' amplitude spectrum: auto (default: "
                   "when --rescale resamples), on, off")
    p.add_argument("--tomogram-name", "--tomo-name", dest="tomogram_name",
                   help="this tomogram's name in the table (rlnTomoName; default: from "
                   "--tomograms-star, else Warp's <name>_<pixel>Apx, else the MRC file stem, "
                   "or its folder for reconstruction.mrc; what was assumed is logged)")
    p.add_argument("--tomograms-star", type=Path, metavar="STAR",
                   help="RELION 5 tomograms.star: each tomogram's rlnTomoName (the row whose "
                   "rlnTomoReconstructedTomogram is the file, else whose name the file name "
                   "holds)")
    p.add_argument("--warp-settings", type=Path, metavar="SETTINGS",
                   help="Warp settings file (warp_tiltseries.settings): the .tomostar files of "
                   "its data folder name the tomograms")
    p.add_argument("--split-by-class", action="store_true",
                   help="also write <out stem>_<class>.star/.csv per predicted class")
    p.add_argument("--plain-star", action="store_true",
                   help="write tomoclass's own STAR (voxel coordinates) instead of the input "
                   "STAR annotated (every block and column kept, coordinates in input units)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-memory", help="refuse above this memory estimate, e.g. 4G")
    p.add_argument("--no-progress", action="store_true")
    copick_args.add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Call :func:`tomoclass.infer.predict_particles` and write the tables."""
    from tomoclass.infer import predict_particles, write_predictions
    from tomoclass.train.resources import parse_bytes

    for out in args.out:
        if out.suffix.lower() not in (".star", ".csv"):
            raise InputError("output must end in .star or .csv", path=out, field="--out")
    try:
        max_mem = parse_bytes(args.max_memory)
    except ValueError as exc:
        raise InputError(str(exc), field="--max-memory") from None
    if len(args.tomogram) > 1:
        if args.tomogram_name:
            raise InputError("--tomogram-name names one tomogram; with several, each is named "
                             "by its file", field="--tomogram-name")
        distinct_tomogram_names(args.tomogram)
    results = []
    for tomo in args.tomogram:
        res = predict_particles(
            args.run, tomo, args.coords, which=args.which,
            voxel_size_angstrom=args.voxel_size, rescale=args.rescale,
            batch_size=args.batch_size, device=args.device, tomogram_name=args.tomogram_name,
            max_memory_bytes=max_mem, progress=not args.no_progress, polarity=args.polarity,
            coordinate_pixel_size_angstrom=args.coords_angpix,
            match_spectrum=args.match_spectrum, tomograms_star=args.tomograms_star,
            warp_settings=args.warp_settings,
        )
        results.append(res)
        counts = res.table["class_name"].value_counts()
        summary = ", ".join(f"{n} {counts.get(n, 0)}" for n in res.class_map.names)
        note = (f"; boxes resampled from {res.voxel_size_angstrom:g} to "
                f"{res.training_voxel_size_angstrom:g} Å" if res.rescaled else "")
        if res.inverted:
            note += "; contrast inverted to the training data's"
        if res.spectrum_gain is not None:
            note += "; boxes filtered to the training boxes' spectrum"
        print(f"{tomo}: classified {len(res.table)} particles ({summary}){note}; mean "
              f"confidence {res.table['confidence'].mean():.3f}")
    for out in args.out:
        write_predictions(results, out, annotate=not args.plain_star,
                          split_by_class=args.split_by_class)
    print(f"wrote {', '.join(map(str, args.out))}")
    copick_args.write_output(args, [r.table for r in results], args.tomogram, args.voxel_size)
    return 0
