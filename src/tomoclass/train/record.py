"""What a run directory records: ``config.yaml``, ``classes.yaml`` and the checkpoint payload.

``config.yaml`` holds the full :class:`~tomoclass.train.config.TrainConfig`, the data
description (with the spectrum predict/locate match other tomograms to), the device and
arithmetic, the batch plan, versions, the git commit (:func:`tomoclass.provenance.git_commit`,
which honours ``$TOMOCLASS_GIT_COMMIT``), the command line and the time written.
"""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from tomoclass import __version__
from tomoclass.io.atomic import atomic_path
from tomoclass.provenance import git_commit
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train.config import CONFIG_FORMAT_VERSION, TrainConfig
from tomoclass.train.loaders import dataset_path


def versions() -> dict[str, str | None]:
    """Versions of tomoclass, python, torch, numpy, CUDA/cuDNN."""
    return {
        "tomoclass": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "cuda": None if torch.version.cuda is None else str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available()
        else None,
        "platform": platform.platform(),
    }


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _class_map_dict(cm: Any) -> dict[str, Any]:
    if hasattr(cm, "to_dict"):
        return cm.to_dict()
    return {"names": list(cm.names), "size_groups": list(cm.size_groups)}


def _classes_yaml(cm: Any) -> str:
    entries = [{"name": n, "size_group": g} for n, g in zip(cm.names, cm.size_groups, strict=True)]
    return yaml.safe_dump(entries, sort_keys=False)


def data_info(store: Any, n_train: int, n_val: int, *, spectrum: bool = True) -> dict[str, Any]:
    """The data description saved in ``config.yaml`` and every checkpoint.

    Parameters
    ----------
    store
        The opened dataset.
    n_train, n_val
        Sizes of the training and validation splits.
    spectrum
        Include the dataset's amplitude spectrum (:mod:`tomoclass.data.spectrum`); only the
        main process writes it.
    """
    where = dataset_path(store)
    info: dict[str, Any] = {
        "path": str(where) if where is not None else None,
        "voxel_size_angstrom": float(store.voxel_size_angstrom),
        "box": int(store.box),
        "n_train": int(n_train),
        "n_val": int(n_val),
    }
    meta = getattr(store, "meta", None) or getattr(store, "info", None)
    if isinstance(meta, dict):
        info["normalization"] = meta.get("normalization")
        info["polarity"] = meta.get("polarity")
    if spectrum and hasattr(store, "split_indices") and hasattr(store, "volumes"):
        # what predict/locate match another tomogram's boxes to (tomoclass.data.spectrum)
        from tomoclass.data.spectrum import dataset_spectrum

        info["spectrum"] = dataset_spectrum(store).to_dict()
    return info


def write_run_config(out: Path, cfg: TrainConfig, store: Any, info: dict[str, Any],
                     **run: Any) -> None:
    """Write ``out/config.yaml`` and ``out/classes.yaml`` (atomically).

    ``run`` holds how this run trains (world size, device, arithmetic, memory format,
    batch plan), recorded in that order after the config, data and classes.
    """
    record = {
        "format_version": CONFIG_FORMAT_VERSION,
        "train": cfg.model_dump(mode="json"),
        "data": info,
        "classes": _class_map_dict(store.class_map),
        **run,
        "versions": versions(),
        "git_commit": git_commit(),
        "command": [str(a) for a in sys.argv],
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text(out / "config.yaml", yaml.safe_dump(record, sort_keys=False))
    write_text(out / "classes.yaml", _classes_yaml(store.class_map))


def checkpoint_payload(cfg: TrainConfig, store: Any, info: dict[str, Any], model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer, schedule: Any, scaler: Any, *,
                       epoch_done: int, progress_state: dict[str, Any] | None,
                       history: list[dict[str, Any]], best_f1: float, best_epoch: int,
                       world_size: int, rng: Any) -> dict[str, Any]:
    """Everything ``last.pt`` needs for an exact resume (format of :mod:`.checkpoint`)."""
    class_names = list(store.class_map.names)
    return {
        "format": ckpt_mod.FORMAT,
        "format_version": ckpt_mod.FORMAT_VERSION,
        "tomoclass_version": __version__,
        "model_name": cfg.model,
        "model_kwargs": dict(cfg.model_kwargs),
        "num_classes": len(class_names),
        "class_names": class_names,
        "size_groups": list(store.class_map.size_groups),
        "voxel_size_angstrom": float(store.voxel_size_angstrom),
        "box": int(store.box),
        "data": info,
        "train_config": cfg.model_dump(mode="json"),
        "epoch": epoch_done,
        "epoch_progress": progress_state,
        "model_state": {k: v.detach().clone().contiguous() for k, v in
                        model.state_dict().items()},
        "optimizer_state": optimizer.state_dict(),
        "schedule_state": schedule.state_dict(),
        "scaler_state": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": rng,
        "sampler": {"seed": cfg.seed, "epoch": epoch_done},
        "history": history,
        "best_val_macro_f1": best_f1,
        "best_epoch": best_epoch,
        "world_size": world_size,
    }
