"""MRC volumes: memory-mapped reading with checks, atomic writing with correct headers.

Arrays are in MRC order ``(z, y, x)`` (sections, rows, columns); voxel sizes are in Ångström.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: Voxel sizes outside this range (Å) are refused as absurd unless overridden.
#: 0.1 Å is below any detector pixel; 1,000 Å (100 nm) is far coarser than any binned tomogram.
MIN_VOXEL_SIZE_ANGSTROM = 0.1
MAX_VOXEL_SIZE_ANGSTROM = 1000.0

#: Volumes up to this many bytes are checked for NaN/Inf and zero variance in full; larger ones
#: (``check="auto"``) are checked on a strided sample of z-sections so opening stays cheap.
FULL_CHECK_MAX_BYTES = 256 * 1024**2

#: MRC modes tomoclass reads: 0 int8 (uint8 when IMOD flags it unsigned), 1 int16, 2 float32,
#: 6 uint16, 12 float16.
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}

_COMPRESSED = (".gz", ".bz2")


@dataclass(frozen=True)
class Volume:
    """A 3D density read from an MRC file.

    Attributes
    ----------
    data
        Array of shape ``(z, y, x)`` in the file's dtype: a read-only ``numpy.memmap`` when
        read with ``mmap=True`` (nothing is loaded until sliced), else an in-memory array.
    voxel_size_angstrom
        Isotropic voxel size in Å (from the header unless overridden).
    path
        The file it came from.
    """

    data: np.ndarray
    voxel_size_angstrom: float
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` size in voxels."""
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]


def check_voxel_size(value: float, *, path: str | os.PathLike[str] | None = None,
                     field: str = "voxel_size_angstrom",
                     override_option: str = "--voxel-size") -> float:
    """Return ``value`` as float if it is a plausible voxel size in Å, else raise InputError.

    ``override_option`` is the command-line option the message tells the user to give (each
    command names its own: ``extract`` overrides tomogram headers with
    ``--tomogram-voxel-size``, ``simulate`` map headers with ``--map-voxel-size``).
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"voxel size {value!r} is not a number", path=path, field=field) from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(
            f"voxel size is {v:g} Å; give the real one with {override_option} (Å)",
            path=path, field=field,
        )
    if not MIN_VOXEL_SIZE_ANGSTROM <= v <= MAX_VOXEL_SIZE_ANGSTROM:
        raise InputError(
            f"voxel size {v:g} Å is outside the plausible range "
            f"{MIN_VOXEL_SIZE_ANGSTROM:g}-{MAX_VOXEL_SIZE_ANGSTROM:g} Å; "
            f"override it with {override_option}",
            path=path, field=field,
        )
    return v


def read_volume(
    path: str | os.PathLike[str],
    voxel_size_angstrom: float | None = None,
    mmap: bool = True,
    *,
    check: str = "auto",
    allow_2d: bool = False,
    override_option: str = "--voxel-size",
) -> Volume:
    """Open an MRC/REC volume, memory-mapped by default (or an OME-Zarr folder, in memory).

    Parameters
    ----------
    path
        ``.mrc``/``.rec``/``.map`` file (``.gz``/``.bz2`` are read into memory: they cannot be
        memory-mapped).
    voxel_size_angstrom
        Override for a wrong header (Å). ``None`` takes the header's value, which must then be
        non-zero, isotropic and plausible.
    mmap
        Memory-map the data (default). ``False`` reads it into memory.
    check
        How to check the values for NaN/Inf and zero variance: ``"full"`` reads every voxel,
        ``"sample"`` reads up to 16 evenly spaced z-sections, ``"auto"`` (default) is full up to
        :data:`FULL_CHECK_MAX_BYTES` and sampled above (so a NaN in an unsampled section of a huge
        tomogram can go unnoticed: use ``"full"`` when that matters), ``"none"`` skips it.
    allow_2d
        Accept a single image (returned as shape ``(1, y, x)``). By default a 2D file is an error.
    override_option
        The command-line option that overrides the voxel size, named in voxel-size errors.

    Returns
    -------
    Volume
        ``data`` of shape ``(z, y, x)`` whatever axis order the header's ``mapc``,
        ``mapr``, ``maps`` declare (a non-standard order gives a transposed view).

    Raises
    ------
    InputError
        Missing or truncated file, unsupported MRC mode, an axis order (``mapc``, ``mapr``,
        ``maps``) that is not a permutation of 1, 2, 3, a 2D image where a volume is expected,
        NaN/Inf voxels, a constant (zero-variance) volume, or a voxel size of 0, anisotropic or
        outside 0.1-1000 Å with no override.
    """
    path = Path(path)
    if check not in ("auto", "full", "sample", "none"):
        raise InputError(f"check must be auto/full/sample/none, not {check!r}", field="check")
    if path.is_dir():
        from tomoclass.io.omezarr import is_omezarr, read_omezarr

        if is_omezarr(path):  # OME-Zarr (Portal, copick): see tomoclass.io.omezarr
            return read_omezarr(path, voxel_size_angstrom, check=check)
        raise InputError("is a folder, neither an MRC file nor an OME-Zarr image (no multiscales "
                         "metadata)", path=path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    compressed = path.suffix.lower() in _COMPRESSED
    _check_not_compressed(path, compressed)
    use_mmap = mmap and not compressed
    mrc, caught = _open_mrc(path, use_mmap)
    try:
        header = mrc.header
        mode = _check_mode(header, path)
        if not compressed:
            _check_file_size(header, mode, path)
        _check_not_image_stack(header, path)
        data = _zyx_data(mrc, mode, caught, path, allow_2d=allow_2d)
        if voxel_size_angstrom is None:
            voxel = _header_voxel_size(mrc, data, path, override_option)
        else:
            voxel = check_voxel_size(voxel_size_angstrom, path=path, field=override_option)
        if not use_mmap:
            data = np.array(data, copy=True, order="C")
        if check != "none":
            check_values(data, path, check)
    finally:
        # Closing the MrcMemmap only drops its own reference: numpy's memmap keeps the mapping
        # alive for ``data`` (read-only), so the returned array stays valid.
        mrc.close()
    return Volume(data=data, voxel_size_angstrom=voxel, path=path)


def _open_mrc(path: Path, use_mmap: bool) -> tuple[Any, list[warnings.WarningMessage]]:
    """The open MRC file and the warnings mrcfile gave while opening it.

    Permissive mode so that old files without the MAP ID or with a bad machine stamp still
    open; the problems that matter (truncated data, unknown mode) are checked by the caller.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opener = mrcfile.mmap if use_mmap else mrcfile.open
            mrc = opener(path, mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"not a readable MRC volume ({_short(exc)})", path=path) from None
    return mrc, caught


def _check_mode(header: np.recarray, path: Path) -> int:
    """The header's MRC mode, one of :data:`SUPPORTED_MODES`."""
    mode = int(header.mode)
    if mode not in SUPPORTED_MODES:
        raise InputError(
            f"MRC mode {mode} is not supported (use one of "
            f"{', '.join(f'{k} ({v})' for k, v in SUPPORTED_MODES.items())})",
            path=path, field="mode",
        )
    return mode


def _check_file_size(header: np.recarray, mode: int, path: Path) -> None:
    """Refuse a file shorter than its header says; warn about bytes after the data."""
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    expected = (1024 + max(0, int(header.nsymbt))
                + nx * ny * nz * np.dtype(SUPPORTED_MODES[mode]).itemsize)
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(
            f"truncated: the header describes {nx}x{ny}x{nz} voxels of mode {mode} "
            f"({expected} bytes) but the file has {actual} bytes",
            path=path, field="data")
    if actual > expected:
        log.warning("%s: %d bytes after the data the header describes (%dx%dx%d of "
                    "mode %d) are ignored; mrcfile's validator flags such a file",
                    path, actual - expected, nx, ny, nz, mode)


def _zyx_data(mrc: Any, mode: int, caught: list[warnings.WarningMessage], path: Path, *,
              allow_2d: bool) -> np.ndarray:
    """The voxels as ``(z, y, x)`` (a 2D image as ``(1, y, x)`` when ``allow_2d``)."""
    header = mrc.header
    data = mrc.data
    if data is None:
        why = "; ".join(_short(w.message) for w in caught) or "no data block"
        raise InputError(f"cannot read the data ({why})", path=path)
    if mode == 0 and _imod_unsigned_bytes(header):
        data = data.view(np.uint8)  # same bytes, read 0..255 as IMOD wrote them
    if data.ndim == 3:
        data = _to_zyx(data, header, path)
    if data.ndim == 2 or (data.ndim == 3 and data.shape[0] == 1):
        if not allow_2d:
            raise InputError(
                f"this is a 2D image {tuple(data.shape[-2:])}, a 3D volume is expected",
                path=path, field="nz",
            )
        return data.reshape((1,) + tuple(data.shape[-2:]))
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got {data.ndim} dimensions", path=path,
                         field="nz")
    return data


def _header_voxel_size(mrc: Any, data: np.ndarray, path: Path, override_option: str) -> float:
    """The header's voxel size (Å): non-zero, isotropic and plausible, else InputError."""
    vs = mrc.voxel_size
    sizes = np.array([float(vs.x), float(vs.y), float(vs.z)])
    if data.shape[0] == 1:
        sizes = sizes[:2]
    if np.any(sizes <= 0) or not np.all(np.isfinite(sizes)):
        raise InputError(
            f"header voxel size is {sizes[0]:g} Å; give the real one with "
            f"{override_option} (Å)",
            path=path, field="voxel_size",
        )
    if np.max(sizes) - np.min(sizes) > 1e-3 * np.max(sizes):
        raise InputError(
            "anisotropic voxel size ("
            + ", ".join(f"{float(s):.4g}" for s in sizes)
            + f") Å (x, y, z); give the isotropic value with {override_option}",
            path=path, field="voxel_size",
        )
    return check_voxel_size(sizes[0], path=path, field="voxel_size",
                            override_option=override_option)


#: First bytes of compressed files (gzip, bzip2).
_MAGIC = {b"\x1f\x8b": ("gzip", ".gz", "gunzip"), b"BZh": ("bzip2", ".bz2", "bunzip2")}


def _check_not_compressed(path: Path, compressed: bool) -> None:
    """Refuse a compressed file whose name does not say so (mrcfile cannot tell)."""
    if compressed:
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(3)
    except OSError as exc:
        raise InputError(f"cannot read the file ({_short(exc)})", path=path) from None
    for magic, (kind, suffix, tool) in _MAGIC.items():
        if head.startswith(magic):
            raise InputError(f"this is a {kind}-compressed file without {suffix} in its name; "
                             f"name it {path.name}{suffix} or run {tool} on it", path=path)


def _check_not_image_stack(header: np.recarray, path: Path) -> None:
    """Refuse a stack of 2D images (space group 0 and one section per image, ``.mrcs``)."""
    nz, mz, ispg = int(header.nz), int(header.mz), int(header.ispg)
    if ispg == 0 and nz > 1 and (mz in (0, 1) or path.suffix.lower() == ".mrcs"):
        raise InputError(f"this is a stack of {nz} 2D images (space group 0, mz {mz}), not a 3D "
                         "volume; tomoclass reads tomograms and subtomograms", path=path,
                         field="ispg")


#: A tomogram whose y extent is below this fraction of both z and x is taken to have its beam
#: axis along y (see :func:`warn_if_beam_along_y`).
THIN_Y_RATIO = 0.6


def beam_along_y(shape_zyx: tuple[int, int, int]) -> bool:
    """Whether a ``(z, y, x)`` shape is thinnest along y by :data:`THIN_Y_RATIO` (see below)."""
    z, y, x = shape_zyx
    return y < THIN_Y_RATIO * min(z, x)


def warn_if_beam_along_y(volume: Volume) -> bool:
    """Log a warning (and return True) when a tomogram looks stored with the beam along y.

    tomoclass, like RELION, Warp and the simulator, takes the beam (and so the missing wedge)
    along z: a tomogram is thinnest along z. IMOD's ``tilt`` writes its reconstructions
    with y and z exchanged until ``trimvol -rx`` (or ``clip rotx``) rotates them; a classifier
    trained on one orientation sees the missing wedge in the wrong place in the other. A
    volume whose y extent is below :data:`THIN_Y_RATIO` of both others is flagged; nothing
    is changed (a tall lamella crop may be thin in y on purpose).
    """
    z, y, x = volume.data.shape
    if beam_along_y((z, y, x)):
        log.warning(
            "%s: thinnest along y (z, y, x = %d, %d, %d): it may be stored with the beam along "
            "y (IMOD's unrotated output); tomoclass expects the beam along z: rotate it first "
            "(trimvol -rx, or clip rotx)", volume.path, z, y, x)
        return True
    return False


#: IMOD's stamp (header bytes 153-156) saying that its flags (bytes 157-160) are meaningful.
IMOD_STAMP = 1146047817


def _imod_unsigned_bytes(header: np.recarray) -> bool:
    """True for a mode-0 file that IMOD wrote with unsigned bytes.

    MRC2014 makes mode 0 signed (mrcfile reads int8), but IMOD writes bytes 0..255 and says
    so: its stamp at byte 152 and flag bit 1 ("bytes are signed") clear. Read as int8, every
    value above 127 would wrap to a negative one.
    """
    raw = bytes(header.extra2)
    if len(raw) < 48:
        return False
    stamp, flags = np.frombuffer(raw[40:48], dtype=header.dtype.fields["nx"][0])
    return int(stamp) == IMOD_STAMP and not int(flags) & 1


def _to_zyx(data: np.ndarray, header: np.recarray, path: Path) -> np.ndarray:
    """Return ``data`` (file order: sections, rows, columns) as ``(z, y, x)``.

    MRC2014 says which of x, y, z (1, 2, 3) the columns, rows and sections run along in
    ``mapc``, ``mapr``, ``maps``. Tomograms and most maps are 1, 2, 3 (file order is already
    z, y, x); some maps (older EMDB entries, SPIDER/CCP4 conversions) are not, and reading them
    as stored would exchange axes. The result is a transposed view (a memmap stays a memmap;
    slices of it read only what they need). All three 0, as very old files have, is taken as
    the standard order.
    """
    order = (int(header.mapc), int(header.mapr), int(header.maps))
    if order in ((1, 2, 3), (0, 0, 0)):
        return data
    if sorted(order) != [1, 2, 3]:
        raise InputError(
            f"axis order mapc, mapr, maps = {order} is not a permutation of 1, 2, 3",
            path=path, field="mapc")
    # File axis 0 runs along order[2] (sections), 1 along order[1] (rows), 2 along order[0].
    file_axis = {order[2]: 0, order[1]: 1, order[0]: 2}
    log.info("%s: axis order (mapc, mapr, maps) = %s; read as (z, y, x)", path, order)
    return data.transpose(file_axis[3], file_axis[2], file_axis[1])


def check_values(data: np.ndarray, path: Path, check: str) -> None:
    """Refuse NaN/Inf voxels and a constant volume (``check``: ``"full"``, ``"auto"``, ``"none"``).

    ``"auto"`` scans the whole volume up to ``FULL_CHECK_MAX_BYTES``, 16 even z-sections beyond.
    """
    nbytes = data.size * data.dtype.itemsize
    if check == "full" or (check == "auto" and nbytes <= FULL_CHECK_MAX_BYTES):
        sample = data
    else:
        idx = np.unique(np.linspace(0, data.shape[0] - 1, min(16, data.shape[0])).astype(int))
        sample = data[idx]
    if np.issubdtype(data.dtype, np.floating):
        # Slab-wise so a full check of a large memmap does not allocate a float64 copy.
        step = max(1, (64 * 1024**2) // max(1, sample[0].nbytes))
        for z0 in range(0, sample.shape[0], step):
            slab = np.asarray(sample[z0:z0 + step])
            bad = ~np.isfinite(slab)
            if bad.any():
                z, y, x = np.argwhere(bad)[0]
                what = "NaN" if np.isnan(slab[z, y, x]) else "Inf"
                n = int(bad.sum())
                raise InputError(
                    f"{n} voxel(s) are NaN/Inf (first: {what} in a checked section at "
                    f"y={y}, x={x})", path=path, field="data",
                )
    lo = hi = None
    step = max(1, (64 * 1024**2) // max(1, sample[0].nbytes))
    for z0 in range(0, sample.shape[0], step):
        slab = np.asarray(sample[z0:z0 + step])
        s_lo, s_hi = slab.min(), slab.max()
        lo = s_lo if lo is None else min(lo, s_lo)
        hi = s_hi if hi is None else max(hi, s_hi)
    if lo == hi:
        raise InputError(
            f"the volume is constant ({float(lo):g} everywhere checked): zero variance",
            path=path, field="data",
        )


def write_volume(
    path: str | os.PathLike[str],
    data: np.ndarray,
    voxel_size_angstrom: float,
) -> Path:
    """Write a ``(z, y, x)`` array as MRC, atomically, with header statistics filled in.

    Parameters
    ----------
    path
        Destination ``.mrc`` file; it appears only once complete.
    data
        3D (or 2D) array. float32, float16, int8, int16 and uint16 keep their dtype (MRC modes
        2, 12, 0, 1, 6); uint8 is stored as uint16, float64 and other types as float32.
        A memmap is copied in z-slabs, so writing a large volume needs little memory.
    voxel_size_angstrom
        Isotropic voxel size in Å, written to the header (``cella = shape * voxel``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        Non-3D/2D data or an implausible voxel size.
    """
    path = Path(path)
    voxel = check_voxel_size(voxel_size_angstrom, path=path)
    arr = data
    if arr.ndim not in (2, 3):
        raise InputError(f"can only write 2D or 3D arrays, got shape {arr.shape}", path=path)
    keep = {np.dtype(t) for t in ("float32", "float16", "int8", "int16", "uint16")}
    if arr.dtype in keep:
        out_dtype = arr.dtype
    elif arr.dtype == np.uint8:
        out_dtype = np.dtype("uint16")
    else:
        out_dtype = np.dtype("float32")
    mode = int(mrcfile.utils.mode_from_dtype(out_dtype))
    with atomic_path(path, suffix=".mrc") as tmp:
        with mrcfile.new_mmap(tmp, shape=arr.shape, mrc_mode=mode, overwrite=True) as mrc:
            if arr.ndim == 3:
                step = max(1, (64 * 1024**2) // max(1, arr[0].nbytes))
                for z0 in range(0, arr.shape[0], step):
                    mrc.data[z0:z0 + step] = np.asarray(arr[z0:z0 + step], dtype=out_dtype)
            else:
                mrc.data[...] = np.asarray(arr, dtype=out_dtype)
            mrc.voxel_size = voxel
            mrc.header.origin = (0.0, 0.0, 0.0)
            mrc.update_header_from_data()
            with warnings.catch_warnings():
                # NaN/Inf data are written as given (reading refuses them); no stats warnings.
                warnings.simplefilter("ignore", RuntimeWarning)
                mrc.update_header_stats()
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
