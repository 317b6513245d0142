"""Is a tomogram's contrast polarity measured right, and what does a wrong one cost?

For :mod:`tomoclass.data.polarity`. Records, as JSON under benchmarks/results/:

- ``measure``: :func:`measure_polarity` (call, skewness, noise level, octants, seconds) of
  each tomogram as it is and inverted, of the first one with white noise of 1, 2 and 4 times
  its standard deviation added, and of pure-noise volumes of the first one's shape (these
  must be "unclear");
- ``predict`` (with ``--run`` and ``--truth``): accuracy of :func:`predict_particles` at a
  sample of true positions of the first tomogram as it is, and of its inverted copy with
  ``polarity="auto"`` (measured, inverted back) and with ``polarity="dark"`` (told wrong:
  the network sees bright particles).

    PYTHONPATH=src python benchmarks/polarity_check.py --tomograms T1.mrc [T2.mrc ...] \\
        [--run RUN --which last --truth T1_gt.txt --n 240] [--out F.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np

from tomoclass.data.polarity import Inverted, measure_polarity
from tomoclass.io import read_particles, read_volume, write_volume
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"

def _measure(data, voxel: float) -> dict:
    t = time.perf_counter()
    m = measure_polarity(data, voxel)
    return {**m.to_dict(), "seconds": round(time.perf_counter() - t, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tomograms", nargs="+", required=True)
    ap.add_argument("--run")
    ap.add_argument("--which", default="best")
    ap.add_argument("--truth", help="ground truth of the first tomogram (for --run)")
    ap.add_argument("--n", type=int, default=240, help="true positions classified")
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    result = {"benchmark": "polarity_check", "tomograms": args.tomograms,
              "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "machine": machine_info(), "measure": {}}
    rng = np.random.default_rng(0)
    for path in args.tomograms:
        v = read_volume(path)
        for label, data in (("as is", v.data), ("inverted", Inverted(v.data))):
            rec = _measure(data, v.voxel_size_angstrom)
            result["measure"][f"{Path(path).name} ({v.voxel_size_angstrom:g} A), {label}"] = rec
            print(Path(path).name, label, rec, flush=True)
    first = read_volume(args.tomograms[0])
    data = np.asarray(first.data, np.float32)
    for k in (1, 2, 4):
        noisy = data + np.float32(k * data.std()) * rng.standard_normal(data.shape,
                                                                         dtype=np.float32)
        rec = _measure(noisy, first.voxel_size_angstrom)
        result["measure"][f"{first.path.name} + white noise {k}x its std"] = rec
        print("noise", k, rec, flush=True)
    for seed in range(3):
        noise = np.random.default_rng(100 + seed).standard_normal(data.shape, dtype=np.float32)
        rec = _measure(noise, first.voxel_size_angstrom)
        result["measure"][f"pure white noise {data.shape}, seed {seed}"] = rec
        print("pure noise", rec, flush=True)
    if args.run and args.truth:
        from tomoclass.infer.predict import predict_particles

        truth = read_particles(args.truth)
        truth = truth[truth["is_protein"].astype(bool)]
        sel = truth.iloc[rng.choice(len(truth), min(args.n, len(truth)), replace=False)]
        picks = sel.reset_index(drop=True)
        result["predict"] = {"run": args.run, "which": args.which, "n": len(picks)}
        with tempfile.TemporaryDirectory() as tmp:
            inv = write_volume(Path(tmp) / "inverted.mrc", -data, first.voxel_size_angstrom)
            for label, tomo, pol in (("as is, auto", first.path, "auto"),
                                     ("inverted, auto", inv, "auto"),
                                     ("inverted, told dark (wrong)", inv, "dark")):
                t = time.perf_counter()
                res = predict_particles(args.run, tomo, picks, which=args.which, device="cpu",
                                        polarity=pol)
                acc = float((res.table["class_name"].to_numpy()
                             == res.table["input_class_name"].to_numpy()).mean())
                rec = {"accuracy": round(acc, 3), "inverted": res.inverted,
                       "share_background": round(float(
                           (res.table["class_name"] == "background").mean()), 3),
                       "seconds": round(time.perf_counter() - t, 1)}
                result["predict"][label] = rec
                print(label, rec, flush=True)
    print(f"wrote {write_result('polarity_check', result, args.out, results_dir=RESULTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
