"""Checkpoints: plain-data dictionaries written atomically and read without running code.

A checkpoint is a ``dict`` of tensors, numbers, strings, lists and dicts only, so it loads
with ``torch.load(weights_only=True)``: a file crafted to execute code on unpickling is
refused instead of run. It carries what is needed to check it before use: a format tag
and version, the model name and constructor arguments, and the class map.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_copy, atomic_path

FORMAT = "tomoclass-checkpoint"
FORMAT_VERSION = 1

#: Keys every checkpoint has (checked on load).
REQUIRED_KEYS = ("format", "format_version", "model_name", "model_kwargs", "class_names",
                 "model_state", "epoch")

#: Test hook, unset in normal use: ``"EVENT@FLAGFILE"``. When the training loop reaches
#: EVENT (``batch:E:B`` after batch B of epoch E, or ``write:NAME:E`` half way through
#: writing checkpoint NAME of epoch E), FLAGFILE is created and the process waits until a
#: test deletes it (or 120 s pass), so the test can signal or SIGKILL it at that point.
PAUSE_ENV = "TOMOCLASS_TEST_PAUSE"


def pause_hook(event: str) -> None:
    """Wait here while the test hook in ``$TOMOCLASS_TEST_PAUSE`` names ``event``."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    name, _, flag = spec.partition("@")
    if name != event:
        return
    flag_path = Path(flag)
    flag_path.touch()
    deadline = time.monotonic() + 120
    while flag_path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def save_checkpoint(path: str | Path, payload: dict[str, Any],
                    also: Iterable[str | Path] = ()) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary name, fsync, rename).

    Parameters
    ----------
    path
        Target ``.pt`` file; its directory is created.
    payload
        Plain data only (see module docstring); built by the training loop.
    also
        Further names for the same checkpoint (``best.pt``, ``epoch_005.pt``): hard links to
        ``path`` where the file system allows (one file on disk, not one per name), copies
        otherwise; each appears atomically (:func:`tomoclass.io.atomic.atomic_copy`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            if os.environ.get(PAUSE_ENV, "").startswith("write:"):
                fh.write(data[: len(data) // 2])
                fh.flush()
                pause_hook(f"write:{path.name}:{payload.get('epoch')}")
                data = data[len(data) // 2 :]
            fh.write(data)
    for other in also:
        atomic_copy(path, other)
    return path


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files a killed writer left in ``directory`` (``.NAME.*.tmp``).

    Returns
    -------
    list of Path
        What was removed.
    """
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.glob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without executing code in it and check its format.

    Parameters
    ----------
    path
        A ``.pt`` file written by :func:`save_checkpoint`.
    map_location
        Device for the tensors.

    Returns
    -------
    dict
        The checkpoint payload.

    Raises
    ------
    InputError
        Missing or unreadable file, a file holding anything but plain data (refused, never
        unpickled), not a tomoclass checkpoint, or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        why = f" (it references {found.group(1)})" if found else ""
        raise InputError(
            "refused: the file holds Python objects other than plain data, so loading it "
            f"could run code{why}; only load model files from sources you trust",
            path=path,
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"not a readable checkpoint (truncated or corrupt: {msg})",
                         path=path) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError("not a tomoclass checkpoint", path=path, field="format")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"checkpoint format version {version!r} is newer than this tomoclass reads "
            f"({FORMAT_VERSION}); upgrade tomoclass",
            path=path, field="format_version",
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise InputError(f"checkpoint lacks {', '.join(missing)}", path=path, field=missing[0])
    check_finite_weights(ckpt, path)
    return ckpt


def check_finite_weights(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose weights hold NaN or infinity (its predictions would be junk).

    Raises
    ------
    InputError
        Names the first tensor with non-finite values and how many it has.
    """
    state = ckpt.get("model_state")
    if not isinstance(state, dict):
        raise InputError("checkpoint has no model weights", path=path, field="model_state")
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise InputError(f"refused: {bad} non-finite (NaN/inf) values in the weights "
                                 f"'{name}'; the run diverged before this checkpoint",
                                 path=path, field="model_state")


def resume_plan(path: str | Path) -> dict[str, Any]:
    """Model name, epochs and training config of the run a checkpoint belongs to.

    That run is what ``--resume`` continues.
    """
    ck = load_checkpoint(path)
    cfg = ck.get("train_config") or {}
    return {"model": ck["model_name"], "epochs": cfg.get("epochs"),
            "epochs_done": int(ck.get("epoch", 0)), "train_config": dict(cfg)}


def check_compatible(
    ckpt: dict[str, Any],
    *,
    path: str | Path,
    model_name: str | None = None,
    class_names: list[str] | None = None,
) -> None:
    """Refuse a checkpoint made for another model or another class map.

    Raises
    ------
    InputError
        ``model_name`` or ``class_names`` (order included) differ from the checkpoint's.
    """
    if model_name is not None and ckpt["model_name"] != model_name:
        raise InputError(
            f"checkpoint is for model '{ckpt['model_name']}', not '{model_name}'",
            path=path, field="model_name",
        )
    if class_names is not None and list(ckpt["class_names"]) != list(class_names):
        theirs, ours = list(ckpt["class_names"]), list(class_names)
        diff = sorted(set(theirs) ^ set(ours))
        detail = f"differing: {', '.join(diff[:5])}" if diff else "same names, other order"
        raise InputError(
            f"class map disagrees with the checkpoint's ({len(theirs)} vs {len(ours)} "
            f"classes; {detail})",
            path=path, field="class_names",
        )


# -- RNG states as plain data -------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global), torch CPU and CUDA generator states as plain data."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": int(py[0]),
        "python_state": torch.tensor(py[1], dtype=torch.int64),
        "python_gauss": py[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gaussian": float(np_state[4]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"]),
                     state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"],
                         state["numpy_cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
