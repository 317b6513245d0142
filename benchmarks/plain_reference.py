"""Plain reference implementation of 3D-Dilated-DenseNet for throughput comparisons.

Written the straightforward way a first implementation would be: nn.Sequential layers,
fp32, default (contiguous NCDHW) memory format, no fusion, and each dense layer's output
appended with ``torch.cat([x, layer(x)], 1)``. It has the same parameters, in the same
order, as ``tomoclass.models.get_model("dilated_densenet3d")``, so weights can be copied
across with :func:`load_from` and the logits compared.
"""

from __future__ import annotations

import torch
from torch import nn


class PlainDenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth: int, width: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm3d(in_ch),
            nn.ReLU(),
            nn.Conv3d(in_ch, width * growth, 1, bias=False),
            nn.BatchNorm3d(width * growth),
            nn.ReLU(),
            nn.Conv3d(width * growth, growth, 3, padding=dilation, dilation=dilation, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def plain_dilated_densenet(
    num_classes: int,
    growth: int = 12,
    num_blocks: int = 3,
    dilations: tuple[int, ...] = (1, 2, 3, 1),
    compression: float = 0.5,
    width: int = 4,
) -> nn.Sequential:
    """The paper's net as one nn.Sequential (stem, blocks, transitions, BN-ReLU, GAP, FC)."""
    ch = 2 * growth
    layers: list[nn.Module] = [nn.Conv3d(1, ch, 3, padding=1, bias=False)]
    for b in range(num_blocks):
        for d in dilations:
            layers.append(PlainDenseLayer(ch, growth, width, d))
            ch += growth
        if b < num_blocks - 1:
            out = int(ch * compression)
            layers += [nn.BatchNorm3d(ch), nn.Conv3d(ch, out, 1, bias=False), nn.AvgPool3d(2)]
            ch = out
    layers += [nn.BatchNorm3d(ch), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
               nn.Linear(ch, num_classes)]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def load_from(plain: nn.Module, model: nn.Module) -> None:
    """Copy a tomoclass dilated_densenet3d's parameters and BN buffers into ``plain``."""
    src = list(model.state_dict().values())
    dst = plain.state_dict()
    if len(src) != len(dst):
        raise ValueError("architectures differ: cannot copy weights")
    with torch.no_grad():
        for (name, t), s in zip(dst.items(), src, strict=True):
            if t.shape != s.shape:
                raise ValueError(f"shape mismatch at {name}: {tuple(t.shape)} vs {tuple(s.shape)}")
            t.copy_(s)
