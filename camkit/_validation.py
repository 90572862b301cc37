"""Tensor checks shared by every public function (plain numbers and sizes: ``camkit._checks``,
re-exported here so that the operators import every check from one place).

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape,
range or device), and every message names the argument, what was expected and what arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from camkit._checks import check_finite_number, check_positive_int, check_size

__all__ = [
    "FLOAT_DTYPES",
    "INDEX_DTYPES",
    "check_finite_number",
    "check_positive_int",
    "check_same_device",
    "check_size",
    "check_tensor",
    "compute_dtype",
    "index_bounds",
]

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


def index_bounds(indices: torch.Tensor) -> tuple[int, int] | None:
    """``(min, max)`` of an integer tensor as Python ints, or ``None`` when it is empty.

    Both come back in one transfer: for a CUDA tensor that is one device sync, the price of a
    range check that refuses bad indices before they are used (an out-of-range CUDA index would
    end the process in a device-side assert, a negative one would wrap around silently).
    """
    if indices.numel() == 0:
        return None
    low, high = torch.aminmax(indices)
    if indices.device.type == "cpu":
        return int(low), int(high)
    bounds = torch.stack((low, high)).tolist()
    return int(bounds[0]), int(bounds[1])
