"""Validation and conversion of score maps, boxes and threshold grids (NumPy or torch input).

Everything is converted to NumPy: score maps to float64 (an exact conversion from every float
dtype, so a float32 map gives the numbers the reference protocol gives for the same map cast to
float64), boxes to int64, thresholds to a float64 array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camkit._checks import is_tensor, real_number

_NUMPY_FLOATS = (np.float16, np.float32, np.float64)


def as_array(value: object) -> np.ndarray | None:
    """``value`` (an array, a tensor on any device or nested sequences) as a NumPy array, or
    ``None`` when NumPy cannot make one array of it (ragged nesting; tensors in a list that
    torch cannot convert; the caller names what it expected).

    A tensor is detached and copied to the CPU; bfloat16, which NumPy lacks, becomes the exact
    float32.
    """
    if is_tensor(value):
        import torch

        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None


def as_float64_maps(value: object, name: str, *, ndim: tuple[int, ...],
                    unit_interval: bool = True) -> np.ndarray:
    """Return ``value`` as a float64 array after checking the score-map rules of the protocol.

    Rules: a NumPy array or torch tensor of a floating dtype, ``ndim`` in ``ndim``, non-empty
    spatial dims, finite, every value in [0, 1] (any finite value when not ``unit_interval``:
    the pointing games take maps of any scale).
    """
    if is_tensor(value):
        import torch

        if not value.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
        array = value.detach().to("cpu", torch.float64).numpy()
    elif isinstance(value, np.ndarray):
        if value.dtype.type not in _NUMPY_FLOATS:
            raise TypeError(
                f"{name} must have dtype float16, float32 or float64, got {value.dtype}"
            )
        array = value.astype(np.float64, copy=False)
    else:
        raise TypeError(
            f"{name} must be a numpy.ndarray or torch.Tensor, got {type(value).__name__}"
        )
    if array.ndim not in ndim:
        shapes = " or ".join({2: "(H, W)", 3: "(B, H, W)"}[n] for n in ndim)
        raise ValueError(f"{name} must have shape {shapes}, got shape {tuple(array.shape)}")
    if array.shape[-1] == 0 or array.shape[-2] == 0:
        raise ValueError(f"{name} must have non-empty spatial dims, got shape {tuple(array.shape)}")
    if array.size:
        low, high = float(array.min()), float(array.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"{name} must be finite, got NaN or infinite values")
        if unit_interval and (low < 0.0 or high > 1.0):
            raise ValueError(f"{name} must lie in [0, 1], got values in [{low}, {high}]")
    return np.ascontiguousarray(array)


#: Largest magnitude of a box coordinate: sides then stay below 2**31 and areas below 2**62,
#: so the protocol's integer IoU (inclusive areas, their sum) never wraps around int64; no
#: image comes near it.
COORDINATE_LIMIT = 2**30


def as_boxes(value: object, name: str, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return ``value`` as an int64 ``(N, 4)`` array of ``x0, y0, x1, y1`` boxes.

    Integer arrays, tensors and nested sequences are accepted; floats only when every value is
    integral. ``x1 < x0`` or ``y1 < y0`` is an error, and so is a coordinate beyond
    ``±COORDINATE_LIMIT``. With ``size`` ``(H, W)`` (the score map's), every box must lie on
    the map: ``0 <= x0 < W``, ``0 <= y0 < H``, ``x1 <= W`` and ``y1 <= H``. An end at ``W`` or
    ``H`` is allowed: datasets store a box's far edge as ``x0 + width`` (ImageNet's first
    validation box ends at the image's height), which ``resize_boxes`` maps to exactly ``W``
    or ``H``.
    """
    array = as_array(value)
    if array is None:
        raise TypeError(f"{name} must be an (N, 4) array of integer coordinates, got "
                        f"{type(value).__name__}")
    if array.dtype == object and array.size and all(type(item) is int for item in array.flat):
        # Python ints past int64: float64 is exact within the limit, and past it only the
        # range checks below look at the values.
        array = array.astype(np.float64)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integer coordinates, got dtype {array.dtype}")
    if array.ndim == 1 and array.size == 4:
        array = array.reshape(1, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got shape {tuple(array.shape)}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.trunc(array)).any():
            raise ValueError(f"{name} must hold integral coordinates, got non-integral floats")
    if size is not None:
        height, width = size
        # Compared before the cast to int64, so that no coordinate can wrap around. A
        # negative x1 or y1 is off the map as well (it is below x0 or y0, or they are < 0).
        off = ((array < 0) | (array > np.array([width - 1, height - 1, width, height]))).any(1)
        if off.any():
            row = int(np.flatnonzero(off)[0])
            raise ValueError(
                f"{name} must lie on the {height}x{width} score map (0 <= x0 < W, "
                f"0 <= y0 < H, x1 <= W, y1 <= H), got {array[row].tolist()} at row {row}"
            )
    if (size is None or max(size) > COORDINATE_LIMIT) and array.size and (
            array.min() < -COORDINATE_LIMIT or array.max() > COORDINATE_LIMIT):
        raise ValueError(f"{name} must hold coordinates within +-2**30, got values in "
                         f"[{array.min()}, {array.max()}]")
    boxes = array.astype(np.int64, copy=False)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must satisfy x0 <= x1 and y0 <= y1 (x0, y0, x1, y1 convention), got "
            f"{boxes[row].tolist()} at row {row}"
        )
    return boxes


def as_thresholds(value: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Return a score-map threshold grid as a float64 array.

    The grid must be a non-empty, strictly increasing 1-D sequence within [0, 1];
    ``camkit.boxes.threshold_grid(interval)`` builds the protocol's grid.
    """
    if real_number(value) is not None and getattr(value, "ndim", 0) == 0:
        raise TypeError(f"{name} must be a sequence of floats (threshold_grid(interval) builds "
                        f"the protocol's grid), got the scalar {value!r}")
    if is_tensor(value):
        tensor = value.detach().cpu()
        if tensor.is_floating_point():  # bfloat16 has no NumPy dtype; the cast is exact
            tensor = tensor.double()
        value = tensor.numpy()
    try:
        found = np.asarray(value)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:  # ragged; tensors
        # in a list that torch cannot convert (RuntimeError)
        raise TypeError(f"{name} must be a sequence of floats, got {type(value).__name__}"
                        ) from error
    if found.dtype.kind not in "iuf":  # strings, bools, complex numbers, objects
        raise TypeError(f"{name} must be a sequence of floats, got {type(value).__name__}")
    grid = found.astype(np.float64, copy=False)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {grid.shape}")
    if not np.isfinite(grid).all() or grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError(f"{name} must hold finite values in [0, 1], got {grid.tolist()[:8]}...")
    if grid.size > 1 and not (np.diff(grid) > 0).all():
        raise ValueError(f"{name} must be strictly increasing")
    return grid
