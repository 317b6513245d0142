"""A run's pick threshold, chosen on a labelled tomogram and stored with the run.

The objectness threshold that turns classified candidates into picks trades precision for
recall, and where the balance lies depends on the net (how sure a 3-epoch model is of
anything) and on the data (how many near-particle blobs the tomograms hold). A fixed 0.5
is only a start. ``tomoclass score-picks --calibrate RUN`` scores picks made on a labelled
tomogram that is *not* a test tomogram, chooses the threshold with the best localization F1
(:func:`tomoclass.evaluate.thresholds.choose_threshold`) and stores it here, per checkpoint;
:func:`tomoclass.locate.locate` then uses it whenever no threshold is given.

The record is ``RUN/locate_threshold.json``::

    {"checkpoints": {"best": {"threshold": 0.93, "f1": ..., "checkpoint_bytes": ...,
                              "checkpoint_mtime_ns": ..., "truth": ..., "picks": ..., ...}}}

A checkpoint file that changed since (training resumed and wrote a new ``best.pt``) voids its
entry: :func:`run_threshold` then falls back to the default with a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path
from tomoclass.models.pretrained import pretrained_for_run

log = logging.getLogger(__name__)

#: File in the run directory holding the calibrated thresholds.
CALIBRATION_FILE = "locate_threshold.json"
#: Objectness threshold used when the run holds no calibrated one.
DEFAULT_THRESHOLD = 0.5


def _checkpoint(run_dir: str | Path, which: str) -> Path:
    from tomoclass.infer import checkpoint_path

    run = Path(run_dir)
    if not run.is_dir():
        raise InputError("a calibrated threshold is stored in a run directory, not a file",
                         path=run, field="run")
    return checkpoint_path(run, which)


def save_threshold(run_dir: str | Path, which: str, threshold: float,
                   record: dict[str, Any] | None = None) -> Path:
    """Store ``threshold`` as checkpoint ``which``'s pick threshold in the run directory.

    ``record`` (JSON-ready: the scores at the threshold, the files it was chosen on) is kept
    beside it. Other checkpoints' entries are kept. Returns the file written.

    Raises
    ------
    InputError
        Not a run directory, no such checkpoint, or a threshold outside [0, 1].
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold {threshold!r} is not within [0, 1]", field="threshold")
    ck = _checkpoint(run_dir, which)
    path = Path(run_dir) / CALIBRATION_FILE
    data = _read(path) if path.is_file() else {"checkpoints": {}}
    st = ck.stat()
    data["checkpoints"][ck.stem] = {
        **(record or {}),
        "threshold": float(threshold),
        "checkpoint": ck.name,
        "checkpoint_bytes": st.st_size,
        "checkpoint_mtime_ns": st.st_mtime_ns,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return path


def run_threshold(run_dir: str | Path, which: str = "best") -> tuple[float, str]:
    """Checkpoint ``which``'s stored pick threshold, or :data:`DEFAULT_THRESHOLD`.

    Returns ``(threshold, source)``, ``source`` a short description for logs ("calibrated on
    FILE" or "default").
    """
    run = Path(run_dir)
    path = run / CALIBRATION_FILE
    entry = pretrained_for_run(run_dir)  # a pretrained model's recorded one
    if entry is not None and entry.threshold is not None:
        return float(entry.threshold), f"calibrated, recorded with pretrained {entry.name}"
    if not (run.is_dir() and path.is_file()):
        return DEFAULT_THRESHOLD, "default"
    ck = _checkpoint(run, which)
    entry = _read(path)["checkpoints"].get(ck.stem)
    if entry is None:
        return DEFAULT_THRESHOLD, "default"
    st = ck.stat()
    if (entry.get("checkpoint_bytes"), entry.get("checkpoint_mtime_ns")) != (
            st.st_size, st.st_mtime_ns):
        log.warning("%s: the threshold for %s was calibrated on an older %s; using %g",
                    path, ck.stem, ck.name, DEFAULT_THRESHOLD)
        return DEFAULT_THRESHOLD, "default (calibration is for an older checkpoint)"
    return float(entry["threshold"]), f"calibrated on {entry.get('truth', 'a labelled tomogram')}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        entries = data["checkpoints"]
        if not isinstance(entries, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("threshold"), int | float)
                for e in entries.values()):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError("unreadable calibration record (expected {\"checkpoints\": "
                         "{NAME: {\"threshold\": T, ...}}})", path=path,
                         field="checkpoints") from None
    return data
