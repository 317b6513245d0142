"""Learning-rate schedule: linear warm-up, then step decay (Goyal et al. 2017; Gao et al. 2020).

The rate is a pure function of the global optimisation step, so resuming a run only needs
the step count; nothing callable has to be pickled into a checkpoint. Early stopping
(:func:`stop_early`) is likewise a function of the run's epoch records, so a resumed run that
had stopped early stops again without training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tomoclass.train.config import TrainConfig


def lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning rate for optimisation step ``step`` (0-based, counted over the whole run).

    Parameters
    ----------
    step
        Global step index.
    steps_per_epoch
        Optimiser steps in one epoch (per process; the same on every DDP rank).
    cfg
        Supplies ``peak_lr`` (linear scaling rule), ``warmup_epochs``,
        ``warmup_start_factor``, ``lr_step_epochs`` and ``lr_gamma``.

    Returns
    -------
    float
        ``peak_lr * warm-up factor * lr_gamma ** (epoch // lr_step_epochs)``, where the
        warm-up factor rises linearly from ``warmup_start_factor`` to 1 over
        ``warmup_epochs`` epochs.
    """
    steps_per_epoch = max(1, steps_per_epoch)
    warm_steps = int(math.ceil(cfg.warmup_epochs * steps_per_epoch))
    if warm_steps > 0 and step < warm_steps:
        frac = step / warm_steps
        factor = cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * frac
    else:
        factor = 1.0
    return epoch_lr(cfg, step // steps_per_epoch + 1) * factor


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """The step-decay rate epoch ``epoch`` (1-based) trains at, warm-up left out.

    ``peak_lr * lr_gamma ** ((epoch - 1) // lr_step_epochs)``: with ``lr_step_epochs`` 4,
    epochs 1-4 train at the peak and epochs 5-8 at ``lr_gamma`` times it.
    """
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    return cfg.peak_lr * cfg.lr_gamma ** ((epoch - 1) // cfg.lr_step_epochs)


class WarmupStepSchedule:
    """Sets the optimiser's lr before every step from :func:`lr_at`.

    ``state_dict()`` is ``{"step": int}`` (safe for ``torch.load(weights_only=True)``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
        self.optimizer = optimizer
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        lr = lr_at(self.step_count, self.steps_per_epoch, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        """The rate the next optimiser step will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def last_lr(self) -> float:
        """The rate the last optimiser step used (the next one's before any step)."""
        return lr_at(max(self.step_count - 1, 0), self.steps_per_epoch, self.cfg)

    def step(self) -> None:
        """Advance one optimisation step."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        """Step count (all the state there is)."""
        return {"step": int(self.step_count)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the step count and set the matching lr."""
        self.step_count = int(state["step"])
        self._apply()


def epochs_without_improvement(val_losses: Sequence[float], min_delta: float = 0.0) -> int:
    """Epochs since the validation loss last improved on its best by more than ``min_delta``.

    Non-finite losses never improve. ``[1.0, 0.8, 0.85, 0.9]`` -> 2.
    """
    best, since = math.inf, 0
    for v in val_losses:
        if math.isfinite(v) and v < best - min_delta:
            best, since = v, 0
        else:
            since += 1
    return since


def stop_early(history: Sequence[dict[str, Any]], patience: int | None,
               min_delta: float = 0.0, min_epochs: int = 0) -> bool:
    """Whether early stopping ends a run after the epochs in ``history``.

    ``history`` holds the run's epoch records (``metrics.jsonl``); the run stops after
    ``patience`` epochs in a row without a better validation loss (``patience`` None: never),
    but not before ``min_epochs`` epochs (the losses before still set the best to beat).
    """
    if patience is None or len(history) < min_epochs:
        return False
    losses = [float(h["val_loss"]) for h in history]
    return epochs_without_improvement(losses, min_delta) >= patience
