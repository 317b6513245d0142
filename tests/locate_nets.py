"""Tiny GAP + linear nets with the tomoclass model interface, for the locate tests."""

import torch
from torch import nn


class PlantedNet(nn.Module):
    """Hand-set detector for bright (positive) and dark (negative) blobs.

    conv 3x3x3 (channel 0: +mean filter, channel 1: -mean filter) -> ReLU -> avg-pool 2
    -> dilated (2) depthwise conv -> ReLU; GAP + linear over [background, bright, dark].
    Channel 0 carries bright density, channel 1 dark density, so a box's mean of channel 0
    (1) says how much bright blob it holds. With ``bias=False`` zero input gives zero
    features, the case where the box classifier and the fully convolutional score agree
    exactly.
    """

    has_gap_head = True
    model_name = "planted"

    def __init__(self, bias: bool = True, gain: float = 100.0, offset: float = -6.0):
        super().__init__()
        self.conv1 = nn.Conv3d(1, 2, 3, padding=1, bias=bias)
        self.pool = nn.AvgPool3d(2)
        self.conv2 = nn.Conv3d(2, 2, 3, padding=2, dilation=2, groups=2, bias=bias)
        self.classifier = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[0] = 1.0 / 27
            self.conv1.weight[1] = -1.0 / 27
            self.conv2.weight.fill_(0.02)
            self.conv2.weight[:, :, 1, 1, 1] = 1.0
            if bias:
                self.conv1.bias.fill_(-0.01)
                self.conv2.bias.fill_(0.01)
            self.classifier.weight.copy_(torch.tensor([[0.0, 0.0], [gain, 0.0], [0.0, gain]]))
            self.classifier.bias.copy_(torch.tensor([0.0, offset, offset]))

    def forward_features(self, x):
        return torch.relu(self.conv2(self.pool(torch.relu(self.conv1(x)))))

    def forward_head(self, f):
        return self.classifier(f.mean(dim=(2, 3, 4)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self):
        return self.classifier


class RandomGapNet(nn.Module):
    """Random small GAP net with batch norm, biases and dilations; stride 4."""

    has_gap_head = True
    model_name = "random_gap"

    def __init__(self, num_classes: int = 3, seed: int = 0, bias: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1, bias=bias),
            nn.BatchNorm3d(4) if bias else nn.Identity(),
            nn.ReLU(),
            nn.AvgPool3d(2),
            nn.Conv3d(4, 4, 3, padding=2, dilation=2, bias=bias),
            nn.ReLU(),
            nn.AvgPool3d(2),
            nn.Conv3d(4, 6, 3, padding=3, dilation=3, bias=bias),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(6, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            if bias:
                bn = self.features[1]
                bn.running_mean.copy_(torch.randn(4, generator=g) * 0.1)
                bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
        self.eval()

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, f):
        return self.classifier(f.mean(dim=(2, 3, 4)))

    def get_classifier(self):
        return self.classifier
