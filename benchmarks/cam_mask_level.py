"""Calibrate the CAM-score mask threshold against the SHREC'19 reference masks.

For the ten proteins with both a noise-free 10 Å density map (``structures/maps_10A``) and a
SHREC'19 binary mask (``structures/masks_shrec19``, 1 nm voxels), threshold the map with
:func:`tomoclass.cam.particle_mask` at a grid of levels and compare with the reference mask:
volume ratio (ours / reference) and Dice overlap (best over +-1 voxel shifts, after
centre-cropping our mask to the reference's 40^3 box; the two were centred by different
tools). Writes ``benchmarks/results/cam_mask_level.json``.

Usage: python benchmarks/cam_mask_level.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from tomoclass.cam import particle_mask

ROOT = Path(__file__).resolve().parents[1]
LEVELS = [0.01, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3]


def _crop(a: np.ndarray, s: int) -> np.ndarray:
    o = [(n - s) // 2 for n in a.shape]
    return a[o[0]:o[0] + s, o[1]:o[1] + s, o[2]:o[2] + s]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    best = 0.0
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                r = np.roll(a, (dz, dy, dx), (0, 1, 2))
                best = max(best, 2 * (r & b).sum() / (a.sum() + b.sum()))
    return float(best)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data"))
    args = ap.parse_args()
    base = Path(args.data) / "structures"
    names = sorted(p.stem for p in (base / "masks_shrec19").glob("*.mrc")
                   if (base / "maps_10A" / p.name).is_file())
    if not names:
        raise SystemExit(f"no maps_10A/masks_shrec19 pairs under {base} (pass --data)")
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the maps carry no machine stamp
        for n in names:
            dens = mrcfile.read(base / "maps_10A" / f"{n}.mrc").astype(np.float64)
            ref = mrcfile.read(base / "masks_shrec19" / f"{n}.mrc") > 0.5
            rows[n] = {"reference_voxels": int(ref.sum()), "levels": {}}
            for lvl in LEVELS:
                ours = particle_mask(dens, lvl)
                c = _crop(ours, ref.shape[0])
                rows[n]["levels"][str(lvl)] = {
                    "volume_ratio": float(ours.sum() / ref.sum()),
                    "dice": _dice(c, ref),
                }
    summary = {}
    for lvl in LEVELS:
        ratios = [rows[n]["levels"][str(lvl)]["volume_ratio"] for n in names]
        dices = [rows[n]["levels"][str(lvl)]["dice"] for n in names]
        summary[str(lvl)] = {"median_volume_ratio": float(np.median(ratios)),
                             "min_volume_ratio": float(np.min(ratios)),
                             "max_volume_ratio": float(np.max(ratios)),
                             "median_dice": float(np.median(dices))}
    best = min(LEVELS, key=lambda lv: abs(np.log(summary[str(lv)]["median_volume_ratio"])))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    out = {
        "what": "particle_mask level vs SHREC'19 reference masks (volume ratio, Dice)",
        "proteins": names,
        "best_level_by_volume": best,
        "summary": summary,
        "per_protein": rows,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "loadavg": list(os.getloadavg()),
        "nproc": os.cpu_count(),
        "note": "accuracy-only benchmark: no timings",
    }
    dest = ROOT / "benchmarks" / "results" / "cam_mask_level.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    for lvl in LEVELS:
        s = summary[str(lvl)]
        print(f"level {lvl:<6} volume ratio median {s['median_volume_ratio']:.2f} "
              f"[{s['min_volume_ratio']:.2f}, {s['max_volume_ratio']:.2f}]  "
              f"Dice median {s['median_dice']:.2f}")
    print(f"best level by volume: {best} -> {dest}")


if __name__ == "__main__":
    main()
