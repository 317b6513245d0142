"""An advisory lock on a folder (a training run) so two jobs never write it at once.

The lock is a file, :data:`LOCK_FILE`, created exclusively in the folder and holding the owner's
PID, host, start time and command. A second job finds it and refuses with one line naming the
owner. A lock whose owner ran on this host and no longer exists is stale: it is taken over
(with a warning). Under the lock, temporaries a killed job left in the folder are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from tomoclass.errors import InputError
from tomoclass.io.outputs import LOCK_FILE, host_name, pid_alive

log = logging.getLogger(__name__)

#: Temporary names of :mod:`tomoclass.io.atomic` (with and without the writer's PID).
_TMP = re.compile(r"^\..+\.[A-Za-z0-9_@-]+(\..*)?\.tmp$")


def read_lock(folder: str | os.PathLike[str]) -> dict | None:
    """The lock record of ``folder`` or None when it is not locked (or unreadable: ``{}``)."""
    path = Path(folder) / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _stale(rec: dict) -> bool:
    return (rec.get("host") == host_name() and isinstance(rec.get("pid"), int)
            and not pid_alive(rec["pid"]))


def acquire(folder: str | os.PathLike[str], what: str = "job") -> Path:
    """Take the lock of the existing ``folder`` or raise :class:`InputError`."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    record = {"pid": os.getpid(), "host": host_name(), "what": what,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": [str(a) for a in sys.argv]}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            rec = read_lock(folder)
            if rec is None:
                continue  # released meanwhile
            if rec and _stale(rec):
                log.warning("%s: taking over the lock of tomoclass PID %s, which no longer "
                            "runs", folder, rec.get("pid"))
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if rec:
                raise InputError(
                    f"in use by a tomoclass {rec.get('what', 'job')} (PID {rec.get('pid')} on "
                    f"{rec.get('host')} since {rec.get('started')}); wait for it, or remove "
                    f"{path} if that job is gone", path=folder) from None
            raise InputError(f"locked by {path}, which cannot be read; remove it if no "
                             "tomoclass job uses this folder", path=folder) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        return path
    raise InputError(f"could not take the lock {path}", path=folder)


def release(folder: str | os.PathLike[str]) -> None:
    """Remove the lock of ``folder`` if this process holds it."""
    rec = read_lock(folder)
    if rec and rec.get("pid") == os.getpid() and rec.get("host") == host_name():
        with contextlib.suppress(FileNotFoundError):
            (Path(folder) / LOCK_FILE).unlink()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "job") -> Iterator[Path]:
    """Hold the lock of ``folder`` inside the block; stale temporaries are removed first."""
    acquire(folder, what)
    try:
        remove_temporaries_under_lock(folder)
        yield Path(folder)
    finally:
        release(folder)


def remove_temporaries_under_lock(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove every tomoclass temporary in ``folder`` and one level below (lock held)."""
    folder = Path(folder)
    removed: list[Path] = []
    dirs = [folder] + [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    mine = f".{os.getpid()}@"
    for d in dirs:
        for p in d.iterdir():
            if _TMP.match(p.name) and mine not in p.name:
                if p.is_dir() and not p.is_symlink():
                    continue  # a folder output in progress has its own marker rules
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                removed.append(p)
    if removed:
        log.warning("removed %d temporaries left by a killed job in %s", len(removed), folder)
    return removed
