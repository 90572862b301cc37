"""Pictures of localization results: heat-map overlays, boxes, grids and curve plots.

Everything is drawn with OpenCV into RGB ``uint8`` arrays (no plotting library needed) and
written with ``save_png``, which replaces the target file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from camkit._io import write_bytes_atomic

__all__ = ["draw_boxes", "image_grid", "overlay_heatmap", "plot_curves", "save_png", "to_rgb_uint8"]

_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def _cv2() -> ModuleType:
    import cv2

    return cv2


def to_rgb_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Convert an image to an ``(H, W, 3)`` RGB ``uint8`` array.

    Args:
        image: ``Tensor[3, H, W]`` / ``Tensor[H, W]`` or ``ndarray[H, W, 3]`` / ``ndarray[H, W]``;
            floats are read as [0, 1] (clipped), integers as [0, 255].
    """
    if isinstance(image, torch.Tensor):
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
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (3, H, W), got shape {image.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if np.issubdtype(array.dtype, np.floating):
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0)
    return np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8))


def overlay_heatmap(
    image: np.ndarray | torch.Tensor,
    scoremap: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend a jet-coloured score map over an image.

    Args:
        image: the picture (see ``to_rgb_uint8``), ``H × W``.
        scoremap (ndarray[h, w] or Tensor[h, w]): scores in [0, 1]; resized to ``H × W``.
        alpha: weight of the heat map in [0, 1].

    Returns:
        ndarray[H, W, 3], RGB ``uint8``.
    """
    cv2 = _cv2()
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_rgb_uint8(image)
    scores = scoremap.detach().float().cpu().numpy() if isinstance(scoremap, torch.Tensor) \
        else np.asarray(scoremap, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scoremap must be 2-D (h, w), got shape {scores.shape}")
    scores = np.clip(np.nan_to_num(scores.astype(np.float32)), 0.0, 1.0)
    if scores.shape != rgb.shape[:2]:
        scores = cv2.resize(scores, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.round(scores * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.round(blended).astype(np.uint8)


def draw_boxes(
    image: np.ndarray | torch.Tensor,
    boxes: np.ndarray | torch.Tensor | Sequence[Sequence[int]],
    *,
    color: tuple[int, int, int] = (0, 255, 0),
    thickness: int = 2,
) -> np.ndarray:
    """Draw ``x0, y0, x1, y1`` boxes (inclusive pixel corners) on a copy of an image.

    Args:
        image: the picture (see ``to_rgb_uint8``).
        boxes (ndarray[n, 4]): integer pixel boxes; an empty array draws nothing.
        color: RGB colour.
        thickness: line width in pixels.

    Returns:
        ndarray[H, W, 3], RGB ``uint8``.
    """
    cv2 = _cv2()
    canvas = to_rgb_uint8(image).copy()
    array = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    if array.size == 0:
        return canvas
    array = array.reshape(-1, 4) if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (n, 4) x0, y0, x1, y1, got shape {array.shape}")
    for x0, y0, x1, y1 in np.round(array).astype(int):
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), tuple(map(int, color)),
                      int(thickness))
    return canvas


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4,
              color: tuple[int, int, int] = (0, 0, 0)) -> None:
    _cv2().putText(canvas, text, origin, _cv2().FONT_HERSHEY_SIMPLEX, scale, color, 1,
                   _cv2().LINE_AA)


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


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 420),
    y_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Line plot of named ``(x, y)`` curves, with axes, ticks and a legend.

    Args:
        curves: ``name -> (xs, ys)``; each curve needs at least one point.
        size: ``(width, height)`` of the picture in pixels.
        y_range: fixed y-axis limits; default: the data's range.

    Returns:
        ndarray[height, width, 3], RGB ``uint8``.
    """
    cv2 = _cv2()
    if not curves:
        raise ValueError("curves must hold at least one named curve")
    width, height = size
    left, right, top, bottom = 56, 16, 44, 44
    canvas = np.full((height, width, 3), 255, np.uint8)
    xs_all = np.concatenate([np.asarray(xs, float) for xs, _ in curves.values()])
    ys_all = np.concatenate([np.asarray(ys, float) for _, ys in curves.values()])
    if xs_all.size == 0:
        raise ValueError("curves must hold at least one point")
    x_low, x_high = float(xs_all.min()), float(xs_all.max())
    y_low, y_high = y_range if y_range is not None else (float(ys_all.min()), float(ys_all.max()))
    x_high = x_high if x_high > x_low else x_low + 1.0
    y_high = y_high if y_high > y_low else y_low + 1.0

    def to_pixel(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x_low) / (x_high - x_low) * (width - left - right)
        py = height - bottom - (y - y_low) / (y_high - y_low) * (height - top - bottom)
        return round(px), round(py)

    grey = (200, 200, 200)
    for value_x in _ticks(x_low, x_high):
        px, _ = to_pixel(value_x, y_low)
        cv2.line(canvas, (px, top), (px, height - bottom), grey, 1)
        _put_text(canvas, f"{value_x:g}", (px - 10, height - bottom + 16))
    for value_y in _ticks(y_low, y_high):
        _, py = to_pixel(x_low, value_y)
        cv2.line(canvas, (left, py), (width - right, py), grey, 1)
        _put_text(canvas, f"{value_y:g}", (4, py + 4))
    cv2.rectangle(canvas, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    for index, (name, (xs, ys)) in enumerate(curves.items()):
        color = _PALETTE[index % len(_PALETTE)]
        points = np.array([to_pixel(float(x), float(y)) for x, y in zip(xs, ys, strict=True)],
                          np.int32)
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA)
        legend_y = top + 16 + 16 * index
        cv2.line(canvas, (width - right - 150, legend_y - 4), (width - right - 130, legend_y - 4),
                 color, 2)
        _put_text(canvas, name, (width - right - 125, legend_y))
    _put_text(canvas, title, (left, 18), 0.5)
    _put_text(canvas, xlabel, (left + (width - left - right) // 2 - 40, height - 8))
    _put_text(canvas, ylabel, (4, top - 8))
    return canvas


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten)."""
    raw = (high - low) / count
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.ceil(low / step - 1e-9) * step
    # "+ 0.0" turns a -0.0 tick into 0.0 (printed "0", not "-0").
    return [round(float(v), 10) + 0.0 for v in np.arange(first, high + step * 1e-9, step)]


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB image as PNG, atomically (temporary file + rename); return the path."""
    cv2 = _cv2()
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    return write_bytes_atomic(path, encoded.tobytes())
