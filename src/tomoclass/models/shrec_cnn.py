"""SHREC-CNN: the SHREC'19 CNN baseline of the paper (C3D-style "CB3D" of Che et al. 2018).

Eight 3x3x3 conv layers with ReLU (64, 128, 256, 256, 512, 512, 512, 512 filters), five
max-pools (the first, (1, 2, 2), spares the z axis), then two fully connected hidden layers
with ReLU and 50 % dropout and a final linear classification layer (softmax in the loss).
Convs and hidden FC layers are He-initialised (no batch norm), the classifier Xavier.

All pools use ``ceil_mode`` so that 28^3 (the report's input) and 32^3 (the paper's) give
the same 512 x 2 x 1 x 1 map before the first FC layer; any edge from 17 to 32 voxels does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from tomoclass.models.layers import TomoNet, init_weights
from tomoclass.models.registry import register_model

#: (filters of the convs, pool kernel after them) per stage.
_STAGES: tuple[tuple[tuple[int, ...], tuple[int, int, int]], ...] = (
    ((64,), (1, 2, 2)),
    ((128,), (2, 2, 2)),
    ((256, 256), (2, 2, 2)),
    ((512, 512), (2, 2, 2)),
    ((512, 512), (2, 2, 2)),
)


class ShrecCNN(TomoNet):
    """The SHREC'19 CNN baseline (Grad-CAM, not Eq. 1 CAM, explains it: no GAP head).

    Parameters
    ----------
    num_classes
        Number of logits.
    in_channels
        Channels of the input volumes.
    fc_width
        Width of both hidden FC layers (1024 in the report's figure, 4096 in its code).
    dropout
        Dropout probability after each hidden FC layer.
    head_init
        ``"xavier"`` (default) or ``"zeros"``: the classifier layer's initial weights. Under
        He init the initial logits are large and nearly the same for every box (on small12's
        boxes: mean |logit| 2.1, s.d. across boxes 0.26); Adam's first steps then shrink the
        net until its output no longer depends on the input, a plateau at ln K that 476 steps
        did not leave (issue 18, ``benchmarks/results/small12_shrec_probes/``). ``"zeros"``
        starts every logit at 0 (loss ln K) without that pressure.

    Notes
    -----
    :meth:`forward_features` returns the ReLU output of the last conv (before pool 5), e.g.
    (N, 512, 4, 2, 2) for 32^3 input; :meth:`forward_head` applies pool 5 and the FC layers.
    """

    has_gap_head = False

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 1,
        fc_width: int = 1024,
        dropout: float = 0.5,
        head_init: str = "xavier",
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("fc_width", fc_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if head_init not in ("xavier", "zeros"):
            raise ValueError(f"head_init must be 'xavier' or 'zeros', got {head_init!r}")
        self.model_name = "shrec_cnn"
        self.model_config = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "fc_width": fc_width,
            "dropout": float(dropout),
            "head_init": head_init,
        }
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        n_conv = 0
        for s, (filters, pool) in enumerate(_STAGES):
            for f in filters:
                n_conv += 1
                layers[f"conv{n_conv}"] = nn.Conv3d(channels, f, kernel_size=3, padding=1)
                layers[f"relu{n_conv}"] = nn.ReLU(inplace=True)
                channels = f
            if s < len(_STAGES) - 1:
                layers[f"pool{s + 1}"] = nn.MaxPool3d(pool, stride=pool, ceil_mode=True)
        self.features = nn.Sequential(layers)
        self.pool5 = nn.MaxPool3d(_STAGES[-1][1], stride=_STAGES[-1][1], ceil_mode=True)
        self.num_features = channels
        self.reference_input_size = 32
        self._flat_shape = self._pooled_shape((32, 32, 32))
        flat = channels * math.prod(self._flat_shape)
        self.fc1 = nn.Linear(flat, fc_width)
        self.fc2 = nn.Linear(fc_width, fc_width)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(fc_width, num_classes)
        self.min_input_size, self.max_input_size = self._size_range()
        init_weights(self)
        # He (Kaiming) initialisation for the layers followed by ReLU. The paper's Xavier
        # statement is about its DenseNets, whose batch norm rescales every layer; this net has
        # none, and under Xavier the signal shrinks ~15x over the 8 convs, so that the initial
        # logits hardly depend on the input. What decides whether it trains is the learning
        # rate, not the init (benchmarks/shrec_init_check.py, results/shrec_init_*.json: Adam at
        # 1e-3 per batch of 16 blows up at step 2 and stays at chance with either init; at 1e-4
        # both learn). The classifier stays Xavier.
        for m in (*self.features.modules(), self.fc1, self.fc2):
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if head_init == "zeros":
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)

    @staticmethod
    def _pooled_shape(spatial: tuple[int, int, int]) -> tuple[int, ...]:
        """Spatial shape after all five ceil-mode pools (convs keep the size)."""
        out = list(spatial)
        for _, pool in _STAGES:
            out = [math.ceil(n / k) for n, k in zip(out, pool, strict=True)]
        return tuple(out)

    def _size_range(self) -> tuple[int, int]:
        """Edge lengths n for which an n^3 input gives the FC layer's expected map."""
        ok = [n for n in range(1, 257) if self._pooled_shape((n, n, n)) == self._flat_shape]
        return min(ok), max(ok)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool 5, FC-ReLU-dropout twice, then the classifier.

        Parameters
        ----------
        features
            (N, 512, d, h, w) from :meth:`forward_features`.
        pre_logits
            Return the (N, fc_width) activations before the classifier instead of logits.
        """
        x = torch.flatten(self.pool5(features), 1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Linear:
        """The final linear layer."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a Xavier-initialised one with ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.classifier.in_features, num_classes).to(
            self.classifier.weight.device
        )
        init_weights(self.classifier)
        self.model_config["num_classes"] = num_classes


@register_model()
def shrec_cnn(num_classes: int, **cfg: Any) -> ShrecCNN:
    """SHREC'19 CNN baseline (see :class:`ShrecCNN`), for 28^3 or 32^3 subtomograms."""
    return ShrecCNN(num_classes, **cfg)
