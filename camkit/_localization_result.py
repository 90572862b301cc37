"""The result of ``Localizer.localize`` and its post-processing: checks of classes and box
rules, the per-image box thresholds, and boxes from score maps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from camkit._validation import (
    INDEX_DTYPES,
    check_finite_number,
    check_tensor,
    index_bounds,
)
from camkit.threshold import percentile_threshold

__all__ = ["Localization", "box_thresholds", "boxes_from_scoremap", "check_labels", "check_rule"]

_RULES = ("max", "pas")


def check_rule(rule: object) -> str | float:
    """Check a box rule: ``"max"``, ``"pas"`` or a fraction in [0, 1] (returned as float)."""
    if isinstance(rule, str):
        if rule not in _RULES:
            raise ValueError(f"threshold must be 'max', 'pas' or a number in [0, 1], got {rule!r}")
        return rule
    return check_finite_number(rule, "threshold", low=0.0, high=1.0)


def check_labels(labels: Tensor | int, ref: Tensor, num_classes: int) -> Tensor:
    """Check classes given per image (or one int / 0-D tensor for all) against ``ref``'s batch.

    Returns them as a ``(B,)`` long tensor on ``ref``'s device.
    """
    batch = ref.shape[0]
    if isinstance(labels, int) and not isinstance(labels, bool):
        _check_label_bounds((labels, labels), num_classes)  # before torch.full sees it
        return torch.full((batch,), labels, dtype=torch.long, device=ref.device)
    labels = check_tensor(labels, "labels", ndim=(0, 1), dtypes=INDEX_DTYPES, shape_doc="(B,)")
    if labels.dim() == 1 and labels.shape[0] != batch:
        raise ValueError(f"labels must hold one class per image (B={batch}), got "
                         f"{labels.shape[0]}")
    _check_label_bounds(index_bounds(labels), num_classes)  # one transfer (a sync on CUDA)
    labels = labels.to(ref.device).long()
    return labels.expand(batch) if labels.dim() == 0 else labels


def _check_label_bounds(bounds: tuple[int, int] | None, num_classes: int) -> None:
    """Refuse labels whose ``(min, max)`` leaves ``[0, num_classes)`` (``None``: no labels)."""
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got values in "
                         f"[{bounds[0]}, {bounds[1]}]")


class Localization(NamedTuple):
    """Result of ``Localizer.localize`` for a batch of ``B`` images of size ``H x W``.

    Attributes:
        logits (Tensor[B, K]): the model's logits (eval mode).
        classes (Tensor[B]): the class localized in each image.
        maps (Tensor[B, h, w]): raw maps at feature resolution (CAM, or CREAM's map, or the
            output of ``attach``'s ``localization_map``).
        scoremaps (Tensor[B, H, W]): maps upsampled (bicubic) to the input size, min-max
            normalized to [0, 1].
        boxes (list[numpy.ndarray]): per image, one ``(4,)`` int box ``(x0, y0, x1, y1)``
            (inclusive pixel corners), or ``(n, 4)`` with ``multi_contour=True``; ``None``
            entries when boxes were not requested.
        thresholds (Tensor[B]): the box threshold used per image, as a fraction of the map's
            maximum.
    """

    logits: Tensor
    classes: Tensor
    maps: Tensor
    scoremaps: Tensor
    boxes: list[np.ndarray | None]
    thresholds: Tensor


def boxes_from_scoremap(scoremap: np.ndarray, threshold: float,
                         multi_contour: bool) -> np.ndarray:
    """Boxes of ``scoremap (H, W)`` at ``threshold`` (fraction of the max) via ``camkit.boxes``."""
    from camkit.boxes import boxes_from_scoremap

    boxes = np.asarray(boxes_from_scoremap(scoremap, [threshold], multi_contour=multi_contour)[0])
    return boxes if multi_contour else boxes.reshape(-1, 4)[0]



def box_thresholds(scoremaps: Tensor, rule: str | float, q: float,
                   theta: float | None) -> Tensor:
    """Per-image box thresholds ``(B,)``, as fractions of each map's maximum, for ``rule``.

    ``theta``: the fraction of ``"max"`` (default 0.2) or of the percentile ``q`` of ``"pas"``
    (default 0.35); a number ``rule`` is used as is.
    """
    batch = scoremaps.shape[0]
    if not isinstance(rule, str):
        return scoremaps.new_full((batch,), rule, dtype=torch.float32)
    if rule == "max":
        theta = 0.2 if theta is None else theta
        return scoremaps.new_full((batch,), theta, dtype=torch.float32)
    if batch == 0:
        return scoremaps.new_zeros((0,), dtype=torch.float32)
    theta = 0.35 if theta is None else theta
    tau = percentile_threshold(scoremaps.float(), q, theta)
    peak = scoremaps.float().flatten(1).amax(dim=1)
    # Boxes use fractions of the map's maximum (1 after normalization; 0 for flat maps).
    return torch.where(peak > 0, tau / peak.clamp_min(1e-12), tau).clamp(0.0, 1.0)
