"""Static facts about a model: receptive field, parameter count, measured FLOPs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tomoclass.errors import InputError
from tomoclass.models.registry import get_model, list_models


def _triple(v: Any) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    return tuple(int(i) for i in v)  # type: ignore[return-value]


def receptive_field(model_or_name: nn.Module | str, **cfg: Any) -> tuple[int, int, int]:
    """Receptive field (voxels along z, y, x) of one voxel of the last conv feature map.

    Walks the conv and pooling layers of ``model.features`` in forward order, growing the
    field by ``(kernel - 1) * dilation * jump`` and the jump by the stride at each. In a
    dense block the longest path passes every layer in turn (each layer sees all earlier
    ones), so the block contributes the sum of its layers.

    Parameters
    ----------
    model_or_name
        A tomoclass model, or a registry name built with ``**cfg``.
    **cfg
        Options for :func:`tomoclass.models.get_model` when a name is given.

    Returns
    -------
    tuple of int
        (z, y, x) extent in input voxels, padding ignored.
    """
    if isinstance(model_or_name, str):
        cfg.setdefault("num_classes", 2)
        model = get_model(model_or_name, **cfg)
    else:
        model = model_or_name
    rf = [1, 1, 1]
    jump = [1, 1, 1]
    for m in model.features.modules():
        if isinstance(m, nn.Conv3d):
            k, s, d = _triple(m.kernel_size), _triple(m.stride), _triple(m.dilation)
        elif isinstance(m, (nn.MaxPool3d, nn.AvgPool3d)):
            k = _triple(m.kernel_size)
            s = _triple(m.stride if m.stride is not None else m.kernel_size)
            d = _triple(getattr(m, "dilation", 1))
        else:
            continue
        for a in range(3):
            rf[a] += (k[a] - 1) * d[a] * jump[a]
            jump[a] *= s[a]
    return (rf[0], rf[1], rf[2])


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_size: int = 32, batch_size: int = 1) -> int:
    """Measured forward FLOPs of one sample (multiply-add = 2 FLOPs), torch's flop counter.

    Runs one eval-mode forward pass of a (batch_size, C, n, n, n) zero batch under
    :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls are
    counted; BN, ReLU and pooling are not) and divides by the batch size. The model's
    train/eval mode is restored afterwards.

    Parameters
    ----------
    model
        A tomoclass model.
    input_size
        Edge length n of the cubic input in voxels.
    batch_size
        Samples in the measured batch.

    Returns
    -------
    int
        FLOPs per sample.
    """
    in_channels = int(getattr(model, "model_config", {}).get("in_channels", 1))
    param = next(model.parameters())
    x = torch.zeros(batch_size, in_channels, input_size, input_size, input_size,
                    device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // batch_size


@dataclass(frozen=True)
class ModelSummary:
    """One row of ``tomoclass models``."""

    name: str
    parameters: int
    gflops_per_sample: float
    input_size: int
    receptive_field: tuple[int, int, int]
    min_input_size: int
    max_input_size: int | None
    has_gap_head: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["receptive_field"] = list(self.receptive_field)
        return d


def summarize_models(
    num_classes: int = 12, input_size: int = 32, names: list[str] | None = None
) -> list[ModelSummary]:
    """Summaries (parameters, measured GFLOPs per sample, receptive field) of registered models.

    Parameters
    ----------
    num_classes
        Classes of the built models (12 as SHREC'19; changes the classifier size only).
    input_size
        Edge of the cubic sample for the FLOP count (32 as the paper).
    names
        Models to summarise (default: all registered whose optional dependencies are
        installed; a model named here without them raises ``InputError``).
    """
    rows = []
    for name in names or list_models():
        try:
            model = get_model(name, num_classes=num_classes)
        except InputError:
            if names:
                raise
            continue  # an optional model (monai_densenet121) whose library is not installed
        rows.append(
            ModelSummary(
                name=name,
                parameters=count_parameters(model),
                gflops_per_sample=count_flops(model, input_size) / 1e9,
                input_size=input_size,
                receptive_field=receptive_field(model),
                min_input_size=model.min_input_size,
                max_input_size=model.max_input_size,
                has_gap_head=model.has_gap_head,
            )
        )
    return rows
