"""Helpers shared by the WSOL heads (``camkit.acol``, ``camkit.spg``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camkit._validation import INDEX_DTYPES, check_tensor, index_bounds

__all__ = ["check_classes", "check_init", "conv_relu", "initialize", "pick"]

_INITS = ("xavier", "he")


def check_classes(classes: object, name: str, batch: int, num_classes: int) -> Tensor:
    """Check ``(B,)`` class indices in ``[0, num_classes)``; return them as long."""
    classes = check_tensor(classes, name, ndim=1, dtypes=INDEX_DTYPES, shape_doc="(B,)")
    if classes.shape[0] != batch:
        raise ValueError(f"{name} must hold one class per image (B={batch}), got "
                         f"{classes.shape[0]}")
    bounds = index_bounds(classes)
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}], got values in "
                         f"[{bounds[0]}, {bounds[1]}]")
    return classes.long()


def pick(maps: Tensor, classes: Tensor) -> Tensor:
    """``maps (B, K, h, w)`` and ``classes (B,)`` → ``(B, h, w)``: each image's class map."""
    return maps[torch.arange(maps.shape[0], device=maps.device), classes.to(maps.device)]


def conv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # Not in place: a forward hook (``attach``) may hold the conv's output.
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]


def check_init(init: object) -> str:
    """Check the weight initialization name: ``"xavier"`` or ``"he"``."""
    if init not in _INITS:
        raise ValueError(f"init must be 'xavier' or 'he', got {init!r}")
    return str(init)


def initialize(module: nn.Module, init: str) -> None:
    """The protocol's ``initialize_weights``: Xavier-uniform or He-normal (fan-out), zero bias."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            if init == "xavier":
                nn.init.xavier_uniform_(conv.weight)
            else:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
