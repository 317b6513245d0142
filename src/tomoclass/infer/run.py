"""Reading a finished (or running) run directory back for inference: :func:`load_run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tomoclass.data import ClassMap
from tomoclass.errors import InputError
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train.loop import build_model
from tomoclass.train.run import checkpoint_path


def load_run(run_dir: str | Path, which: str = "best",
             map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild a trained model from a run directory, without executing code from it.

    Parameters
    ----------
    run_dir
        A run directory written by :func:`tomoclass.train.fit` (or a ``.pt`` file).
    which
        ``"best"`` (highest validation macro F1), ``"last"``, ``"epoch_005"`` or ``5``.
    map_location
        Device for the weights.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``map_location``.
    class_map : tomoclass.data.ClassMap
        Class order of the model's outputs.
    info : dict
        ``model_name``, ``model_kwargs``, ``epoch``, ``voxel_size_angstrom``, ``box``,
        ``data`` (dataset description incl. normalization), ``metrics`` (the checkpoint
        epoch's record or None), ``train_config``, ``checkpoint`` (path).

    Raises
    ------
    InputError
        Missing/corrupt/untrusted checkpoint, or weights that do not fit the model.
    """
    path = checkpoint_path(run_dir, which)
    ck = ckpt_mod.load_checkpoint(path, map_location=map_location)
    model = build_model(ck["model_name"], len(ck["class_names"]), dict(ck["model_kwargs"]))
    try:
        model.load_state_dict(ck["model_state"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"weights do not fit model '{ck['model_name']}': {first}",
                         path=path, field="model_state") from exc
    model.to(map_location).eval()
    class_map = ClassMap(list(ck["class_names"]),
                         list(ck.get("size_groups") or [""] * len(ck["class_names"])))
    history = ck.get("history") or []
    epoch = int(ck["epoch"])
    metrics = next((h for h in history if h.get("epoch") == epoch), None)
    info = {
        "model_name": ck["model_name"],
        "model_kwargs": dict(ck["model_kwargs"]),
        "epoch": epoch,
        "voxel_size_angstrom": ck.get("voxel_size_angstrom"),
        "box": ck.get("box"),
        "data": ck.get("data") or {},
        "metrics": metrics,
        "history": history,
        "train_config": ck.get("train_config"),
        "checkpoint": path,
    }
    return model, class_map, info
