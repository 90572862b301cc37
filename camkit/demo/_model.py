"""The demo's classifier: a frozen pretrained trunk and a small trained CAM head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camkit.demo._efficientnet import EfficientNetLite0, load_efficientnet_lite0

__all__ = ["DemoHead", "DemoNet"]


class _WithInput(nn.Module):
    """``cat([x, layers(x)], dim=1)``: the trained channels next to the input channels."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


class DemoHead(nn.Module):
    """Two 3×3 conv + ReLU layers → global average pooling → linear classifier.

    CAM and CREAM are formed from the output of ``features``, ``Tensor[B, channels, h, w]``:
    the last convolutional block, as in a VGG or ResNet classifier.

    Args:
        in_channels: channels of the trunk's output.
        num_classes: ``K``.
        channels: channels of the two conv layers.
        trunk_channels_in_cam: return ``cat([input, conv output])`` from ``features`` (an
            earlier design of the demo, kept for its design study; a real classifier has no
            such channels).
        adl: an ``AttentionDropout`` inserted after the first conv block (ADL training).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 96, *,
                 trunk_channels_in_cam: bool = False, adl: nn.Module | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
        if adl is not None:
            layers.append(adl)
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        body = nn.Sequential(*layers)
        self.features = _WithInput(body) if trunk_channels_in_cam else body
        self.feature_channels = channels + (in_channels if trunk_channels_in_cam else 0)
        self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.feature_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class DemoNet(nn.Module):
    """EfficientNet-Lite0's stem and first ``trunk_blocks`` blocks (ImageNet weights, frozen,
    always in eval mode) followed by a trained ``DemoHead``.

    With 5 blocks the trunk has stride 8 and 40 channels: 128-pixel images give 16×16 maps.
    Inputs are RGB scaled to [-1, 1].

    Args:
        num_classes: ``K``.
        head_channels: channels of the head's conv layers.
        trunk_channels_in_cam, adl: see ``DemoHead``.
        trunk_blocks: how many of Lite0's 16 blocks the trunk keeps.
        pretrained: load the packaged ImageNet weights (else random weights, for tests).
        trunk: share an existing trunk (e.g. between two heads) instead of building one.
    """

    def __init__(self, num_classes: int, *, head_channels: int = 96, trunk_blocks: int = 5,
                 pretrained: bool = True, trunk: nn.Sequential | None = None,
                 trunk_channels_in_cam: bool = False, adl: nn.Module | None = None) -> None:
        super().__init__()
        if trunk is None:
            lite = load_efficientnet_lite0() if pretrained else EfficientNetLite0()
            trunk = nn.Sequential(lite._conv_stem, lite._bn0, nn.ReLU6(),
                                  *lite._blocks[:trunk_blocks])
            trunk.requires_grad_(False)
        self.trunk = trunk.eval()
        out_channels = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        self.head = DemoHead(out_channels, num_classes, head_channels,
                             trunk_channels_in_cam=trunk_channels_in_cam, adl=adl)

    def train(self, mode: bool = True) -> DemoNet:
        super().train(mode)
        self.trunk.eval()  # frozen batch-norm statistics
        return self

    @torch.no_grad()
    def trunk_features(self, images: Tensor, batch_size: int = 64) -> Tensor:
        """Trunk outputs of ``uint8 (N, 3, S, S)`` images, computed once for training."""
        return torch.cat([self.trunk(to_input(images[i:i + batch_size]))
                          for i in range(0, images.shape[0], batch_size)])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def to_input(images: Tensor) -> Tensor:
    """``uint8 (B, 3, S, S)`` → float in [-1, 1] (the Lite models' input range)."""
    return images.float().div_(127.5).sub_(1.0)
