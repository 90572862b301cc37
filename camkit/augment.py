"""Training-time augmentations of image batches that WSOL methods are built on.

* **Hide-and-Seek** (Singh and Lee, ICCV 2017, ``hide_patches``, ``HideAndSeek``): each
  training image is cut into a grid of ``grid_size x grid_size``-pixel cells (the last row and
  column of cells are cut short where the size does not divide the image); each cell is hidden,
  independently, with probability ``hide_prob``, its pixels replaced by ``fill``. The paper
  fills with the dataset's mean pixel, which keeps the first layer's activation statistics
  unchanged; on images already normalized by that mean, the mean pixel is 0 (the default). The
  network trains on hidden images and sees whole ones at test time, so it learns to use every
  part of the object, not only the most discriminative one.
* **CutMix** (Yun et al., ICCV 2019, ``cutmix``, ``cutmix_loss``): for a batch,
  ``lam ~ Beta(alpha, alpha)``; a box of side ratio ``sqrt(1 - lam)`` centred on a uniformly
  drawn pixel (clipped to the image) is cut from a shuffled copy of the batch and pasted into
  every image; ``lam`` is then recomputed from the clipped box's area, and the loss weighs each
  image's own label by ``lam`` and its partner's by ``1 - lam``. As in the authors' and the
  evaluation protocol's code, one box and one ``lam`` serve the whole batch, and the batch is
  mixed with probability ``prob``.

Neither needs a change to the model.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._validation import INDEX_DTYPES, check_finite_number, check_positive_int, check_tensor

__all__ = ["CutMixBatch", "HideAndSeek", "cutmix", "cutmix_loss", "hide_patches"]


def _fill_values(fill: float | Tensor, images: Tensor) -> Tensor:
    """``fill`` as a ``(1, C, 1, 1)`` tensor on ``images``' device and dtype."""
    channels = images.shape[1]
    if isinstance(fill, Tensor):
        if fill.dim() != 1 or fill.shape[0] != channels:
            raise ValueError(f"fill must be a number or a ({channels},) tensor of per-channel "
                             f"values, got shape {tuple(fill.shape)}")
        if not torch.isfinite(fill).all():
            raise ValueError("fill must be finite, got NaN or infinite values")
        return fill.to(images.device, images.dtype).view(1, channels, 1, 1)
    value = check_finite_number(fill, "fill")
    return torch.full((1, channels, 1, 1), value, dtype=images.dtype, device=images.device)


def hide_patches(
    images: Tensor,
    grid_size: int = 32,
    hide_prob: float = 0.5,
    *,
    fill: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hide each ``grid_size``-pixel grid cell of each image with probability ``hide_prob``.

    Args:
        images (Tensor[B, C, H, W]): float images, on any device.
        grid_size: side of the square cells in pixels (the paper's S; 32 in "Rethinking CAM"'s
            HaS-32 rows).
        hide_prob: probability of hiding a cell, in [0, 1] (0.5 in the paper).
        fill: the value of hidden pixels: a number, or a ``(C,)`` tensor of per-channel values
            (the dataset's mean pixel in the images' normalization; 0 for mean-normalized
            images).
        generator: the random source of the cells (drawn on the generator's device, then moved
            to the images'); None uses PyTorch's default generator. The draw is one
            ``torch.rand`` of shape ``(B, 1, ceil(H / grid_size), ceil(W / grid_size))``.

    Returns:
        Tensor[B, C, H, W]: a new tensor; ``images`` is left unchanged. Gradients flow to the
        pixels left visible.
    """
    check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)")
    grid_size = check_positive_int(grid_size, "grid_size")
    hide_prob = check_finite_number(hide_prob, "hide_prob", low=0.0, high=1.0)
    fill_values = _fill_values(fill, images)
    batch, _, height, width = images.shape
    cells = (batch, 1, -(-height // grid_size), -(-width // grid_size))
    device = generator.device if generator is not None else images.device
    hidden = torch.rand(cells, generator=generator, device=device) < hide_prob
    mask = hidden.repeat_interleave(grid_size, dim=2).repeat_interleave(grid_size, dim=3)
    return torch.where(mask[:, :, :height, :width].to(images.device), fill_values, images)


class HideAndSeek(nn.Module):
    """``hide_patches`` while training, the identity in eval mode.

    Put it in front of the model (or in the data pipeline on batches); the model itself needs
    no change. Arguments as ``hide_patches``; ``generator`` is kept and used by every call.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(
        self,
        grid_size: int = 32,
        hide_prob: float = 0.5,
        *,
        fill: float | Tensor = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.grid_size = check_positive_int(grid_size, "grid_size")
        self.hide_prob = check_finite_number(hide_prob, "hide_prob", low=0.0, high=1.0)
        self.fill = fill
        self.generator = generator

    def forward(self, images: Tensor) -> Tensor:
        """``images (Tensor[B, C, H, W])`` → the same shape, cells hidden while training."""
        if not self.training:
            return images
        return hide_patches(images, self.grid_size, self.hide_prob, fill=self.fill,
                            generator=self.generator)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, hide_prob={self.hide_prob}"


class CutMixBatch(NamedTuple):
    """A batch after ``cutmix``.

    Attributes:
        images (Tensor[B, C, H, W]): the mixed images.
        labels (Tensor[B]): each image's own label (weight ``lam``).
        partner_labels (Tensor[B]): the label of the image its box came from (weight
            ``1 - lam``).
        lam: the fraction of each image that is its own, from the pasted box's area (1.0 when
            the batch was not mixed).
        box: ``(x0, y0, x1, y1)`` of the pasted box, ends exclusive (empty when not mixed).
    """

    images: Tensor
    labels: Tensor
    partner_labels: Tensor
    lam: float
    box: tuple[int, int, int, int]


def _uniform_int(high: int, generator: torch.Generator | None) -> int:
    device = generator.device if generator is not None else None
    return int(torch.randint(high, (), generator=generator, device=device))


def cutmix(
    images: Tensor,
    labels: Tensor,
    alpha: float = 1.0,
    *,
    prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> CutMixBatch:
    """Mix a batch by CutMix.

    Args:
        images (Tensor[B, C, H, W]): float images.
        labels (Tensor[B]): integer class labels.
        alpha: the Beta distribution's parameter, > 0 (1.0, uniform ``lam``, in the authors'
            and the protocol's code).
        prob: probability of mixing this batch, in [0, 1] (1.0 in the protocol's code).
        generator: the random source of every draw (whether to mix, ``lam`` through a seed
            for Python's ``random.Random.betavariate``, the shuffle and the box centre); None
            uses PyTorch's default generator.

    Returns:
        ``CutMixBatch``; ``images`` and ``labels`` are left unchanged.
    """
    check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)")
    check_tensor(labels, "labels", ndim=1, dtypes=INDEX_DTYPES, shape_doc="(B,)")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must hold one label per image ({images.shape[0]}), got "
                         f"{labels.shape[0]}")
    alpha = check_finite_number(alpha, "alpha", low=0.0, low_inclusive=False)
    prob = check_finite_number(prob, "prob", low=0.0, high=1.0)
    device = generator.device if generator is not None else None
    batch, _, height, width = images.shape
    if float(torch.rand((), generator=generator, device=device)) >= prob or batch == 0:
        return CutMixBatch(images.clone(), labels, labels, 1.0, (0, 0, 0, 0))
    seed = _uniform_int(2**62, generator)
    lam = random.Random(seed).betavariate(alpha, alpha)
    order = torch.randperm(batch, generator=generator, device=device).to(images.device)
    ratio = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(width * ratio), int(height * ratio)
    cx, cy = _uniform_int(width, generator), _uniform_int(height, generator)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[order, :, y0:y1, x0:x1]
    own = 1.0 - (x1 - x0) * (y1 - y0) / (width * height)
    return CutMixBatch(mixed, labels, labels[order.to(labels.device)], own, (x0, y0, x1, y1))


def cutmix_loss(logits: Tensor, labels: Tensor, partner_labels: Tensor, lam: float) -> Tensor:
    """``lam * CE(logits, labels) + (1 - lam) * CE(logits, partner_labels)`` (mean over the
    batch), the loss of a ``cutmix`` batch.

    Args:
        logits (Tensor[B, K]): class scores.
        labels (Tensor[B]), partner_labels (Tensor[B]): from ``CutMixBatch``.
        lam: ``CutMixBatch.lam``, in [0, 1].
    """
    check_tensor(logits, "logits", ndim=2, shape_doc="(B, K)")
    lam = check_finite_number(lam, "lam", low=0.0, high=1.0)
    return lam * F.cross_entropy(logits, labels) + \
        (1.0 - lam) * F.cross_entropy(logits, partner_labels)
