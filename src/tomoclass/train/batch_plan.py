"""How a training batch is run on the memory there is: the default batch plan.

The paper's protocol is a batch of 64; at a 32³ box the dilated DenseNet keeps about 19 GiB
of activations for it (``tomoclass.train.resources``), more than many machines have free.
Rather than asking the user to trade the protocol away, :func:`plan_batch` keeps the
*effective* batch (the one the optimizer step, learning-rate scaling and the schedule see)
and picks the cheapest way to run it in the memory there is:

1. as it is (one forward/backward per batch);
2. in memory-efficient mode (models that support it recompute their bottlenecks in the
   backward pass: the same result for more compute; at a 32³ box the estimate drops from
   19.3 to 6.2 GiB, ``benchmarks/results/batch_plan_20261203.txt``);
3. with gradient accumulation: the batch is cut into ``k`` micro-batches whose gradients add
   up before one optimizer step (the smallest ``k`` that fits). Batch-norm statistics are then
   those of the micro-batches, which is the one difference from the single-batch protocol.

Settings the user gave (``accumulation_steps``, ``memory_efficient`` in the model
arguments) are used as given; only what is left open is chosen.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tomoclass.train.resources import activation_bytes_per_sample, human

__all__ = ["BatchPlan", "plan_batch", "plan_for_run", "forward_backward"]


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's batch is run in this process.

    Attributes
    ----------
    batch_size
        Samples per optimizer step in this process (the effective batch per process).
    accumulation_steps
        Micro-batches per step (1: none).
    memory_efficient
        Whether the model runs in memory-efficient mode.
    memory_bytes
        Estimated training memory of the plan.
    fits
        Whether that estimate is within the limit it was planned for.
    chosen
        Whether the planner changed anything the user left open (then :attr:`message` says
        what and why).
    message
        One line describing the plan.
    """

    batch_size: int
    accumulation_steps: int
    memory_efficient: bool
    memory_bytes: int
    fits: bool
    chosen: bool
    message: str

    @property
    def micro_batch(self) -> int:
        """Largest number of samples in one forward/backward."""
        return math.ceil(self.batch_size / self.accumulation_steps)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the run's ``config.yaml``."""
        return {"batch_size": self.batch_size, "accumulation_steps": self.accumulation_steps,
                "micro_batch": self.micro_batch, "memory_efficient": self.memory_efficient,
                "memory_estimate_bytes": int(self.memory_bytes), "chosen": self.chosen}


def _memory(params: int, act_per_sample: int, micro: int) -> int:
    # same model as resources.estimate_training: weights, gradients and two Adam moments,
    # plus activations and their gradients for the samples of one forward/backward
    return 4 * params + 2 * act_per_sample * micro


def plan_batch(available_bytes: int, model: nn.Module, box: int, batch_size: int, *,
               accumulation_steps: int | None = None,
               memory_efficient: bool | None = None) -> BatchPlan:
    """Choose how to run a batch of ``batch_size`` in ``available_bytes`` (a pure function).

    Parameters
    ----------
    available_bytes
        Memory the job may use (free memory, or less with ``--max-memory``).
    model
        The network (only a meta-device copy is run; it is not changed).
    box
        Subtomogram edge in voxels.
    batch_size
        Samples per optimizer step in this process.
    accumulation_steps
        Given by the user (used as is), or ``None`` to choose.
    memory_efficient
        Given by the user (used as is), or ``None`` to choose. Ignored (False) for models
        without a memory-efficient mode.

    Returns
    -------
    BatchPlan
        The first plan that fits, in the order: as is, memory-efficient, memory-efficient
        with the fewest accumulation steps. If none fits (even one sample at a time), the
        plan with the smallest estimate, ``fits=False`` (the caller refuses to start).
    """
    supports = hasattr(model, "memory_efficient")
    params = sum(p.numel() for p in model.parameters()) * 4
    user_me = bool(memory_efficient) if memory_efficient is not None else None
    act: dict[bool, int] = {}

    def act_for(me: bool) -> int:
        if me not in act:
            if supports and bool(model.memory_efficient) != me:
                previous = model.memory_efficient
                model.memory_efficient = me
                try:
                    act[me] = activation_bytes_per_sample(model, box)
                finally:
                    model.memory_efficient = previous
            else:
                act[me] = activation_bytes_per_sample(model, box)
        return act[me]

    modes = [user_me] if user_me is not None else ([False, True] if supports else [False])
    modes = [m and supports for m in modes]
    steps_options = ([accumulation_steps] if accumulation_steps is not None
                     else list(range(1, batch_size + 1)))
    candidates = []
    for steps in steps_options:
        for me in modes:
            if accumulation_steps is None and steps > 1 and not me and True in modes:
                continue  # accumulate only once memory-efficient mode is not enough
            micro = math.ceil(batch_size / steps)
            if accumulation_steps is None and steps > 1 and \
                    math.ceil(batch_size / (steps - 1)) == micro:
                continue  # same micro-batch as fewer steps
            candidates.append((steps, me, _memory(params, act_for(me), micro)))
    fitting = [c for c in candidates if c[2] <= available_bytes]
    steps, me, mem = fitting[0] if fitting else min(candidates, key=lambda c: c[2])
    default_me = bool(model.memory_efficient) if supports else False
    chosen = (accumulation_steps is None and steps > 1) or (user_me is None and me
                                                             and not default_me)
    parts = [f"batch {batch_size}"]
    if steps > 1:
        parts.append(f"as {steps} accumulated micro-batches of up to "
                     f"{math.ceil(batch_size / steps)}")
    if me:
        parts.append("memory-efficient mode")
    how = ", ".join(parts)
    if not chosen:
        message = f"training plan: {how}; about {human(mem)} of {human(available_bytes)}"
    elif fitting:
        message = (f"training plan: {how} (about {human(mem)}; without that it would need "
                   f"{human(candidates[0][2])} and {human(available_bytes)} is available); "
                   "the effective batch, lr scaling and schedule are unchanged")
    else:
        message = f"training plan: {how} still needs about {human(mem)}"
    return BatchPlan(batch_size=batch_size, accumulation_steps=steps, memory_efficient=me,
                     memory_bytes=mem, fits=bool(fitting), chosen=bool(chosen), message=message)


def plan_for_run(model: nn.Module, box: int, batch_size: int, *, available_bytes: int | None,
                 accumulation_steps: int | None, model_kwargs: dict) -> BatchPlan:
    """The plan for a training run, applied to ``model`` (memory-efficient mode if chosen).

    ``available_bytes=None`` (resources not checked) plans nothing: the user's settings or
    the defaults (no accumulation, the model as built).
    """
    user_me = model_kwargs.get("memory_efficient")
    if available_bytes is None:
        me = bool(getattr(model, "memory_efficient", False))
        steps = accumulation_steps or 1
        return BatchPlan(batch_size, steps, me, 0, True, False,
                         f"training plan: batch {batch_size} in {steps} micro-batch(es)")
    plan = plan_batch(available_bytes, model, box, batch_size,
                      accumulation_steps=accumulation_steps,
                      memory_efficient=None if user_me is None else bool(user_me))
    if hasattr(model, "memory_efficient") and bool(model.memory_efficient) != plan.memory_efficient:
        model.memory_efficient = plan.memory_efficient
    return plan


def forward_backward(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, steps: int,
                     scaler: Any, autocast: Callable[[], Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward one batch in ``steps`` micro-batches, gradients added up.

    Each micro-batch's cross-entropy is weighted by its share of the batch, so the summed
    gradient equals the batch's mean-loss gradient (up to batch-norm statistics, which are
    per micro-batch). Under DDP the gradients are synchronised once, on the last micro-batch.

    Returns
    -------
    loss : torch.Tensor
        The batch's mean loss (detached, scalar).
    logits : torch.Tensor
        ``(N, C)`` detached logits of the whole batch.
    """
    n = yb.shape[0]
    steps = max(1, min(int(steps), n))
    losses, outs = [], []
    chunks = list(zip(torch.tensor_split(xb, steps), torch.tensor_split(yb, steps), strict=True))
    for i, (x, y) in enumerate(chunks):
        last = i == len(chunks) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") \
            else model.no_sync()
        with sync:
            with autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y) * (y.shape[0] / n)
            scaler.scale(loss).backward()
        losses.append(loss.detach())
        outs.append(logits.detach())
    return torch.stack(losses).sum(), torch.cat(outs)
