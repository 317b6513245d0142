"""3D-Dilated-DenseNet (Gao et al. 2020) and its all-dilation-1 baseline, 3D-DenseNet.

Architecture (paper section 2.1, Fig. 1): a shallow 3x3x3 stem conv with 2k channels,
``num_blocks`` (dilated) dense blocks of ``layers_per_block`` layers joined by transitions
(BN, 1x1x1 conv with compression, 2x2x2 average pool), a final BN-ReLU, global average
pooling and one linear layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tomoclass.models.layers import DenseBlock, TomoNet, Transition, init_weights
from tomoclass.models.registry import register_model

#: Hybrid-dilated-convolution pattern of the paper: rates 2 and 3 (coprime), zigzag,
#: dilated layers in the middle of the block.
DEFAULT_DILATIONS = (1, 2, 3, 1)


def _as_int_list(name: str, values: Sequence[int]) -> list[int]:
    out = [int(v) for v in values]
    if not out or any(v < 1 or v != orig for v, orig in zip(out, values, strict=True)):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
    return out


class DenseNet3D(TomoNet):
    """A 3D (dilated) DenseNet classifier with a GAP + linear head.

    Parameters
    ----------
    num_classes
        Number of logits.
    in_channels
        Channels of the input volumes (1 for subtomograms).
    growth_rate
        Channels added by each dense layer (k = 12 in the paper).
    num_blocks
        Number of dense blocks (3 in the paper); ``num_blocks - 1`` transitions halve the size.
    layers_per_block
        Dense layers per block (4 in the paper).
    dilations
        Dilation of each layer's 3x3x3 conv within a block, repeated in every block, length
        ``layers_per_block``; or one such list per block.
    compression
        Transition output channels = floor(compression * input channels), in (0, 1].
    bottleneck_width
        Bottleneck channels = ``bottleneck_width * growth_rate`` (4k in the paper).
    memory_efficient
        Checkpoint each layer's concatenation + bottleneck (recomputed in backward).

    Notes
    -----
    ``min_input_size`` is chosen so that in every block the feature map is at least twice
    the largest dilation there, i.e. every dilated tap still reaches real data (not padding)
    from half of the voxels: ``max_b 2**b * 2 * max(dilations[b])``, 24 for the defaults.
    """

    has_gap_head = True

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 1,
        growth_rate: int = 12,
        num_blocks: int = 3,
        layers_per_block: int = 4,
        dilations: Sequence[int] | Sequence[Sequence[int]] = DEFAULT_DILATIONS,
        compression: float = 0.5,
        bottleneck_width: int = 4,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("growth_rate", growth_rate), ("num_blocks", num_blocks),
                            ("layers_per_block", layers_per_block),
                            ("bottleneck_width", bottleneck_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < float(compression) <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression!r}")
        if len(dilations) > 0 and all(isinstance(d, (list, tuple)) for d in dilations):
            per_block = [_as_int_list("dilations", d) for d in dilations]  # type: ignore[arg-type]
            if len(per_block) != num_blocks:
                raise ValueError(
                    f"dilations gives {len(per_block)} blocks but num_blocks is {num_blocks}"
                )
            config_dilations: list[Any] = per_block
        else:
            pattern = _as_int_list("dilations", dilations)  # type: ignore[arg-type]
            per_block = [pattern] * num_blocks
            config_dilations = pattern
        for d in per_block:
            if len(d) != layers_per_block:
                raise ValueError(
                    f"each dilation pattern needs layers_per_block={layers_per_block} entries, "
                    f"got {d}"
                )

        self.model_name = "dilated_densenet3d"
        self.model_config = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "growth_rate": growth_rate,
            "num_blocks": num_blocks,
            "layers_per_block": layers_per_block,
            "dilations": config_dilations,
            "compression": float(compression),
            "bottleneck_width": bottleneck_width,
            "memory_efficient": bool(memory_efficient),
        }
        self.min_input_size = max(2**b * 2 * max(d) for b, d in enumerate(per_block))
        self.max_input_size = None

        channels = 2 * growth_rate
        trunk: list[tuple[str, nn.Module]] = [
            ("stem", nn.Conv3d(in_channels, channels, kernel_size=3, padding=1, bias=False))
        ]
        for b, block_dilations in enumerate(per_block):
            block = DenseBlock(channels, growth_rate, bottleneck_width, block_dilations,
                               memory_efficient)
            trunk.append((f"block{b + 1}", block))
            channels = block.out_channels
            if b < num_blocks - 1:
                out = max(1, int(channels * compression))
                trunk.append((f"transition{b + 1}", Transition(channels, out)))
                channels = out
        trunk.append(("norm_final", nn.BatchNorm3d(channels)))
        trunk.append(("relu_final", nn.ReLU(inplace=True)))
        self.features = nn.Sequential(OrderedDict(trunk))
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    @property
    def memory_efficient(self) -> bool:
        """Whether dense layers checkpoint their bottleneck when gradients are needed."""
        return bool(self.model_config["memory_efficient"])

    @memory_efficient.setter
    def memory_efficient(self, value: bool) -> None:
        self.model_config["memory_efficient"] = bool(value)
        for m in self.modules():
            if hasattr(m, "memory_efficient") and m is not self:
                m.memory_efficient = bool(value)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """GAP over (d, h, w) then the linear layer.

        Parameters
        ----------
        features
            (N, C, d, h, w) from :meth:`forward_features`.
        pre_logits
            Return the pooled (N, C) vector instead of logits.
        """
        pooled = torch.flatten(nn.functional.adaptive_avg_pool3d(features, 1), 1)
        return pooled if pre_logits else self.classifier(pooled)

    def get_classifier(self) -> nn.Linear:
        """The final linear layer, (num_classes, C) weights."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a Xavier-initialised one with ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.num_features, num_classes).to(
            self.classifier.weight.device
        )
        init_weights(self.classifier)
        self.model_config["num_classes"] = num_classes


@register_model()
def dilated_densenet3d(num_classes: int, **cfg: Any) -> DenseNet3D:
    """3D-Dilated-DenseNet of Gao et al. 2020 (dilations [1, 2, 3, 1] per block by default).

    See :class:`DenseNet3D` for the options.
    """
    return DenseNet3D(num_classes, **cfg)


@register_model()
def densenet3d(num_classes: int, **cfg: Any) -> DenseNet3D:
    """3D-DenseNet baseline of the paper: the same net with every dilation 1.

    Takes the options of :class:`DenseNet3D` except ``dilations``.
    """
    if "dilations" in cfg:
        raise TypeError("densenet3d has no 'dilations' option (every dilation is 1)")
    layers = cfg.get("layers_per_block", 4)
    model = DenseNet3D(num_classes, dilations=[1] * int(layers), **cfg)
    model.model_name = "densenet3d"
    del model.model_config["dilations"]
    return model
