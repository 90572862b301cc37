"""Attention-based Dropout Layer, ADL (Choe and Shim, CVPR 2019).

A layer inserted after a convolutional block of a classifier, active while training only. Its
self-attention map is the channel mean of the block's features. On each call it multiplies the
features either by a *drop mask*, which zeroes the positions whose attention reaches
``drop_threshold`` times the image's maximum (hiding the most discriminative part, so that the
network learns the rest of the object), or by an *importance map*, the sigmoid of the
attention (reinforcing the discriminative part, so that classification does not suffer). The
drop mask is chosen with probability ``drop_rate``, once per call for the whole batch, as in the
authors' code. In eval mode the layer is the identity, so CAM, RCAM and CREAM see the model
unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camkit._validation import check_finite_number, check_tensor, compute_dtype

__all__ = ["AttentionDropout", "attention_dropout"]


def attention_dropout(
    features: Tensor,
    drop_rate: float = 0.75,
    drop_threshold: float = 0.8,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One training-time ADL step: ``features`` times the drop mask or the importance map.

    Args:
        features (Tensor[B, C, h, w]): a convolutional block's output (usually after ReLU).
        drop_rate: probability of the drop mask (else the importance map), in [0, 1]; 0.75 in
            the authors' and the evaluation protocol's code.
        drop_threshold: fraction of the image's maximum attention from which positions are
            dropped, in [0, 1]; 0.8 in the same code (the paper explores 0.5 to 0.95).
        generator: the random source of the choice (one ``torch.rand(())`` on the generator's
            device); None uses PyTorch's default generator.

    Returns:
        Tensor[B, C, h, w] in ``features``' dtype. The drop mask is a constant of the features
        (no gradient through it); the importance map passes gradients through the attention.
        NaN or infinite features propagate (no check is made on the hot path).
    """
    check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
    drop_rate = check_finite_number(drop_rate, "drop_rate", low=0.0, high=1.0)
    drop_threshold = check_finite_number(drop_threshold, "drop_threshold", low=0.0, high=1.0)
    device = generator.device if generator is not None else features.device
    use_drop_mask = bool(torch.rand((), generator=generator, device=device) < drop_rate)
    work = features.to(compute_dtype(features.dtype))
    attention = work.mean(dim=1, keepdim=True)
    if use_drop_mask:
        peak = attention.detach().amax(dim=(2, 3), keepdim=True)
        selected = (attention.detach() < drop_threshold * peak).to(work.dtype)
    else:
        selected = torch.sigmoid(attention)
    return (work * selected).to(features.dtype)


class AttentionDropout(nn.Module):
    """ADL: ``attention_dropout`` while training, the identity in eval mode.

    Insert it after any convolutional block (the authors put it after several blocks of the
    backbone and before the classifier's feature map). Arguments as ``attention_dropout``.

    Shape:
        ``(B, C, h, w)`` → ``(B, C, h, w)``.
    """

    def __init__(self, drop_rate: float = 0.75, drop_threshold: float = 0.8, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.drop_rate = check_finite_number(drop_rate, "drop_rate", low=0.0, high=1.0)
        self.drop_threshold = check_finite_number(drop_threshold, "drop_threshold", low=0.0,
                                                  high=1.0)
        self.generator = generator

    def forward(self, features: Tensor) -> Tensor:
        """``features (Tensor[B, C, h, w])`` → the same shape (unchanged in eval mode)."""
        if not self.training:
            return features
        return attention_dropout(features, self.drop_rate, self.drop_threshold,
                                 generator=self.generator)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, drop_threshold={self.drop_threshold}"
