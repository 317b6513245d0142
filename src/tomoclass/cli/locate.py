"""``tomoclass locate``: find and classify particles in a whole tomogram."""

from __future__ import annotations

import argparse

from tomoclass.cli import copick_args
from tomoclass.data.spectrum import MATCH_CHOICES
from tomoclass.errors import InputError
from tomoclass.infer import PRECISIONS
from tomoclass.locate.geometry import NORMALIZATIONS
from tomoclass.locate.radii import parse_radii, radii_for_tomogram
from tomoclass.workflows.locate import METHODS, POLARITIES, locate, locate_many


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``locate`` subcommand."""
    p = sub.add_parser(
        "locate",
        help="find and classify particles in a tomogram with a trained run",
        description=(
            "Classifies boxes of the whole tomogram with the run's classifier (at blob "
            "candidates, or at every grid point), turns the probabilities into picks "
            "(1 - P(background) at least --threshold, per-class-radius non-maximum "
            "suppression), and writes them as STAR, CSV and SHREC'21 txt (same stem as --out). "
            "The run needs a 'background' class."
        ),
    )
    _add_inputs(p)
    _add_radii(p)
    _add_method(p)
    _add_voxels(p)
    _add_names(p)
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    copick_args.add_output_args(p)
    p.set_defaults(func=run)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """The run, the tomograms, the outputs and the pick threshold."""
    p.add_argument("--run", required=True, help="run directory (tomoclass train)")
    p.add_argument("--tomogram", required=True, nargs="+",
                   help="tomogram (MRC); several: --out is a folder that receives "
                   "<name>_picks.star/.csv/.txt per tomogram and picks.star/.csv with all")
    p.add_argument("--out", required=True,
                   help="picks table: .star, .csv or .txt (a folder with several tomograms)")
    p.add_argument("--which", default="best", help="checkpoint: best, last or epoch_NNN")
    p.add_argument(
        "--score-maps",
        metavar="DIR",
        help="write per-class probability maps here (dense methods: --method boxes)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="minimum 1 - P(background) of a pick (default: the run's threshold from "
        "'tomoclass score-picks --calibrate', else 0.5)",
    )


def _add_radii(p: argparse.ArgumentParser) -> None:
    """Particle radii: ``--radius`` and ``--sizes``."""
    p.add_argument(
        "--radius",
        action="append",
        metavar="R|NAME=R",
        help="particle radius in voxels, R for all classes or NAME=R (repeat); overrides "
        "--sizes; default box / 4",
    )
    p.add_argument(
        "--sizes",
        metavar="SIZES_TXT",
        help="per-class radii from a SHREC'21 sizes.txt (radius(nm), at the tomogram's voxel "
        "size)",
    )


def _add_method(p: argparse.ArgumentParser) -> None:
    """How the tomogram is scored: method, polarity, spectrum, candidates, boxes, tiles."""
    p.add_argument(
        "--method",
        choices=[m for m in METHODS if m != "auto"],
        default="candidates",
        help="candidates (default): classify the box at each blob found by a difference of "
        "Gaussians at the particles' scales (minutes per tomogram on a CPU); boxes: classify "
        "the box at every grid point (dense, --score-maps; hours on a CPU); both cut boxes "
        "exactly as training boxes are cut; stages/tiles: one fully convolutional pass, not "
        "what a net trained on isolated boxes saw (docs/locate.md)",
    )
    p.add_argument(
        "--polarity",
        choices=POLARITIES,
        default="auto",
        help="how particles look in the tomogram: dark (as reconstructed) or bright (contrast "
        "inverted): a tomogram not of the training data's polarity is inverted first; auto "
        "(default): measured, then candidates of both signs, the sign the classifier finds "
        "no particles in dropped after classifying the strongest 256 of each; both: the "
        "tomogram as given, candidates of both signs",
    )
    p.add_argument(
        "--match-spectrum",
        choices=MATCH_CHOICES,
        default="auto",
        help="candidates: filter boxes to the training boxes' amplitude spectrum: auto "
        "(default: when --rescale resamples), on, off",
    )
    p.add_argument(
        "--candidate-threshold",
        type=float,
        default=3.0,
        help="candidates: minimum blob response in noise standard deviations (default 3)",
    )
    p.add_argument(
        "--max-candidates", type=int, help="candidates: keep at most this many, strongest first"
    )
    p.add_argument(
        "--separation", type=float, default=1.0, metavar="F",
        help="non-maximum suppression: drop a pick closer than F times the larger class radius "
        "to a stronger one (default 1; above 1 also drops two picks on opposite sides of one "
        "particle, and real neighbours that close: docs/locate.md)",
    )
    p.add_argument(
        "--stride",
        type=int,
        help="boxes: voxels between scored boxes (default: the net's stride, 4)",
    )
    p.add_argument("--batch-size", type=int, help="boxes/candidates: boxes per forward pass")
    p.add_argument(
        "--tile", type=int, help="stages/tiles: tile edge in voxels (default: fit the memory bound)"
    )
    p.add_argument(
        "--halo",
        type=int,
        help="stages/tiles: context voxels per tile side (default: the receptive field)",
    )
    p.add_argument(
        "--normalize",
        choices=NORMALIZATIONS,
        help="tomogram normalisation (default: from the training data)",
    )


def _add_voxels(p: argparse.ArgumentParser) -> None:
    """Voxel size, resampling and the arithmetic of classification."""
    p.add_argument(
        "--voxel-size",
        type=float,
        dest="voxel_size",
        help="override the tomogram header's voxel size (Å)",
    )
    p.add_argument(
        "--rescale",
        action="store_true",
        help="resample the tomogram to the training voxel size when they differ (picks are "
        "written in the tomogram's voxels)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="box classification: auto (bf16 on a CUDA GPU that has it, else float32), fp32, "
        "or bf16 (also on CPUs with AVX512-BF16/AMX; 1.12x faster classification measured on "
        "a Zen 4 CPU, same picks to 0.1%%)",
    )


def _add_names(p: argparse.ArgumentParser) -> None:
    """The tomogram's name in the tables, and per-class tables."""
    p.add_argument(
        "--tomo-name",
        "--tomogram-name",
        dest="tomo_name",
        help="the tomogram's name in the tables (rlnTomoName; one tomogram only; default: from "
        "--tomograms-star, else Warp's <name>_<pixel>Apx, else the file name, logged)",
    )
    p.add_argument(
        "--tomograms-star",
        metavar="STAR",
        help="RELION 5 tomograms.star: each tomogram's rlnTomoName (the row whose "
        "rlnTomoReconstructedTomogram is the file, else whose name the file name holds)",
    )
    p.add_argument(
        "--warp-settings",
        metavar="SETTINGS",
        help="Warp settings file (warp_tiltseries.settings): the .tomostar files of its data "
        "folder name the tomograms",
    )
    p.add_argument(
        "--split-by-class",
        action="store_true",
        help="also write <out stem>_<class>.star per class",
    )


def run(args: argparse.Namespace) -> int:
    """Locate, then print a one-line summary per tomogram and class."""
    common = dict(
        which=args.which,
        threshold=args.threshold,
        method=args.method,
        stride=args.stride,
        batch_size=args.batch_size,
        tile=args.tile,
        halo=args.halo,
        normalize=args.normalize,
        voxel_size_angstrom=args.voxel_size,
        device=args.device,
        progress=not args.no_progress,
        polarity=args.polarity,
        candidate_threshold=args.candidate_threshold,
        max_candidates=args.max_candidates,
        separation=args.separation,
        rescale=args.rescale,
        precision=args.precision,
        match_spectrum=args.match_spectrum,
        tomograms_star=args.tomograms_star,
        warp_settings=args.warp_settings,
        split_by_class=args.split_by_class,
    )
    if len(args.tomogram) > 1:
        if args.tomo_name:
            raise InputError("--tomo-name names one tomogram; with several, use "
                             "--tomograms-star or name the files", field="--tomo-name")
        if args.out.lower().endswith((".star", ".csv", ".txt")):
            raise InputError("with several tomograms --out is a folder, not a table",
                             path=args.out, field="out")
        results = locate_many(args.run, args.tomogram, args.out, sizes=args.sizes,
                              radii=parse_radii(args.radius), score_maps_dir=args.score_maps,
                              **common)
    else:
        (tomogram,) = args.tomogram
        results = [locate(args.run, tomogram, args.out, score_maps_dir=args.score_maps,
                          tomo_name=args.tomo_name,
                          radii=radii_for_tomogram(tomogram, args.sizes,
                                                   parse_radii(args.radius), args.voxel_size),
                          **common)]
    for tomogram, result in zip(args.tomogram, results, strict=True):
        _summary(tomogram, result, several=len(results) > 1)
    copick_args.write_output(args, [r.picks for r in results], args.tomogram, args.voxel_size)
    if len(results) > 1:
        total = sum(len(r.picks) for r in results)
        print(f"{total} picks in {len(results)} tomograms -> {args.out}/picks.star, picks.csv")
    return 0


def _summary(tomogram: str, result, *, several: bool) -> None:
    counts = result.picks["class_name"].value_counts()
    among = ("" if result.candidates is None else f" among {len(result.candidates)} "
             f"candidates (polarity {result.candidates.polarity})")
    if several:
        print(f"{tomogram}:")
    if result.step != 1.0:
        print(f"tomogram resampled by {result.step:.4g} (tomogram voxels per voxel located)")
    if result.spectrum_gain is not None:
        print("boxes filtered to the training boxes' spectrum (gain per band "
              + " ".join(f"{g:.2f}" for g in result.spectrum_gain) + ")")
    if result.inverted:
        print("tomogram contrast inverted to the training data's polarity"
              + (f" (measured {result.polarity.describe()})" if result.polarity else ""))
    print(f"{len(result.picks)} picks{among} in {result.seconds:.1f} s "
          f"(threshold {result.threshold:g}, {result.threshold_source}; "
          f"normalize={result.normalize})")
    for name, n in counts.items():
        print(f"  {name}: {n}")
    for path in result.outputs:
        print(f"wrote {path}")
