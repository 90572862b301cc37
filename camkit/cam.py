"""Class activation maps (CAM) and their post-processing.

``class_activation_map`` forms ``M = sum_c W[k, c] * F[c]`` for one class per image;
``upsample_map`` and ``normalize_map`` follow the reference evaluation protocol's order
(bicubic upsample to the evaluation size, then per-image min-max to [0, 1]).

Finite inputs never give NaN or infinity: sums that could overflow are formed from inputs
scaled by a power of two (exact) and scaled back, and a result beyond the dtype's range
saturates at its largest finite value. NaN and infinities already in the input propagate (no
device sync is spent looking for them). Where overflow is possible at all, a CPU tensor is
tested first (a host-side check costs no device sync) and the scaled computation runs only when
needed; on other devices it always runs, so that no sync is added to the hot path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._validation import (
    INDEX_DTYPES,
    check_same_device,
    check_size,
    check_tensor,
    compute_dtype,
    index_bounds,
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


def _on_cpu(tensor: Tensor) -> bool:
    """Whether a data-dependent check of ``tensor`` is free: on the CPU it needs no device sync."""
    return tensor.device.type == "cpu"


def scale_by_power_of_two(values: Tensor, exponent: Tensor) -> Tensor:
    """``values * 2**exponent`` (``exponent`` an integer tensor broadcast against ``values``).

    Exact unless the result leaves the dtype's range; the factor is applied in two halves so
    that each one is representable even when ``2**exponent`` itself is not.
    """
    half = torch.div(exponent, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(values, half), exponent - half)


def saturate(values: Tensor, dtype: torch.dtype) -> Tensor:
    """Clamp ``values`` to ``dtype``'s finite range (infinities become its largest value)."""
    largest = torch.finfo(dtype).max
    return values.clamp(-largest, largest)


def _check_classes(classes: Tensor | int, batch: int, num_classes: int, ref: Tensor) -> Tensor:
    """Turn ``classes`` into a ``(B,)`` int64 tensor on ``ref``'s device, checking its range."""
    if isinstance(classes, int) and not isinstance(classes, bool):
        if not 0 <= classes < num_classes:  # also keeps ints past int64 away from torch.full
            raise ValueError(
                f"classes must lie in [0, {num_classes - 1}] (K={num_classes} classes), "
                f"got values in [{classes}, {classes}]"
            )
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
    bounds = index_bounds(classes)
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= num_classes):
        raise ValueError(
            f"classes must lie in [0, {num_classes - 1}] (K={num_classes} classes), "
            f"got values in [{bounds[0]}, {bounds[1]}]"
        )
    return classes.long()


def _scaled_cam(selected: Tensor, features: Tensor) -> Tensor:
    """``einsum("bc,bchw->bhw")`` that cannot overflow inside: each weight row is scaled by a
    power of two below ``1 / (4 C)`` of its largest magnitude, so every product and partial sum
    stays under a quarter of the largest float, and the maps are scaled back (exactly)."""
    _, exponent = torch.frexp(selected.abs().amax(dim=1))  # max |w| < 2**exponent per row
    shift = (exponent + (selected.shape[1].bit_length() + 2)).unsqueeze(1)  # (B, 1)
    maps = torch.einsum("bc,bchw->bhw", scale_by_power_of_two(selected, -shift), features)
    return scale_by_power_of_two(maps, shift.unsqueeze(2))


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
        (computed in float32 for float16/bfloat16 inputs). Finite inputs give finite maps (a
        value beyond the dtype's range saturates at its largest finite value); NaN and
        infinities in the inputs propagate (no device sync looks for them).
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
    work = features.to(dtype)
    if _on_cpu(work) or selected.numel() == 0:
        maps = torch.einsum("bc,bchw->bhw", selected, work)
        # An overflow inside the sum shows as a non-finite map (inf stays inf or turns NaN),
        # and then in the maps' total (which may also overflow alone: a needless rescale).
        if selected.numel() == 0 or math.isfinite(float(maps.detach().sum())):
            return maps if dtype == features.dtype else saturate(maps, features.dtype).to(
                features.dtype)
    return saturate(_scaled_cam(selected, work), features.dtype).to(features.dtype)


_NORMALIZATIONS = ("minmax", "ivr")
_IVR_PERCENTILE = 0.45


def _check_normalization(method: object, ivr_percentile: object) -> float | None:
    """Check ``normalize_map``'s options; return the IVR fraction (``None`` for min-max)."""
    if not isinstance(method, str) or method not in _NORMALIZATIONS:
        raise ValueError(f"method must be one of {_NORMALIZATIONS}, got {method!r}")
    if method == "minmax":
        if ivr_percentile is not None:
            raise ValueError("ivr_percentile applies to method='ivr' only, got "
                             f"ivr_percentile={ivr_percentile!r} with method='minmax'")
        return None
    if ivr_percentile is None:
        return _IVR_PERCENTILE
    if isinstance(ivr_percentile, bool) or not isinstance(ivr_percentile, (int, float)):
        raise TypeError("ivr_percentile must be a number in [0, 1), got "
                        f"{type(ivr_percentile).__name__}")
    if not 0.0 <= float(ivr_percentile) < 1.0:  # also refuses NaN
        raise ValueError(f"ivr_percentile must be a fraction in [0, 1), got {ivr_percentile!r}")
    return float(ivr_percentile)


def normalize_map(maps: Tensor, *, method: str = "minmax",
                  ivr_percentile: float | None = None) -> Tensor:
    """Per-map normalization to [0, 1] over the last two dimensions: min-max or IVR.

    ``method="minmax"`` (default): ``(M - min M) / (max M - min M)``.
    ``method="ivr"`` (inferior value removal, Kim et al., ICCV 2021): the map's minimum is
    replaced by its order statistic ``m = sort(M)[floor(N * ivr_percentile)]`` (``N = H * W``
    values, sorted ascending, 0-based index), values below ``m`` are clipped to 0:
    ``max(M - m, 0) / (max M - m)``. ``ivr_percentile=0`` gives min-max.

    A constant map, or one holding any NaN or infinity, becomes all zeros (the reference
    protocol's rule for constant and NaN maps, extended to infinities so the output is always
    finite); with IVR so does a map whose order statistic ``m`` equals its maximum. Any finite
    map is normalized, also one whose range ``max - min`` exceeds the dtype's largest value
    (such a map is halved first, exactly).

    Args:
        maps (Tensor[..., H, W]): floating-point maps, at least 2-D.
        method: ``"minmax"`` or ``"ivr"``.
        ivr_percentile: IVR's fraction of the values removed, in [0, 1) (method ``"ivr"``
            only). Default 0.45, the default of the IVR authors' evaluation script.

    Returns:
        Tensor[..., H, W]: normalized maps in ``maps``' dtype, always finite.
    """
    fraction = _check_normalization(method, ivr_percentile)
    check_tensor(maps, "maps")
    if maps.dim() < 2:
        raise ValueError(f"maps must be at least 2-D (..., H, W), got shape {tuple(maps.shape)}")
    if maps.numel() == 0:
        return maps.clone()
    dtype = compute_dtype(maps.dtype)
    flat = maps.to(dtype).flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    high = flat.amax(dim=-1, keepdim=True)
    floor = low
    if fraction is not None:
        rank = min(int(flat.shape[-1] * fraction), flat.shape[-1] - 1)  # 0-based order statistic
        floor = flat.kthvalue(rank + 1, dim=-1, keepdim=True).values
    # max - floor can overflow, the difference of the halves cannot: it is finite iff the map is
    # (amin/amax propagate NaN and infinities). Wide maps are halved (exact) before the shift.
    halves = high * 0.5 - floor * 0.5
    wide = halves > torch.finfo(dtype).max / 4
    half = torch.where(wide, 0.5, 1.0).to(dtype)
    span = torch.where(wide, halves, high - floor)
    valid = (span > 0) & (halves < math.inf) & (low > -math.inf)
    shifted = torch.addcmul(-floor * half, flat, half)  # (flat - floor) * half, one pass
    if fraction is not None:
        shifted = shifted.clamp_min(0.0)  # IVR removes the values below the order statistic
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
        Tensor[B, H, W] (or Tensor[H, W]) in ``maps``' dtype. Finite maps give finite output:
        an overshoot past the dtype's range saturates at its largest finite value. NaN and
        infinities in ``maps`` propagate (no device sync looks for them).
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
    work = batch.to(dtype).unsqueeze(1)
    # The Keys kernel's weights have absolute sum <= 1.9 in 2-D: maps below a quarter of the
    # output dtype's largest value can neither overflow inside nor come out of its range.
    limit = torch.finfo(maps.dtype).max / 4
    if _on_cpu(work) and float(work.detach().abs().amax()) <= limit:  # False for NaN
        out = F.interpolate(work, size=(height, width), mode=mode, **kwargs)
    else:
        peak = work.abs().amax(dim=(2, 3), keepdim=True)
        factor = torch.where(peak > limit, 0.25, 1.0).to(dtype)  # powers of two: exact
        out = F.interpolate(work * factor, size=(height, width), mode=mode, **kwargs)
        out = saturate(out / factor, maps.dtype)
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
