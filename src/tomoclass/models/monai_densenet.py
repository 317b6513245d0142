"""MONAI's ``DenseNet121(spatial_dims=3)`` behind the tomoclass model interface.

The row a generic user would pick instead of the paper's nets (issue 18): the ImageNet
DenseNet-121 layout (blocks of 6, 12, 24, 16 layers, growth rate 32) in 3D, whose stem (a
7³ convolution with stride 2, then a stride-2 max pool) shrinks a 32³ box to 8³ before the
first dense block. MONAI is an optional dependency (extra ``bench``); it is imported only when
the model is built, so ``import tomoclass.models`` works without it, and building the model
without it raises a one-line :class:`~tomoclass.errors.InputError` naming the extra.

The wrapper reuses MONAI's modules unchanged: ``features`` is MONAI's trunk followed by its
head's ReLU (so :meth:`forward_features` is the map the global average pool reads, as CAM's
Eq. 1 needs), and the classifier is MONAI's final linear layer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from tomoclass.errors import InputError
from tomoclass.models.layers import TomoNet, init_weights
from tomoclass.models.registry import register_model

__all__ = ["MONAI_EXTRA", "MonaiDenseNet121", "monai_densenet121", "monai_available"]

#: The pyproject extra that installs MONAI.
MONAI_EXTRA = "bench"


def monai_available() -> bool:
    """True if ``import monai`` works."""
    try:
        import monai  # noqa: F401
    except ImportError:
        return False
    return True


def _out_size(n: int) -> int:
    """Edge of the last feature map for an n³ input (stem conv, stem pool, 3 transitions)."""
    n = (n + 2 * 3 - 7) // 2 + 1  # conv0: kernel 7, stride 2, padding 3
    n = (n + 2 * 1 - 3) // 2 + 1  # pool0: max pool, kernel 3, stride 2, padding 1
    for _ in range(3):  # transitions: average pool, kernel 2, stride 2
        n //= 2
    return n


class MonaiDenseNet121(TomoNet):
    """MONAI ``DenseNet121(spatial_dims=3, in_channels=1)`` with the common interface.

    Parameters
    ----------
    num_classes
        Number of logits.
    in_channels
        Channels of the input volumes.
    dropout_prob
        MONAI's dropout after each dense layer (0 as in its default).

    Raises
    ------
    InputError
        MONAI is not installed (the message names the ``bench`` extra).
    """

    has_gap_head = True
    # MONAI's trunk is used as MONAI built it; the channels-last path of TomoNet is not
    # measured for it.
    channels_last = False

    def __init__(self, num_classes: int, *, in_channels: int = 1,
                 dropout_prob: float = 0.0) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(dropout_prob) < 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1), got {dropout_prob!r}")
        try:
            from monai.networks.nets import DenseNet121
        except ImportError:
            raise InputError(
                "model monai_densenet121 needs MONAI, which is not installed: "
                f"pip install 'tomoclass[{MONAI_EXTRA}]' (or pip install monai)",
                field="model") from None
        self.model_name = "monai_densenet121"
        self.model_config = {"num_classes": num_classes, "in_channels": in_channels,
                             "dropout_prob": float(dropout_prob)}
        net = DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
                          dropout_prob=float(dropout_prob))
        trunk: OrderedDict[str, nn.Module] = OrderedDict(net.features.named_children())
        trunk["relu5"] = net.class_layers.relu
        self.features = nn.Sequential(trunk)
        self.classifier: nn.Linear = net.class_layers.out
        self.num_features = self.classifier.in_features
        self.min_input_size = next(n for n in range(1, 257) if _out_size(n) >= 1)
        self.max_input_size = None

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool, then the linear classifier.

        Parameters
        ----------
        features
            (N, 1024, d, h, w) from :meth:`forward_features`.
        pre_logits
            Return the pooled (N, 1024) features instead of logits.
        """
        x = torch.flatten(nn.functional.adaptive_avg_pool3d(features, 1), 1)
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Linear:
        """The final linear layer (its weights give the CAM of Eq. 1)."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.classifier.in_features, num_classes).to(
            self.classifier.weight.device)
        init_weights(self.classifier)
        self.model_config["num_classes"] = num_classes


@register_model()
def monai_densenet121(num_classes: int, **cfg: Any) -> MonaiDenseNet121:
    """MONAI's 3D DenseNet-121 (optional extra ``bench``; see :class:`MonaiDenseNet121`)."""
    return MonaiDenseNet121(num_classes, **cfg)
