"""Test-only stand-in for ``camkit.cream`` while that module is not in the tree.

Implements the agreed interface (``ContextEmbeddingBank``, ``cream_map``) directly from
ALGORITHMS.md §3, with plain loops: enough for the attach tests to exercise the CREAM path.
``install()`` does nothing when the real module is importable.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _minmax(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    span = (flat.amax(dim=1, keepdim=True) - low).clamp_min(1e-12)
    return ((flat - low) / span).view_as(maps)


class ContextEmbeddingBank(nn.Module):
    def __init__(self, num_classes: int, channels: int, momentum: float = 0.8,
                 delta: float = 0.2) -> None:
        super().__init__()
        self.momentum, self.delta = momentum, delta
        self.register_buffer("fg", torch.randn(num_classes, channels))
        self.register_buffer("bg", torch.randn(num_classes, channels))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def update(self, features: Tensor, cam: Tensor, labels: Tensor) -> None:
        fg_mask = (_minmax(cam.float()) > self.delta).float()
        for n, c in enumerate(labels.tolist()):
            for mask, bank in ((fg_mask[n], self.fg), (1 - fg_mask[n], self.bg)):
                count = mask.sum()
                if count > 0:
                    value = (features[n].float() * mask).sum(dim=(1, 2)) / count
                    bank[c] = self.momentum * bank[c] + (1 - self.momentum) * value
            self.seen[c] += 1


def cream_map(features: Tensor, fg: Tensor, bg: Tensor, *, cam: Tensor | None = None,
              scale: float = 8.0, iterations: int = 2, compile: bool = False,
              return_details: bool = False) -> Tensor:
    batch, _, height, width = features.shape
    pixels = features.float().flatten(2).transpose(1, 2)  # (B, N, C)
    mu = torch.stack([fg.float(), bg.float()], dim=1)  # (B, 2, C)
    log_pi = torch.full((batch, 2), 0.5).log().to(features.device)
    z = torch.full((batch, pixels.shape[1], 2), 0.5, device=features.device)
    for _ in range(iterations):
        cos = F.normalize(pixels, dim=-1) @ F.normalize(mu, dim=-1).transpose(1, 2)
        z = torch.softmax(scale * cos + log_pi[:, None, :], dim=-1)
        count = z.sum(dim=1)
        mu = (z.transpose(1, 2) @ pixels) / count[..., None].clamp_min(1e-12)
        log_pi = (count / pixels.shape[1]).clamp_min(1e-12).log()
    z_fg = z[..., 0].view(batch, height, width)
    if cam is None:
        return z_fg.to(features.dtype)
    mask = (_minmax(cam.float()) > 0.2).float()
    area = mask.flatten(1).sum(dim=1).clamp_min(1)
    p_fg = (z_fg * mask).flatten(1).sum(dim=1) / area
    p_bg = ((1 - z_fg) * mask).flatten(1).sum(dim=1) / area
    calibrated = torch.where((p_fg >= p_bg)[:, None, None], z_fg, 1 - z_fg)
    return (calibrated + _minmax(cam.float())).to(features.dtype)


def install() -> bool:
    """Register the stand-in as ``camkit.cream`` if the real one is missing; True if it did."""
    if "camkit.cream" in sys.modules or importlib.util.find_spec("camkit.cream") is not None:
        return False
    module = types.ModuleType("camkit.cream")
    module.ContextEmbeddingBank = ContextEmbeddingBank  # type: ignore[attr-defined]
    module.cream_map = cream_map  # type: ignore[attr-defined]
    sys.modules["camkit.cream"] = module
    return True
