"""Where a result came from: the source commit, the machine, and a JSON record of it.

One helper for the whole project: run folders (``config.yaml``'s ``git_commit``) and the
benchmark scripts (``benchmarks/results/*.json``) record the commit the same way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path

__all__ = ["COMMIT_ENV", "git_commit", "machine_info", "new_result_file", "result_path",
           "write_result"]

#: Environment variable that names the commit when the source has no ``.git`` (a copy of the
#: working tree, e.g. on a GPU machine); returned as it is.
COMMIT_ENV = "TOMOCLASS_GIT_COMMIT"

_SRC = Path(__file__).resolve().parent


def git_commit(short: bool = False, dirty: bool = True, *,
               where: str | os.PathLike[str] | None = None) -> str | None:
    """Commit of the source tree that is running, ``+"-dirty"`` with uncommitted changes.

    Parameters
    ----------
    short
        Abbreviated hash.
    dirty
        Append ``-dirty`` when tracked files differ from the commit.
    where
        Folder inside the checkout to ask (default: this package's source folder).

    Returns
    -------
    str or None
        ``$TOMOCLASS_GIT_COMMIT`` when set (as it is); else the commit; None outside a git
        checkout or without ``git``.
    """
    env = os.environ.get(COMMIT_ENV)
    if env:
        return env
    cwd = str(where) if where is not None else str(_SRC)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", cwd, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        head = git("rev-parse", *(["--short"] if short else []), "HEAD")
        changed = dirty and bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if changed else "") if head else None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory (GiB), load average, platform, Python and (if importable) torch."""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory = None
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version()}
    try:
        import torch
    except ImportError:
        return info
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return info


def result_path(results_dir: str | os.PathLike[str], prefix: str) -> Path:
    """``<results_dir>/<prefix>_<UTC time, minutes>.json``, a free name.

    With ``_2``, ``_3``, ... added when the name is taken (two runs in one minute): an earlier
    record is never replaced.
    """
    base = Path(results_dir) / f"{prefix}_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M}"
    path, n = base.with_suffix(".json"), 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}.json")
    return path


#: Why a result file that exists is refused, and what to do instead.
REFUSE_EXISTING = ("exists and a result never replaces a file: give a new file name, or move "
                   "that file away first")


def new_result_file(text: str) -> Path:
    """The ``--out`` result file of a script (an argparse ``type``), refused if it exists.

    Refused when the arguments are read, before any work, since :func:`write_result` never
    replaces a file.

    Raises
    ------
    argparse.ArgumentTypeError
        The file exists (argparse prints it as a one-line usage error and exits with 2).
    """
    path = Path(text)
    if path.exists():
        raise argparse.ArgumentTypeError(f"{path} {REFUSE_EXISTING}")
    return path


def write_result(prefix: str, result: dict[str, Any], out: str | os.PathLike[str] | None = None,
                 *, results_dir: str | os.PathLike[str] = "benchmarks/results") -> Path:
    """Write ``result`` as indented JSON to a new file, ``out`` or :func:`result_path`.

    The file appears whole (written beside it, then renamed) and never replaces one: a user's
    file, or an earlier record, at ``out`` is refused. Scripts read ``--out`` with
    :func:`new_result_file` so that this is known before their work starts.

    Parameters
    ----------
    prefix
        File-name prefix when ``out`` is not given.
    result
        JSON-able record (other objects are written as ``str``).
    out
        Output file; its folder is created.
    results_dir
        Folder of the default file name.

    Raises
    ------
    InputError
        ``out`` exists.
    """
    path = Path(out) if out is not None else result_path(results_dir, prefix)
    if path.exists():
        raise InputError(REFUSE_EXISTING, path=path, field="out")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
