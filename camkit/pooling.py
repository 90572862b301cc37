"""Thresholded average pooling (TAP, Bae et al., ECCV 2020)."""

from __future__ import annotations

from torch import Tensor, nn

from camkit._validation import check_finite_number, check_tensor, compute_dtype

__all__ = ["ThresholdedAvgPool", "thresholded_avg_pool"]


def thresholded_avg_pool(x: Tensor, theta: float = 0.1) -> Tensor:
    """Average of each channel's elements above ``theta`` times that channel's maximum.

    Per image and channel, ``tau = theta * max_{h,w} x``; the pooled value is the mean of the
    elements strictly greater than ``tau``, or 0 when none is (the count is clamped to 1).
    Gradients flow to the kept elements only (each receives ``1 / count``).

    Args:
        x (Tensor[B, C, H, W]): features, usually non-negative (after ReLU).
        theta: threshold ratio in [0, 1]; 0.1 for VGG16/MobileNet, 0.0 for ResNet50/GoogLeNet.

    Returns:
        Tensor[B, C, 1, 1], the same shape as ``nn.AdaptiveAvgPool2d(1)``, in ``x``'s dtype.
    """
    check_tensor(x, "x", ndim=4, shape_doc="(B, C, H, W)")
    theta = check_finite_number(theta, "theta", low=0.0, high=1.0)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have non-empty spatial dims, got shape {tuple(x.shape)}")
    work = x.to(compute_dtype(x.dtype))
    tau = theta * work.detach().amax(dim=(2, 3), keepdim=True)
    keep = work.detach() > tau
    count = keep.sum(dim=(2, 3), keepdim=True).clamp_min(1).to(work.dtype)
    pooled = (work * keep).sum(dim=(2, 3), keepdim=True) / count
    return pooled.to(x.dtype)


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
