"""Self-produced Guidance, SPG (Zhang et al., ECCV 2018).

The classifier (SPG-A4) after global average pooling, two SPG-B branches on two intermediate
feature maps sharing their last layers, and SPG-C on the classifier's input. Each auxiliary map
learns, by a binary cross-entropy on its confident pixels only, a foreground/background mask
cut from another map by a ``(high, low)`` pair of thresholds; the evaluated map is the
classifier's map of the class (plain CAM). The math follows the evaluation protocol's training
code (clovaai/wsolevaluation, ``wsol/method/spg.py`` and its backbones); ``docs/algorithms.md``
section 5 specifies every choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._heads import check_classes, check_init, conv_relu, initialize, pick
from camkit._validation import check_finite_number, check_positive_int, check_size, check_tensor
from camkit.cam import normalize_map

__all__ = ["SPGHead", "SPGOutput", "spg_guidance_mask", "spg_loss"]

#: Value of the pixels ``spg_guidance_mask`` leaves unlabeled (the reference marks them 255).
IGNORE = -1.0
#: ``spg_loss``'s ``(high, low)`` pairs: the protocol's ``spg_threshold_{1,2,3}{h,l}``.
SPG_THRESHOLDS = ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))


def spg_guidance_mask(scores: Tensor, high: float, low: float, *, min_foreground: int = 30,
                      fallback_ratio: float = 0.7) -> Tensor:
    """A self-produced guidance mask: 1 foreground, 0 background, ``IGNORE`` (-1) unlabeled.

    Per image, foreground is ``scores > high``; when fewer than ``min_foreground`` pixels pass,
    it is ``scores > fallback_ratio * max(scores)`` instead. Background, ``scores < low``, is
    applied last and wins where both hold (as in the reference).

    Args:
        scores (Tensor[B, 1, H, W]): maps in [0, 1] (a normalized CAM or a sigmoid); no
            gradient flows through the mask.
        high, low: the pair of thresholds, each in [0, 1].
        min_foreground: the pixel count under which the fallback applies (30 in the protocol's
            and the authors' code, counted at the mask's resolution, 224 x 224 there).
        fallback_ratio: fraction of the image's maximum for the fallback (0.7 there).

    Returns:
        Tensor[B, 1, H, W] in ``scores``' dtype. NaN scores stay unlabeled.
    """
    check_tensor(scores, "scores", ndim=4, shape_doc="(B, 1, H, W)")
    if scores.shape[1] != 1:
        raise ValueError(f"scores must have one channel (B, 1, H, W), got shape "
                         f"{tuple(scores.shape)}")
    high = check_finite_number(high, "high", low=0.0, high=1.0)
    low = check_finite_number(low, "low", low=0.0, high=1.0)
    min_foreground = check_positive_int(min_foreground, "min_foreground", allow_zero=True)
    fallback_ratio = check_finite_number(fallback_ratio, "fallback_ratio", low=0.0, high=1.0)
    scores = scores.detach()
    foreground = scores > high
    few = (foreground.flatten(1).sum(dim=1) < min_foreground).view(-1, 1, 1, 1)
    if scores.numel():
        peak = scores.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        foreground = torch.where(few, scores > fallback_ratio * peak, foreground)
    mask = torch.where(foreground, torch.ones_like(scores), torch.full_like(scores, IGNORE))
    return mask.masked_fill(scores < low, 0.0)


def _masked_bce(logits: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy with logits, averaged over the pixels ``mask`` labels (0 if none).

    Counting by weights (no boolean indexing) keeps the step free of host synchronization.
    """
    labeled = (mask >= 0).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, mask.clamp(0.0, 1.0).to(logits.dtype),
                                                reduction="none")
    return (losses * labeled).sum() / labeled.sum().clamp_min(1.0)


class SPGOutput(NamedTuple):
    """``SPGHead``'s training-mode output for ``B`` images, ``K`` classes.

    Attributes:
        logits (Tensor[B, K]): the classifier's logits.
        class_maps (Tensor[B, K, h, w]): the classifier at every position (SPG-A4's maps).
        map_b1 (Tensor[B, 1, h1, w1]): SPG-B's map (logits) from the first stage features.
        map_b2 (Tensor[B, 1, h2, w2]): SPG-B's map from the second stage features.
        map_c (Tensor[B, 1, h, w]): SPG-C's map from the classifier's input.
    """

    logits: Tensor
    class_maps: Tensor
    map_b1: Tensor
    map_b2: Tensor
    map_c: Tensor


def _check_thresholds(value: object) -> tuple[tuple[float, float], ...]:
    if not (isinstance(value, (tuple, list)) and len(value) == 3 and all(
            isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in value)):
        raise TypeError(f"thresholds must be three (high, low) pairs, got {value!r}")
    return tuple((check_finite_number(high, f"thresholds[{i}][0]", low=0.0, high=1.0),
                  check_finite_number(low, f"thresholds[{i}][1]", low=0.0, high=1.0))
                 for i, (high, low) in enumerate(value))


def spg_loss(output: SPGOutput, labels: Tensor, *,
             thresholds: Sequence[Sequence[float]] = SPG_THRESHOLDS,
             size: int | tuple[int, int] = 224, min_foreground: int = 30,
             fallback_ratio: float = 0.7) -> Tensor:
    """The protocol's SPG loss: classification plus three self-produced guidance terms.

    Every map is upsampled (bilinear, ``align_corners=False``) to ``size``. With ``attention``
    the min-max normalized class map of ``labels`` and ``(h_i, l_i) = thresholds[i]``::

        CE(logits, labels)
        + BCE(B2, mask(attention, h_1, l_1))
        + BCE(B1, mask(sigmoid(B2), h_2, l_2))
        + BCE(C,  mask((sigmoid(B1) + sigmoid(B2)) / 2, h_3, l_3))

    where ``mask`` is ``spg_guidance_mask`` and each BCE (with logits) averages over the
    labeled pixels of the whole batch (0 when there are none, where the reference gives NaN).
    Masks carry no gradient.

    Args:
        output: ``SPGHead``'s training-mode output.
        labels (Tensor[B]): integer class labels (the class of ``attention``).
        thresholds: three ``(high, low)`` pairs, each value in [0, 1]; the protocol's defaults
            ``((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))`` (the authors' code uses 0.05 for the
            first low threshold).
        size: the masks' resolution, an int or ``(H, W)`` (224, the protocol's crop, fixed
            there whatever the input).
        min_foreground, fallback_ratio: as ``spg_guidance_mask`` (30, 0.7).

    Returns:
        Tensor[]: the scalar loss.
    """
    if not isinstance(output, SPGOutput):
        raise TypeError(f"output must be an SPGOutput (SPGHead's output in training mode), got "
                        f"{type(output).__name__}")
    batch, num_classes = output.logits.shape
    labels = check_classes(labels, "labels", batch, num_classes).to(output.logits.device)
    pairs = _check_thresholds(thresholds)
    size = check_size(size, "size")

    def up(maps: Tensor) -> Tensor:
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)

    def mask(scores: Tensor, pair: tuple[float, float]) -> Tensor:
        return spg_guidance_mask(scores, *pair, min_foreground=min_foreground,
                                 fallback_ratio=fallback_ratio)

    # Bilinear upsampling acts per channel: picking the class first gives the same map.
    attention = normalize_map(up(pick(output.class_maps.detach(), labels).unsqueeze(1)))
    b1, b2, c = up(output.map_b1), up(output.map_b2), up(output.map_c)
    prob_b1, prob_b2 = torch.sigmoid(b1.detach()), torch.sigmoid(b2.detach())
    return (F.cross_entropy(output.logits, labels)
            + _masked_bce(b2, mask(attention, pairs[0]))
            + _masked_bce(b1, mask(prob_b2, pairs[1]))
            + _masked_bce(c, mask((prob_b1 + prob_b2) / 2.0, pairs[2])))


class SPGHead(nn.Module):
    """SPG's classifier (SPG-A4), SPG-B and SPG-C on a backbone's feature maps.

    * ``classifier``: 1x1 convolution after global average pooling (the logits);
    * SPG-B: ``side_b1`` and ``side_b2`` (``conv3x3 → ReLU``, ``hidden_channels`` wide) on the
      two intermediate stage features, then the shared ``shared_b`` (``conv3x3 → ReLU →
      conv1x1`` to one channel);
    * SPG-C: ``branch_c`` (``conv3x3 → ReLU → conv1x1``, ``c_hidden_channels`` wide) on the
      classifier's input.

    The backbone keeps the rest of SPG-A. The protocol taps, for (stage 1, stage 2,
    ``features``): VGG16 conv4 block (after a 3x3/2 max-pool for 14 x 14 maps), conv5 block,
    two more 3x3 convolutions (512, 512, 512 channels); ResNet50 ``layer3[0]``,
    ``layer3[1:]``, ``layer4`` (1024, 1024, 2048; ``hidden_channels=1024``); InceptionV3
    ``Mixed_5d`` (after the max-pool for 14 x 14 maps), ``Mixed_6d``, the two 1024-channel
    convolutions after ``Mixed_6e`` (288, 768, 1024).

    The evaluated map is the classifier's map of the class, i.e. CAM (plus the class's bias):
    ``camkit.attach(model, feature_layer="<last backbone layer>",
    classifier="<head>.classifier")`` gives CAM, RCAM and CREAM; ``localization_map`` gives the
    protocol's map.

    Args:
        in_channels: channels of ``features``, the classifier's input.
        num_classes: number of classes ``K``.
        stage_channels: ``(C1, C2)``, channels of the two stage feature maps.
        hidden_channels: width of SPG-B (512 for VGG16 and InceptionV3, 1024 for ResNet50).
        c_hidden_channels: width of SPG-C (512 in the protocol).
        init: as ``ACoLHead`` (``"xavier"``, the protocol's for every SPG backbone).

    Shape:
        ``forward(features (B, C, h, w), stage_features ((B, C1, h1, w1), (B, C2, h2, w2)))``
        → logits ``(B, K)`` in eval mode (``stage_features`` unused, may be None),
        ``SPGOutput`` in training.
    """

    def __init__(self, in_channels: int, num_classes: int, stage_channels: Sequence[int], *,
                 hidden_channels: int = 512, c_hidden_channels: int = 512,
                 init: str = "xavier") -> None:
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if not (isinstance(stage_channels, (tuple, list)) and len(stage_channels) == 2):
            raise TypeError(f"stage_channels must be a pair (C1, C2) of ints, got "
                            f"{stage_channels!r}")
        first, second = (check_positive_int(c, "stage_channels") for c in stage_channels)
        hidden = check_positive_int(hidden_channels, "hidden_channels")
        c_hidden = check_positive_int(c_hidden_channels, "c_hidden_channels")
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.side_b1 = nn.Sequential(*conv_relu(first, hidden))
        self.side_b2 = nn.Sequential(*conv_relu(second, hidden))
        self.shared_b = nn.Sequential(*conv_relu(hidden, hidden), nn.Conv2d(hidden, 1, 1))
        self.branch_c = nn.Sequential(*conv_relu(in_channels, c_hidden),
                                      nn.Conv2d(c_hidden, 1, 1))
        initialize(self, check_init(init))

    def forward(self, features: Tensor,
                stage_features: Sequence[Tensor] | None = None) -> Tensor | SPGOutput:
        """``features (Tensor[B, C, h, w])`` → logits ``Tensor[B, K]`` (eval) or ``SPGOutput``.

        ``stage_features``: the two intermediate maps SPG-B reads, needed in training.
        """
        check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
        logits = self.classifier(self.pool(features)).flatten(1)
        if not self.training:
            return logits
        if not (isinstance(stage_features, (tuple, list)) and len(stage_features) == 2):
            raise ValueError("stage_features must be the two intermediate feature maps SPG-B "
                             f"reads in training, got {type(stage_features).__name__}")
        first = check_tensor(stage_features[0], "stage_features[0]", ndim=4,
                             shape_doc="(B, C1, h1, w1)")
        second = check_tensor(stage_features[1], "stage_features[1]", ndim=4,
                              shape_doc="(B, C2, h2, w2)")
        return SPGOutput(logits, self.classifier(features),
                         self.shared_b(self.side_b1(first)), self.shared_b(self.side_b2(second)),
                         self.branch_c(features))

    def localization_map(self, features: Tensor, classes: Tensor) -> Tensor:
        """The protocol's SPG map: the classifier's map of each image's class.

        Args:
            features (Tensor[B, C, h, w]): the classifier's input.
            classes (Tensor[B]): the class to localize in each image.

        Returns:
            Tensor[B, h, w], raw (CAM plus the class's bias) at feature resolution.
        """
        check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
        classes = check_classes(classes, "classes", features.shape[0], self.num_classes)
        return pick(self.classifier(features), classes)
