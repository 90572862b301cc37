"""Checks of plain arguments (numbers, sizes) shared by every public function.

Importing this module does not import PyTorch: the score-map metrics and ``camkit eval`` use
it, and their worker processes start without PyTorch. Like the tensor checks in
``camkit._validation``, each check raises ``TypeError`` (wrong kind of object) or ``ValueError``
(wrong value) with a message naming the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    import torch

__all__ = ["check_finite_number", "check_positive_int", "check_size", "is_tensor"]


def is_tensor(value: object) -> TypeGuard[torch.Tensor]:
    """Whether ``value`` is a ``torch.Tensor``, without importing PyTorch: a tensor can only
    exist once ``torch`` is imported."""
    module = sys.modules.get("torch")
    return module is not None and isinstance(value, module.Tensor)


def check_finite_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a real finite number inside the given bounds; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if is_tensor(value) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if low is not None and (number < low or (not low_inclusive and number == low)):
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{name} must be in {bracket}{low}, {high}{']' if high_inclusive else ')'}"
                         f", got {number}")
    if high is not None and (number > high or (not high_inclusive and number == high)):
        bracket = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {'[' if low_inclusive else '('}{low}, {high}{bracket}"
                         f", got {number}")
    return number


def check_positive_int(value: object, name: str, *, allow_zero: bool = False) -> int:
    """Check that ``value`` is an int (not bool) that is > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_size(value: object, name: str) -> tuple[int, int]:
    """Check a spatial size given as an int or an ``(H, W)`` pair of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair: tuple[object, ...] = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:  # torch.Size is a tuple
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair (H, W) of ints, got {value!r}")
    sizes: list[int] = []
    for item in pair:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
        sizes.append(int(item))
    return sizes[0], sizes[1]
