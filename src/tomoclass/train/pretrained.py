"""Fine-tuning from a trained run or a pretrained name, and registering a run as pretrained.

``tomoclass train --init RUN_OR_NAME`` starts from another run's weights
(:func:`initialize_from`): the backbone (every tensor but the classifier) is copied; the
classifier is copied too when the class lists are equal, and otherwise is a new head whose rows
of classes the source also has (same name) start from the source's rows, the other rows keeping
their fresh initialisation. The architecture must be the source's (same model and options but
``num_classes``): :func:`init_model` gives those defaults.

``tomoclass models --add-pretrained NAME --from-run RUN`` (:func:`register_run`) copies a
run's checkpoint into a pretrained directory with its provenance (training command, commit,
recorded metrics; :mod:`tomoclass.models.pretrained`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from tomoclass.data.classmap import per_class_values
from tomoclass.errors import InputError
from tomoclass.models.pretrained import PretrainedModel, add_pretrained
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train.run import checkpoint_path

log = logging.getLogger(__name__)


def init_model(source: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """``(model name, model kwargs without num_classes)`` of a run, checkpoint or name."""
    path = checkpoint_path(source, "best")
    ck = ckpt_mod.load_checkpoint(path)
    kwargs = {k: v for k, v in dict(ck["model_kwargs"]).items() if k != "num_classes"}
    return str(ck["model_name"]), kwargs


def initialize_from(model: nn.Module, source: str | os.PathLike[str],
                    class_names: list[str]) -> dict[str, Any]:
    """Copy the weights of ``source`` into ``model`` (built for ``class_names``).

    Parameters
    ----------
    model
        A freshly built model of the source's architecture.
    source
        Run directory (its ``best`` checkpoint), ``.pt`` checkpoint or pretrained name; loaded
        with ``weights_only=True`` after a pretrained file's sha256 is checked.
    class_names
        The new run's classes, in output order.

    Returns
    -------
    dict
        ``source`` (checkpoint path), ``copied`` (tensors), ``head`` ("copied" or "new"),
        ``classes_from_source`` (classes whose head rows came from the source).

    Raises
    ------
    InputError
        Another model or architecture, or weights that do not fit it.
    """
    path = checkpoint_path(source, "best")
    ck = ckpt_mod.load_checkpoint(path)
    name = getattr(model, "model_name", None)
    if name is not None and ck["model_name"] != name:
        raise InputError(f"--init is a '{ck['model_name']}' run, not '{name}'; leave --model "
                         "out to use the source's", path=path, field="model_name")
    head = model.get_classifier()
    head_keys = {f"{n}.{p}" for n, mod in model.named_modules() if mod is head
                 for p, _ in mod.named_parameters(recurse=False)}
    source_names = [str(c) for c in ck["class_names"]]
    same_classes = source_names == list(class_names)
    state = model.state_dict()
    copied = 0
    for key, value in ck["model_state"].items():
        if key in head_keys and not same_classes:
            continue
        if key not in state or state[key].shape != value.shape:
            have = tuple(state[key].shape) if key in state else "absent"
            raise InputError(f"weights do not fit this model: {key} is {tuple(value.shape)} in "
                             f"the source, {have} here (other model options?)", path=path,
                             field="model_state")
        state[key] = value
        copied += 1
    shared = [c for c in class_names if c in source_names] if not same_classes else \
        list(class_names)
    if not same_classes:
        with torch.no_grad():
            for key in head_keys:
                src = ck["model_state"].get(key)
                if src is None:
                    continue
                for c in shared:
                    state[key][class_names.index(c)] = src[source_names.index(c)]
    model.load_state_dict(state)
    report = {"source": str(path), "copied": copied, "head": "copied" if same_classes else "new",
              "classes_from_source": shared}
    log.info("initialised from %s: %d tensors copied, %s classifier head%s", path, copied,
             report["head"], "" if same_classes else
             f" ({len(shared)} of {len(class_names)} class rows from the source)")
    return report


def register_run(run: str | os.PathLike[str], name: str, *, which: str = "best",
                 directory: str | os.PathLike[str] | None = None,
                 training_command: str | None = None, metrics_file: str | None = None,
                 description: str = "", threshold: float | None = None,
                 radii_voxels: float | Mapping[str, float] | None = None) -> PretrainedModel:
    """Register checkpoint ``which`` of a run as pretrained model ``name``.

    The entry records the model, classes, voxel size and box from the checkpoint; whether it
    has a ``background`` class (a detector for ``locate``); the training command and git
    commit from the run's ``config.yaml`` (``training_command`` overrides the command); and
    metrics: the checkpoint epoch's validation record, each ``evaluation_*/report.json`` of the
    run, and the JSON object of ``metrics_file`` (e.g. a ``score-picks`` result) if given;
    ``threshold``, a detector's calibrated ``locate`` threshold (the CLI passes the run's);
    ``radii_voxels``, a detector's particle radii in the run's voxels (``R`` for every class or
    a mapping by class name), recorded in Å as ``radii_angstrom``.

    The registered file is the checkpoint without its training state (optimizer, lr schedule,
    AMP scaler, RNG and sampler): what inference and ``train --init`` read, a third of the
    size, and nothing a resumed run would need.
    """
    path = checkpoint_path(run, which)
    ck = ckpt_mod.load_checkpoint(path)
    run_dir = Path(run) if Path(run).is_dir() else None
    config = {}
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    metrics: dict[str, Any] = {}
    record = next((h for h in ck.get("history") or [] if h.get("epoch") == ck["epoch"]), None)
    if record:
        metrics["validation"] = {k: v for k, v in record.items() if isinstance(v, int | float)}
    for report in sorted(run_dir.glob("evaluation_*/report.json")) if run_dir else []:
        metrics[report.parent.name] = _read_json(report)
    if metrics_file:
        metrics["recorded"] = _read_json(Path(metrics_file))
    command = training_command or shlex.join(config.get("command") or [])
    classes = [str(c) for c in ck["class_names"]]
    meta = {"model": ck["model_name"], "classes": classes,
            "voxel_size_angstrom": ck.get("voxel_size_angstrom"), "box": ck.get("box"),
            "detector": "background" in [c.casefold() for c in classes],
            "threshold": None if threshold is None else float(threshold),
            "radii_angstrom": _radii_angstrom(radii_voxels, classes,
                                              ck.get("voxel_size_angstrom"), path),
            "training_command": command, "commit": config.get("git_commit"),
            "metrics": metrics, "description": description}
    inference_only = {k: v for k, v in ck.items() if k not in TRAINING_STATE}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(inference_only, weights)
        return add_pretrained(name, weights, meta, directory)


#: Checkpoint entries only a resumed run reads (left out of a registered pretrained file).
TRAINING_STATE = ("optimizer_state", "schedule_state", "scaler_state", "rng", "sampler")


def _radii_angstrom(radii: float | Mapping[str, float] | None, classes: list[str],
                    voxel_size: float | None, path: Path) -> dict[str, float]:
    """Radii in the run's voxels -> Å per particle class (every one must have a radius)."""
    if radii is None:
        return {}
    if not voxel_size:
        raise InputError("the checkpoint records no voxel size, so radii cannot be recorded "
                         "in Å", path=path, field="voxel_size_angstrom")
    table = radii if isinstance(radii, Mapping) else {"*": float(radii)}
    return {c: round(r * float(voxel_size), 3)
            for c, r in per_class_values(classes, table, strict=True).items()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not readable JSON ({exc.__class__.__name__})", path=path) from None
