"""Memory and disk estimates made before a long job, and the refusal when they do not fit.

Activation memory is measured, not guessed: the model runs once on the ``meta`` device
(no memory, no compute) with hooks that add up every leaf module's output size for one
sample. Training keeps roughly those activations for the backward pass plus their
gradients (factor 2), and the parameters with their gradients and two Adam moments
(factor 4). Predictions keep one layer's worth at a time; the sum is used as a bound.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tomoclass.errors import ResourceError

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(text: str | int | None) -> int | None:
    """``"8G"``, ``"512M"``, ``"1.5g"`` or a plain byte count -> bytes (None stays None).

    Raises
    ------
    ValueError
        Not a size.
    """
    if text is None or isinstance(text, int):
        return text
    s = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    unit = s[-1] if s and s[-1] in _UNITS else ""
    number = s[: -1] if unit else s
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 8G, 512M)") from None
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return int(value * _UNITS[unit])


def human(n: float) -> str:
    """Bytes as a short human-readable string (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclass(frozen=True)
class Estimate:
    """Bytes a job needs, with the pieces that make it up."""

    memory_bytes: int
    disk_bytes: int
    param_bytes: int
    activation_bytes_per_sample: int


def activation_bytes_per_sample(model: nn.Module, box: int) -> int:
    """Sum of all leaf-module output sizes for one (1, 1, box, box, box) float32 input.

    Runs a copy of ``model`` on the meta device, so it costs neither memory nor time. In
    memory-efficient mode the outputs a layer recomputes in the backward pass (its
    ``recomputed_children``) are not kept, so they are not counted.
    """
    # eval mode: the same output sizes, and batch norm accepts one sample of a 1^3 map
    # (MONAI's DenseNet121 at 32^3 ends in one; train mode refuses a batch of one there)
    meta = copy.deepcopy(model).to("meta").eval()
    total = 0
    skip = {id(getattr(m, name)) for m in meta.modules() if getattr(m, "memory_efficient", False)
            for name in getattr(m, "recomputed_children", ())}

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * 4

    handles = [m.register_forward_hook(hook) for m in meta.modules()
               if len(list(m.children())) == 0 and id(m) not in skip]
    try:
        with torch.no_grad():
            meta(torch.empty((1, 1, box, box, box), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total + box**3 * 4


def available_memory_bytes(device: torch.device) -> int:
    """Free memory where the job runs: CUDA free memory, else ``MemAvailable``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def estimate_training(model: nn.Module, box: int, batch_per_process: int,
                      n_checkpoint_files: int) -> Estimate:
    """Memory and disk a training run needs.

    Parameters
    ----------
    model
        The network (its parameters are counted; a meta copy is run).
    box
        Subtomogram edge length in voxels.
    batch_per_process
        Samples per step in this process.
    n_checkpoint_files
        How many checkpoint files the run keeps (``last``, ``best``, periodic ones); one
        more is counted for the temporary file of an atomic write.
    """
    params = sum(p.numel() for p in model.parameters()) * 4
    act = activation_bytes_per_sample(model, box)
    memory = 4 * params + 2 * act * batch_per_process
    ckpt = 3 * params + 64 * 1024  # weights + two Adam moments + metadata
    disk = ckpt * (n_checkpoint_files + 1)
    return Estimate(memory, disk, params, act)


def estimate_prediction(model: nn.Module, box: int, batch: int) -> Estimate:
    """Memory an inference batch needs (parameters + activations of ``batch`` samples)."""
    params = sum(p.numel() for p in model.parameters()) * 4
    act = activation_bytes_per_sample(model, box)
    return Estimate(params + act * batch, 0, params, act)


def check_fits(est: Estimate, *, device: torch.device, out_dir: str | Path,
               max_memory_bytes: int | None = None, what: str = "job") -> None:
    """Refuse a job whose estimate exceeds free memory (or ``max_memory_bytes``) or disk.

    Raises
    ------
    ResourceError
        One line saying what is needed, what is there, and what to change.
    """
    avail = available_memory_bytes(device)
    limit = avail if max_memory_bytes is None else min(avail, max_memory_bytes)
    if est.memory_bytes > limit:
        which = "--max-memory" if max_memory_bytes is not None and max_memory_bytes < avail \
            else f"free {'GPU ' if device.type == 'cuda' else ''}memory"
        raise ResourceError(
            f"{what} needs about {human(est.memory_bytes)} of memory but {which} is "
            f"{human(limit)}; lower the batch size"
            + (", or keep it and raise --accumulation-steps" if what == "training" else "")
        )
    out = Path(out_dir)
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if est.disk_bytes > free:
        raise ResourceError(
            f"{what} needs about {human(est.disk_bytes)} of disk in {out} but only "
            f"{human(free)} is free; free space or keep fewer checkpoints (--checkpoint-every)"
        )
