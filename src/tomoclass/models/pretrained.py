"""Named pretrained runs: a registry of checkpoint files, each with its sha256 and provenance.

A *pretrained directory* holds ``registry.json`` and the checkpoint files it lists. tomoclass
looks in two, in this order (no URL: a model is used only from a file on disk):

1. the user's directory: ``$TOMOCLASS_PRETRAINED_DIR``, else
   ``$XDG_CACHE_HOME/tomoclass/pretrained`` (``~/.cache/tomoclass/pretrained``);
2. the directory shipped inside the package (``tomoclass/models/pretrained_weights/``).

A name found in the first is not looked up in the second. ``registry.json`` is::

    {"format": "tomoclass-pretrained", "format_version": 1,
     "models": {"NAME": {"file": "NAME.pt", "sha256": "...", "bytes": 123,
                         "model": "dilated_densenet3d", "classes": [...],
                         "voxel_size_angstrom": 10.0, "box": 32, "detector": true,
                         "threshold": 0.62, "radii_angstrom": {"1s3x": 42.0, ...},
                         "training_command": "tomoclass train ...", "commit": "abc123",
                         "metrics": {...}, "description": "..."}}}

Wherever a run directory is accepted (``--run``), a registered name is too: it resolves to the
checkpoint file after its sha256 is checked (:func:`resolve_pretrained`; the checkpoint is
then loaded with ``torch.load(weights_only=True)`` like any other). ``threshold`` is a detector's
calibrated ``locate`` threshold (``score-picks --calibrate``), which ``locate --run NAME`` uses;
``radii_angstrom``, a detector's particle radius per class (non-maximum suppression and the
hit region), which ``locate --run NAME`` uses when no ``--radius`` / ``--sizes`` is given.
The checkpoint file of a registered run holds the weights and what inference needs, not the
optimizer, RNG or sampler state (:func:`tomoclass.train.pretrained.register_run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path

REGISTRY_FORMAT = "tomoclass-pretrained"
REGISTRY_VERSION = 1
REGISTRY_FILE = "registry.json"
#: Environment variable naming the user's pretrained directory.
ENV_DIR = "TOMOCLASS_PRETRAINED_DIR"
#: The directory shipped with the package.
PACKAGE_DIR = Path(__file__).with_name("pretrained_weights")
#: What a registered name may look like (it must not look like a path).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PretrainedModel:
    """One registry entry (see the module docstring for the fields)."""

    name: str
    file: str
    sha256: str
    bytes: int
    model: str
    classes: list[str]
    voxel_size_angstrom: float | None = None
    box: int | None = None
    detector: bool = False
    threshold: float | None = None
    radii_angstrom: dict[str, float] = field(default_factory=dict)
    training_command: str = ""
    commit: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    directory: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``directory``: where the entry was found)."""
        return asdict(self)


def user_dir() -> Path:
    """The user's pretrained directory (``$TOMOCLASS_PRETRAINED_DIR`` or the cache)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tomoclass" / "pretrained"


def search_dirs() -> list[Path]:
    """Pretrained directories in lookup order: the user's, then the package's."""
    return [user_dir(), PACKAGE_DIR]


def _read_registry(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable pretrained registry ({exc.__class__.__name__})",
                         path=path) from None
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
        raise InputError(f"not a tomoclass pretrained registry (format is not "
                         f"{REGISTRY_FORMAT!r})", path=path, field="format")
    if not isinstance(data.get("format_version"), int) or data["format_version"] > \
            REGISTRY_VERSION:
        raise InputError(f"registry format version {data.get('format_version')!r} is newer "
                         "than this tomoclass reads; upgrade tomoclass", path=path,
                         field="format_version")
    models = data.get("models")
    if not isinstance(models, dict):
        raise InputError("'models' must be a mapping of name to entry", path=path,
                         field="models")
    return models


def _entry(name: str, raw: dict[str, Any], directory: Path) -> PretrainedModel:
    known = set(PretrainedModel.__dataclass_fields__) - {"name", "directory"}
    try:
        return PretrainedModel(name=name, directory=str(directory),
                               **{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise InputError(f"entry {name!r} is incomplete ({exc})",
                         path=directory / REGISTRY_FILE, field=name) from None


def list_pretrained() -> list[PretrainedModel]:
    """Every registered pretrained model, user entries before (and shadowing) shipped ones."""
    seen: dict[str, PretrainedModel] = {}
    for directory in search_dirs():
        for name, raw in _read_registry(directory).items():
            seen.setdefault(name, _entry(name, raw, directory))
    return list(seen.values())


def get_pretrained(name: str) -> PretrainedModel | None:
    """The registry entry ``name``, or None if no directory registers it."""
    return next((m for m in list_pretrained() if m.name == name), None)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_path(entry: PretrainedModel) -> Path:
    """Where an entry's checkpoint file is (its directory), whether or not it exists."""
    return Path(entry.directory) / entry.file


def resolve_pretrained(name: str) -> Path:
    """The verified checkpoint file of pretrained model ``name``.

    Raises
    ------
    InputError
        Unknown name (the message lists the registered ones), a missing weights file, or a
        file whose size or sha256 is not the registered one (refused: not loaded).
    """
    entry = get_pretrained(name)
    if entry is None:
        names = ", ".join(m.name for m in list_pretrained()) or "none registered"
        raise InputError(f"no run directory or pretrained model named {name!r} (pretrained: "
                         f"{names}; see tomoclass models --pretrained)", path=name, field="run")
    path = weights_path(entry)
    if not path.is_file():
        raise InputError(f"pretrained model {name!r} is registered but its weights are missing; "
                         f"put the file there (sha256 {entry.sha256})", path=path, field="file")
    size = path.stat().st_size
    if size != entry.bytes or sha256_of(path) != entry.sha256:
        raise InputError(f"pretrained model {name!r}: the file's checksum is not the registered "
                         f"sha256 {entry.sha256} (changed or corrupt); refused", path=path,
                         field="sha256")
    return path


def looks_like_name(text: str | os.PathLike[str]) -> bool:
    """True if ``text`` could be a registered name (one path component, no suffix ``.pt``)."""
    s = str(text)
    return bool(NAME_RE.match(s)) and not s.endswith(".pt")


def is_pretrained_name(run: str | os.PathLike[str]) -> bool:
    """True if a ``--run`` value is read as a pretrained name.

    It must look like one, and no file or folder of that name may exist (a path always wins).
    """
    return not Path(run).exists() and looks_like_name(run)


def pretrained_for_run(run: str | os.PathLike[str]) -> PretrainedModel | None:
    """The registry entry a ``--run`` value names, or None (a path, or an unknown name)."""
    return get_pretrained(str(run)) if is_pretrained_name(run) else None


def add_pretrained(name: str, checkpoint: str | os.PathLike[str], metadata: dict[str, Any],
                   directory: str | os.PathLike[str] | None = None) -> PretrainedModel:
    """Copy a checkpoint into a pretrained directory and register it under ``name``.

    Parameters
    ----------
    name
        New name (letters, digits, ``.``, ``_``, ``-``); refused if the directory has it.
    checkpoint
        The ``.pt`` file (copied as ``NAME.pt``; never moved).
    metadata
        The entry's other fields (``model``, ``classes``, ``voxel_size_angstrom``, ``box``,
        ``detector``, ``training_command``, ``commit``, ``metrics``, ``description``).
    directory
        Pretrained directory to add to (default :func:`user_dir`).

    Returns
    -------
    PretrainedModel
        The new entry, with the copy's sha256 and size.
    """
    if not NAME_RE.match(name):
        raise InputError(f"pretrained name {name!r} must be letters, digits, '.', '_' or '-'",
                         field="name")
    directory = Path(directory) if directory is not None else user_dir()
    models = _read_registry(directory)
    target = directory / f"{name}.pt"
    if name in models or target.exists():
        raise InputError(f"pretrained model {name!r} already exists here; choose another name",
                         path=directory, field="name")
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(checkpoint, tmp)
    raw = {**metadata, "file": target.name, "sha256": sha256_of(target),
           "bytes": target.stat().st_size}
    models[name] = {k: v for k, v in raw.items() if k not in ("name", "directory")}
    with atomic_path(directory / REGISTRY_FILE) as tmp:
        tmp.write_text(json.dumps({"format": REGISTRY_FORMAT, "format_version": REGISTRY_VERSION,
                                   "models": models}, indent=2) + "\n")
    return _entry(name, models[name], directory)
