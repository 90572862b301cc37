"""The path from a feature map to the logits: the ``Discovery`` record, the per-vector head
between feature layer and classifier, and the numerical check that the classifier applied to
the pooled features (through the head) reproduces the model's logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._trace import Event, is_token_output, shape_text, shares_memory
from camkit.pooling import ThresholdedAvgPool, thresholded_avg_pool

__all__ = ["HOW_TO", "Discovery", "apply_head", "build_head", "checked_discovery",
           "pool_reproduces"]

#: Modules between the feature map and the classifier that only pool, reshape or regularize.
_PASS_THROUGH = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    ThresholdedAvgPool,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
)
HOW_TO = ("pass feature_layer= and classifier= explicitly (an nn.Module or a dotted name such "
           "as 'layer4' / 'fc')")


def _in_features(module: nn.Linear | nn.Conv2d) -> int:
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels



@dataclass
class Discovery:
    """What ``attach`` found: names, modules and the per-pixel head between them."""

    feature_name: str
    feature_layer: nn.Module
    classifier_name: str
    classifier: nn.Linear | nn.Conv2d
    channels: int
    embed_channels: int
    num_classes: int
    head: list[tuple[nn.Module, tuple[int, ...]]] = field(default_factory=list)
    pool_name: str | None = None
    pooling: str | None = None
    #: Token models: prefix tokens dropped from the feature layer's ``(B, N, C)`` output.
    token_prefix: int | None = None
    #: Token models: the layer whose 4-D output gives the patch grid ``(h, w)`` (its last two
    #: dimensions) at every forward; ``None``: a square grid.
    grid_name: str | None = None
    grid_layer: nn.Module | None = None



def _refuse_head_module(event: Event, features: Tensor, channels: int, feature_name: str,
                        classifier_name: str) -> None:
    """Raise the error for a head module that does not act on one pooled vector."""
    assert event.input is not None
    spatial = features.shape[2:].numel()
    pools_map = event.input.dim() == 4 and event.input.shape[1:] == features.shape[1:]
    out = event.output
    pooled = out is not None and (out.dim() == 2 or (out.dim() == 4 and out.shape[2:].numel() == 1))
    if pools_map and pooled and out is not None and out[0].numel() in (channels, 2 * channels):
        raise ValueError(
            f"module {event.name!r} ({type(event.module).__name__}) pools the feature map "
            f"{feature_name!r} ({shape_text(features)}) in a way CAM cannot express (e.g. timm "
            "global_pool='avgmax', 'catavgmax' or a generalized-mean pooling); CAM needs the "
            "feature map globally average-pooled (max and thresholded average pooling work "
            f"too) and then fed to the linear classifier {classifier_name!r}: use an "
            "average-pooled head (timm: global_pool='avg') and fine-tune the classifier")
    if event.input.dim() == 2 and event.input.shape[1] == channels * spatial > channels:
        raise ValueError(
            f"module {event.name!r} ({type(event.module).__name__}, input "
            f"{shape_text(event.input)}) takes the whole flattened feature map {feature_name!r} "
            f"({channels} channels x {spatial} positions): a fully connected head on a "
            "flattened map, as in torchvision's VGG, has no class activation map, and no "
            "feature_layer= or classifier= can change that. CAM needs a feature map that is "
            "globally average-pooled and then fed to a linear classifier: replace the head by "
            f"nn.AdaptiveAvgPool2d(1) + nn.Flatten() + nn.Linear({channels}, num_classes) "
            "and fine-tune it (the VGG-GAP model of the WSOL literature)")
    raise ValueError(
        f"module {event.name!r} (input {shape_text(event.input)}) between the feature map "
        f"{feature_name!r} ({channels} channels) and the classifier {classifier_name!r} does "
        "not act on one pooled vector; CAM needs the feature map globally pooled and then fed "
        f"to a linear classifier (through modules acting on the pooled vector only); {HOW_TO}")


def build_head(
    events: list[Event], first: int, stop: int, channels: int, classifier_name: str,
    feature_name: str, features: Tensor | None = None,
) -> tuple[list[tuple[nn.Module, tuple[int, ...]]], int]:
    """Per-vector modules between feature map and classifier, with their per-sample inputs.

    ``features``: the ``(B, C, h, w)`` feature map (default: the output of ``events[first]``);
    for token models, modules fed with ``(B, N, C)`` tokens (a pooling module) are skipped.
    """
    head: list[tuple[nn.Module, tuple[int, ...]]] = []
    width = channels
    raw = events[first].output
    features = raw if features is None else features
    assert features is not None
    tokens = raw if raw is not None and raw.dim() == 3 else None
    for event in events[first + 1:stop]:
        if not event.leaf or isinstance(event.module, _PASS_THROUGH):
            continue
        side_branch = (event.input is not None and event.input.dim() == 4
                       and event.input.shape[2:].numel() > 1
                       and not shares_memory(event.input, features))
        if side_branch:  # a feature map other than ours: not on the path to the classifier
            continue
        if tokens is not None and event.input is not None and is_token_output(event.input):
            continue  # acts on the tokens before the pooling (checked numerically)
        if event.input is None or event.output is None:
            raise ValueError(f"module {event.name!r} between {feature_name!r} and "
                             f"{classifier_name!r} does not map a tensor to a tensor; {HOW_TO}")
        per_sample = tuple(event.input.shape[1:])
        if event.input[0].numel() != width or any(s != 1 for s in per_sample[1:]):
            _refuse_head_module(event, features, channels, feature_name, classifier_name)
        head.append((event.module, per_sample))
        width = event.output[0].numel()
    return head, width


def apply_head(features: Tensor, head: list[tuple[nn.Module, tuple[int, ...]]]) -> Tensor:
    """Apply the head modules to every pixel's feature vector: ``(B, C, h, w) -> (B, C', h, w)``."""
    if not head:
        return features
    batch, _, height, width = features.shape
    x = features.permute(0, 2, 3, 1).reshape(batch * height * width, -1)
    for module, per_sample in head:
        x = module(x.reshape(x.shape[0], *per_sample)).reshape(x.shape[0], -1)
    return x.reshape(batch, height, width, -1).permute(0, 3, 1, 2)


def pool_reproduces(features: Tensor, logits: Tensor, found: Discovery,
                    theta: float | None) -> str | None:
    weight = found.classifier.weight.flatten(1)
    bias = getattr(found.classifier, "bias", None)
    pools = {"avg": lambda f: f.mean(dim=(2, 3), keepdim=True),
             "max": lambda f: f.amax(dim=(2, 3), keepdim=True)}
    if theta is not None:
        pools = {"tap": lambda f: thresholded_avg_pool(f, theta), **pools}
    scale = float(logits.abs().max()) + 1e-6
    for kind, pool in pools.items():
        pooled = apply_head(pool(features), found.head).flatten(1)
        if pooled.shape[1] != weight.shape[1]:
            return None
        predicted = F.linear(pooled, weight, bias)
        if torch.allclose(predicted.double(), logits.double(), rtol=1e-3, atol=1e-4 * scale):
            return kind
    return None



def checked_discovery(events: list[Event], f_index: int, c_index: int, features: Tensor,
                      width: int, head: list[tuple[nn.Module, tuple[int, ...]]],
                      num_classes: int) -> Discovery:
    c_event, f_event = events[c_index], events[f_index]
    classifier_module = c_event.module
    assert isinstance(classifier_module, (nn.Linear, nn.Conv2d))  # checked by _pick_classifier
    channels = features.shape[1]
    found = Discovery(f_event.name, f_event.module, c_event.name, classifier_module, channels,
                      _in_features(classifier_module), num_classes, head)
    if found.embed_channels != width:
        through = f" ({width} after the head)" if head else ""
        raise ValueError(f"the classifier {c_event.name!r} takes {found.embed_channels} inputs "
                         f"but the feature map {f_event.name!r} has {channels} channels"
                         f"{through}: is there a global pooling between them? {HOW_TO}")
    return found

