"""Thresholded average pooling (TAP, Bae et al., ECCV 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from camkit._validation import check_finite_number, check_tensor, compute_dtype
from camkit.cam import saturate

__all__ = ["ThresholdedAvgPool", "thresholded_avg_pool"]


def thresholded_avg_pool(x: Tensor, theta: float = 0.1) -> Tensor:
    """Average of each channel's elements above ``theta`` times that channel's maximum.

    Per image and channel, ``tau = theta * max_{h,w} x``; the pooled value is the mean of the
    elements strictly greater than ``tau``, or 0 when none is (the count is clamped to 1).
    Gradients flow to the kept elements only (each receives ``1 / count``). Elements at or
    below ``tau`` never enter the sum, whatever their value (``-inf`` included).

    Args:
        x (Tensor[B, C, H, W]): features, usually non-negative (after ReLU).
        theta: threshold ratio in [0, 1]; 0.1 for VGG16/MobileNet, 0.0 for ResNet50/GoogLeNet.

    Returns:
        Tensor[B, C, 1, 1], the same shape as ``nn.AdaptiveAvgPool2d(1)``, in ``x``'s dtype.
        Finite features give finite values (the mean never overflows, even where the sum
        would). A channel holding NaN or ``+inf`` pools to that value, as average pooling
        would; ``-inf`` elements are below any threshold and dropped. No device sync looks
        for them.
    """
    check_tensor(x, "x", ndim=4, shape_doc="(B, C, H, W)")
    theta = check_finite_number(theta, "theta", low=0.0, high=1.0)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have non-empty spatial dims, got shape {tuple(x.shape)}")
    work = x.to(compute_dtype(x.dtype))
    peak = work.detach().amax(dim=(2, 3), keepdim=True)
    keep = work.detach() > theta * peak
    count = keep.sum(dim=(2, 3), keepdim=True).clamp_min(1).to(work.dtype)
    if work.device.type == "cpu":
        # Multiplying by the mask is exact for finite inputs and several times faster than
        # torch.where on the CPU. Only a dropped -inf/NaN (0 * inf) or an overflowing sum makes
        # the result non-finite, which a CPU tensor can test without a device sync.
        pooled = (work * keep).sum(dim=(2, 3), keepdim=True) / count
        if math.isfinite(float(pooled.detach().sum())):  # a huge total: a needless redo
            return pooled.to(x.dtype)
    # Dropped elements must not enter the sum at all; dividing by the count first keeps the
    # sum of the kept elements, which lie in (tau, max], from overflowing.
    pooled = saturate(torch.where(keep, work / count, 0.0).sum(dim=(2, 3), keepdim=True),
                      work.dtype)
    # A channel holding NaN or +inf keeps nothing (tau is NaN or inf): pass that value on, as
    # average pooling would, rather than a 0 that hides it.
    return torch.where(torch.isnan(peak) | (peak == float("inf")), peak, pooled).to(x.dtype)


class ThresholdedAvgPool(nn.Module):
    """Drop-in replacement for ``nn.AdaptiveAvgPool2d(1)`` using thresholded average pooling.

    Args:
        theta: threshold ratio in [0, 1] (see ``thresholded_avg_pool``).

    Shape:
        ``(B, C, H, W)`` → ``(B, C, 1, 1)``.
    """

    def __init__(self, theta: float = 0.1) -> None:
        super().__init__()
        self.theta = check_finite_number(theta, "theta", low=0.0, high=1.0)

    def forward(self, x: Tensor) -> Tensor:
        """``x (Tensor[B, C, H, W])`` → ``Tensor[B, C, 1, 1]``."""
        return thresholded_avg_pool(x, self.theta)

    def extra_repr(self) -> str:
        return f"theta={self.theta}"
