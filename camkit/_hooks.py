"""What a ``Localizer`` installs on a model, and how it is undone.

``Capture`` is the feature layer's forward hook; ``swap_pooling`` puts a ``ThresholdedAvgPool``
in place of the model's average pooling for ``tap=``. Both are recorded in two lists (hook
handles, swaps) that ``release`` empties, so running it again (``detach()``, then the
finalizer) does nothing. ``eval_mode`` switches modules to eval mode for one call and restores
each one's own flag.

Several handles may swap the same pooling slot (``attach(m, tap=0.1)``, then
``attach(m, tap=0.2)``). The swaps of one slot form a stack, bottom to top, whose top is the
module in the model: releasing the top puts back what it replaced; releasing a lower one hands
what it replaced to the swap above it. Any order of release thus ends with the original module,
as nested ``with`` blocks would. A swap whose module is no longer in the model (the user put
another one there) leaves the user's module alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from camkit.pooling import ThresholdedAvgPool

__all__ = ["Capture", "Swap", "eval_mode", "release", "swap_pooling"]


@dataclass(eq=False)  # compared by identity
class Swap:
    """``parent.<child>`` was ``replaced`` and is now ``installed``; undone by ``release``."""

    parent: nn.Module
    child: str
    replaced: nn.Module
    installed: nn.Module


#: Live swaps per slot ``(id(parent), child)``, bottom to top. An entry holds its parent
#: strongly, so the id cannot be reused while it exists; ``release`` removes it. Re-entrant:
#: a handle's finalizer may run ``release`` in a thread that already holds it.
_STACKS: dict[tuple[int, str], list[Swap]] = {}
_STACKS_LOCK = threading.RLock()


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
        _unswap(swaps.pop())


def _unswap(swap: Swap) -> None:
    """Take ``swap`` out of its slot's stack, restoring the module below it when on top."""
    with _STACKS_LOCK:
        key = (id(swap.parent), swap.child)
        stack = _STACKS.get(key, [])
        index = next((i for i, other in enumerate(stack) if other is swap), None)
        if index is None:
            return  # dropped when the user replaced the module (see swap_pooling)
        if index + 1 < len(stack):
            stack[index + 1].replaced = swap.replaced  # the swap above now restores it
        elif getattr(swap.parent, swap.child, None) is swap.installed:
            setattr(swap.parent, swap.child, swap.replaced)
        del stack[index]
        if not stack:
            del _STACKS[key]


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
    swap = Swap(parent, child, original, ThresholdedAvgPool(theta))
    with _STACKS_LOCK:
        stack = _STACKS.setdefault((id(parent), child), [])
        if stack and stack[-1].installed is not original:
            stack.clear()  # the user replaced our module: the older swaps have nothing to undo
        setattr(parent, child, swap.installed)
        stack.append(swap)
    swaps.append(swap)
