"""Box thresholds: percentile as standard (PaS, Bae et al. 2020) and the classic max rule."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camkit._validation import check_finite_number, check_tensor, compute_dtype
from camkit.cam import saturate

__all__ = ["PercentileThreshold", "percentile_threshold"]


def _percentile_linear(flat: Tensor, q: float) -> Tensor:
    """``q``-th percentile along the last dim, linear interpolation (NumPy's default)."""
    n = flat.shape[-1]
    ordered = flat.sort(dim=-1).values
    position = q / 100.0 * (n - 1)
    low = int(position // 1)
    high = min(low + 1, n - 1)
    frac = position - low
    lower = ordered[..., low]
    if frac == 0.0:
        return lower
    upper = ordered[..., high]
    step = upper - lower
    # The difference of two finite values can overflow; then step by its half twice (each
    # partial sum stays between lower and upper).
    half = (upper * 0.5 - lower * 0.5) * frac
    return torch.where(torch.isinf(step), lower + half + half, lower + step * frac)


def percentile_threshold(maps: Tensor, q: float = 90.0, theta: float = 0.35) -> Tensor:
    """Per-image box threshold ``theta * percentile_q(map)`` (PaS).

    The percentile is taken over all pixels of each map (linear interpolation, as
    ``numpy.percentile``). ``q=100, theta=0.2`` is the classic rule ``0.2 * max``.

    Args:
        maps (Tensor[B, H, W] or Tensor[H, W]): finite score maps, usually upsampled and
            normalized.
        q: percentile in [0, 100]; the paper recommends [80, 100].
        theta: multiplier, finite and >= 0.

    Returns:
        Tensor[B] (or a 0-D tensor for a single map) in ``maps``' dtype, always finite: a
        threshold beyond the dtype's range saturates at its largest finite value.
    """
    check_tensor(maps, "maps", ndim=(2, 3), shape_doc="(B, H, W) or (H, W)")
    q = check_finite_number(q, "q", low=0.0, high=100.0)
    theta = check_finite_number(theta, "theta", low=0.0)
    if maps.shape[-1] == 0 or maps.shape[-2] == 0:
        raise ValueError(f"maps must have non-empty spatial dims, got shape {tuple(maps.shape)}")
    dtype = compute_dtype(maps.dtype)
    flat = maps.to(dtype).flatten(-2)
    if flat.numel() and not bool(torch.isfinite(flat).all()):
        raise ValueError("maps must be finite, got NaN or infinite values")
    # A theta past the dtype's range would turn into inf (and inf * 0 into NaN): cap it there.
    theta = min(theta, torch.finfo(dtype).max)
    return saturate(theta * _percentile_linear(flat, q), maps.dtype).to(maps.dtype)


class PercentileThreshold(nn.Module):
    """Holds ``q`` and ``theta`` for ``percentile_threshold``.

    ``PercentileThreshold()`` is PaS (``q=90, theta=0.35``);
    ``PercentileThreshold(q=100, theta=0.2)`` is the classic max rule.
    """

    def __init__(self, q: float = 90.0, theta: float = 0.35) -> None:
        super().__init__()
        self.q = check_finite_number(q, "q", low=0.0, high=100.0)
        self.theta = check_finite_number(theta, "theta", low=0.0)

    def forward(self, maps: Tensor) -> Tensor:
        """``maps (Tensor[B, H, W] or Tensor[H, W])`` → thresholds ``Tensor[B]`` (or 0-D)."""
        return percentile_threshold(maps, self.q, self.theta)

    def extra_repr(self) -> str:
        return f"q={self.q}, theta={self.theta}"
