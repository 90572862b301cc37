"""Class activation maps (CAM) and their post-processing.

``class_activation_map`` forms ``M = sum_c W[k, c] * F[c]`` for one class per image;
``upsample_map`` and ``normalize_map`` follow the reference evaluation protocol's order
(bicubic upsample to the evaluation size, then per-image min-max to [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._validation import (
    INDEX_DTYPES,
    check_same_device,
    check_size,
    check_tensor,
    compute_dtype,
)

__all__ = [
    "ClassActivationMap",
    "NegativeWeightClamp",
    "class_activation_map",
    "normalize_map",
    "upsample_map",
]


def _classifier_matrix(weight: object, name: str) -> Tensor:
    """View a linear ``(K, C)`` or 1x1-conv ``(K, C, 1, 1)`` weight as ``(K, C)``."""
    weight = check_tensor(weight, name, ndim=(2, 4), shape_doc="(K, C) or (K, C, 1, 1)")
    if weight.dim() == 4:
        if weight.shape[2:] != (1, 1):
            raise ValueError(
                f"{name} must be a linear (K, C) or 1x1 conv (K, C, 1, 1) weight, "
                f"got shape {tuple(weight.shape)}"
            )
        weight = weight.flatten(1)
    return weight


def _check_classes(classes: Tensor | int, batch: int, num_classes: int, ref: Tensor) -> Tensor:
    """Turn ``classes`` into a ``(B,)`` int64 tensor on ``ref``'s device, checking its range."""
    if isinstance(classes, int) and not isinstance(classes, bool):
        classes = torch.full((batch,), classes, dtype=torch.long, device=ref.device)
    classes = check_tensor(classes, "classes", ndim=(0, 1), dtypes=INDEX_DTYPES,
                           shape_doc="(B,)")
    check_same_device(ref, "features", classes=classes)
    if classes.dim() == 0:
        classes = classes.expand(batch)
    if classes.shape[0] != batch:
        raise ValueError(
            f"classes must hold one class per image (B={batch}), got {classes.shape[0]} entries"
        )
    if classes.numel() > 0:
        low, high = int(classes.min()), int(classes.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"classes must lie in [0, {num_classes - 1}] (K={num_classes} classes), "
                f"got values in [{low}, {high}]"
            )
    return classes.long()


def class_activation_map(
    features: Tensor,
    weight: Tensor,
    classes: Tensor | int,
    *,
    clamp_negative: bool = False,
) -> Tensor:
    """Class activation maps of one class per image.

    Args:
        features (Tensor[B, C, h, w]): feature maps of the last convolutional block.
        weight (Tensor[K, C] or Tensor[K, C, 1, 1]): classifier weight (bias is not used).
        classes (Tensor[B] or int): class index per image (mixed classes allowed), or one
            index for the whole batch.
        clamp_negative: negative weight clamping (NWC, Bae et al. 2020): use ``max(W, 0)``.

    Returns:
        Tensor[B, h, w]: ``sum_c W[classes[b], c] * features[b, c]``, in ``features``' dtype
        (computed in float32 for float16/bfloat16 inputs).
    """
    check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
    weight = _classifier_matrix(weight, "weight")
    check_same_device(features, "features", weight=weight)
    if weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"weight must have C={features.shape[1]} columns to match features, "
            f"got shape {tuple(weight.shape)}"
        )
    classes = _check_classes(classes, features.shape[0], weight.shape[0], features)
    dtype = compute_dtype(torch.promote_types(features.dtype, weight.dtype))
    selected = weight[classes].to(dtype)
    if clamp_negative:
        selected = selected.clamp_min(0)
    maps = torch.einsum("bc,bchw->bhw", selected, features.to(dtype))
    return maps.to(features.dtype)


def normalize_map(maps: Tensor) -> Tensor:
    """Per-map min-max normalization to [0, 1] over the last two dimensions.

    A constant map, or one holding any NaN or infinity, becomes all zeros (the reference
    protocol's rule for constant and NaN maps, extended to infinities so the output is always
    finite).

    Args:
        maps (Tensor[..., H, W]): floating-point maps, at least 2-D.

    Returns:
        Tensor[..., H, W]: normalized maps in ``maps``' dtype.
    """
    check_tensor(maps, "maps")
    if maps.dim() < 2:
        raise ValueError(f"maps must be at least 2-D (..., H, W), got shape {tuple(maps.shape)}")
    if maps.numel() == 0:
        return maps.clone()
    dtype = compute_dtype(maps.dtype)
    flat = maps.to(dtype).flatten(-2)
    finite = torch.isfinite(flat).all(dim=-1, keepdim=True)
    shifted = flat - flat.amin(dim=-1, keepdim=True)
    span = shifted.amax(dim=-1, keepdim=True)
    valid = finite & (span > 0)
    # Divide only where valid; elsewhere output zeros (never NaN).
    normalized = torch.where(valid, shifted / torch.where(valid, span, 1.0), 0.0)
    return normalized.view_as(maps).to(maps.dtype)


def upsample_map(
    maps: Tensor,
    size: int | tuple[int, int],
    *,
    mode: str = "bicubic",
) -> Tensor:
    """Resize maps to ``size`` (bicubic by default, as the reference protocol does).

    Bicubic uses the Keys kernel with ``a = -0.75`` and half-pixel centres, the same rule as
    OpenCV's ``INTER_CUBIC`` used by the reference code. Bicubic overshoots, so follow with
    ``normalize_map`` (the protocol's order: upsample, then normalize).

    Args:
        maps (Tensor[B, h, w] or Tensor[h, w]): maps at feature resolution.
        size: output ``(H, W)`` or a single int for a square output.
        mode: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.

    Returns:
        Tensor[B, H, W] (or Tensor[H, W]) in ``maps``' dtype.
    """
    check_tensor(maps, "maps", ndim=(2, 3), shape_doc="(B, h, w) or (h, w)")
    height, width = check_size(size, "size")
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise ValueError(f"mode must be 'bicubic', 'bilinear' or 'nearest', got {mode!r}")
    squeeze = maps.dim() == 2
    batch = maps.unsqueeze(0) if squeeze else maps
    if batch.shape[0] == 0 or batch.shape[-2] == 0 or batch.shape[-1] == 0:
        if batch.shape[-2] == 0 or batch.shape[-1] == 0:
            if batch.shape[0] != 0:
                raise ValueError(f"maps must have non-empty spatial dims, got {tuple(maps.shape)}")
        out = batch.new_zeros((batch.shape[0], height, width))
        return out[0] if squeeze else out
    dtype = compute_dtype(maps.dtype)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(batch.to(dtype).unsqueeze(1), size=(height, width), mode=mode, **kwargs)
    out = out.squeeze(1).to(maps.dtype)
    return out[0] if squeeze else out


class NegativeWeightClamp(nn.Module):
    """CAM head with negative weight clamping (NWC, Bae et al. 2020).

    Wraps a classifier (``nn.Linear`` or 1x1 ``nn.Conv2d``) and forms CAMs from
    ``max(W, 0)``. The classifier's weight is read at every call, never snapshotted, so
    ``.to()``, ``.double()`` and training updates are always seen. Classification itself keeps
    using the original weights: only the CAM is clamped.

    Args:
        classifier: the layer that maps pooled features ``(B, C)`` to logits ``(B, K)``.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        weight = getattr(classifier, "weight", None)
        if not isinstance(classifier, nn.Module) or not isinstance(weight, Tensor):
            raise TypeError(
                "classifier must be an nn.Module with a weight tensor (nn.Linear or 1x1 "
                f"nn.Conv2d), got {type(classifier).__name__}"
            )
        _classifier_matrix(weight, "classifier.weight")
        self.classifier = classifier

    @property
    def weight(self) -> Tensor:
        """The live clamped weight, ``Tensor[K, C]``."""
        return _classifier_matrix(self.classifier.weight, "classifier.weight").clamp_min(0)

    def forward(self, features: Tensor, classes: Tensor | int) -> Tensor:
        """CAM of ``classes`` from ``features (Tensor[B, C, h, w])`` → ``Tensor[B, h, w]``."""
        # Read live (see the class docstring); class_activation_map checks it further.
        weight = check_tensor(self.classifier.weight, "weight", dtypes=None)
        return class_activation_map(features, weight, classes, clamp_negative=True)


class ClassActivationMap(nn.Module):
    """Configuration holder for ``class_activation_map`` (+ optional upsample and normalize).

    Args:
        clamp_negative: negative weight clamping (NWC).
        size: if given, upsample the maps to ``size`` (bicubic) and min-max normalize them.
    """

    def __init__(
        self, *, clamp_negative: bool = False, size: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.clamp_negative = bool(clamp_negative)
        self.size = None if size is None else check_size(size, "size")

    def forward(self, features: Tensor, weight: Tensor, classes: Tensor | int) -> Tensor:
        """``features (Tensor[B, C, h, w])``, ``weight (Tensor[K, C])``, ``classes (Tensor[B])``
        → ``Tensor[B, h, w]`` (or ``Tensor[B, *size]`` normalized to [0, 1])."""
        maps = class_activation_map(
            features, weight, classes, clamp_negative=self.clamp_negative
        )
        if self.size is not None:
            maps = normalize_map(upsample_map(maps, self.size))
        return maps

    def extra_repr(self) -> str:
        return f"clamp_negative={self.clamp_negative}, size={self.size}"
