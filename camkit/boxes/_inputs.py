"""Validation and conversion of score maps, boxes and threshold grids (NumPy or torch input).

Everything is converted to NumPy: score maps to float64 (an exact conversion from every float
dtype, so a float32 map gives the numbers the reference protocol gives for the same map cast to
float64), boxes to int64, thresholds to a float64 array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camkit._checks import is_tensor

_NUMPY_FLOATS = (np.float16, np.float32, np.float64)


def as_float64_maps(value: object, name: str, *, ndim: tuple[int, ...]) -> np.ndarray:
    """Return ``value`` as a float64 array after checking the score-map rules of the protocol.

    Rules: a NumPy array or torch tensor of a floating dtype, ``ndim`` in ``ndim``, non-empty
    spatial dims, finite, every value in [0, 1].
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
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got values in [{low}, {high}]")
    return np.ascontiguousarray(array)


def as_boxes(value: object, name: str) -> np.ndarray:
    """Return ``value`` as an int64 ``(N, 4)`` array of ``x0, y0, x1, y1`` boxes.

    Integer arrays, tensors and nested sequences are accepted; floats only when every value is
    integral. ``x1 < x0`` or ``y1 < y0`` is an error.
    """
    if is_tensor(value):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold integer coordinates, got dtype {array.dtype}")
    if array.ndim == 1 and array.size == 4:
        array = array.reshape(1, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got shape {tuple(array.shape)}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or (array != np.trunc(array)).any():
            raise ValueError(f"{name} must hold integral coordinates, got non-integral floats")
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
    if isinstance(value, (float, int)):
        raise TypeError(f"{name} must be a sequence of floats (threshold_grid(interval) builds "
                        f"the protocol's grid), got the scalar {value!r}")
    if is_tensor(value):
        value = value.detach().cpu().numpy()
    try:
        grid = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a sequence of floats, got {type(value).__name__}"
                        ) from error
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {grid.shape}")
    if not np.isfinite(grid).all() or grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError(f"{name} must hold finite values in [0, 1], got {grid.tolist()[:8]}...")
    if grid.size > 1 and not (np.diff(grid) > 0).all():
        raise ValueError(f"{name} must be strictly increasing")
    return grid
