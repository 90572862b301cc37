"""Raster pictures drawn with OpenCV: RGB conversion (with un-normalization), heat-map
overlays, boxes, grids and PNG files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from camkit._checks import is_tensor
from camkit._io import write_bytes_atomic

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "draw_boxes",
    "image_grid",
    "overlay_heatmap",
    "save_png",
    "to_rgb_uint8",
]

#: Per-channel mean of ImageNet-normalized images (RGB, in [0, 1]): ``mean=`` of the overlays.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: Per-channel standard deviation of ImageNet-normalized images: ``std=`` of the overlays.
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Curve colours (matplotlib's "tab10" order), RGB.
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def _cv2() -> ModuleType:
    import cv2

    return cv2


def _channel_values(value: object, name: str, channels: int) -> np.ndarray:
    """``mean=`` or ``std=`` as a ``(1,)`` or ``(channels,)`` float64 array."""
    if is_tensor(value):
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or one number per channel, got "
                        f"{type(value).__name__}") from None
    if array.size not in (1, channels):
        raise ValueError(f"{name} must hold 1 or {channels} values (one per channel of the "
                         f"image), got {array.size}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite values, got {array.tolist()}")
    return array


def _unnormalize(array: np.ndarray, mean: object, std: object) -> np.ndarray:
    """``array * std + mean`` per channel, for an ``(H, W, C)`` float image."""
    if mean is None and std is None:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"mean and std un-normalize float images, got an image of dtype "
                        f"{array.dtype}")
    channels = array.shape[2]
    scale = np.ones(1) if std is None else _channel_values(std, "std", channels)
    shift = np.zeros(1) if mean is None else _channel_values(mean, "mean", channels)
    if (scale <= 0).any():
        raise ValueError(f"std must be positive, got {scale.tolist()}")
    return array.astype(np.float64) * scale + shift


def to_rgb_uint8(
    image: np.ndarray | torch.Tensor,
    *,
    mean: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    std: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Convert an image to an ``(H, W, 3)`` RGB ``uint8`` array.

    Args:
        image: ``Tensor[3, H, W]`` / ``Tensor[1, H, W]`` / ``Tensor[H, W]`` or
            ``ndarray[H, W, 3]`` / ``ndarray[H, W, 1]`` / ``ndarray[H, W]``; floats are read as
            [0, 1] (clipped), integers as [0, 255].
        mean, std: the normalization a float image went through (``(x - mean) / std``): one
            value or one per channel, e.g. ``IMAGENET_MEAN`` and ``IMAGENET_STD``. The image is
            un-normalized (``x * std + mean``) before it is clipped to [0, 1]. Either may be
            left out (mean 0, std 1).
    """
    if is_tensor(image):
        tensor = image.detach().cpu()
        if tensor.dim() == 3:
            tensor = tensor.permute(1, 2, 0)
        array = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(
            f"image must be a torch.Tensor or numpy.ndarray, got {type(image).__name__}"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (3, H, W), got shape {image.shape}")
    array = _unnormalize(array, mean, std)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if np.issubdtype(array.dtype, np.floating):
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0)
    return np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8))


def _scores(scoremap: np.ndarray | torch.Tensor) -> np.ndarray:
    """A 2-D score map as float32, NaN read as 0, clipped to [0, 1]."""
    scores = (scoremap.detach().float().cpu().numpy() if is_tensor(scoremap)
              else np.asarray(scoremap, dtype=np.float32))
    if scores.ndim != 2:
        raise ValueError(f"scoremap must be 2-D (h, w), got shape {scores.shape}")
    return np.clip(np.nan_to_num(scores.astype(np.float32)), 0.0, 1.0)


def _jet(scores: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` jet colours of ``(h, w)`` scores in [0, 1] (OpenCV's table)."""
    cv2 = _cv2()
    heat = cv2.applyColorMap(np.round(scores * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return np.asarray(cv2.cvtColor(heat, cv2.COLOR_BGR2RGB))


def overlay_heatmap(
    image: np.ndarray | torch.Tensor,
    scoremap: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
    mean: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    std: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Blend a jet-coloured score map over an image.

    Args:
        image: the picture (see ``to_rgb_uint8``), ``H × W``.
        scoremap (ndarray[h, w] or Tensor[h, w]): scores in [0, 1]; resized to ``H × W``.
        alpha: weight of the heat map in [0, 1].
        mean, std: un-normalize a normalized float image first (see ``to_rgb_uint8``).

    Returns:
        ndarray[H, W, 3], RGB ``uint8``.
    """
    cv2 = _cv2()
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_rgb_uint8(image, mean=mean, std=std)
    scores = _scores(scoremap)
    if scores.shape != rgb.shape[:2]:
        scores = cv2.resize(scores, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = _jet(scores)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.round(blended).astype(np.uint8)


def _box_array(boxes: object, name: str) -> np.ndarray:
    """Boxes as an ``(n, 4)`` array (a single ``(4,)`` box becomes ``(1, 4)``)."""
    array = boxes.detach().cpu().numpy() if is_tensor(boxes) else np.asarray(boxes)
    if array.size == 0:
        return np.zeros((0, 4))
    array = array.reshape(-1, 4) if array.ndim == 1 and array.size % 4 == 0 else array
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be (n, 4) x0, y0, x1, y1, got shape {array.shape}")
    return array


def draw_boxes(
    image: np.ndarray | torch.Tensor,
    boxes: np.ndarray | torch.Tensor | Sequence[Sequence[int]],
    *,
    color: tuple[int, int, int] = (0, 255, 0),
    thickness: int = 2,
    mean: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    std: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Draw ``x0, y0, x1, y1`` boxes (inclusive pixel corners) on a copy of an image.

    Args:
        image: the picture (see ``to_rgb_uint8``).
        boxes (ndarray[n, 4]): integer pixel boxes; an empty array draws nothing.
        color: RGB colour.
        thickness: line width in pixels.
        mean, std: un-normalize a normalized float image first (see ``to_rgb_uint8``).

    Returns:
        ndarray[H, W, 3], RGB ``uint8``.
    """
    cv2 = _cv2()
    canvas = to_rgb_uint8(image, mean=mean, std=std).copy()
    array = _box_array(boxes, "boxes")
    for x0, y0, x1, y1 in np.round(array).astype(int):
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), tuple(map(int, color)),
                      int(thickness))
    return canvas


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4,
              color: tuple[int, int, int] = (0, 0, 0), thickness: int = 1) -> None:
    cv2 = _cv2()
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)


def _text_width(text: str, scale: float, thickness: int = 1) -> int:
    cv2 = _cv2()
    (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return int(width)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    *,
    column_titles: Sequence[str] | None = None,
    pad: int = 4,
    title_height: int = 18,
) -> np.ndarray:
    """Tile equally sized RGB images into a grid with optional column titles.

    Args:
        rows: ``rows[r][c]`` is an ``ndarray[H, W, 3]``; all images share one size.
        column_titles: one title per column, drawn above the first row.

    Returns:
        ndarray[H', W', 3], RGB ``uint8`` on a white background.
    """
    if not rows or not rows[0]:
        raise ValueError("rows must hold at least one image")
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    top = title_height if column_titles else 0
    canvas = np.full((top + len(rows) * (height + pad) + pad, columns * (width + pad) + pad, 3),
                     255, np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (height, width):
                raise ValueError(
                    f"all images must be {height}x{width}, got {tile.shape[0]}x{tile.shape[1]} "
                    f"at row {r}, column {c}"
                )
            y, x = top + pad + r * (height + pad), pad + c * (width + pad)
            canvas[y:y + height, x:x + width] = to_rgb_uint8(tile)
    for c, title in enumerate(column_titles or []):
        _put_text(canvas, title, (pad + c * (width + pad) + 2, title_height - 5))
    return canvas


def _encode_png(image: np.ndarray, path: str | os.PathLike[str]) -> bytes:
    cv2 = _cv2()
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    return bytes(encoded.tobytes())


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB image as PNG, atomically (temporary file + rename); return the path."""
    return write_bytes_atomic(path, _encode_png(image, path))
