"""Does a classifier trained at one voxel size work on a tomogram made at another, resampled?

For ``locate --rescale``: classifies the boxes at a sample of ground-truth positions of

- a tomogram at the training voxel size (the reference),
- a tomogram at another voxel size, resampled by :func:`tomoclass.data.resample_volume`
  (what ``--rescale`` does), and the same tomogram Fourier-cropped (ideal binning; integer
  steps only),

and records classification accuracy, the share called a particle (objectness >= 0.5), the
share given the most common predicted class, and the radial power spectrum of each (central
block, unit variance, 10 bins up to Nyquist), which tells a resampling artefact from a
difference in the data. With ``--match`` each case is also classified with its boxes filtered
to the training boxes' amplitude spectrum (:mod:`tomoclass.data.spectrum`, measured at the
same positions, as ``predict`` does). Writes JSON under benchmarks/results/.

    PYTHONPATH=src python benchmarks/rescale_check.py --run RUN --which last \\
        --reference T10.mrc T10_gt.txt --other T5.mrc T5_gt.txt [--n 240] [--match] \\
        [--out F.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
from spectra import fourier_crop, radial_power

from tomoclass.data import resample_volume
from tomoclass.data.spectrum import gain_grid, matching_gain, spectrum_at, training_spectrum
from tomoclass.infer import load_run
from tomoclass.io import read_particles, read_volume
from tomoclass.locate import classify_boxes
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"

def spectrum(vol: np.ndarray) -> list[float]:
    """:func:`radial_power` of the central block at unit variance, 10 bands."""
    c = np.array(vol.shape) // 2
    h = np.minimum(np.array(vol.shape) // 2, (64, 128, 128))
    v = vol[c[0] - h[0]:c[0] + h[0], c[1] - h[1]:c[1] + h[1], c[2] - h[2]:c[2] + h[2]]
    return [round(float(x), 3) for x in radial_power(v / v.std(), 10)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--which", default="best")
    ap.add_argument("--reference", nargs=2, required=True, metavar=("MRC", "TRUTH"))
    ap.add_argument("--other", nargs=2, required=True, metavar=("MRC", "TRUTH"))
    ap.add_argument("--n", type=int, default=240, help="ground-truth positions per tomogram")
    ap.add_argument("--match", action="store_true",
                    help="also classify with spectrum matching to the training boxes")
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    model, cmap, info = load_run(args.run, args.which)
    names = list(cmap.names)
    box, vs = int(info["box"]), float(info["voxel_size_angstrom"])
    rng = np.random.default_rng(0)
    result = {"benchmark": "rescale_check", "run": args.run, "which": args.which,
              "reference": args.reference, "other": args.other, "n": args.n,
              "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "machine": machine_info(), "cases": {}}

    train_spec = training_spectrum(info) if args.match else None

    def case(label: str, vol: np.ndarray, truth, scale: float) -> None:
        sel = truth.iloc[rng.choice(len(truth), min(args.n, len(truth)), replace=False)]
        zyx = np.rint(sel[["z", "y", "x"]].to_numpy(float) / scale).astype(int)
        zyx = np.clip(zyx, 0, np.array(vol.shape) - 1)
        classify(label, vol, zyx, sel, None)
        if train_spec is not None:
            gain = matching_gain(train_spec, spectrum_at(vol, zyx, box, vs))
            classify(f"{label}, spectrum matched", vol, zyx, sel, gain)

    def classify(label, vol, zyx, sel, gain) -> None:
        p = classify_boxes(model, vol, zyx, box=box, device="cpu", progress=False,
                           box_filter=None if gain is None else gain_grid(gain, box))
        pred = np.array(names)[p.argmax(1)]
        obj = 1 - p[:, names.index("background")]
        top = max(set(pred), key=list(pred).count)
        rec = {"accuracy": round(float((pred == sel["class_name"].to_numpy()).mean()), 3),
               "called_particle": round(float((obj >= 0.5).mean()), 3),
               "most_common_prediction": [str(top), round(float((pred == top).mean()), 3)],
               "spectrum": spectrum(vol), "shape_zyx": list(vol.shape)}
        if gain is not None:
            rec["gain"] = [round(float(g), 3) for g in gain]
        print(label, rec, flush=True)
        result["cases"][label] = rec

    ref = read_volume(args.reference[0])
    case(f"reference ({ref.voxel_size_angstrom:g} A)", np.asarray(ref.data, np.float32),
         read_particles(args.reference[1]), 1.0)
    other = read_volume(args.other[0])
    step = vs / other.voxel_size_angstrom
    truth = read_particles(args.other[1])
    data = np.asarray(other.data, np.float32)
    case(f"other ({other.voxel_size_angstrom:g} A), resample_volume (--rescale)",
         resample_volume(data, step), truth, step)
    if abs(step - round(step)) < 1e-6 and step > 1:
        case(f"other ({other.voxel_size_angstrom:g} A), Fourier crop",
             fourier_crop(data, int(round(step))), truth, step)
    print(f"wrote {write_result('rescale_check', result, args.out, results_dir=RESULTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
