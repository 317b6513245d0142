"""Resuming a run: which configuration it continues, and the state it continues from.

One rule for the library and the CLI: a resumed run trains with its *own* configuration
(model, optimiser, schedule, seed, ...). Only the number of epochs may change, and only
upwards: it is ``max(saved epochs, requested epochs)``. Asking for nothing (``fit(None, ...,
resume=True)``, or ``tomoclass train --resume`` without ``--epochs``) continues the run's
own plan.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train.config import TrainConfig

log = logging.getLogger(__name__)


def resume_checkpoint(out_dir: str | os.PathLike[str],
                      resume: bool | str | os.PathLike[str]) -> Path:
    """The checkpoint ``resume`` names: ``out_dir/checkpoints/last.pt`` for ``True``."""
    return Path(out_dir) / "checkpoints" / "last.pt" if resume is True else Path(resume)


def saved_config(state: dict[str, Any], path: str | os.PathLike[str]) -> TrainConfig:
    """The training configuration a checkpoint was written with.

    Raises
    ------
    InputError
        The checkpoint holds weights only (no training state).
    """
    if state.get("train_config") is None:
        raise InputError("checkpoint holds no training state (weights only)",
                         path=path, field="train_config")
    return TrainConfig.from_dict(dict(state["train_config"]), path=path)


def resumed_config(saved: TrainConfig, requested: TrainConfig | None) -> TrainConfig:
    """The configuration a resumed run trains with: its own, epochs raised to the request.

    Parameters
    ----------
    saved
        The run's configuration (:func:`saved_config`).
    requested
        What the caller asked for; only its ``epochs`` counts, and only when larger than the
        run's. None: the run's own plan.
    """
    if requested is None:
        return saved
    return saved.model_copy(update={"epochs": max(saved.epochs, requested.epochs)})


def plan_differences(saved: TrainConfig, requested: TrainConfig,
                     ignore: tuple[str, ...] = ("epochs", "device", "num_workers")) -> list[str]:
    """The fields in which ``requested`` asks for another run than the ``saved`` one.

    A resumed run trains with its own configuration (:func:`resumed_config`), so a caller
    that wants a particular plan (a benchmark protocol) must not resume a checkpoint whose
    plan differs: its epochs would follow the old schedule under the new name. ``epochs`` may
    grow on resume, and where the run executes does not change the plan.
    """
    a, b = saved.model_dump(mode="json"), requested.model_dump(mode="json")
    return sorted(k for k in a.keys() | b.keys() if k not in ignore and a.get(k) != b.get(k))


def fresh_partial() -> dict[str, float]:
    """Running sums of an epoch that has not started."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


@dataclass
class Progress:
    """Where training stands: the next epoch, batches of it already done, the history."""

    start_epoch: int = 0
    skip_batches: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0
    partial: dict[str, float] = field(default_factory=fresh_partial)


def restore(state: dict[str, Any], rank: int, *, model: Any, optimizer: Any, schedule: Any,
            scaler: Any, path: Path | None) -> Progress:
    """Load a checkpoint's training state into the run and return its :class:`Progress`.

    Model, optimiser, schedule, AMP scaler and the RNG states (this rank's) are restored in
    place; an interrupted epoch resumes after its last finished batch.
    """
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    schedule.load_state_dict(state["schedule_state"])
    if state.get("scaler_state"):
        scaler.load_state_dict(state["scaler_state"])
    done = Progress(
        start_epoch=int(state["epoch"]),
        history=[dict(h) for h in state.get("history", [])],
        best_f1=float(state.get("best_val_macro_f1", -1.0)),
        best_epoch=int(state.get("best_epoch", 0)),
    )
    prog = state.get("epoch_progress") or {}
    done.skip_batches = int(prog.get("batches_done", 0))
    if done.skip_batches:
        done.partial = {k: prog[k] for k in done.partial}
    rng = state["rng"]
    if isinstance(rng, list):  # one entry per rank
        rng = rng[rank] if rank < len(rng) else rng[0]
    ckpt_mod.restore_rng_state(rng)
    log.info("resuming %s at epoch %d%s", path, done.start_epoch + 1,
             f" batch {done.skip_batches + 1}" if done.skip_batches else "")
    return done
