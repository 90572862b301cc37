"""Overlay figures: an image with its heat map, the class name as title, a colour bar of the
scores, and GT and predicted boxes in two colours with a legend; drawn with matplotlib when it
is installed (PNG, SVG, PDF) and with OpenCV otherwise (PNG)."""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from camkit._checks import is_tensor
from camkit._io import write_bytes_atomic

from ._figure import (
    check_dpi,
    check_pixels,
    check_text,
    choose_backend,
    figure_bytes,
    figure_to_array,
    new_figure,
    output_format,
)
from ._image import (
    _box_array,
    _cv2,
    _encode_png,
    _jet,
    _put_text,
    _text_width,
    overlay_heatmap,
)

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

__all__ = ["overlay_figure", "plot_overlay", "save_overlay"]

Color = tuple[int, int, int]

#: Legend texts of the two kinds of boxes.
_GT_LABEL, _PRED_LABEL = "ground truth", "prediction"


@dataclass(frozen=True)
class _Overlay:
    """A checked overlay: the blended picture and what is drawn around it."""

    blended: np.ndarray  # (H, W, 3) uint8
    title: str
    boxes: list[tuple[np.ndarray, Color, str]]  # (n, 4) boxes, colour, legend text
    colorbar: bool
    colorbar_label: str


def _class_name(label: object, class_names: object) -> str:
    """The name of class ``label``: ``class_names[label]`` or ``"class {label}"``."""
    if isinstance(label, str):
        return label
    if is_tensor(label) and label.numel() == 1:
        label = label.reshape(-1)[0].item()
    if isinstance(label, np.ndarray) and label.size == 1:
        label = label.reshape(-1)[0].item()
    try:
        index = operator.index(label)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"label must be an int class index or a str, got "
                        f"{type(label).__name__}") from None
    if class_names is None:
        return f"class {index}"
    if isinstance(class_names, Mapping):
        if index not in class_names:
            raise ValueError(f"label {index} is not a key of class_names")
        return str(class_names[index])
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a sequence or a mapping of class names, got "
                        f"{type(class_names).__name__}")
    if not 0 <= index < len(class_names):
        raise ValueError(f"label {index} is out of range for class_names of length "
                         f"{len(class_names)}")
    return str(class_names[index])


def _check_color(value: object, name: str) -> Color:
    if (not isinstance(value, (tuple, list)) or len(value) != 3 or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255
            for c in value)):
        raise ValueError(f"{name} must be an RGB triple of ints in [0, 255], got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def _overlay(image: object, scoremap: object, *, label: object, class_names: object,
             title: object, gt_boxes: object, pred_boxes: object, alpha: float,
             mean: float | Sequence[float] | np.ndarray | torch.Tensor | None,
             std: float | Sequence[float] | np.ndarray | torch.Tensor | None,
             colorbar: object, colorbar_label: object, gt_color: object,
             pred_color: object) -> _Overlay:
    if class_names is not None and label is None:
        raise ValueError("class_names needs label=, the class whose name the title shows")
    if not isinstance(colorbar, (bool, np.bool_)):
        raise TypeError(f"colorbar must be True or False, got {colorbar!r}")
    blended = overlay_heatmap(image, scoremap, alpha=alpha, mean=mean,  # type: ignore[arg-type]
                              std=std)
    parts = [check_text("" if title is None else title, "title")]
    if label is not None:
        parts.append(_class_name(label, class_names))
    boxes = []
    if gt_boxes is not None:
        boxes.append((_box_array(gt_boxes, "gt_boxes"), _check_color(gt_color, "gt_color"),
                      _GT_LABEL))
    if pred_boxes is not None:
        boxes.append((_box_array(pred_boxes, "pred_boxes"),
                      _check_color(pred_color, "pred_color"), _PRED_LABEL))
    return _Overlay(blended, ": ".join(p for p in parts if p), boxes, bool(colorbar),
                    check_text(colorbar_label, "colorbar_label"))


def _default_size(overlay: _Overlay, dpi: float) -> tuple[int, int]:
    """Pixels at ``dpi`` for a 4.4 in tall figure whose image keeps its aspect ratio."""
    height, width = overlay.blended.shape[:2]
    image_height = 3.4  # inches; title and legend take the rest
    extra = 1.0 if overlay.colorbar else 0.3
    inches = (max(2.5, image_height * width / height + extra), 4.4)
    return round(inches[0] * dpi), round(inches[1] * dpi)


# ---------------------------------------------------------------------------------------------
# matplotlib
# ---------------------------------------------------------------------------------------------
def _hex(color: Color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _draw_matplotlib(figure: Figure, overlay: _Overlay) -> None:
    from matplotlib import patheffects
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    outline = [patheffects.withStroke(linewidth=3.4, foreground="black")]
    ax = figure.add_subplot()
    height, width = overlay.blended.shape[:2]
    ax.imshow(overlay.blended, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    handles = []
    for boxes, color, text in overlay.boxes:
        for x0, y0, x1, y1 in np.asarray(boxes, np.float64):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                   edgecolor=_hex(color), linewidth=1.8, path_effects=outline))
        handles.append(Line2D([], [], color=_hex(color), linewidth=1.8, path_effects=outline,
                              label=text))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    if overlay.title:
        ax.set_title(overlay.title)
    if overlay.colorbar:
        table = _jet(np.linspace(0.0, 1.0, 256)[None, :])[0] / 255.0
        mappable = ScalarMappable(norm=Normalize(0.0, 1.0),
                                  cmap=ListedColormap(table, name="jet (OpenCV)"))
        # an inset of the image's axes: as tall as the image whatever the figure's shape
        bar_axes = ax.inset_axes((1.03, 0.0, 0.045, 1.0))
        figure.colorbar(mappable, cax=bar_axes, label=overlay.colorbar_label or None)
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01),
                  ncols=len(handles), frameon=False, handlelength=1.6)


# ---------------------------------------------------------------------------------------------
# OpenCV
# ---------------------------------------------------------------------------------------------
def _outlined_rectangle(canvas: np.ndarray, corner0: tuple[int, int], corner1: tuple[int, int],
                        color: Color, thickness: int) -> None:
    cv2 = _cv2()
    cv2.rectangle(canvas, corner0, corner1, (0, 0, 0), thickness + 2)
    cv2.rectangle(canvas, corner0, corner1, color, thickness)


def _draw_opencv(overlay: _Overlay, size: tuple[int, int], dpi: float) -> np.ndarray:
    cv2 = _cv2()
    width, height = size
    s = dpi / 100.0
    font, thick = 0.45 * s, max(1, round(s))
    canvas = np.full((height, width, 3), 255, np.uint8)
    top = round(30 * s) if overlay.title else round(8 * s)
    bottom = round(28 * s) if overlay.boxes else round(8 * s)
    right = round(72 * s) if overlay.colorbar else round(8 * s)
    margin = round(8 * s)
    image_h, image_w = overlay.blended.shape[:2]
    room_w, room_h = max(1, width - margin - right), max(1, height - top - bottom)
    scale = min(room_w / image_w, room_h / image_h)
    shown_w, shown_h = max(1, round(image_w * scale)), max(1, round(image_h * scale))
    x, y = margin + (room_w - shown_w) // 2, top + (room_h - shown_h) // 2
    canvas[y:y + shown_h, x:x + shown_w] = cv2.resize(
        overlay.blended, (shown_w, shown_h),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    line = max(1, round(2 * s))
    for boxes, color, _ in overlay.boxes:
        for x0, y0, x1, y1 in np.asarray(boxes, np.float64):
            _outlined_rectangle(
                canvas, (x + round(x0 * scale), y + round(y0 * scale)),
                (x + round((x1 + 1) * scale) - 1, y + round((y1 + 1) * scale) - 1), color, line)
    cv2.rectangle(canvas, (x - 1, y - 1), (x + shown_w, y + shown_h), (0, 0, 0), 1)
    if overlay.title:
        text = overlay.title.encode("ascii", "replace").decode("ascii")
        _put_text(canvas, text, (x + (shown_w - _text_width(text, 1.2 * font, thick)) // 2,
                                 top - round(10 * s)), 1.2 * font, thickness=thick)
    if overlay.colorbar:
        bar_x, bar_w = x + shown_w + round(10 * s), round(14 * s)
        values = np.linspace(1.0, 0.0, shown_h)[:, None]
        canvas[y:y + shown_h, bar_x:bar_x + bar_w] = _jet(np.repeat(values, bar_w, axis=1))
        cv2.rectangle(canvas, (bar_x - 1, y - 1), (bar_x + bar_w, y + shown_h), (0, 0, 0), 1)
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            tick_y = y + round((1.0 - value) * (shown_h - 1))
            cv2.line(canvas, (bar_x + bar_w, tick_y), (bar_x + bar_w + round(4 * s), tick_y),
                     (0, 0, 0), 1)
            _put_text(canvas, f"{value:g}", (bar_x + bar_w + round(6 * s),
                                             tick_y + round(4 * s)), 0.8 * font, thickness=thick)
        label = overlay.colorbar_label.encode("ascii", "replace").decode("ascii")
        _put_text(canvas, label, (bar_x, y - round(6 * s)), 0.8 * font, thickness=thick)
    if overlay.boxes:
        items = [(color, text) for _, color, text in overlay.boxes]
        widths = [round(30 * s) + _text_width(text, font, thick) for _, text in items]
        cursor = x + (shown_w - sum(widths) - round(16 * s) * (len(items) - 1)) // 2
        base = y + shown_h + round(20 * s)
        for (color, text), item_w in zip(items, widths, strict=True):
            mid = base - round(4 * s)
            cv2.line(canvas, (cursor, mid), (cursor + round(22 * s), mid), (0, 0, 0), line + 2)
            cv2.line(canvas, (cursor, mid), (cursor + round(22 * s), mid), color, line)
            _put_text(canvas, text, (cursor + round(28 * s), base), font, thickness=thick)
            cursor += item_w + round(16 * s)
    return canvas


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------
def plot_overlay(
    image: np.ndarray | torch.Tensor,
    scoremap: np.ndarray | torch.Tensor,
    *,
    label: int | str | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    title: str | None = None,
    gt_boxes: np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    pred_boxes: np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    alpha: float = 0.5,
    mean: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    std: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    colorbar: bool = True,
    colorbar_label: str = "score",
    gt_color: tuple[int, int, int] = (0, 230, 0),
    pred_color: tuple[int, int, int] = (255, 0, 255),
    size: tuple[int, int] | None = None,
    dpi: float = 100,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> np.ndarray:
    """A figure of one localization: the image with its jet heat map, the class name as title,
    a colour bar of the scores and GT and predicted boxes with a legend.

    Drawn with matplotlib when it is installed (``backend="auto"``), else with OpenCV;
    ``save_overlay`` writes it to a PNG, SVG or PDF file.

    Args:
        image: the picture (see ``to_rgb_uint8``), ``H × W``; a normalized float tensor is
            un-normalized with ``mean`` and ``std`` (e.g. ``IMAGENET_MEAN``, ``IMAGENET_STD``).
        scoremap (ndarray[h, w] or Tensor[h, w]): scores in [0, 1]; resized to ``H × W``.
        label: the class shown: an index (an int, or a one-element tensor) looked up in
            ``class_names``, or the name itself.
        class_names: ``names[label]``: a sequence (e.g. the 1000 ImageNet names) or a mapping
            ``index -> name``; without it the title says ``"class {label}"``.
        title: text before the class name (``"CREAM: golden retriever"``).
        gt_boxes, pred_boxes (ndarray[n, 4] or [4]): ``x0, y0, x1, y1`` boxes (inclusive pixel
            corners) drawn in ``gt_color`` and ``pred_color`` with a legend entry each.
        alpha: weight of the heat map in [0, 1].
        colorbar: draw the colour bar of the scores, labelled ``colorbar_label``.
        size: ``(width, height)`` in pixels; default: a 4.4 in tall figure at ``dpi`` that
            keeps the image's aspect ratio.
        dpi: pixels per inch (text and lines are sized in points).
        backend: ``"auto"``, ``"matplotlib"`` or ``"opencv"``.

    Returns:
        ndarray[height, width, 3], RGB ``uint8``.
    """
    overlay = _overlay(image, scoremap, label=label, class_names=class_names, title=title,
                       gt_boxes=gt_boxes, pred_boxes=pred_boxes, alpha=alpha, mean=mean,
                       std=std, colorbar=colorbar, colorbar_label=colorbar_label,
                       gt_color=gt_color, pred_color=pred_color)
    resolution = check_dpi(dpi)
    pixels = _default_size(overlay, resolution) if size is None else check_pixels(size, "size")
    if choose_backend(backend, "png") == "opencv":
        return _draw_opencv(overlay, pixels, resolution)
    figure = new_figure(pixels, resolution)
    _draw_matplotlib(figure, overlay)
    return figure_to_array(figure, pixels)


def save_overlay(
    path: str | os.PathLike[str],
    image: np.ndarray | torch.Tensor,
    scoremap: np.ndarray | torch.Tensor,
    *,
    label: int | str | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    title: str | None = None,
    gt_boxes: np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    pred_boxes: np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    alpha: float = 0.5,
    mean: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    std: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    colorbar: bool = True,
    colorbar_label: str = "score",
    gt_color: tuple[int, int, int] = (0, 230, 0),
    pred_color: tuple[int, int, int] = (255, 0, 255),
    size: tuple[int, int] | None = None,
    dpi: float = 200,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> Path:
    """Write the figure of ``plot_overlay`` to ``path`` (atomically); return the path.

    The format follows the suffix: ``.png``, or the vector ``.svg`` and ``.pdf`` (these need
    matplotlib; the picture itself is embedded as an image, text and boxes stay vector).
    Arguments as ``plot_overlay``.
    """
    fmt = output_format(path)
    overlay = _overlay(image, scoremap, label=label, class_names=class_names, title=title,
                       gt_boxes=gt_boxes, pred_boxes=pred_boxes, alpha=alpha, mean=mean,
                       std=std, colorbar=colorbar, colorbar_label=colorbar_label,
                       gt_color=gt_color, pred_color=pred_color)
    resolution = check_dpi(dpi)
    pixels = _default_size(overlay, resolution) if size is None else check_pixels(size, "size")
    if choose_backend(backend, fmt) == "opencv":
        return write_bytes_atomic(path, _encode_png(_draw_opencv(overlay, pixels, resolution),
                                                    path))
    figure = new_figure(pixels, resolution)
    _draw_matplotlib(figure, overlay)
    return write_bytes_atomic(path, figure_bytes(figure, fmt))


def overlay_figure(
    image: np.ndarray | torch.Tensor,
    scoremap: np.ndarray | torch.Tensor,
    *,
    label: int | str | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    title: str | None = None,
    gt_boxes: np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    pred_boxes: np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    alpha: float = 0.5,
    mean: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    std: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
    colorbar: bool = True,
    colorbar_label: str = "score",
    gt_color: tuple[int, int, int] = (0, 230, 0),
    pred_color: tuple[int, int, int] = (255, 0, 255),
    size: tuple[int, int] | None = None,
    dpi: float = 100,
) -> Figure:
    """The figure of ``plot_overlay`` as a ``matplotlib.figure.Figure`` (needs matplotlib), to
    change further and write with ``save_figure``."""
    overlay = _overlay(image, scoremap, label=label, class_names=class_names, title=title,
                       gt_boxes=gt_boxes, pred_boxes=pred_boxes, alpha=alpha, mean=mean,
                       std=std, colorbar=colorbar, colorbar_label=colorbar_label,
                       gt_color=gt_color, pred_color=pred_color)
    resolution = check_dpi(dpi)
    pixels = _default_size(overlay, resolution) if size is None else check_pixels(size, "size")
    choose_backend("matplotlib", "png")
    figure = new_figure(pixels, resolution)
    _draw_matplotlib(figure, overlay)
    return figure
