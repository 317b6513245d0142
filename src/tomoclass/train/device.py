"""Where and in what arithmetic a net runs: one rule for training, evaluation and inference.

``select_device`` turns ``"auto"``/``"cpu"``/``"cuda:1"`` into a device (refusing one that is
not there); ``amp_dtype`` is training's mixed precision (``TrainConfig.amp``); ``inference_net``
is the rule for classifying boxes (``predict``, ``locate``, ``evaluate``): bf16 autocast with
channels-last on a CUDA GPU with bf16, the CPU rewrite of ``optimize_for_inference`` elsewhere.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from tomoclass.errors import InputError
from tomoclass.models import optimize_for_inference

#: Arithmetic of box classification (see :func:`inference_net`).
PRECISIONS = ("auto", "fp32", "bf16")


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the process's CUDA device when there is one, else CPU.

    Raises
    ------
    InputError
        A CUDA/MPS device was asked for but is not there.
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}", field="device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but is not available", field="device")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("MPS was requested but is not available", field="device")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def amp_dtype(cfg: Any, device: torch.device) -> torch.dtype | None:
    """Training's autocast dtype (``cfg.amp`` of a :class:`TrainConfig`), or None: float32."""
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for float32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def inference_net(model: nn.Module, device: torch.device, precision: str = "auto"
                   ) -> tuple[nn.Module, torch.dtype | None]:
    """The net to classify boxes with, and the autocast dtype (None: float32).

    ``precision="auto"``: bf16 autocast with channels-last memory on a CUDA GPU that
    supports bf16; on the CPU ``optimize_for_inference`` (same logits to float32 rounding,
    ~2x faster, docs/speed.md). ``"fp32"``: never bf16. ``"bf16"``: bf16 autocast wherever
    the hardware runs it natively (an error where it does not).
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}",
                         field="precision")
    cuda = device.type == "cuda"
    if precision == "bf16" or (precision == "auto" and cuda and torch.cuda.is_bf16_supported()):
        if cuda and not torch.cuda.is_bf16_supported():
            raise InputError("this GPU has no bf16 support; use precision fp32",
                             field="precision")
        if not cuda and not cpu_has_bf16():
            raise InputError("this CPU has no native bf16 (AVX512-BF16 or AMX); use "
                             "precision fp32", field="precision")
        return model.to(memory_format=torch.channels_last_3d), torch.bfloat16
    if not cuda:
        try:
            return optimize_for_inference(model), None
        except (TypeError, ValueError):
            return model, None
    return model, None
