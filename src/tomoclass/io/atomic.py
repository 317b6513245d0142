"""Atomic file writes: every output appears complete or not at all.

A write goes to a temporary name in the destination directory and is renamed over the
target only after it succeeded and was flushed to disk, so a killed job never leaves a
half-written checkpoint, table or volume behind. Temporary names carry the writer's PID and
host (``.NAME.PID@HOST.XXXXXXXX[.suffix].tmp``) so the next write to the same target removes
those of a killed job (:func:`remove_stale_temporaries`). Output folders follow the rules of
:mod:`tomoclass.io.outputs`: nothing tomoclass did not write is ever removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError
from tomoclass.io import outputs as O

log = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of files we write: what ``open()`` would give (``mkstemp`` alone gives 0600,
#: which other users of a shared cluster could not read).
_FILE_MODE = 0o666 & ~_current_umask()
_DIR_MODE = 0o777 & ~_current_umask()


def _host_tag() -> str:
    return O.host_tag()


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}@{_host_tag()}."


#: Kept here for callers of earlier versions; the logic lives in :mod:`tomoclass.io.outputs`.
pid_alive = O.pid_alive
remove_stale_temporaries = O.remove_stale_temporaries


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Parameters
    ----------
    target
        Final file path.
    suffix
        Suffix for the temporary name (some writers pick the format from it); defaults
        to the target's own suffix.

    Yields
    ------
    Path
        Where the caller writes. On an exception the temporary file is removed and the
        target is untouched.

    Raises
    ------
    InputError
        ``target`` is a folder, lies under a file, cannot be created or is an input of the
        running command (:func:`tomoclass.io.outputs.check_output_file`).
    """
    target = Path(target)
    O.check_output_file(target)
    O.make_parent(target, O.current_policy().option)
    if not O.in_own_work(target):  # a folder of many files is swept once, when claimed
        remove_stale_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=_tmp_prefix(target),
            suffix=(target.suffix if suffix is None else suffix) + ".tmp", dir=target.parent)
    except OSError as exc:
        raise InputError(f"cannot write here: {exc.strerror or exc}", path=target,
                         field=O.current_policy().option) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _FILE_MODE)
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Give ``target`` the content of ``source`` atomically, sharing its storage if possible.

    A hard link when the file system allows one (no second copy on disk: ``best.pt`` and
    ``last.pt`` of one epoch are one file), a byte copy otherwise. Either way the link or
    copy is made under a temporary name and renamed onto ``target``, so a later atomic write
    of ``source`` (a new inode renamed over it) leaves ``target`` as it was.

    Returns
    -------
    Path
        ``target``.
    """
    source, target = Path(source), Path(target)
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FUSE file systems)
            shutil.copyfile(source, tmp)
    return target


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, kind: str = "output",
               overwrite: bool | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; rename it onto ``target`` on success.

    Parameters
    ----------
    target
        Final folder.
    kind
        Kind of output, recorded in the folder's marker (:data:`tomoclass.io.outputs.MARKER`).
    overwrite
        Replace a previous output of the same kind (default: the running command's
        ``--overwrite``, see :func:`tomoclass.io.outputs.output_policy`).

    Raises
    ------
    InputError
        Before anything is written, when ``target`` may not receive this output
        (:func:`tomoclass.io.outputs.check_output_dir`): an existing folder that is not a
        tomoclass ``kind`` output, a previous one without ``overwrite``, one holding files
        tomoclass did not write or inputs of the command, a path that is a file or under one.
    """
    target = Path(target)
    O.check_output_dir(target, kind, overwrite=overwrite)
    O.make_parent(target, O.current_policy().option)
    remove_stale_temporaries(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".tmp",
                                    dir=target.parent))
    except OSError as exc:
        raise InputError(f"cannot write here: {exc.strerror or exc}", path=target,
                         field=O.current_policy().option) from None
    try:
        os.chmod(tmp, _DIR_MODE)
        yield tmp
        O.write_marker(tmp, kind)
        # checked again: the folder may have changed while this output was computed
        if O.check_output_dir(target, kind, overwrite=overwrite):
            _replace_dir(target, tmp)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_png(fig: Any, target: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write a matplotlib figure as a PNG through :func:`atomic_path`; returns the path."""
    path = Path(target)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _replace_dir(target: Path, tmp: Path) -> None:
    """Swap ``tmp`` in for ``target`` (empty, or a checked previous output) and remove ours."""
    marker = O.read_marker(target) or O.legacy_marker(target)
    if marker is None and not any(target.iterdir()):
        os.replace(tmp, target)  # rename(2) replaces an empty directory
        return
    old = target.with_name(f"{_tmp_prefix(target)}{secrets.token_hex(4)}.old.tmp")
    os.replace(target, old)
    os.replace(tmp, target)
    left = O.remove_owned(old, marker)
    if left:
        log.warning("kept %s: it holds %d files tomoclass did not write", old, len(left))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
