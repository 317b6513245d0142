"""Contrast polarity: whether a tomogram's particles are dark (as reconstructed) or bright.

A raw cryo-ET reconstruction shows protein *dark*: at the low frequencies that carry most of a
particle's signal the phase-contrast transfer function is negative (the simulator does the
same, :mod:`tomoclass.simulate.fourier`). Many pipelines and viewers invert it (protein
*bright*), and a classifier trained on one polarity fails on the other without a word. So
tomoclass keeps one convention and checks every tomogram against it:

* tomoclass datasets hold **dark** particles (``dataset.yaml`` records ``polarity: dark``);
  ``extract`` inverts tomograms that are bright;
* ``predict`` and ``locate`` invert a tomogram whose particles do not look as in the training
  data before the network sees it.

The polarity of a tomogram is measured, not guessed from its file: :func:`measure_polarity`
band-passes it (difference of Gaussians, 20 Å and 80 Å) and takes the **skewness** of the
result. Particles, membranes and gold are sparse dense objects; their tail of the intensity
distribution is the long one, so the skewness is negative when they are dark and positive
when bright, whatever their shape (hollow particles included), and needs no picks. Measured
on the simulator's shrec12 tomograms (``benchmarks/polarity_check.py``): -0.97 at 10 Å, -0.91
at 5 Å, -0.12 with white noise of twice the tomogram's standard deviation added, -0.025
("unclear") with four times; pure noise of that size gives about 0. The call is made only
when the skewness is five standard errors of pure noise of that size (and at least
:data:`MIN_SKEW`) and at least 7 of the tomogram's 8 octants agree in sign; otherwise it is
``"unclear"`` and nothing is inverted (pass the polarity by hand then).

A clear call is trusted all the way (:func:`candidate_polarity`): after inverting to the
training polarity, ``locate`` proposes candidates of that sign only. Only an unclear call leaves
the choice to the detector (candidates of both signs, a vote on the strongest of each): a weak
detector that calls bright blobs particles in a clearly dark tomogram (8/8 octants) otherwise
kept both signs, twice the candidates and time and a lower localization F1 (issue 20: 0.552
against 0.649 with ``dark``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tomoclass.errors import InputError

log = logging.getLogger(__name__)

#: What a polarity argument may say: measure it, or the particles' appearance as given.
POLARITY_CHOICES = ("auto", "dark", "bright")
#: The polarity of tomoclass datasets and so of every network trained on them.
DATASET_POLARITY = "dark"
#: What a dataset (and so a run) may record: ``mixed`` means both (a net trained on both
#: conventions, nothing to invert).
DATA_POLARITIES = ("dark", "bright", "mixed")
#: Band-pass of the measurement: inner and outer Gaussian sigma (Å).
BAND_ANGSTROM = (20.0, 80.0)
#: Smallest skewness (in size) called dark or bright, however large the tomogram.
MIN_SKEW = 0.03
#: ... and at least this many standard errors of the skewness of pure noise band-passed the
#: same way: ``sqrt(6 * NOISE_VOXELS_PER_SAMPLE * sigma**3 / n_voxels)`` (sigma the inner
#: band-pass sigma in voxels; the constant fitted to 12 noise volumes each of three sizes).
MIN_NOISE_SE = 5.0
NOISE_VOXELS_PER_SAMPLE = 10.0
#: Octants (of 8) whose skewness must share the overall sign.
MIN_AGREE = 7
#: Smallest extent (after binning, voxels) measured; a smaller volume is "unclear".
MIN_EXTENT = 8
#: The measurement reads at most about this many voxels (a centred crop in y and x, all z).
MAX_VOXELS = 16_000_000


@dataclass(frozen=True)
class Polarity:
    """Result of :func:`measure_polarity`.

    Attributes
    ----------
    polarity
        ``"dark"``, ``"bright"`` or ``"unclear"``.
    skewness
        Skewness of the band-passed tomogram (negative: dark particles).
    octants_agreeing
        How many of the 8 octants have the overall sign.
    noise_se
        Standard error of the skewness of pure noise of this size and band-pass.
    binning
        Block-averaging factor applied before filtering.
    """

    polarity: str
    skewness: float
    octants_agreeing: int
    noise_se: float
    binning: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML/JSON records)."""
        return asdict(self)

    def describe(self) -> str:
        """One line: the call and the numbers behind it."""
        return (f"{self.polarity} (band-passed skewness {self.skewness:+.3f}, "
                f"noise level {self.noise_se:.3f}, {self.octants_agreeing}/8 octants agree)")


def measure_polarity(data: Any, voxel_size_angstrom: float) -> Polarity:
    """Measure whether the particles of a tomogram are dark or bright (see the module doc).

    Parameters
    ----------
    data
        ``(z, y, x)`` tomogram (a memmap is read in a centred crop of at most
        :data:`MAX_VOXELS` voxels, z-slab by z-slab).
    voxel_size_angstrom
        Its voxel size (Å): the band-pass is set in Å.

    Returns
    -------
    Polarity
        ``"unclear"`` (skewness NaN) for a volume under :data:`MIN_EXTENT` voxels along an
        axis after binning.
    """
    from scipy import ndimage

    if getattr(data, "ndim", 0) != 3:
        raise InputError(f"tomogram must be 3-D (z, y, x), got shape {np.shape(data)}",
                         field="tomogram")
    inner_vox = BAND_ANGSTROM[0] / float(voxel_size_angstrom)
    binning = max(1, int(math.floor(inner_vox / 2.0)))
    crop = _centred_crop(tuple(int(n) for n in data.shape), binning)
    if min((c.stop - c.start) // binning for c in crop) < MIN_EXTENT:
        return Polarity("unclear", float("nan"), 0, float("nan"), binning)
    vol = _binned(data, crop, binning)
    s_in = BAND_ANGSTROM[0] / (float(voxel_size_angstrom) * binning)
    s_out = BAND_ANGSTROM[1] / (float(voxel_size_angstrom) * binning)
    band = ndimage.gaussian_filter(vol, s_in, mode="reflect")
    band -= ndimage.gaussian_filter(vol, s_out, mode="reflect")
    total = _skewness(band)
    halves = [(slice(0, n // 2), slice(n // 2, n)) for n in band.shape]
    octs = [_skewness(band[a, b, c]) for a in halves[0] for b in halves[1] for c in halves[2]]
    agree = int(sum(np.sign(s) == np.sign(total) for s in octs if np.isfinite(s)))
    se = math.sqrt(6.0 * NOISE_VOXELS_PER_SAMPLE * s_in**3 / band.size)
    if (not np.isfinite(total) or abs(total) < max(MIN_SKEW, MIN_NOISE_SE * se)
            or agree < MIN_AGREE):
        call = "unclear"
    else:
        call = "dark" if total < 0 else "bright"
    return Polarity(call, float(total), agree, se, binning)


def training_polarity(info: dict[str, Any]) -> str:
    """The polarity a run was trained on, from ``load_run``'s info.

    Runs that predate the record were trained on tomoclass datasets: :data:`DATASET_POLARITY`.
    """
    return str((info.get("data") or {}).get("polarity") or DATASET_POLARITY)


def resolve_inversion(requested: str, data: Any, voxel_size_angstrom: float, *,
                      target: str = DATASET_POLARITY,
                      what: str = "tomogram") -> tuple[bool, Polarity | None]:
    """Whether to invert ``data`` so its particles look as in the training data.

    Parameters
    ----------
    requested
        One of :data:`POLARITY_CHOICES`: ``"dark"``/``"bright"`` is the user's word for how
        the particles look in ``data`` (nothing is measured); ``"auto"`` measures it
        (:func:`measure_polarity`) and inverts only when the call is clear, logging it (a
        warning when unclear or inverted).
    data, voxel_size_angstrom
        The tomogram and its voxel size (Å).
    target
        The polarity the network was trained on (``"dark"``, tomoclass's datasets;
        ``"mixed"``: both, so nothing is measured or inverted).
    what
        Name for the log lines (the tomogram's path).

    Returns
    -------
    (invert, measured)
        ``measured`` is None unless ``requested`` was ``"auto"``.
    """
    if requested not in POLARITY_CHOICES:
        raise InputError(f"polarity must be one of {', '.join(POLARITY_CHOICES)}, not "
                         f"{requested!r}", field="polarity")
    if target not in DATA_POLARITIES:
        raise InputError(f"training polarity {target!r} is not one of "
                         f"{', '.join(DATA_POLARITIES)}", field="polarity")
    if target == "mixed":
        return False, None
    if requested != "auto":
        return requested != target, None
    measured = measure_polarity(data, voxel_size_angstrom)
    if measured.polarity == "unclear":
        log.warning("%s: particle polarity %s; used as given (as if %s); pass "
                    "--polarity dark|bright if that is wrong", what, measured.describe(), target)
        return False, measured
    if measured.polarity != target:
        log.warning("%s: particles look %s; inverted to %s as in the training data "
                    "(--polarity %s keeps it as given)", what, measured.describe(), target,
                    target)
        return True, measured
    log.info("%s: particles look %s", what, measured.describe())
    return False, measured


def candidate_polarity(requested: str, measured: Polarity | None, target: str) -> str:
    """Which sign of candidates to propose once :func:`resolve_inversion` has run.

    Parameters
    ----------
    requested
        ``"auto"``, ``"dark"``, ``"bright"`` or ``"both"`` (the tomogram as given).
    measured
        The measurement of ``"auto"`` (None otherwise, and for ``"mixed"`` runs).
    target
        The training polarity (``"dark"``, ``"bright"`` or ``"mixed"``).

    Returns
    -------
    str
        ``"dark"``/``"bright"``: only that sign (after any inversion the particles look as in
        training, so it is ``target``; a ``"mixed"`` run takes the user's word); ``"both"``:
        both signs, and for ``"auto"`` the detector chooses among them (an unclear measurement,
        or a ``"mixed"`` run with nothing measured).
    """
    if requested == "both":
        return "both"
    if target == "mixed":
        return requested if requested in ("dark", "bright") else "both"
    if requested == "auto" and (measured is None or measured.polarity == "unclear"):
        return "both"
    return target


class Inverted:
    """A read-only, lazily negated view of a volume: ``Inverted(a)[k] == -a[k]``.

    Lets a memory-mapped tomogram be read with its contrast inverted without a negated copy of
    the whole file: only what is sliced is read and negated (as float32 or wider).
    """

    def __init__(self, data: Any) -> None:
        self._data = data
        self.shape = tuple(int(n) for n in data.shape)
        self.ndim = len(self.shape)
        kind = np.dtype(data.dtype)
        self.dtype = kind if kind.kind == "f" else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return -np.asarray(self._data[key], dtype=self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = -np.asarray(self._data, dtype=self.dtype)
        return out if dtype is None else out.astype(dtype, copy=False)


def invert_if(data: Any, invert: bool) -> Any:
    """``Inverted(data)`` when ``invert``, else ``data`` itself."""
    return Inverted(data) if invert else data


def _centred_crop(shape: tuple[int, int, int], binning: int) -> tuple[slice, slice, slice]:
    z, y, x = shape
    budget = MAX_VOXELS * binning**3
    side = int(math.sqrt(max(1, budget // max(1, z))))
    ys, xs = min(y, side), min(x, side)
    y0, x0 = (y - ys) // 2, (x - xs) // 2
    return slice(0, z), slice(y0, y0 + ys), slice(x0, x0 + xs)


def _binned(data: Any, crop: tuple[slice, slice, slice], b: int) -> np.ndarray:
    """Block-average ``data[crop]`` by ``b`` per axis, reading ``b`` z-sections at a time."""
    zs, ys, xs = crop
    nz = (zs.stop - zs.start) // b
    ny = (ys.stop - ys.start) // b
    nx = (xs.stop - xs.start) // b
    out = np.empty((nz, ny, nx), dtype=np.float32)
    step = max(1, 64 // b) * b
    for z0 in range(0, nz * b, step):
        z1 = min(z0 + step, nz * b)
        slab = np.asarray(data[zs.start + z0:zs.start + z1, ys.start:ys.start + ny * b,
                               xs.start:xs.start + nx * b], dtype=np.float32)
        k = (z1 - z0) // b
        out[z0 // b:z0 // b + k] = slab.reshape(k, b, ny, b, nx, b).mean(axis=(1, 3, 5))
    return out


def _skewness(a: np.ndarray) -> float:
    v = a.astype(np.float64, copy=False).ravel()
    d = v - v.mean()
    m2 = float(np.mean(d * d))
    if m2 <= 0:
        return float("nan")
    return float(np.mean(d * d * d) / m2**1.5)
