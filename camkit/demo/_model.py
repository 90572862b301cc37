"""The small CNN classifier trained by the demo (global-average-pooling head, as in CAM)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DemoNet"]


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DemoNet(nn.Module):
    """Conv stages → global pooling → linear classifier.

    Two stride-2 stages give features at a quarter of the input side (24 × 24 for 96-pixel
    images), large enough for the EM re-activation to separate object and background.

    Args:
        num_classes: ``K``.
        width: channels of the first stage; later stages use ``2×`` and ``4×``.

    Shape:
        ``(B, 3, S, S)`` → logits ``(B, K)``; ``features`` gives ``(B, 4·width, S/4, S/4)``.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(3, width, 1),
            _conv_block(width, width, 1),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 2 * width, 1),
            _conv_block(2 * width, 4 * width, 2),
            _conv_block(4 * width, 4 * width, 1),
            _conv_block(4 * width, 4 * width, 1),
        )
        self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
