"""Input checks shared by every public function.

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape,
range or device), and every message names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype used for arithmetic: half precisions are upcast to float32, others kept."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_tensor(
    value: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    dtypes: Sequence[torch.dtype] | None = FLOAT_DTYPES,
    shape_doc: str | None = None,
) -> torch.Tensor:
    """Check that ``value`` is a tensor of an allowed dtype and dimensionality."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtypes is not None and value.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({allowed}), got {value.dtype}")
    if ndim is not None:
        allowed_ndim = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed_ndim:
            expected = shape_doc or " or ".join(f"{n}-D" for n in allowed_ndim)
            raise ValueError(
                f"{name} must be {expected}, got a {value.dim()}-D tensor of shape "
                f"{tuple(value.shape)}"
            )
    return value


def check_same_device(reference: torch.Tensor, ref_name: str, **others: torch.Tensor) -> None:
    """Check that every tensor in ``others`` lives on ``reference``'s device."""
    for name, tensor in others.items():
        if tensor.device != reference.device:
            raise ValueError(
                f"{name} must be on the same device as {ref_name} ({reference.device}), "
                f"got {tensor.device}"
            )


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
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)  # type: ignore[arg-type]
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
    elif isinstance(value, (tuple, list, torch.Size)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair (H, W) of ints, got {value!r}")
    for item in pair:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])  # type: ignore[arg-type]
