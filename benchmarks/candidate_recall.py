"""Proposal recall against the candidate threshold: how many boxes the classifier must see.

``locate --method candidates`` classifies one box per proposal, so the candidate threshold
(blob response in noise standard deviations) sets the CPU time; what it costs is proposals
missed. For each labelled tomogram, proposes once at the lowest threshold and reports, per
threshold, the candidates kept and the share of true particles with a candidate within their
class radius (all classes and the worst class). Writes JSON under benchmarks/results/.

    PYTHONPATH=src python benchmarks/candidate_recall.py --tomogram T.mrc T_gt.txt \\
        [--tomogram ...] --radii RESULTS.json [--polarity dark] \\
        [--thresholds 2 2.5 3 3.5 4 5] [--out F.json]

``--radii``: a ``shrec12_locate.py`` results.json (its ``radii_voxels``) or a JSON mapping
class name -> radius in voxels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from tomoclass.io import read_particles, read_volume
from tomoclass.locate import propose_candidates
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"

def _radii(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    if "results" in data:
        data = next(iter(data["results"].values()))["radii_voxels"]
    return {str(k): float(v) for k, v in data.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tomogram", nargs=2, action="append", required=True,
                    metavar=("MRC", "TRUTH"))
    ap.add_argument("--radii", type=Path, required=True)
    ap.add_argument("--polarity", default="dark", choices=("dark", "bright", "both"))
    ap.add_argument("--thresholds", type=float, nargs="+", default=[2, 2.5, 3, 3.5, 4, 5])
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    radii = _radii(args.radii)
    result = {"benchmark": "candidate_recall", "polarity": args.polarity, "radii": radii,
              "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "machine": machine_info(), "tomograms": {}}
    for mrc, truth_path in args.tomogram:
        vol = read_volume(mrc)
        truth = read_particles(truth_path)
        t0 = time.perf_counter()
        cands = propose_candidates(vol.data, sorted(set(radii.values())),
                                   polarity=args.polarity, threshold=min(args.thresholds),
                                   progress=False)
        seconds = time.perf_counter() - t0
        zyx = truth[["z", "y", "x"]].to_numpy(float)
        names = truth["class_name"].astype(str).to_numpy()
        r = np.array([radii[n] for n in names])
        rows = []
        for thr in sorted(args.thresholds):
            keep = cands.response >= thr
            if keep.any():
                d, _ = cKDTree(cands.centres[keep]).query(zyx)
            else:
                d = np.full(len(zyx), np.inf)
            hit = d <= r
            per_class = {k: float(hit[names == k].mean()) for k in sorted(set(names))}
            worst = min(per_class, key=per_class.get)
            rows.append({"threshold": thr, "candidates": int(keep.sum()),
                         "recall": round(float(hit.mean()), 4),
                         "worst_class": [worst, round(per_class[worst], 4)]})
            print(Path(mrc).stem, rows[-1], flush=True)
        result["tomograms"][Path(mrc).stem] = {"seconds_propose": round(seconds, 1),
                                               "rows": rows}
    print(f"wrote {write_result('candidate_recall', result, args.out, results_dir=RESULTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
