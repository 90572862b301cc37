"""Checks of plain arguments (numbers, sizes) shared by every public function.

Importing this module does not import PyTorch: the score-map metrics and ``camkit eval`` use
it, and their worker processes start without PyTorch. Like the tensor checks in
``camkit._validation``, each check raises ``TypeError`` (wrong kind of object) or ``ValueError``
(wrong value) with a message naming the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
import operator
import sys
from typing import TYPE_CHECKING, SupportsFloat, TypeGuard, cast

if TYPE_CHECKING:
    import torch

__all__ = [
    "check_bool",
    "check_finite_number",
    "check_positive_int",
    "check_size",
    "is_tensor",
    "real_number",
]


def is_tensor(value: object) -> TypeGuard[torch.Tensor]:
    """Whether ``value`` is a ``torch.Tensor``, without importing PyTorch: a tensor can only
    exist once ``torch`` is imported."""
    module = sys.modules.get("torch")
    return module is not None and isinstance(value, module.Tensor)


def real_number(value: object) -> float | None:
    """``value`` as a Python float when it is one real number, else ``None``.

    Accepted: ``int`` and ``float`` (not ``bool``), NumPy integer and floating scalars, and
    one-element NumPy arrays and tensors of an integer or floating dtype (``np.float32(0.5)``,
    ``np.array(0.5)``, ``torch.tensor(0.5)``): NumPy scalars arrive wherever values come out of
    arrays, and only ``float64`` among them is a ``float``. An int too large for a float gives
    ``±inf``, so that the caller's finiteness check refuses it by name.
    """
    item: object
    numpy = sys.modules.get("numpy")  # a NumPy value exists only once NumPy is imported
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        item = value
    elif numpy is not None and isinstance(value, numpy.ndarray):
        if value.size != 1 or value.dtype.kind not in "iuf":
            return None
        item = value.reshape(()).item()
    elif numpy is not None and isinstance(value, (numpy.integer, numpy.floating)):
        item = value.item()
    elif is_tensor(value):
        if (value.numel() != 1 or value.dtype.is_complex
                or value.dtype == sys.modules["torch"].bool):
            return None
        item = value.item()
    else:
        return None
    if isinstance(item, int):
        try:
            return float(item)
        except OverflowError:  # past float64's range
            return math.inf if item > 0 else -math.inf
    return float(cast("SupportsFloat", item))  # a float, or NumPy's longdouble


def check_finite_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a real finite number inside the given bounds; return it as float.

    Every real number ``real_number`` accepts is accepted (NumPy scalars and one-element arrays
    and tensors included).
    """
    number = real_number(value)
    if number is None:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
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
    """Check that ``value`` is an int (not bool; a NumPy integer scalar is one) that is > 0 (or
    >= 0 with ``allow_zero``); return it as a Python int."""
    number = _as_int(value)
    if number is None:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {number}")
    return number


def check_size(value: object, name: str) -> tuple[int, int]:
    """Check a spatial size given as an int or an ``(H, W)`` pair of positive ints."""
    if _as_int(value) is not None:
        pair: tuple[object, ...] = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:  # torch.Size is a tuple
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair (H, W) of ints, got {value!r}")
    sizes: list[int] = []
    for item in pair:
        size = _as_int(item)
        if size is None or size <= 0:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
        sizes.append(size)
    return sizes[0], sizes[1]


def check_bool(value: object, name: str) -> bool:
    """Check that ``value`` is ``True`` or ``False`` (a NumPy bool scalar is accepted); a truthy
    string such as ``"no"`` or a number is refused rather than read as a flag."""
    numpy = sys.modules.get("numpy")
    if isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def _as_int(value: object) -> int | None:
    """``value`` as an int when it is an int or a NumPy integer scalar (not ``bool``)."""
    numpy = sys.modules.get("numpy")
    if isinstance(value, bool) or not (
            isinstance(value, int) or (numpy is not None and isinstance(value, numpy.integer))):
        return None
    return operator.index(value)
