"""Adversarial Complementary Learning, ACoL (Zhang et al., CVPR 2018).

Two parallel classifiers on the same feature map. Classifier B sees the features with the
positions erased where classifier A's map of the image's class (min-max normalized) reaches
``erase_threshold``, so it must find the object's other parts; the loss is the sum of both
cross-entropies, and the evaluated map is the maximum of both normalized maps. The math follows
the evaluation protocol's training code (clovaai/wsolevaluation, ``wsol/method/acol.py`` and
its backbones); ``docs/algorithms.md`` section 5 specifies every choice.

Each branch ends in global average pooling and a 1x1-convolution classifier, so its logits are
``classifier(avgpool(F))``: camkit's CAM machinery applies to branch A as to any CAM classifier
(``attach`` finds it by itself, or takes ``feature_layer=`` and ``classifier=``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._checks import check_bool
from camkit._heads import check_classes, check_init, conv_relu, initialize, pick
from camkit._validation import check_finite_number, check_positive_int, check_tensor
from camkit.cam import normalize_map

__all__ = ["ACoLHead", "ACoLOutput", "acol_loss", "erase_by_cam"]


def erase_by_cam(features: Tensor, cam: Tensor, threshold: float = 0.7, *,
                 inclusive: bool = True) -> Tensor:
    """Zero the feature positions where the min-max normalized ``cam`` reaches ``threshold``.

    Args:
        features (Tensor[B, C, h, w]): the feature map classifier B reads.
        cam (Tensor[B, h, w]): one map per image at feature resolution (ACoL: classifier A's
            map of the image's class). Min-max normalized per image first (``normalize_map``:
            a constant map becomes zeros where the reference would divide by zero); it carries
            no gradient, as the reference detaches it.
        threshold: in [0, 1]; 0.7 is the protocol's ``acol_threshold``, 0.6 the ACoL authors'
            training scripts.
        inclusive: ``True`` erases scores ``>= threshold`` (``torch.ge`` in the protocol's and
            the authors' code: the peak is erased even at threshold 1); ``False`` erases
            scores ``> threshold`` only (the paper's "larger than", nothing at 1).

    Returns:
        Tensor[B, C, h, w] in ``features``' dtype: ``features`` times the 0/1 keep mask,
        broadcast over channels; gradients reach the kept positions.
    """
    check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
    check_tensor(cam, "cam", ndim=3, shape_doc="(B, h, w)")
    batch, _, height, width = features.shape
    if tuple(cam.shape) != (batch, height, width):
        raise ValueError(f"cam must have the batch and spatial size of features (B, h, w) = "
                         f"({batch}, {height}, {width}), got {tuple(cam.shape)}")
    threshold = check_finite_number(threshold, "threshold", low=0.0, high=1.0)
    inclusive = check_bool(inclusive, "inclusive")
    scores = normalize_map(cam.detach())
    erased = scores >= threshold if inclusive else scores > threshold
    return features * (~erased).unsqueeze(1).to(features.dtype)


class ACoLOutput(NamedTuple):
    """``ACoLHead``'s training-mode output for ``B`` images, ``K`` classes.

    Attributes:
        logits (Tensor[B, K]): classifier A's logits (the model's logits).
        logits_b (Tensor[B, K]): classifier B's logits, from the erased features.
        maps_a (Tensor[B, K, h, w]): classifier A's class maps (1x1 classifier at every position).
        maps_b (Tensor[B, K, h, w]): classifier B's class maps.
        classes (Tensor[B]): the class whose map of A erased each image's features.
    """

    logits: Tensor
    logits_b: Tensor
    maps_a: Tensor
    maps_b: Tensor
    classes: Tensor


def acol_loss(output: ACoLOutput, labels: Tensor) -> Tensor:
    """``CE(logits, labels) + CE(logits_b, labels)`` (each a batch mean), the protocol's ACoL loss.

    Args:
        output: ``ACoLHead``'s training-mode output.
        labels (Tensor[B]): integer class labels.

    Returns:
        Tensor[]: the scalar loss.
    """
    if not isinstance(output, ACoLOutput):
        raise TypeError(f"output must be an ACoLOutput (ACoLHead's output in training mode), "
                        f"got {type(output).__name__}")
    batch, num_classes = output.logits.shape
    labels = check_classes(labels, "labels", batch, num_classes).to(output.logits.device)
    return F.cross_entropy(output.logits, labels) + F.cross_entropy(output.logits_b, labels)


class ACoLHead(nn.Module):
    """ACoL's two parallel classifiers on a backbone's feature map.

    Each branch is ``conv3x3 → ReLU → conv3x3 → ReLU`` (``hidden_channels`` wide) followed by
    global average pooling and a 1x1-convolution classifier (``classifier_a``,
    ``classifier_b``), the protocol's ``classifier_A`` / ``classifier_B``. In training,
    branch B reads ``erase_by_cam(features, A's map of the class, erase_threshold)``, the class
    being ``labels`` (the protocol passes the ground truth) or A's top-1 prediction. In eval
    mode only branch A runs: its logits are the model's.

    CAM, RCAM and CREAM apply to branch A: ``camkit.attach(model,
    feature_layer="<head>.branch_a", classifier="<head>.classifier_a")`` (discovery finds the
    same pair); ``localization_map`` gives the map the protocol evaluates (both branches).

    Args:
        in_channels: channels of the backbone's feature map (VGG16 512, ResNet50 2048,
            InceptionV3 768 in the protocol).
        num_classes: number of classes ``K``.
        hidden_channels: width of each branch's two convolutions (1024 in the protocol).
        erase_threshold, inclusive: as ``erase_by_cam``'s ``threshold`` (0.7) and ``inclusive``.
        init: ``"xavier"`` (Xavier-uniform weights, the protocol's VGG16 and InceptionV3) or
            ``"he"`` (He-normal fan-out, its ResNet50); biases zero.

    Shape:
        ``forward(features (B, C, h, w), labels (B,) or None)`` → logits ``(B, K)`` in eval mode,
        ``ACoLOutput`` in training.
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden_channels: int = 1024,
                 erase_threshold: float = 0.7, inclusive: bool = True,
                 init: str = "xavier") -> None:
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        hidden = check_positive_int(hidden_channels, "hidden_channels")
        self.erase_threshold = check_finite_number(erase_threshold, "erase_threshold",
                                                   low=0.0, high=1.0)
        self.inclusive = check_bool(inclusive, "inclusive")
        self.branch_a = nn.Sequential(*conv_relu(in_channels, hidden), *conv_relu(hidden, hidden))
        self.classifier_a = nn.Conv2d(hidden, num_classes, 1)
        self.branch_b = nn.Sequential(*conv_relu(in_channels, hidden), *conv_relu(hidden, hidden))
        self.classifier_b = nn.Conv2d(hidden, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        initialize(self, check_init(init))

    def _branch_b(self, features: Tensor, map_a: Tensor) -> Tensor:
        erased = erase_by_cam(features, map_a, self.erase_threshold, inclusive=self.inclusive)
        return self.branch_b(erased)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor | ACoLOutput:
        """``features (Tensor[B, C, h, w])`` → logits ``Tensor[B, K]`` (eval) or ``ACoLOutput``.

        ``labels (Tensor[B])`` chooses the class map that erases (training only; default:
        branch A's top-1 class).
        """
        check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
        hidden_a = self.branch_a(features)
        # Pooling before the 1x1 classifier equals pooling its maps, and lets ``attach`` see
        # the classifier produce the logits.
        logits = self.classifier_a(self.pool(hidden_a)).flatten(1)
        if not self.training:
            return logits
        classes = logits.detach().argmax(dim=1) if labels is None else check_classes(
            labels, "labels", features.shape[0], self.num_classes).to(features.device)
        maps_a = self.classifier_a(hidden_a)
        hidden_b = self._branch_b(features, pick(maps_a, classes))
        logits_b = self.classifier_b(self.pool(hidden_b)).flatten(1)
        return ACoLOutput(logits, logits_b, maps_a, self.classifier_b(hidden_b), classes)

    def localization_map(self, features: Tensor, classes: Tensor) -> Tensor:
        """The protocol's ACoL map: ``max(minmax(A_k), minmax(B_k))`` for each image's class.

        Branch B reads the features erased by ``A_k``, as in training. Call it in eval mode
        (and under ``torch.no_grad()`` for inference).

        Args:
            features (Tensor[B, C, h, w]): the backbone's feature map.
            classes (Tensor[B]): the class to localize in each image (the protocol: ground
                truth).

        Returns:
            Tensor[B, h, w] in [0, 1] at feature resolution.
        """
        check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
        classes = check_classes(classes, "classes", features.shape[0], self.num_classes)
        map_a = pick(self.classifier_a(self.branch_a(features)), classes)
        map_b = pick(self.classifier_b(self._branch_b(features, map_a)), classes)
        return torch.maximum(normalize_map(map_a), normalize_map(map_b))

    def extra_repr(self) -> str:
        return f"erase_threshold={self.erase_threshold}, inclusive={self.inclusive}"
