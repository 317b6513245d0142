"""The run folder of ``tomoclass train``: claimed, locked and never mixed with user files.

A run is written in place (checkpoints appear as training goes), so it is not an atomic folder
output; instead :func:`run_folder` checks ``--out`` by the rules of
:mod:`tomoclass.io.outputs`, takes the folder's lock (:mod:`tomoclass.io.lock`) for the whole
job, removes temporaries a killed job left, and writes the run's marker with the patterns of
the files a run holds, so ``--overwrite`` can later remove exactly those.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tomoclass.errors import InputError
from tomoclass.io import outputs as O
from tomoclass.io.lock import folder_lock

#: Kind recorded in a run folder's marker.
RUN_KIND = "run"
RUN_PATTERNS = O.RUN_PATTERNS


@contextlib.contextmanager
def run_folder(out: str | os.PathLike[str], *, resume: bool, is_main: bool = True,
               overwrite: bool | None = None, what: str = "training") -> Iterator[Path]:
    """Claim and lock the run folder ``out`` for a training job (main process only).

    Raises
    ------
    InputError
        ``out`` is a file or under one, a folder that is not a run, a previous run without
        ``--resume``/``--overwrite``, a run holding files tomoclass did not write (with
        ``--overwrite``), no run at all with ``--resume``, or in use by another job.
    """
    out = Path(out)
    if not is_main:
        yield out
        return
    pol = O.current_policy()
    overwrite = pol.overwrite if overwrite is None else overwrite
    ckpts = out / "checkpoints"
    if resume:
        if not out.is_dir():
            raise InputError("no run to resume: the folder does not exist", path=out,
                             field=pol.option)
        marker = O.read_marker(out)
        if marker is not None and marker["kind"] != RUN_KIND:
            raise InputError(f"is a tomoclass {marker['kind']} folder, not a run",
                             path=out, field=pol.option)
    else:
        if not overwrite and ckpts.is_dir() and any(ckpts.glob("*.pt")):
            raise InputError("run directory already has checkpoints; use --resume to continue, "
                             "--overwrite to replace it, or choose another --out", path=out)
        O.check_output_dir(out, RUN_KIND, overwrite=overwrite)
    O.make_parent(out, pol.option)
    created = not out.exists()
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", path=out,
                         field=pol.option) from None
    try:
        with folder_lock(out, what):
            if not resume and O.check_output_dir(out, RUN_KIND, overwrite=overwrite):
                marker = O.read_marker(out) or O.legacy_marker(out)
                if marker is not None:
                    O.remove_owned(out, marker)
                    out.mkdir(exist_ok=True)
            if O.read_marker(out) is None:
                (out / O.MARKER).write_text(O.marker_text(RUN_KIND, patterns=RUN_PATTERNS),
                                            encoding="utf-8")
            real = out.resolve()
            pol.claimed.append(real)
            try:
                yield out
            finally:
                with contextlib.suppress(ValueError):
                    pol.claimed.remove(real)
    except BaseException:
        # a run refused or failed before its first checkpoint leaves no folder behind
        if created and out.is_dir() and not any(ckpts.glob("*.pt")):
            O.remove_owned(out, O.read_marker(out))
        raise
