"""A loss that became NaN/inf: the learning rate's fault, or the data's."""

from __future__ import annotations

from pathlib import Path

import torch

from tomoclass.errors import TomoclassError


class TrainingDiverged(TomoclassError):
    """The loss became NaN or infinite (learning rate too high, or non-finite input data)."""


def diverged(loss: float, batch: torch.Tensor, epoch: int, step: int, lr: float,
             dataset: Path | None) -> TrainingDiverged:
    """The error to raise when the loss of ``batch`` is not finite.

    On finite inputs the cause is the optimisation (advice: lower ``--lr``); when the batch
    itself holds NaN/inf, the message names the data instead.
    """
    where = f"at epoch {epoch}, step {step}"
    if not bool(torch.isfinite(batch).all()):
        n = int((~torch.isfinite(batch)).flatten(1).any(1).sum())
        name = f" of {dataset}" if dataset is not None else ""
        return TrainingDiverged(
            f"loss became {loss} {where}: {n} input subtomogram{'s' if n > 1 else ''}"
            f"{name} hold NaN/inf values (the data, not the learning rate); "
            "'tomoclass dataset info' names the rows")
    return TrainingDiverged(f"loss became {loss} {where} (lr {lr:.3g}); lower the learning rate "
                            "(--lr)")
