"""Benchmark ``tomoclass locate``: seconds per tomogram, and F1 when a trained run is given.

Timing part (always): the paper's net (``--model``, random weights: the cost does not depend
on them) scores a random tomogram of ``--shape`` with the default memory-bounded tiling, then
peaks are picked. The result records the measured seconds, the tile plan, the peak resident
memory, and a cost model: seconds per voxel the net reads (the tiles' inputs, halos included)
times the voxels the same tiling reads for ``--target-shape`` (512x512x200 by default). That
figure is an EXTRAPOLATION and labelled so; ``--shape 200 512 512`` measures it directly.

Accuracy part (with ``--run``, ``--tomogram`` and ``--truth``, or ``--prepare WORKDIR``, which
simulates, adds background boxes, extracts and trains such a run first): locate with the run, then
:func:`tomoclass.evaluate.picks.score_picks`: localization precision/recall/F1 and per-class
F1, recorded beside the timing.

    PYTHONPATH=src python benchmarks/locate_bench.py --shape 64 128 128 \
        --out benchmarks/results/locate_cpu.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tomoclass.locate import (
    choose_tile,
    default_tile_voxels,
    find_peaks,
    model_geometry,
    padded_extent,
    plan_tiles,
    score_tomogram,
)
from tomoclass.models import get_model
from tomoclass.provenance import git_commit, new_result_file, write_result


def timing(args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = get_model(args.model, num_classes=args.num_classes).to(device).eval()
    names = ["background"] + [f"class_{i}" for i in range(1, args.num_classes)]
    geom = model_geometry(model, args.box, device=device)
    shape = tuple(args.shape)
    target = tuple(args.target_shape)
    tomo = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    budget = args.max_tile_voxels or default_tile_voxels(model, args.box, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    maps = score_tomogram(
        model,
        tomo,
        box=args.box,
        class_names=names,
        tile=args.tile,
        device=device,
        max_tile_voxels=budget,
        method=args.method,
        progress=not args.no_progress,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_score = time.perf_counter() - t0
    t1 = time.perf_counter()
    picks = find_peaks(maps, args.box / 4, threshold=0.5)
    t_peaks = time.perf_counter() - t1
    padded = int(np.prod(padded_extent(geom, np.array(shape))))
    padded_target = int(np.prod(padded_extent(geom, np.array(target))))
    result = {
        "model": args.model,
        "num_classes": args.num_classes,
        "box": args.box,
        "method": args.method,
        "stride": geom.stride,
        "whole_net_halo": geom.halo,
        "max_tile_voxels": budget,
        "shape_zyx": shape,
        "padded_voxels": padded,
        "seconds_scoring": t_score,
        "seconds_peaks": t_peaks,
        "n_picks_random_weights": len(picks),
        "padded_voxels_per_second": padded / t_score,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "peak_gpu_memory_gb": (
            torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
        ),
    }
    if args.method == "tiles":
        tile = args.tile or choose_tile(geom, padded_extent(geom, np.array(shape)), budget)
        read = sum(t.input_voxels for t in plan_tiles(geom, shape, tile))
        read_target = sum(t.input_voxels for t in plan_tiles(geom, target, tile))
        result.update(tile=tile, input_voxels_read=read)
        seconds = t_score / read * read_target
        how = "seconds per voxel read (halos included) x voxels the same tiling reads"
    else:
        seconds = t_score / padded * padded_target
        how = "seconds per padded voxel x padded voxels of the target (stage halos are small)"
    # What the whole-net-halo tiling would read for the target at the same memory bound,
    # relative to the padded tomogram (the "stages" method reads about 1x).
    target_tile = choose_tile(geom, padded_extent(geom, np.array(target)), budget)
    result["tiles_method_target_read_overhead"] = {
        "tile": target_tile,
        "ratio_voxels_read_to_padded": sum(
            t.input_voxels for t in plan_tiles(geom, target, target_tile)
        )
        / padded_target,
    }
    result["extrapolated"] = (
        None  # the measurement above is the target itself
        if target == shape
        else {
            "label": f"EXTRAPOLATED, not measured: {how} for the target shape",
            "target_shape_zyx": target,
            "seconds_per_tomogram": seconds,
        }
    )
    return result


def accuracy(args: argparse.Namespace, device: torch.device) -> dict:
    from tomoclass.evaluate import per_class_localization
    from tomoclass.evaluate.picks import score_picks
    from tomoclass.io import read_particles
    from tomoclass.locate import parse_radii
    from tomoclass.workflows.locate import locate

    radii = parse_radii(args.radius)
    truth = read_particles(args.truth)
    out = {"run": str(args.run), "tomogram": str(args.tomogram), "methods": {}}
    for method in args.accuracy_methods.split(","):
        t0 = time.perf_counter()
        res = locate(
            args.run,
            args.tomogram,
            Path(args.work) / f"bench_picks_{method}.star",
            which=args.which,
            radii=radii,
            threshold=args.threshold,
            method=method,
            stride=args.stride if method == "boxes" else None,
            device=str(device),
            progress=not args.no_progress,
        )
        wall = time.perf_counter() - t0
        score = score_picks(truth, res.picks, radii if radii is not None else res.radii)
        out["methods"][method] = {
            "stride": list(res.maps.stride) if res.maps is not None else None,
            "seconds_locate_total": wall,
            "seconds_scoring_and_peaks": res.seconds,
            "scores": score.to_dict(),
            "per_class_localization": per_class_localization(score, res.picks),
        }
        print(f"{method}: {len(res.picks)} picks, localization F1 {score.f1:.3f}, "
              f"{res.seconds:.0f} s", flush=True)
    return out


#: Phantoms of the --prepare experiment and their radii in voxels (largest distance of the
#: phantom's mask from its centre at 10 Å, measured from tomoclass.simulate.phantoms).
PREPARE_RADII = {"trimer": 4.5, "ring6": 7.0, "cube8": 7.0, "ribosome_like": 13.0}


def prepare(work: Path, epochs: int, seed: int, classes: list[str] | None = None, box: int = 32,
            batch: int = 32) -> dict:
    """Simulate 5 small tomograms, add background boxes, extract, train: a run to locate with.

    Tomograms 0-3 (64x192x192 voxels at 10 Å, 120 particles of the phantoms ``classes``, all of
    ``PREPARE_RADII`` by default) train, tomogram 4 is located and scored. Returns the paths
    and step timings.
    """
    classes = list(classes or PREPARE_RADII)
    radii = {c: PREPARE_RADII[c] for c in classes}
    import pandas as pd

    from tomoclass.cli.main import main as cli
    from tomoclass.io import read_particles, write_particles
    from tomoclass.locate import background_boxes

    work.mkdir(parents=True, exist_ok=True)
    sim, steps = work / "sim", {}
    t = time.perf_counter()
    assert (
        cli(
            [
                "-q",
                "simulate",
                "tomograms",
                "--out",
                str(sim),
                "--shape-zyx",
                "64",
                "192",
                "192",
                "--n-particles",
                "120",
                "--n-tomograms",
                "5",
                "--seed",
                str(seed),
                "--classes",
                *classes,
            ]
        )
        == 0
    )
    steps["simulate_s"] = time.perf_counter() - t
    tables = []
    for k in range(4):
        gt = read_particles(sim / f"tomo_00{k}_gt.txt", tomogram=f"tomo_00{k}")
        bg = background_boxes(
            # centres anywhere in the tomogram, not only where the whole box fits: particle
            # boxes at the border are padded, so background boxes must be too, or the net
            # learns "padded box = particle" (measured: 383 of 393 false picks in the border
            # band, benchmarks/results/locate_cpu_methods_bgbox.json)
            gt, (64, 192, 192), radii, n_random=40, n_offcentre=40, seed=seed + k,
            max_offset=box / 2
        )
        tables.append(
            write_particles(work / f"tomo_00{k}_train.star", pd.concat([gt, bg], ignore_index=True))
        )
    t = time.perf_counter()
    assert (
        cli(
            [
                "-q",
                "extract",
                "--tomograms",
                *(str(sim / f"tomo_00{k}.mrc") for k in range(4)),
                "--tables",
                *map(str, tables),
                "--include-nonprotein",
                "--split",
                "stratified",
                "--val-fraction",
                "0.15",
                "--test-fraction",
                "0.05",
                "--box",
                str(box),
                "--out",
                str(work / "data"),
            ]
        )
        == 0
    )
    steps["extract_s"] = time.perf_counter() - t
    t = time.perf_counter()
    assert (
        cli(
            [
                "-q",
                "train",
                "--data",
                str(work / "data"),
                "--model",
                "dilated_densenet3d",
                "--epochs",
                str(epochs),
                "--batch-size",
                str(batch),
                "--no-progress",
                "--seed",
                str(seed),
                "--out",
                str(work / "run"),
            ]
        )
        == 0
    )
    steps["train_s"] = time.perf_counter() - t
    return {
        "recipe": prepare.__doc__.strip().splitlines()[0],
        "epochs": epochs,
        "seed": seed,
        "steps": steps,
        "run": str(work / "run"),
        "tomogram": str(sim / "tomo_004.mrc"),
        "truth": str(sim / "tomo_004_gt.txt"),
        "radii": radii,
        "box": box,
        "batch_size": batch,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dilated_densenet3d")
    p.add_argument("--num-classes", type=int, default=13, help="12 particles + background")
    p.add_argument("--box", type=int, default=32)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], metavar=("Z", "Y", "X"))
    p.add_argument("--target-shape", type=int, nargs=3, default=[200, 512, 512])
    p.add_argument("--tile", type=int)
    p.add_argument("--method", default="stages", choices=["stages", "tiles"],
                   help="timing part: the fully convolutional method to time")
    p.add_argument("--max-tile-voxels", type=int)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--run")
    p.add_argument("--tomogram")
    p.add_argument("--truth")
    p.add_argument("--radius", action="append")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--work", default=".")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--prepare",
        metavar="WORKDIR",
        help="simulate, add background boxes, extract and train a run in WORKDIR, "
        "then measure its accuracy (sets --run/--tomogram/--truth/--radius)",
    )
    p.add_argument("--prepare-epochs", type=int, default=8)
    p.add_argument("--prepare-classes", nargs="+", choices=list(PREPARE_RADII))
    p.add_argument("--prepare-box", type=int, default=32)
    p.add_argument("--prepare-batch", type=int, default=32)
    p.add_argument("--which", default="best", help="checkpoint for the accuracy part")
    p.add_argument("--accuracy-methods", default="boxes,stages",
                   help="comma list of locate methods to score on the same run")
    p.add_argument("--stride", type=int, help="boxes method: voxels between scored boxes")
    p.add_argument("--no-timing", action="store_true", help="skip the random-weight timing")
    p.add_argument("--note", default="", help="free text stored with the result (provenance)")
    p.add_argument("--out", required=True, type=new_result_file,
                   help="JSON result (never replaced)")
    args = p.parse_args(argv)
    prepared = None
    if args.prepare:
        prepared = prepare(Path(args.prepare), args.prepare_epochs, seed=2,
                           classes=args.prepare_classes, box=args.prepare_box,
                           batch=args.prepare_batch)
        args.box = args.prepare_box
        args.run, args.tomogram, args.truth = (
            prepared["run"],
            prepared["tomogram"],
            prepared["truth"],
        )
        args.radius = [f"{k}={v}" for k, v in prepared["radii"].items()]
        args.work = args.prepare
    device = torch.device(args.device)
    result = {
        "benchmark": "locate",
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "nproc": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "note": "timings depend on what else ran: see loadavg_before/_after",
        "user_note": args.note,
        "timing": None if args.no_timing else timing(args, device),
        "prepared": prepared,
    }
    if args.run and args.tomogram and args.truth:
        result["accuracy"] = accuracy(args, device)
    else:
        result["accuracy"] = None
        result["accuracy_note"] = "no trained run with a background class was given: timing only"
    result["loadavg_after"] = os.getloadavg()
    write_result("locate", result, args.out)
    print(json.dumps(result["timing"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
