"""Output folders that never cost the user a file tomoclass did not write.

Every folder tomoclass writes carries a marker file, :data:`MARKER`, naming the kind of output
(``dataset``, ``evaluation``, ``run``, ...) and the files it wrote (or, for folders written in
place such as a training run, the patterns of the files it writes). The rules, applied by
:func:`check_output_dir` before any work starts and again before anything is replaced:

- a new folder is written atomically (:func:`tomoclass.io.atomic.atomic_dir`);
- an existing empty folder is used;
- an existing folder that is not a tomoclass output of the same kind is refused;
- a previous output of the same kind is replaced only with ``overwrite`` (``--overwrite``),
  and even then refused when it holds a file tomoclass did not write or an input of the
  running command; only the files the marker lists are ever removed;
- an output path that is a file, lies under a file or cannot be created is refused.

The CLI sets ``overwrite`` and the command's input paths once per command with
:func:`output_policy`, so library functions that write folders need no extra arguments.

A folder that successive calls add to (a benchmark's results folder that several runs fill,
a scratch folder reused across sessions) is opened with :func:`open_dir`: made and marked
when new or empty, used as it is when its marker names the same kind, refused otherwise;
nothing in it is ever removed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError

log = logging.getLogger(__name__)

#: Marker file in every output folder tomoclass writes.
MARKER = ".tomoclass-output.json"
MARKER_FORMAT = 1
#: Advisory lock file of a folder in use (:mod:`tomoclass.io.lock`).
LOCK_FILE = ".tomoclass.lock"
#: Files of tomoclass's own bookkeeping, never counted as the user's.
_BOOKKEEPING = (MARKER, LOCK_FILE)

#: Files a training run writes (its default evaluation folders carry their own marker).
RUN_PATTERNS = ("config.yaml", "classes.yaml", "metrics.jsonl", "checkpoints/*.pt",
                "tensorboard/*", "locate_threshold.json", "evaluation_*/*")

#: Outputs written before markers existed: kind -> (files that must exist, patterns of every
#: file). A folder without a marker whose files all match one layout counts as that kind.
LEGACY_LAYOUTS = {
    "dataset": (("dataset.yaml", "subtomograms.npy", "particles.star"),
                ("dataset.yaml", "subtomograms.npy", "clean.npy", "particles.star",
                 "classes.yaml")),
    "evaluation": (("report.json", "report.md"),
                   ("report.json", "report.md", "confusion.csv", "confusion.png")),
    "comparison": (("compare.json", "compare.md"),
                   ("compare.json", "compare.md", "*.png", "table2.csv")),
    "run": (("config.yaml", "classes.yaml"), (*RUN_PATTERNS, "evaluation_*/report.json",
                                "evaluation_*/report.md", "evaluation_*/confusion.*")),
}


@dataclass
class OutputPolicy:
    """What the running command allows: replacing outputs, and which paths it reads."""

    overwrite: bool = False
    inputs: tuple[Path, ...] = ()
    option: str = "--out"
    claimed: list[Path] = field(default_factory=list)


_POLICY: ContextVar[OutputPolicy | None] = ContextVar("tomoclass_output_policy", default=None)
_DEFAULT = OutputPolicy()


def current_policy() -> OutputPolicy:
    """The policy of the running command (defaults outside the CLI: no overwrite, no inputs)."""
    return _POLICY.get() or _DEFAULT


@contextlib.contextmanager
def output_policy(*, overwrite: bool = False, inputs: Iterable[str | os.PathLike[str]] = (),
                  option: str = "--out") -> Iterator[OutputPolicy]:
    """Set ``overwrite`` and the command's input paths for the writes inside the block."""
    pol = OutputPolicy(bool(overwrite), tuple(_resolved(p) for p in inputs), option)
    token = _POLICY.set(pol)
    try:
        yield pol
    finally:
        _POLICY.reset(token)


def _resolved(path: str | os.PathLike[str]) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def host_name() -> str:
    """Name of this machine (recorded in locks)."""
    return socket.gethostname() or "localhost"


def host_tag() -> str:
    """:func:`host_name` as it appears in temporary names (letters, digits, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", host_name())


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- temporaries of killed jobs -----------------------------------------------------------
def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of ``target`` left by a killed job on this host; return them.

    A temporary whose writer is still running (or ran on another host, or whose name carries
    no writer) is left alone and reported as a warning.
    """
    target = Path(target)
    return _sweep(target.parent, re.escape(target.name), str(target))


def remove_stale_in(folder: str | os.PathLike[str]) -> list[Path]:
    """:func:`remove_stale_temporaries` for every target in ``folder`` (one scan)."""
    return _sweep(Path(folder), r".+", str(folder))


def _sweep(parent: Path, name: str, what: str) -> list[Path]:
    ours = re.compile(rf"^\.{name}\.(\d+)@([A-Za-z0-9_-]+)\.[A-Za-z0-9_]+(\..*)?\.tmp$")
    older = re.compile(rf"^\.{name}\.[a-z0-9_]{{8}}(\..*)?\.tmp$")
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    me = (os.getpid(), host_tag())
    for p in entries:
        m = ours.match(p.name)
        if m is not None:
            pid, host = int(m.group(1)), m.group(2)
            if (pid, host) == me:
                continue
            if host == me[1] and not pid_alive(pid):
                _remove(p)
                removed.append(p)
                log.warning("removed %s left by a killed tomoclass job (PID %d)", p, pid)
            else:
                log.warning("%s is being written by tomoclass PID %d on %s (or was, if that "
                            "job was killed there)", p, pid, host)
        elif older.match(p.name):
            log.warning("%s looks like a temporary left by an earlier tomoclass job; remove it "
                        "if no job is writing %s", p, what)
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def in_own_work(target: Path) -> bool:
    """Whether ``target`` lies in a folder this job owns (claimed, or an atomic temporary)."""
    if any(p.name.startswith(".") and p.name.endswith(".tmp") for p in target.parents):
        return True
    real = _resolved(target)
    return any(_within(real, c) for c in current_policy().claimed)


# -- the marker ---------------------------------------------------------------------------
def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The marker of ``folder``, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    return data


def legacy_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The implied marker of an output tomoclass wrote before markers (see LEGACY_LAYOUTS)."""
    folder = Path(folder)
    try:
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
                 if p.is_file() and p.name not in _BOOKKEEPING]
    except OSError:
        return None
    for kind, (required, patterns) in LEGACY_LAYOUTS.items():
        if all((folder / r).is_file() for r in required) and all(
                any(fnmatch.fnmatchcase(f, pat) for pat in patterns) for f in files):
            return {"kind": kind, "files": [], "patterns": list(patterns), "legacy": True}
    return None


def marker_text(kind: str, files: Iterable[str] = (), patterns: Iterable[str] = ()) -> str:
    """JSON text of a marker for an output of ``kind``."""
    return json.dumps({"format": MARKER_FORMAT, "kind": kind, "files": sorted(files),
                       "patterns": list(patterns)}, indent=1) + "\n"


def write_marker(folder: Path, kind: str, *, patterns: Iterable[str] = ()) -> None:
    """Write the marker of a complete folder: every file now in it is listed as ours."""
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if (p.is_file() or p.is_symlink()) and p.name != MARKER]
    (folder / MARKER).write_text(marker_text(kind, files, patterns), encoding="utf-8")


def _owned(rel: str, marker: dict[str, Any]) -> bool:
    if rel in set(marker.get("files") or ()):
        return True
    return any(fnmatch.fnmatchcase(rel, pat) for pat in marker.get("patterns") or ())


def _claims_folder(rel: str, marker: dict[str, Any]) -> bool:
    """Whether ``marker`` claims the sub-folder ``rel`` (lists a file in it, or a pattern does)."""
    prefix = rel + "/"
    return (any(f.startswith(prefix) for f in marker.get("files") or ())
            or any(fnmatch.fnmatchcase(prefix + "x", pat) for pat in marker.get("patterns") or ()))


def foreign_files(folder: Path, marker: dict[str, Any]) -> list[str]:
    """Files under ``folder`` that its marker does not claim.

    A sub-folder with a marker of its own is judged by it when ``marker`` claims the folder
    (an evaluation inside its run); another tomoclass output put there later (a run written
    into a dataset folder) counts as foreign as a whole, so replacing the outer output never
    removes it.
    """
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in list(dirnames):
            sub = here / d
            rel_sub = sub.relative_to(folder).as_posix()
            if sub.is_symlink():  # a link the user made: not ours, never followed
                out.append(rel_sub)
                continue
            sub_marker = read_marker(sub)
            if sub_marker is not None:
                dirnames.remove(d)
                if not _claims_folder(rel_sub, marker):
                    out.append(rel_sub + "/")
                    continue
                out += [f"{rel_sub}/{f}" for f in foreign_files(sub, sub_marker)]
        for name in filenames:
            rel = (here / name).relative_to(folder).as_posix()
            if name not in _BOOKKEEPING and not _owned(rel, marker):
                out.append(rel)
    return sorted(out)


# -- checks -------------------------------------------------------------------------------
def check_parent(target: Path, option: str = "--out") -> None:
    """Refuse an output path under a file or where nothing can be created."""
    for anc in [target.parent, *target.parent.parents]:
        if anc.exists() or anc.is_symlink():
            if not anc.is_dir():
                raise InputError(f"cannot write here: {anc} is a file, not a folder",
                                 path=target, field=option)
            if not os.access(anc, os.W_OK | os.X_OK):
                raise InputError(f"cannot write here: no permission to write in {anc}",
                                 path=target, field=option)
            return


def make_parent(target: Path, option: str = "--out") -> None:
    """Create the parent folders of ``target`` or raise a one-line :class:`InputError`."""
    check_parent(target, option)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", path=target.parent,
                         field=option) from None


def _existing_entries(target: Path, opt: str, noun: str) -> list[str] | None:
    """Entries of an existing output folder (lock file aside), None when nothing is there.

    Shared front half of :func:`check_output_dir` and :func:`check_open_dir`: the parent must
    be writable and ``target``, when it exists, a folder (``noun`` names what to choose instead).
    """
    check_parent(target, opt)
    if not (target.exists() or target.is_symlink()):
        return None
    if not target.is_dir():
        raise InputError(f"exists and is not a folder; choose another {noun}", path=target,
                         field=opt)
    return sorted(p.name for p in target.iterdir() if p.name != LOCK_FILE)


def _refuse_other_kind(target: Path, marker: dict[str, Any], kind: str, what: str,
                       opt: str) -> None:
    """Refuse a folder whose marker names another kind than ``kind`` (``what``: output/folder)."""
    if marker["kind"] != kind:
        raise InputError(f"is a tomoclass {marker['kind']} folder, not {_a(kind)} {kind} {what}; "
                         "choose another folder", path=target, field=opt)


def check_output_dir(target: str | os.PathLike[str], kind: str, *,
                     overwrite: bool | None = None,
                     inputs: Iterable[str | os.PathLike[str]] | None = None) -> bool:
    """Check that ``target`` may receive a ``kind`` output; True when it exists already.

    Parameters
    ----------
    target
        The output folder.
    kind
        Kind of output (``dataset``, ``evaluation``, ``comparison``, ``run``, ...).
    overwrite, inputs
        Override the running command's :func:`output_policy`.

    Raises
    ------
    InputError
        One line naming the folder and why nothing will be written there.
    """
    pol = current_policy()
    target = Path(target)
    opt = pol.option
    overwrite = pol.overwrite if overwrite is None else overwrite
    ins = pol.inputs if inputs is None else tuple(_resolved(p) for p in inputs)
    entries = _existing_entries(target, opt, "output folder")
    if entries is None:
        return False
    if not entries:
        return True
    marker = read_marker(target) or legacy_marker(target)
    if marker is None:
        raise InputError(f"exists and is not a tomoclass output (it holds {len(entries)} "
                         f"entries, e.g. {entries[0]!r}); choose a new folder",
                         path=target, field=opt)
    _refuse_other_kind(target, marker, kind, "output", opt)
    if not overwrite:
        raise InputError(f"already holds {_a(kind)} {kind} output; pass --overwrite to replace "
                         "it or choose another folder", path=target, field=opt)
    foreign = foreign_files(target, marker)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise InputError(f"holds {foreign[0]!r}{more} that tomoclass did not write; not "
                         "replacing it", path=target, field=opt)
    real = _resolved(target)
    inside = [p for p in ins if _within(p, real)]
    if inside:
        raise InputError(f"holds {inside[0]}, an input of this command; not replacing it",
                         path=target, field=opt)
    return True


def check_output_file(target: str | os.PathLike[str]) -> None:
    """Refuse a file output that is a folder, lies under a file or is an input."""
    pol = current_policy()
    target = Path(target)
    check_parent(target, pol.option)
    if target.is_dir():
        raise InputError("is a folder; name a file to write", path=target, field=pol.option)
    real = _resolved(target)
    if any(_within(real, c) for c in pol.claimed):
        return
    if real in pol.inputs:
        raise InputError("is an input of this command; choose another output file",
                         path=target, field=pol.option)


def remove_owned(folder: Path, marker: dict[str, Any] | None) -> list[str]:
    """Remove the files ``marker`` claims under ``folder``, then empty folders; return the rest.

    Sub-folders with their own marker (an evaluation inside a run) are judged by theirs.
    """
    emptied: set[Path] = set()
    for p in _owned_files(folder, marker or {}):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        emptied.update(d for d in p.parents if folder in d.parents)
    for d in sorted(emptied, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):  # only folders our files left empty
            d.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")] if folder.exists() \
        else []


def _owned_files(folder: Path, marker: dict[str, Any]) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in list(dirnames):
            sub_marker = read_marker(here / d)
            if sub_marker is not None:
                dirnames.remove(d)
                if _claims_folder((here / d).relative_to(folder).as_posix(), marker):
                    out += _owned_files(here / d, sub_marker)
        for name in filenames:
            rel = (here / name).relative_to(folder).as_posix()
            if rel == MARKER or (name != LOCK_FILE and _owned(rel, marker)):
                out.append(here / name)
    return out


def collect_inputs(values: Iterable[Any]) -> list[Path]:
    """Paths among ``values`` (strings, paths, lists of them) that exist on disk."""
    found: list[Path] = []
    for v in values:
        items = v if isinstance(v, list | tuple) else [v]
        for item in items:
            if isinstance(item, str | os.PathLike) and str(item):
                with contextlib.suppress(OSError, ValueError):
                    if Path(item).exists():
                        found.append(Path(item))
    return found


def prepare_dir(target: str | os.PathLike[str], kind: str, *, patterns: Iterable[str],
                overwrite: bool | None = None) -> Path:
    """Make ``target`` a ``kind`` folder written in place; return it.

    It is checked (:func:`check_output_dir`), a previous one emptied of its own files (with
    ``overwrite``), created, and given a marker claiming ``patterns``.
    """
    target = Path(target)
    pol = current_policy()
    exists = check_output_dir(target, kind, overwrite=overwrite)
    make_parent(target, pol.option)
    if exists:
        marker = read_marker(target) or legacy_marker(target)
        if marker is not None:
            remove_owned(target, marker)
    try:
        target.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", path=target,
                         field=pol.option) from None
    remove_stale_in(target)
    (target / MARKER).write_text(marker_text(kind, patterns=patterns), encoding="utf-8")
    return target


@contextlib.contextmanager
def claim_dir(target: str | os.PathLike[str], kind: str, *, patterns: Iterable[str],
              overwrite: bool | None = None) -> Iterator[Path]:
    """Use ``target`` as a ``kind`` folder written in place (files appear one by one).

    The folder is checked like an atomic output (:func:`check_output_dir`); a previous output
    of the same kind is emptied of its own files with ``overwrite``. While the block runs the
    marker claims ``patterns``; when it ends without an exception the marker lists the files
    written instead. A folder this call created and the block left empty is removed again.
    """
    target = Path(target)
    pol = current_policy()
    prepare_dir(target, kind, patterns=patterns, overwrite=overwrite)
    real = _resolved(target)
    pol.claimed.append(real)
    try:
        yield target
    except BaseException:
        if not any(p.name != MARKER for p in target.iterdir()):
            remove_owned(target, None)
        raise
    else:
        write_marker(target, kind)
    finally:
        with contextlib.suppress(ValueError):
            pol.claimed.remove(real)


def check_open_dir(target: str | os.PathLike[str], kind: str, *,
                   legacy: Callable[[Path], bool] | None = None,
                   option: str | None = None) -> bool:
    """Check that ``target`` may be opened as a ``kind`` folder by :func:`open_dir`.

    Returns True when it is one already (its marker, or ``legacy``, says so), False when it
    is new or empty.

    Parameters
    ----------
    target
        The folder.
    kind
        Kind of output; a marker of another kind is refused.
    legacy
        For folders written before they carried a marker: called with an unmarked, non-empty
        folder, True when it is a ``kind`` folder nonetheless (a file only that writer makes).
    option
        The command-line option named in errors (default: the policy's, ``--out``).

    Raises
    ------
    InputError
        One line naming the folder and why nothing will be written there.
    """
    target = Path(target)
    opt = option or current_policy().option
    entries = _existing_entries(target, opt, "folder")
    if not entries:
        return False
    marker = read_marker(target)
    if marker is not None:
        _refuse_other_kind(target, marker, kind, "folder", opt)
        return True
    if legacy is not None and legacy(target):
        return True
    n = len(entries)
    raise InputError(f"exists and was not made as {_a(kind)} {kind} folder (it holds {n} "
                     f"entr{'y' if n == 1 else 'ies'}, e.g. {entries[0]!r}); choose a new or "
                     "empty folder", path=target, field=opt)


def open_dir(target: str | os.PathLike[str], kind: str, *, patterns: Iterable[str],
             legacy: Callable[[Path], bool] | None = None, option: str | None = None) -> Path:
    """Open ``target`` as a ``kind`` folder that successive calls add to; return it.

    Checked by :func:`check_open_dir`; a new or empty folder is created and given a marker
    claiming ``patterns`` (the files this kind writes there), a legacy one gets its marker
    now, an existing ``kind`` folder is used as it is. Nothing is removed, so files a user
    adds beside (a README) stay; to replace an output use :func:`prepare_dir`.
    """
    target = Path(target)
    opt = option or current_policy().option
    if check_open_dir(target, kind, legacy=legacy, option=opt) and read_marker(target):
        return target
    make_parent(target, opt)
    try:
        target.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}", path=target,
                         field=opt) from None
    (target / MARKER).write_text(marker_text(kind, patterns=patterns), encoding="utf-8")
    return target
