"""What ``locate --separation`` gains and costs: duplicates removed against neighbours lost.

Gain: picks already made at separation 1 are suppressed again at each separation
(:func:`tomoclass.locate.suppress_picks`) and scored against the truth
(:func:`tomoclass.evaluate.score_picks`): picks, hits, false picks, duplicates, F1.
Cost: in ground-truth tables, the share of particles whose nearest neighbour is closer than
``separation * max(r_a, r_b)`` (:func:`tomoclass.evaluate.neighbour_separation`): those a
picker would lose at that separation even with every particle picked at its centre.

    PYTHONPATH=src python benchmarks/separation_check.py \\
        --picks PICKS.star --truth TRUTH.txt --radii RADII \\
        [--geometry NAME TABLE RADII ...] [--separations 1 1.25 1.5 2] [--out F.json]

``RADII``: a JSON mapping class name -> radius in voxels, a JSON record with
``radii_voxels_scored`` (``pretrained_check.py``'s check.json), or a SHREC'21 ``sizes.txt``
(radii at 10 Å voxels).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from tomoclass.evaluate import neighbour_separation, score_picks
from tomoclass.io import read_class_sizes, read_particles
from tomoclass.locate import suppress_picks
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def read_radii(path: Path) -> dict[str, float]:
    """Class radii in voxels from a JSON mapping, a check.json record or a sizes.txt."""
    if path.suffix.lower() == ".txt":
        return read_class_sizes(path)
    data = json.loads(path.read_text())
    data = data.get("radii_voxels_scored", data)
    return {str(k): float(v) for k, v in data.items()}


def duplicates(truth, picks, radii: dict[str, float]) -> dict:
    """Where the unmatched picks that lie inside a found particle sit, as given.

    Per such duplicate: the true particle's class, its distance to that particle's centre and
    to the pick matched to the particle; counts per class and medians.
    """
    score = score_picks(truth, picks, radii)
    truth = truth.reset_index(drop=True)
    picks = picks.reset_index(drop=True)
    by_truth = dict(zip(score.matches["truth"], score.matches["pick"], strict=True))
    unmatched = np.setdiff1d(np.arange(len(picks)), score.matches["pick"].to_numpy(int))
    t_zyx = truth[["z", "y", "x"]].to_numpy(float)
    p_zyx = picks[["z", "y", "x"]].to_numpy(float)
    key = {k.casefold(): v for k, v in radii.items()}
    r_true = truth["class_name"].astype(str).str.casefold().map(key).to_numpy(float)
    d, j = cKDTree(t_zyx).query(p_zyx[unmatched])
    inside = (d <= r_true[j]) & np.isin(j, list(by_truth))
    to_pick = [float(np.linalg.norm(p_zyx[u] - p_zyx[by_truth[t]]))
               for u, t in zip(unmatched[inside], j[inside], strict=True)]
    classes = truth["class_name"].astype(str).to_numpy()[j[inside]]
    names, counts = np.unique(classes, return_counts=True)
    return {"n": int(inside.sum()),
            "by_true_class": {str(n): int(c) for n, c in
                              sorted(zip(names, counts, strict=True), key=lambda x: -x[1])},
            "median_to_centre": round(float(np.median(d[inside])), 2) if inside.any() else None,
            "median_to_matched_pick": round(float(np.median(to_pick)), 2) if to_pick else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--picks", type=Path, help="picks made at separation 1")
    ap.add_argument("--truth", type=Path, help="the picks' ground truth")
    ap.add_argument("--radii", type=Path, help="radii of the picks' and truth's classes")
    ap.add_argument("--geometry", nargs=3, action="append", default=[],
                    metavar=("NAME", "TABLE", "RADII"), help="a ground-truth table to measure")
    ap.add_argument("--separations", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75, 2.0])
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    if not args.geometry and not (args.picks and args.truth and args.radii):
        ap.error("give --picks, --truth and --radii, or --geometry")
    result = {"benchmark": "separation_check", "separations": args.separations,
              "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "machine": machine_info(), "picks": None,
              "geometry": {}}
    if args.picks:
        radii = read_radii(args.radii)
        truth, picks = read_particles(args.truth), read_particles(args.picks)
        rows = []
        for sep in args.separations:
            kept = suppress_picks(picks, radii, separation=sep)
            s = score_picks(truth, kept, radii)
            rows.append({"separation": sep, "n_picks": s.n_picks, "tp": s.tp, "fp": s.fp,
                         "duplicates": s.n_duplicates, "fn": s.fn,
                         "precision": round(s.precision, 4), "recall": round(s.recall, 4),
                         "f1": round(s.f1, 4)})
            print("picks", rows[-1], flush=True)
        result["picks"] = {"picks": str(args.picks), "truth": str(args.truth),
                           "radii": radii, "rows": rows,
                           "duplicates_as_given": duplicates(truth, picks, radii)}
        print("duplicates", result["picks"]["duplicates_as_given"], flush=True)
    for name, table, radii_path in args.geometry:
        radii = read_radii(Path(radii_path))
        truth = read_particles(table)
        # classes without a radius (SHREC'19's 4b4t and 4d8q against the shrec12 radii) are
        # left out, and counted
        known = truth["class_name"].astype(str).str.casefold().isin(
            {k.casefold() for k in radii})
        sep = neighbour_separation(truth[known], radii).dropna().to_numpy(float)
        below = {str(s): round(float(np.mean(sep < s)), 4) for s in args.separations}
        result["geometry"][name] = {"table": table, "radii": radii_path, "n": len(sep),
                                    "rows_without_radius": int((~known).sum()),
                                    "min": round(float(sep.min()), 3),
                                    "share_below": below}
        print("geometry", name, result["geometry"][name]["min"], below, flush=True)
    print(f"wrote {write_result('separation', result, args.out, results_dir=RESULTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
