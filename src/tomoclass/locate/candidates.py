"""Candidate particle positions from a whole tomogram, without the classifier: blob detection.

Scoring every box of a 200x512x512 tomogram with the paper's net costs 5.5 GFLOP per box
(``method="boxes"``: 819,200 boxes at stride 4, hours on a CPU). Most of those boxes hold
solvent. A particle, low-passed to its own size, is a blob of density darker (or, in a
contrast-inverted tomogram, brighter) than the solvent around it, which a difference of
Gaussians finds in seconds. ``locate(method="candidates")`` therefore proposes positions here
and classifies only the box centred on each (background class included, which rejects the
proposals that hold no particle).

Rules (voxels of the tomogram):

1. Scales: Gaussian sigmas ``s_i = 0.5 * r_min * sqrt(2) ** i``, from half the smallest
   particle radius until one reaches half the largest (one scale for one radius).
2. Response at scale ``s``: ``G(sqrt(2) s) * v - G(s) * v`` (difference of Gaussians;
   positive at the centre of a blob darker than its surroundings; each Gaussian serves two
   neighbouring scales, so n scales cost n + 1 filters), divided by that scale's noise: the
   median-absolute-deviation estimate of its standard deviation over the central block of
   the tomogram (at most 64 x 256 x 256 voxels). Responses are thus in units of their own
   noise, comparable across scales and tomograms.
3. Polarity: ``"dark"`` keeps the response as is (protein darker than solvent: tomograms
   reconstructed without contrast inversion, as IMOD and AreTomo write them, and the
   simulator's), ``"bright"`` negates it (contrast-inverted tomograms), ``"both"`` takes its
   absolute value (about twice the candidates, for tomograms of unknown convention).
4. Combined response: the maximum over scales. Candidates are the voxels where it is the
   maximum of the cube of ``2 * min_distance + 1`` voxels around them and reaches
   ``threshold``; the ``max_candidates`` strongest are kept.
5. Sub-voxel centre: along each axis, the vertex of the parabola through the combined
   response at the maximum and its two neighbours (``Candidates.offset``, within half a
   voxel; 0 at the tomogram's edge or where the response is not curved down). Boxes are cut
   at the voxel, as training boxes are; picks are reported at ``Candidates.centres``.

Gaussians extend the volume by its edge values (scipy's ``mode="nearest"``). The tomogram is
processed in z-slabs with a halo of the widest kernel's radius plus ``min_distance``, so the
candidates are the same whatever the slab size (tested), and memory holds one slab.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm.auto import tqdm

from tomoclass.errors import InputError

log = logging.getLogger(__name__)

POLARITIES = ("dark", "bright", "both")
#: Ratio of the outer to the inner Gaussian of the difference of Gaussians, and of
#: neighbouring scales.
DOG_RATIO = math.sqrt(2.0)
#: Gaussian kernels are cut at this many sigmas.
TRUNCATE = 4.0
#: ``locate(polarity="auto")``: strongest candidates of each sign classified to choose.
AUTO_SAMPLE = 256
#: ``locate(polarity="auto")``: a sign is dropped when its share of particles among its
#: sampled candidates is below this fraction of the other sign's share.
AUTO_RATIO = 0.25

#: Voxels per slab (halo included) that the default slab size aims at.
SLAB_VOXELS = 64_000_000


@dataclass(frozen=True)
class Candidates:
    """Proposed particle centres, strongest first.

    Attributes
    ----------
    zyx
        Int64 array (N, 3): voxel indices (z, y, x) of the centres.
    response
        Float32 (N,): combined response, in noise standard deviations.
    sigma
        Float32 (N,): the scale (inner Gaussian sigma, voxels) that gave the response.
    sigmas
        All scales used.
    noise
        Noise standard deviation of each scale's raw response.
    dark
        Bool (N,): the blob is darker than its surroundings (positive difference of
        Gaussians); False for bright blobs.
    polarity
        The polarity the candidates were proposed with (``"dark"``, ``"bright"``, ``"both"``).
    offset
        Float32 (N, 3): sub-voxel offset of each centre from ``zyx`` (rule 5), in
        [-0.5, 0.5]; None means zero.
    """

    zyx: np.ndarray
    response: np.ndarray
    sigma: np.ndarray
    sigmas: tuple[float, ...]
    noise: tuple[float, ...]
    dark: np.ndarray
    polarity: str
    offset: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.zyx)

    @property
    def centres(self) -> np.ndarray:
        """Float64 (N, 3): the sub-voxel centres, ``zyx + offset`` (z, y, x voxels)."""
        c = self.zyx.astype(np.float64)
        return c if self.offset is None else c + self.offset

    def subset(self, keep: np.ndarray, polarity: str | None = None) -> Candidates:
        """The candidates selected by ``keep`` (a boolean mask or indices), order kept."""
        return Candidates(self.zyx[keep], self.response[keep], self.sigma[keep], self.sigmas,
                          self.noise, self.dark[keep], polarity or self.polarity,
                          None if self.offset is None else self.offset[keep])


def candidate_scales(radii: Iterable[float]) -> tuple[float, ...]:
    """Inner-Gaussian sigmas covering particle radii ``radii`` (voxels); rule 1."""
    r = np.array([float(v) for v in radii], dtype=np.float64)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise InputError("particle radii must be positive numbers of voxels", field="radius")
    lo, hi = 0.5 * r.min(), 0.5 * r.max()
    n = 1 + max(0, int(math.ceil(math.log(hi / lo) / math.log(DOG_RATIO) - 1e-9)))
    return tuple(float(lo * DOG_RATIO**i) for i in range(n))


def propose_candidates(
    tomogram: np.ndarray,
    radii: Iterable[float],
    *,
    polarity: str = "both",
    threshold: float = 3.0,
    min_distance: int | None = None,
    max_candidates: int | None = None,
    slab: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Candidates:
    """Blob centres of a tomogram at the scales of the given particle radii (module rules).

    Parameters
    ----------
    tomogram
        (z, y, x) array; memory-mapped is fine (read one slab at a time).
    radii
        Particle radii in voxels (one per class is typical); they set the scales.
    polarity
        ``"dark"``, ``"bright"`` or ``"both"`` (rule 3).
    threshold
        Minimum combined response, in noise standard deviations.
    min_distance
        Half-edge of the cube a candidate must be the maximum of; default
        ``max(1, ceil(r_min / 2))``.
    max_candidates
        Keep at most this many, strongest first; None keeps all.
    slab
        z-slices per slab (halo excluded); default: about 64 million voxels per slab with
        its halo, and at least twice the halo.
    device
        ``cuda`` filters with torch on the GPU; otherwise scipy on the CPU.
    progress
        Show a progress bar over slabs.

    Returns
    -------
    Candidates

    Raises
    ------
    InputError
        A tomogram that is not 3-D, bad radii, polarity, threshold or sizes.
    """
    if tomogram.ndim != 3:
        raise InputError(f"tomogram must be 3-D (z, y, x), got shape {tomogram.shape}")
    if polarity not in POLARITIES:
        raise InputError(f"unknown polarity {polarity!r}; use one of {POLARITIES}",
                         field="polarity")
    if not math.isfinite(threshold):
        raise InputError(f"candidate threshold must be a number, got {threshold}",
                         field="candidate_threshold")
    radii = [float(r) for r in radii]
    sigmas = candidate_scales(radii)
    if min_distance is None:
        min_distance = max(1, math.ceil(min(radii) / 2))
    if min_distance < 1:
        raise InputError(f"min_distance must be at least 1 voxel, got {min_distance}",
                         field="min_distance")
    if max_candidates is not None and max_candidates < 1:
        raise InputError(f"max_candidates must be positive, got {max_candidates}",
                         field="max_candidates")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    shape = tuple(int(v) for v in tomogram.shape)
    kernel_halo = _radius(DOG_RATIO * max(sigmas))
    noise = _noise(tomogram, sigmas, kernel_halo, dev)
    halo = kernel_halo + int(min_distance)
    if slab is None:  # at least twice the halo, so that halos at most double the work
        slab = max(2 * halo, SLAB_VOXELS // max(1, shape[1] * shape[2]) - 2 * halo)
    if slab < 1:
        raise InputError(f"slab must be at least 1 slice, got {slab}", field="slab")
    sign = {"dark": 1.0, "bright": -1.0, "both": 0.0}[polarity]

    found_zyx, found_resp, found_sig, found_dark, found_off = [], [], [], [], []
    starts = range(0, shape[0], int(slab))
    for z0 in tqdm(starts, desc="proposing candidates", unit="slab", disable=not progress):
        z1 = min(shape[0], z0 + int(slab))
        a, b = max(0, z0 - halo), min(shape[0], z1 + halo)
        region = np.asarray(tomogram[a:b], dtype=np.float32)
        comb, best, dark = _combined(region, sigmas, noise, sign, dev)
        is_max = _local_max(comb, int(min_distance), dev)
        lo, hi = z0 - a, z1 - a
        keep = is_max[lo:hi] & (comb[lo:hi] >= threshold)
        idx = np.argwhere(keep)
        if len(idx):
            vals = comb[lo:hi][keep]
            found_resp.append(vals.astype(np.float32))
            found_sig.append(np.asarray(sigmas, np.float32)[best[lo:hi][keep]])
            found_dark.append(dark[lo:hi][keep])
            found_off.append(_subvoxel(comb, idx + np.array([lo, 0, 0])))
            idx[:, 0] += z0
            found_zyx.append(idx.astype(np.int64))
    if found_zyx:
        zyx = np.concatenate(found_zyx)
        resp = np.concatenate(found_resp)
        sig = np.concatenate(found_sig)
        is_dark = np.concatenate(found_dark)
        off = np.concatenate(found_off)
        # strongest first; ties broken by position, so the order never depends on slabs
        order = np.lexsort((zyx[:, 2], zyx[:, 1], zyx[:, 0], -resp))
        zyx, resp, sig, is_dark = zyx[order], resp[order], sig[order], is_dark[order]
        off = off[order]
    else:
        zyx = np.empty((0, 3), np.int64)
        resp = sig = np.empty(0, np.float32)
        is_dark = np.empty(0, bool)
        off = np.empty((0, 3), np.float32)
    cands = Candidates(zyx, resp, sig, sigmas, noise, is_dark, polarity, off)
    if max_candidates is not None and len(cands) > max_candidates:
        log.info("keeping the %d strongest of %d candidates", max_candidates, len(cands))
        cands = cands.subset(np.arange(max_candidates))
    log.info("%d candidates (scales %s voxels, polarity %s, threshold %g)", len(cands),
             ", ".join(f"{s:.3g}" for s in sigmas), polarity, threshold)
    return cands


def _subvoxel(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Parabola-vertex offsets (rule 5) of the maxima ``idx`` (region indices) of ``values``.

    A neighbour outside the region gives no offset along its axis: candidates lie at least
    the halo (>= 1) inside the region unless at the tomogram's own edge, so the offsets do
    not depend on the slab size.
    """
    off = np.zeros(idx.shape, np.float32)
    c0 = values[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.float64)
    for k in range(3):
        m, q = idx.copy(), idx.copy()
        m[:, k] -= 1
        q[:, k] += 1
        ok = (m[:, k] >= 0) & (q[:, k] < values.shape[k])
        if not ok.any():
            continue
        cm = values[tuple(np.where(ok, m[:, j], idx[:, j]) for j in range(3))]
        cq = values[tuple(np.where(ok, q[:, j], idx[:, j]) for j in range(3))]
        den = cm.astype(np.float64) - 2 * c0 + cq
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(ok & (den < 0), 0.5 * (cm - cq) / den, 0.0)
        off[:, k] = np.clip(d, -0.5, 0.5)
    return off


def _radius(sigma: float) -> int:
    """Kernel radius of a Gaussian of ``sigma`` cut at ``TRUNCATE`` sigmas (as scipy's)."""
    return int(TRUNCATE * float(sigma) + 0.5)


def _noise(tomogram: np.ndarray, sigmas: Sequence[float], halo: int,
           dev: torch.device) -> tuple[float, ...]:
    """MAD estimate of each scale's response standard deviation over the central block."""
    shape = np.array(tomogram.shape)
    size = np.minimum(shape, (64, 256, 256))
    lo = (shape - size) // 2
    hi = lo + size
    a, b = np.maximum(lo - halo, 0), np.minimum(hi + halo, shape)
    region = np.asarray(tomogram[a[0]:b[0], a[1]:b[1], a[2]:b[2]], dtype=np.float32)
    inner = tuple(slice(int(p), int(q)) for p, q in zip(lo - a, hi - a, strict=True))
    out = []
    for d in _dogs(region, sigmas, dev):
        d = d[inner]
        mad = float(np.median(np.abs(d - np.median(d))))
        out.append(1.4826 * mad if mad > 0 else float(np.std(d)) or 1.0)
    return tuple(out)


def _combined(region: np.ndarray, sigmas: Sequence[float], noise: Sequence[float],
              sign: float, dev: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max over scales of the noise-normalised response, and where it is reached.

    Returns the response, the index of the scale that gave it, and whether the blob there is
    dark (its difference of Gaussians positive).
    """
    comb = best = dark = None
    for k, (d, n) in enumerate(zip(_dogs(region, sigmas, dev), noise, strict=True)):
        d = d / np.float32(n)
        is_dark = d > 0
        d = np.abs(d) if sign == 0.0 else (d if sign > 0 else -d)
        if comb is None:
            comb, best, dark = d, np.zeros(d.shape, np.int8), is_dark
        else:
            better = d > comb
            comb = np.where(better, d, comb)
            best[better] = k
            dark = np.where(better, is_dark, dark)
    return comb, best, dark


def _dogs(region: np.ndarray, sigmas: Sequence[float], dev: torch.device):
    """``G(DOG_RATIO * s) * v - G(s) * v`` for each scale in turn, edges extended (rule 2).

    The scales are ``DOG_RATIO`` apart, so each outer Gaussian is the next inner one. On CUDA
    the region goes to the GPU once and only the differences come back.
    """
    if dev.type == "cuda":
        vol = torch.from_numpy(np.ascontiguousarray(region)).to(dev)
        inner = _gaussian_torch(vol, sigmas[0])
        for s in sigmas:
            outer = _gaussian_torch(vol, DOG_RATIO * s)
            yield (outer - inner).cpu().numpy()
            inner = outer
        return
    inner = _gaussian(region, sigmas[0])
    for s in sigmas:
        outer = _gaussian(region, DOG_RATIO * s)
        yield outer - inner
        inner = outer


def _gaussian(region: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian filter on the CPU (scipy), edges extended."""
    return ndimage.gaussian_filter(region, float(sigma), truncate=TRUNCATE, mode="nearest")


def _gaussian_torch(vol: torch.Tensor, sigma: float) -> torch.Tensor:
    """The same filter in torch, on ``vol``'s device (CUDA; equal to scipy's to 1e-5)."""
    rad = _radius(sigma)
    x = torch.arange(-rad, rad + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    k = (k / k.sum()).to(device=vol.device, dtype=torch.float32).view(1, 1, -1)
    with torch.inference_mode():
        for ax in range(3):
            moved = vol.movedim(ax, -1)
            sh = moved.shape
            flat = moved.reshape(-1, 1, sh[-1])
            flat = F.conv1d(F.pad(flat, (rad, rad), mode="replicate"), k)
            vol = flat.reshape(sh).movedim(-1, ax)
        return vol.contiguous()


def _local_max(values: np.ndarray, half: int, dev: torch.device) -> np.ndarray:
    """True where a voxel is the maximum of the cube of edge ``2 * half + 1`` around it.

    The cube is clipped at the region's edges.
    """
    if dev.type != "cuda":
        return ndimage.maximum_filter(values, size=2 * half + 1, mode="nearest") == values
    return _local_max_torch(values, half, dev)


def _local_max_torch(values: np.ndarray, half: int, dev: torch.device) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(values)).to(dev)[None, None]
    with torch.inference_mode():
        m = F.max_pool3d(t, kernel_size=2 * half + 1, stride=1, padding=half)
        return (m == t)[0, 0].cpu().numpy()
