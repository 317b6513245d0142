"""Noise-only and signal-only simulations at 10 Å and at 5 Å binned to 10 Å: power per band.

Run simulator_voxel_size_probe.sh in a scratch folder first, then this from the same folder
with PYTHONPATH=REPO/src:REPO/benchmarks.
"""
import numpy as np, sys
sys.path.insert(0, "benchmarks")  # from the repository root; tomograms in the current folder
from rescale_check import fourier_crop
from tomoclass.io import read_volume
def bins(v):
    v = v - v.mean()
    p = np.abs(np.fft.fftn(v))**2 / v.size
    f = np.sqrt(sum(np.meshgrid(*[np.fft.fftfreq(n)**2 for n in v.shape], indexing="ij")))
    idx = np.digitize(f.ravel(), np.linspace(0, 0.5, 6))
    return np.array([p.ravel()[idx==i].mean() for i in range(1, 6)])
res = {}
for kind in ("noise", "sig"):
    a = np.asarray(read_volume(f"sim_{kind}_10/tomo_000.mrc").data, np.float32)
    b = np.asarray(read_volume(f"sim_{kind}_5/tomo_000.mrc").data, np.float32)
    bc = fourier_crop(b, 2)
    res[kind] = (bins(a), bins(bc))
    print(kind, "10A var", a.var(), "5A var", b.var(), "5A cropped var", bc.var())
    print("  10A bins", np.round(bins(a), 5))
    print("  5A->10 bins", np.round(bins(bc), 5))
for i in range(2):
    print("SNR per bin", ["10A", "5A binned"][i], np.round(res["sig"][i] / res["noise"][i], 4))
