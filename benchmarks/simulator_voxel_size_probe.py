"""Is the tomogram simulator voxel-size invariant? Noise and signal power per frequency band.

Simulates, with one simulation config at two voxel sizes over the same physical volume, a
noise-only tomogram (no particles) and a signal-only one (particles, ``--no-noise``); the
finer ones are Fourier-cropped to the coarser grid (ideal binning); prints and records the
mean power in 5 radial bands up to the coarse Nyquist and the signal-to-noise per band.
Found by ``benchmarks/rescale_check.py`` (a 10 Å classifier on a 5 Å tomogram).

    PYTHONPATH=src python benchmarks/simulator_voxel_size_probe.py --config SIMULATION.yaml \\
        [--coarse 10] [--fine 5] [--shape 64 128 128] [--out F.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from spectra import fourier_crop, radial_power

from tomoclass.io import read_volume
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result

RESULTS = Path(__file__).resolve().parent / "results"

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="simulation YAML (e.g. a tier's)")
    ap.add_argument("--coarse", type=float, default=10.0)
    ap.add_argument("--fine", type=float, default=5.0)
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128],
                    help="coarse tomogram shape (z, y, x)")
    ap.add_argument("--particles", type=int, default=60)
    ap.add_argument("--out", type=new_result_file)
    args = ap.parse_args()
    factor = int(round(args.coarse / args.fine))
    if factor < 2 or abs(factor * args.fine - args.coarse) > 1e-6:
        ap.error("--coarse must be an integer multiple (>= 2) of --fine")
    out = {"benchmark": "simulator_voxel_size_probe", "config": args.config,
           "coarse_angstrom": args.coarse, "fine_angstrom": args.fine,
           "shape_coarse_zyx": args.shape, "particles": args.particles,
           "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "git_commit": git_commit(), "machine": machine_info()}
    power = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, extra in (("noise", ["--n-particles", "0"]),
                            ("signal", ["--n-particles", str(args.particles), "--no-noise"])):
            for vs, k in ((args.coarse, 1), (args.fine, factor)):
                d = Path(tmp) / f"{kind}_{vs:g}"
                subprocess.run(
                    [sys.executable, "-m", "tomoclass", "simulate", "tomograms", "--config",
                     args.config, "--out", str(d), "--voxel-size-angstrom", f"{vs:g}",
                     "--shape-zyx", *[str(n * k) for n in args.shape], "--n-tomograms", "1",
                     "--seed", "3", "--min-gap-voxels", str(k), "--no-write-density", *extra],
                    check=True, capture_output=True)
                v = np.asarray(read_volume(d / "tomo_000.mrc").data, np.float32)
                power[(kind, k)] = radial_power(v if k == 1 else fourier_crop(v, k), 5)
    for k, label in ((1, f"{args.coarse:g} A"), (factor, f"{args.fine:g} A binned x{factor}")):
        rec = {"noise_power": power[("noise", k)].round(5).tolist(),
               "signal_power": power[("signal", k)].round(5).tolist(),
               "snr": (power[("signal", k)] / power[("noise", k)]).round(4).tolist()}
        print(label, rec)
        out[label] = rec
    print(f"wrote {write_result('simulator_voxel_size', out, args.out, results_dir=RESULTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
