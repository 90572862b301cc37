"""What a ``Localizer`` installs on a model, and how it is undone.

``Capture`` is the feature layer's forward hook; ``swap_pooling`` puts a ``ThresholdedAvgPool``
in place of the model's average pooling for ``tap=``. Both are recorded in two lists (hook
handles, swaps) that ``release`` empties, so running it again (``detach()``, then the
finalizer) does nothing. ``eval_mode`` switches modules to eval mode for one call and restores
each one's own flag.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from camkit.pooling import ThresholdedAvgPool

__all__ = ["Capture", "Swap", "eval_mode", "release", "swap_pooling"]

#: A swapped module: ``(parent, child name, original module)``, undone by ``release``.
Swap = tuple[nn.Module, str, nn.Module]


class Capture:
    """Where the feature hook leaves its output; active only inside a ``Localizer`` call."""

    def __init__(self) -> None:
        self.active = False
        self.store: dict[torch.device, Tensor] = {}
        self.lock = threading.Lock()

    def hook(self, module: nn.Module, args: tuple, output: object) -> None:
        """Forward hook: keep ``output`` while active."""
        if self.active and isinstance(output, Tensor):
            self.store[output.device] = output  # last call wins; one entry per replica device


def release(handles: list[Any], swaps: list[Swap]) -> None:
    """Remove hooks and put swapped modules back (idempotent; also run by the finalizer)."""
    while handles:
        handles.pop().remove()
    while swaps:
        parent, child, original = swaps.pop()
        setattr(parent, child, original)


@contextmanager
def eval_mode(modules: Iterator[nn.Module] | list[nn.Module]) -> Iterator[None]:
    """Put modules in eval mode, restoring each one's own ``training`` flag afterwards."""
    saved = [(m, m.training) for m in modules]
    try:
        for module, _ in saved:
            module.training = False
        yield
    finally:
        for module, mode in saved:
            module.training = mode


def swap_pooling(core: nn.Module, pool_name: str | None, feature_name: str, theta: float,
                 swaps: list[Swap]) -> None:
    """Replace the average pooling ``pool_name`` of ``core`` by ``ThresholdedAvgPool(theta)``.

    The original module is appended to ``swaps`` for ``release``; ``feature_name`` (the layer
    that feeds the pooling) only names it in the error raised when there is no pooling module.
    """
    if pool_name is None:
        raise ValueError(f"tap= needs a global pooling module fed by {feature_name!r}, "
                         "but the model pools with a function (e.g. F.adaptive_avg_pool2d);"
                         " replace it by an nn.AdaptiveAvgPool2d(1) module to use tap=")
    parent_name, _, child = pool_name.rpartition(".")
    parent = core.get_submodule(parent_name) if parent_name else core
    original = getattr(parent, child)
    if not isinstance(original, (nn.AdaptiveAvgPool2d, ThresholdedAvgPool)):
        raise ValueError(f"tap= replaces an average pooling, but {pool_name!r} is "
                         f"{type(original).__name__}")
    setattr(parent, child, ThresholdedAvgPool(theta))
    swaps.append((parent, child, original))
