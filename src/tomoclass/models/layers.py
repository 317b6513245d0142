"""Layers shared by the nets, the common model base class and the paper's initialisation.

Tensors are batches of subtomograms in (N, C, D, H, W) order, spatial axes (z, y, x).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.checkpoint as cp
from torch import Tensor, nn
from torch.nn import functional as F


def init_weights(module: nn.Module) -> None:
    """Initialise as Gao et al. 2020: Xavier-uniform conv/linear weights, zero biases, BN 1/0.

    Xavier-uniform draws from U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), where the fans
    count input/output channels times the kernel volume (torch's convention).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DenseLayer(nn.Module):
    """One (dilated) dense layer: BN-ReLU-1x1x1 conv (bottleneck), BN-ReLU-3x3x3 conv.

    Parameters
    ----------
    in_channels
        Channels of all preceding feature maps of the block together.
    growth_rate
        Channels this layer adds (k).
    bottleneck_width
        The bottleneck has ``bottleneck_width * growth_rate`` channels (4k in the paper).
    dilation
        Dilation of the 3x3x3 conv; padding equals the dilation so the size is kept.
    memory_efficient
        Recompute the concatenation and the BN-ReLU-1x1x1 conv-BN-ReLU bottleneck in the
        backward pass instead of storing them (``torch.utils.checkpoint``, non-reentrant);
        only active when gradients are needed.
    """

    #: Children whose outputs memory-efficient mode recomputes instead of storing (read by
    #: the training memory estimate, ``tomoclass.train.resources``).
    recomputed_children = ("norm1", "relu1", "conv1", "norm2")

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bottleneck_width: int,
        dilation: int,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        mid = bottleneck_width * growth_rate
        self.norm1 = nn.BatchNorm3d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(in_channels, mid, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm3d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(
            mid, growth_rate, kernel_size=3, padding=dilation, dilation=dilation, bias=False
        )
        self.dilation = dilation
        self.memory_efficient = memory_efficient
        self._recomputing = False

    def _norm(self, bn: nn.BatchNorm3d, x: Tensor) -> Tensor:
        if self._recomputing and bn.training:
            # Checkpoint recomputation in backward: same batch statistics, but the running
            # statistics were already updated by the forward pass and must not move twice,
            # so this pass updates throw-away copies (same op, same saved tensors).
            mean = None if bn.running_mean is None else bn.running_mean.clone()
            var = None if bn.running_var is None else bn.running_var.clone()
            return F.batch_norm(x, mean, var, bn.weight, bn.bias, True, 0.0, bn.eps)
        return bn(x)

    def bottleneck(self, *features: Tensor) -> Tensor:
        """Concatenate the inputs along channels, BN-ReLU-1x1x1 conv, then BN-ReLU.

        The result (4k channels) is the input of the 3x3x3 conv; in memory-efficient mode
        everything before it (concatenation, both BNs, the 1x1x1 conv) is recomputed.
        """
        x = torch.cat(features, 1) if len(features) > 1 else features[0]
        x = self.conv1(self.relu1(self._norm(self.norm1, x)))
        x = self.relu2(self._norm(self.norm2, x))
        self._recomputing = True
        return x

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Map the block's features so far, (N, C_i, D, H, W) each, to k new channels."""
        needs_grad = torch.is_grad_enabled() and any(f.requires_grad for f in features)
        self._recomputing = False
        if self.memory_efficient and needs_grad:
            out = cp.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            out = self.bottleneck(*features)
        return self.conv2(out)


class DenseBlock(nn.Module):
    """Dense block: every layer sees the concatenation of the block input and earlier outputs.

    Parameters
    ----------
    in_channels
        Channels of the block input (k0).
    growth_rate, bottleneck_width, memory_efficient
        As in :class:`DenseLayer`.
    dilations
        Dilation of each layer's 3x3x3 conv; its length is the number of layers L.
        Output channels: k0 + L * k.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bottleneck_width: int,
        dilations: Sequence[int],
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(
                in_channels + i * growth_rate, growth_rate, bottleneck_width, d, memory_efficient
            )
            for i, d in enumerate(dilations)
        )
        self.out_channels = in_channels + len(dilations) * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        """(N, k0, D, H, W) -> (N, k0 + L k, D, H, W)."""
        memory_efficient = any(layer.memory_efficient for layer in self.layers)
        if memory_efficient and torch.is_grad_enabled():
            # Keep only the separate feature maps; each layer's concatenation is recomputed.
            features = [x]
            for layer in self.layers:
                features.append(layer(features))
            return torch.cat(features, 1)
        # Grow the concatenation one layer at a time: each layer's input is ready-made,
        # so no extra concatenation of the whole block at the end.
        for layer in self.layers:
            x = torch.cat([x, layer([x])], 1)
        return x


class Transition(nn.Module):
    """Transition between dense blocks: BN, 1x1x1 conv (compression), 2x2x2 average pool.

    The paper's transition (Fig. 1C) has no ReLU between BN and conv. The 1x1x1 conv and
    the average pool are both linear and act on different axes (channels vs space), so they
    commute exactly; pooling first runs the conv on 8x fewer voxels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm3d(in_channels)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool3d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, D, H, W) -> (N, C_out, D // 2, H // 2, W // 2)."""
        return self.conv(self.pool(self.norm(x)))


class TomoNet(nn.Module):
    """Common interface of every tomoclass classifier.

    Subclasses set ``features`` (the conv trunk), implement :meth:`forward_head` and
    :meth:`get_classifier`, and fill the attributes below.

    Attributes
    ----------
    model_name : str
        Registry name; ``get_model(model_name, **model_config)`` rebuilds the architecture.
    model_config : dict
        Constructor keyword arguments (plain ints, floats, bools and lists).
    has_gap_head : bool
        True if the head is global average pooling + one linear layer (CAM of Eq. 1 applies).
    min_input_size : int
        Smallest accepted edge length (voxels) of each spatial axis.
    max_input_size : int or None
        Largest accepted edge length, or None if unbounded.
    """

    model_name: str = ""
    has_gap_head: bool = False
    min_input_size: int = 1
    max_input_size: int | None = None
    #: Run the trunk in channels-last (NDHWC) layout: oneDNN and cuDNN convolutions avoid
    #: layout reorders (measured in benchmarks/throughput.py). Same math, any input layout;
    #: ``forward_features`` returns a contiguous (NCDHW) map either way.
    channels_last: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.model_config: dict[str, Any] = {}

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is (N, C, D, H, W) with a size this net accepts."""
        if x.dim() != 5:
            raise ValueError(
                f"{self.model_name} expects a batch (N, C, D, H, W), got shape {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        small = min(spatial) < self.min_input_size
        large = self.max_input_size is not None and max(spatial) > self.max_input_size
        if small or large:
            bound = (
                f"from {self.min_input_size}^3 to {self.max_input_size}^3"
                if self.max_input_size is not None
                else f"of at least {self.min_input_size}^3"
            )
            raise ValueError(
                f"{self.model_name} needs inputs {bound} voxels, got "
                f"{'x'.join(map(str, spatial))}"
            )

    def forward_features(self, x: Tensor) -> Tensor:
        """Last convolutional feature map, (N, C, d, h, w), of a batch (N, C_in, D, H, W)."""
        self.check_input(x)
        if not self.channels_last:
            return self.features(x)
        # A 1-channel input is both contiguous and channels-last, so the layout is set on
        # the first layer's output; every later conv then follows its input's layout.
        modules = iter(self.features)
        x = next(modules)(x).contiguous(memory_format=torch.channels_last_3d)
        for module in modules:
            x = module(x)
        return x.contiguous()

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Logits (N, num_classes) from :meth:`forward_features` output."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of a batch (N, C_in, D, H, W)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        """The final linear layer (its weights give the CAM of Eq. 1 for GAP heads)."""
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes``."""
        raise NotImplementedError
