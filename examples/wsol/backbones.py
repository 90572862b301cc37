"""WSOL backbones of the evaluation protocol, built from torchvision's definitions.

* ``vgg16``: VGG16 convolutions without the last max-pooling, then ``conv6`` (3x3, 1024
  channels, ReLU): a 14x14 map at 224; global pooling and a linear classifier.
* ``resnet50``: ResNet50 with stride 1 in ``layer4`` (and in ``layer3`` with the larger
  feature map, the default): 28x28 at 224.
* ``inception_v3``: InceptionV3 up to ``Mixed_6e`` with a stride-1 ``Mixed_6a`` (padding 1),
  then the SPG-style head (two 3x3 convolutions of 1024 channels with ReLU, dropout 0.5
  before each): 14x14 at 224 (28x28 with the larger feature map).
* ``resnet50_se``: ResNet50 with a squeeze-and-excitation module (Hu et al., CVPR 2018;
  reduction 16, ``se.fc1``/``se.fc2`` as 1x1 convolutions) in every bottleneck, applied to
  the residual branch before the addition; otherwise ``resnet50``'s layout (stride 1 in
  ``layer4``, and in ``layer3`` with the larger feature map, the default: 28x28 at 224).
  Randomly initialized: torchvision ships no SE-ResNet50 weights, so ``--pretrained`` takes
  only a file holding every tensor of this body under these names.
* ``mobilenet_v1``: MobileNetV1 (Howard et al., 2017), width 1.0: a 3x3/2 convolution of 32
  channels, then 13 depthwise-separable blocks (``block1`` ... ``block13``: 3x3 depthwise +
  BatchNorm + ReLU, 1x1 pointwise + BatchNorm + ReLU) up to 1024 channels. The stride of
  ``block12`` (the last one) is 1: a 14x14 map at 224 (the CAM layout of Bae et al.), and
  with the larger feature map also ``block6``'s: 28x28. Randomly initialized (no weights in
  torchvision).

Every model is a ``WSOLNet``: ``forward(x)`` returns ``(logits, features)`` where ``features``
is the last map (after its ReLU) that CAM and CREAM read. ImageNet weights come only from a
local file (``torch.load(path, weights_only=True)``); nothing is downloaded.

The training method (``wsol_method``) changes the model for three of them:

* ``adl``: ``camkit.AttentionDropout`` after the modules of ``config.ADL_POSITIONS`` (forward
  hooks: the state-dict keys, hence ImageNet checkpoints, are unchanged; identity in eval).
* ``acol``: ``camkit.ACoLHead`` replaces pooling and classifier, on the protocol's ACoL
  feature map (VGG16 conv5_3, 512 channels: the body without ``conv6``; ResNet50 and
  ResNet50-SE ``layer4``; InceptionV3 ``Mixed_6e``, 768 channels: the body without the SPG
  convolutions; MobileNetV1 ``block13``, 1024 channels). CAM reads branch A
  (``head.branch_a``, classifier ``head.classifier_a``).
* ``spg``: ``camkit.SPGHead`` replaces pooling and classifier on the body's feature map, its
  SPG-B reading the maps of ``config.SPG_STAGES``. CAM reads the body's map with
  ``head.classifier``.

In training these models take the labels, ``forward(x, labels)``, and return the head's
output (``ACoLOutput`` / ``SPGOutput``) in place of the logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception as tv_inception
from torchvision.models import resnet as tv_resnet
from torchvision.models import resnet50 as tv_resnet50
from torchvision.models import vgg as tv_vgg

from camkit import ACoLHead, AttentionDropout, SPGHead, ThresholdedAvgPool

from .config import ADL_POSITIONS, SPG_STAGES, WSOL_DEFAULTS, WSOL_METHODS

__all__ = ["BACKBONE_NAMES", "RANDOM_INIT_BACKBONES", "SqueezeExcitation", "WSOLNet",
           "build_model", "load_imagenet_weights"]

BACKBONE_NAMES = ("vgg16", "resnet50", "inception_v3", "resnet50_se", "mobilenet_v1")

#: Backbones without torchvision ImageNet weights (randomly initialized unless ``--pretrained``
#: gives a file with every tensor of the body).
RANDOM_INIT_BACKBONES = ("resnet50_se", "mobilenet_v1")


class _DenseInceptionB(tv_inception.InceptionB):
    """``Mixed_6a`` with stride 1 and padding 1 in its strided branches and its pooling."""

    def __init__(self, in_channels: int, conv_block: type[nn.Module] | None = None) -> None:
        super().__init__(in_channels, conv_block)
        for block in (self.branch3x3, self.branch3x3dbl_3):
            block.conv.stride = (1, 1)
            block.conv.padding = (1, 1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [branch3x3, branch3x3dbl, branch_pool]


class SqueezeExcitation(nn.Module):
    """Channel gating of Hu et al. (CVPR 2018): ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``.

    ``fc1`` and ``fc2`` are 1x1 convolutions (``channels -> channels // reduction ->
    channels``), the same arithmetic as the paper's fully connected layers.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels < reduction:
            raise ValueError(f"SqueezeExcitation needs channels >= reduction, got channels="
                             f"{channels}, reduction={reduction}")
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(scale), inplace=True)))


class _SEBottleneck(tv_resnet.Bottleneck):
    """torchvision's ResNet bottleneck with ``SqueezeExcitation`` on the residual branch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.se = SqueezeExcitation(self.bn3.num_features, reduction=16)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int,
                  groups: int = 1) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                       groups=groups, bias=False),
        bn=nn.BatchNorm2d(out_channels), relu=nn.ReLU(inplace=True)))


def _depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        depthwise=_conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels),
        pointwise=_conv_bn_relu(in_channels, out_channels, 1, 1)))


#: MobileNetV1 (width 1.0) after its stem: ``(out_channels, stride)`` of each block.
_MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                        (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(True))


_Body = tuple[nn.Module, int, tuple[str, ...], tuple[str, ...]]


def _vgg16_body() -> _Body:
    convs = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=False)
    features = nn.Sequential(*list(convs.children())[:-1])  # drop the last max-pooling
    body = nn.Sequential(OrderedDict(features=features, conv6=_conv_relu(512, 1024)))
    return body, 1024, ("conv6.",), ("conv6.",)


def _resnet_body(net: tv_resnet.ResNet, large_feature_map: bool) -> _Body:
    """The WSOL body of a torchvision ``ResNet``: layer4's stride removed (and layer3's for the
    larger map), the classifier dropped."""
    layers = [net.layer4] + ([net.layer3] if large_feature_map else [])
    for layer in layers:
        first = layer[0]
        first.conv2.stride = (1, 1)
        first.downsample[0].stride = (1, 1)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    body = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in names))
    return body, 2048, (), ("layer4.",)


def _resnet50_body(large_feature_map: bool) -> _Body:
    return _resnet_body(tv_resnet50(weights=None), large_feature_map)


def _resnet50_se_body(large_feature_map: bool) -> _Body:
    return _resnet_body(tv_resnet.ResNet(_SEBottleneck, [3, 4, 6, 3]), large_feature_map)


def _mobilenet_v1_body(large_feature_map: bool) -> _Body:
    parts: list[tuple[str, nn.Module]] = [("stem", _conv_bn_relu(3, 32, 3, 2))]
    channels = 32
    for index, (out_channels, stride) in enumerate(_MOBILENET_V1_BLOCKS, start=1):
        if index == 12 or (index == 6 and large_feature_map):
            stride = 1  # the last stride (and with the larger map, the one before)
        parts.append((f"block{index}", _depthwise_separable(channels, out_channels, stride)))
        channels = out_channels
    body = nn.Sequential(OrderedDict(parts))
    for module in body.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return body, 1024, (), ("block12.", "block13.")


def _inception_body(large_feature_map: bool) -> _Body:
    blocks = [tv_inception.BasicConv2d, tv_inception.InceptionA, _DenseInceptionB,
              tv_inception.InceptionC, tv_inception.InceptionD, tv_inception.InceptionE,
              tv_inception.InceptionAux]
    net = tv_inception.Inception3(aux_logits=False, init_weights=False, inception_blocks=blocks)
    net.Conv2d_1a_3x3.conv.padding = (1, 1)
    pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    parts: list[tuple[str, nn.Module]] = [
        ("Conv2d_1a_3x3", net.Conv2d_1a_3x3), ("Conv2d_2a_3x3", net.Conv2d_2a_3x3),
        ("Conv2d_2b_3x3", net.Conv2d_2b_3x3), ("maxpool1", pool),
        ("Conv2d_3b_1x1", net.Conv2d_3b_1x1), ("Conv2d_4a_3x3", net.Conv2d_4a_3x3),
        ("maxpool2", nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
        ("Mixed_5b", net.Mixed_5b), ("Mixed_5c", net.Mixed_5c), ("Mixed_5d", net.Mixed_5d),
    ]
    if not large_feature_map:
        parts.append(("maxpool3", nn.MaxPool2d(3, stride=2, ceil_mode=True)))
    parts += [(name, getattr(net, name)) for name in
              ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")]
    parts += [("drop1", nn.Dropout(0.5)), ("SPG_A3_1b", _conv_relu(768, 1024)),
              ("drop2", nn.Dropout(0.5)), ("SPG_A3_2b", _conv_relu(1024, 1024))]
    head = ("SPG_A3_1b.", "SPG_A3_2b.")
    return nn.Sequential(OrderedDict(parts)), 1024, head, head


class WSOLNet(nn.Module):
    """Backbone ``body``, then global pooling ``pool`` and linear classifier ``fc``, or a head.

    ``forward(x (Tensor[B, 3, H, W]), labels (Tensor[B]) | None)`` returns ``(logits
    Tensor[B, K], features Tensor[B, C, h, w])``; with an ACoL or SPG ``head`` in training, the
    head's output (``ACoLOutput`` / ``SPGOutput``) in place of the logits. ``features`` is the
    map CAM reads with ``cam_weight()``: the body's map, or ACoL's branch A. ``pool`` is
    ``nn.AdaptiveAvgPool2d(1)``, or ``ThresholdedAvgPool`` for RCAM's TAP (in a head, the
    head's pooling is replaced). ``map_dropout`` (InceptionV3: 0.5) acts on the map before
    pooling, as a dropout before a 1x1-convolution classifier would.

    Args:
        fresh_prefixes: prefixes (within ``body``) of the layers not in ImageNet checkpoints;
            they and ``fc`` are initialized here (Xavier uniform, zero bias).
        fast_prefixes: prefixes (within ``body``) of the layers trained with the larger
            learning rate, besides ``fc`` and ``head`` (the protocol: VGG ``conv6``, ResNet
            ``layer4``, Inception's SPG head).
        head: an ``ACoLHead`` or ``SPGHead`` in place of ``pool`` and ``fc`` (initialized by
            itself).
        adl_after: names of the body's modules ADL follows (``wsol_method`` ``adl``).
        spg_stages: names of the body's modules whose outputs SPG-B reads.
    """

    def __init__(self, body: nn.Module, channels: int, num_classes: int, *,
                 fresh_prefixes: tuple[str, ...], fast_prefixes: tuple[str, ...],
                 tap_theta: float | None = None, map_dropout: float = 0.0,
                 head: ACoLHead | SPGHead | None = None, adl_after: tuple[str, ...] = (),
                 adl_drop_rate: float = WSOL_DEFAULTS.adl_drop_rate,
                 adl_threshold: float = WSOL_DEFAULTS.adl_threshold,
                 spg_stages: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.body = body
        self.channels = channels
        self.map_dropout = nn.Dropout(map_dropout) if map_dropout > 0 else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1) if tap_theta is None else ThresholdedAvgPool(
            tap_theta)
        self.head = head
        if head is None:
            self.fc = nn.Linear(channels, num_classes)
        else:
            if tap_theta is not None:
                head.pool = ThresholdedAvgPool(tap_theta)  # type: ignore[assignment]
            if isinstance(head, ACoLHead):
                self.channels = head.classifier_a.in_channels
        if isinstance(head, SPGHead) and spg_stages is None:
            raise ValueError("an SPG head needs spg_stages, the two body modules SPG-B reads")
        self.fast_prefixes = (*(f"body.{p}" for p in fast_prefixes), "fc.", "head.")
        fresh = (*(f"body.{p}" for p in fresh_prefixes), "fc.")
        for name, module in self.named_modules():
            if f"{name}.".startswith(fresh) and isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.adl = nn.ModuleList(AttentionDropout(adl_drop_rate, adl_threshold)
                                 for _ in adl_after)
        modules = dict(body.named_modules())
        for name, layer in zip(adl_after, self.adl, strict=True):
            modules[name].register_forward_hook(
                lambda _module, _inputs, output, layer=layer: layer(output))
        self.spg_stages = spg_stages
        self._taps: dict[str, Tensor] = {}
        for key, name in zip(("stage1", "stage2"), spg_stages or (), strict=False):
            modules[name].register_forward_hook(self._tap(key))
        if isinstance(head, ACoLHead):
            head.branch_a.register_forward_hook(self._tap("branch_a"))

    def _tap(self, key: str) -> Callable[[nn.Module, object, Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            self._taps[key] = output
        return hook

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Any, Tensor]:
        self._taps.clear()
        features = self.body(x)
        if self.head is None:
            pooled = self.pool(self.map_dropout(features)).flatten(1)
            return self.fc(pooled), features
        if isinstance(self.head, ACoLHead):
            output = self.head(features, labels)
            return output, self._taps.pop("branch_a")
        stages = (self._taps.pop("stage1"), self._taps.pop("stage2"))
        return self.head(features, stages if self.training else None), features

    def cam_layer_names(self) -> tuple[str, str]:
        """``(feature layer, classifier)`` names for ``camkit.attach``."""
        if isinstance(self.head, ACoLHead):
            return "head.branch_a", "head.classifier_a"
        if isinstance(self.head, SPGHead):
            return "body", "head.classifier"
        return "body", "fc"

    def cam_weight(self) -> Tensor:
        """The classifier weight ``Tensor[K, C]`` CAM applies to ``features``."""
        if isinstance(self.head, ACoLHead):
            return self.head.classifier_a.weight.flatten(1)
        if isinstance(self.head, SPGHead):
            return self.head.classifier.weight.flatten(1)
        return self.fc.weight

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone, new)`` parameters: the second group gets the 10x learning rate."""
        slow, fast = [], []
        for name, parameter in self.named_parameters():
            (fast if name.startswith(self.fast_prefixes) else slow).append(parameter)
        return slow, fast


def load_imagenet_weights(body: nn.Module, path: str | Path, *,
                          fresh_prefixes: tuple[str, ...]) -> int:
    """Load a torchvision ImageNet checkpoint into ``body``; returns the tensors loaded.

    Keys of the file that ``body`` lacks (the ImageNet classifier, InceptionV3's ``Mixed_7*``
    and auxiliary head) are ignored; every pretrained tensor of ``body`` (all but the new
    layers, ``fresh_prefixes``) must be present with the right shape, else ``ValueError``
    names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--pretrained file {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means a bad file
        raise ValueError(f"--pretrained file {str(path)!r} is not a readable PyTorch "
                         f"state dict: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"--pretrained file {str(path)!r} must hold a state dict, got "
                         f"{type(state).__name__}")
    own = body.state_dict()
    wanted = [k for k in own if not fresh_prefixes or not k.startswith(fresh_prefixes)]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"--pretrained file {str(path)!r} lacks {len(missing)} tensors of this "
                         f"backbone, e.g. {missing[:3]}; is it the right architecture?")
    wrong = [k for k in wanted if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"--pretrained file {str(path)!r} has tensors of the wrong shape, e.g. "
                         f"{wrong[0]!r}: {tuple(state[wrong[0]].shape)} instead of "
                         f"{tuple(own[wrong[0]].shape)}")
    body.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return len(wanted)


def build_body(name: str, *, large_feature_map: bool) -> _Body:
    """``(body, channels, fresh prefixes, fast prefixes)`` of backbone ``name``."""
    if name == "vgg16":
        return _vgg16_body()
    if name == "resnet50":
        return _resnet50_body(large_feature_map)
    if name == "inception_v3":
        return _inception_body(large_feature_map)
    if name == "resnet50_se":
        return _resnet50_se_body(large_feature_map)
    if name == "mobilenet_v1":
        return _mobilenet_v1_body(large_feature_map)
    raise ValueError(f"--backbone must be one of {BACKBONE_NAMES}, got {name!r}")


def _without(body: nn.Module, names: tuple[str, ...]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((n, m) for n, m in body.named_children() if n not in names))


def build_model(name: str, num_classes: int, *, large_feature_map: bool,
                tap_theta: float | None = None, pretrained: str | Path | None = None,
                wsol_method: str = "cam", adl_drop_rate: float = WSOL_DEFAULTS.adl_drop_rate,
                adl_threshold: float = WSOL_DEFAULTS.adl_threshold,
                acol_threshold: float = WSOL_DEFAULTS.acol_threshold) -> WSOLNet:
    """The WSOL classifier of backbone ``name`` trained by ``wsol_method`` (see the module
    docstring)."""
    if wsol_method not in WSOL_METHODS:
        raise ValueError(f"--wsol-method must be one of {WSOL_METHODS}, got {wsol_method!r}")
    body, channels, fresh, fast = build_body(name, large_feature_map=large_feature_map)
    head: ACoLHead | SPGHead | None = None
    stages: tuple[str, str] | None = None
    if wsol_method == "acol":
        if name == "vgg16":
            body, channels, fresh, fast = _without(body, ("conv6",)), 512, (), ()
        elif name == "inception_v3":
            body = _without(body, ("drop1", "SPG_A3_1b", "drop2", "SPG_A3_2b"))
            channels, fresh, fast = 768, (), ()
        head = ACoLHead(channels, num_classes, erase_threshold=acol_threshold,
                        init="he" if name in ("resnet50", "resnet50_se") else "xavier")
    elif wsol_method == "spg":
        (first, c1), (second, c2) = SPG_STAGES[name]
        if name == "inception_v3" and not large_feature_map:
            first = "maxpool3"  # Mixed_5d after the max-pooling, for 14 x 14 maps
        stages = (first, second)
        head = SPGHead(channels, num_classes, (c1, c2),
                       hidden_channels=1024 if name in ("resnet50", "resnet50_se") else 512)
    if pretrained is not None:
        load_imagenet_weights(body, pretrained, fresh_prefixes=fresh)
    return WSOLNet(body, channels, num_classes, fresh_prefixes=fresh, fast_prefixes=fast,
                   tap_theta=tap_theta,
                   map_dropout=0.5 if name == "inception_v3" and head is None else 0.0,
                   head=head, adl_after=ADL_POSITIONS[name] if wsol_method == "adl" else (),
                   adl_drop_rate=adl_drop_rate, adl_threshold=adl_threshold,
                   spg_stages=stages)
