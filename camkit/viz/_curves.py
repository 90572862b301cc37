"""Line plots of named curves, drawn with matplotlib when it is installed (PNG, SVG, PDF) and
with OpenCV otherwise (PNG)."""

from __future__ import annotations

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
    check_percent,
    check_pixels,
    check_range,
    check_text,
    choose_backend,
    figure_bytes,
    figure_to_array,
    new_figure,
    output_format,
)
from ._image import _PALETTE, _cv2, _encode_png, _put_text, _text_width

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["curves_figure", "plot_curves", "save_curves"]

_Data = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Axes:
    """What the axes show, checked."""

    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    x_percent: float | None = None
    y_percent: float | None = None


def _axes(title: object, xlabel: object, ylabel: object, x_range: object, y_range: object,
          x_percent: object, y_percent: object) -> _Axes:
    return _Axes(check_text(title, "title"), check_text(xlabel, "xlabel"),
                 check_text(ylabel, "ylabel"), check_range(x_range, "x_range"),
                 check_range(y_range, "y_range"), check_percent(x_percent, "x_percent"),
                 check_percent(y_percent, "y_percent"))


def _values(value: object, name: str) -> np.ndarray:
    if is_tensor(value):
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold numbers, got {type(value).__name__}") from None


def _checked_curves(curves: object) -> _Data:
    """``name -> (xs, ys)`` as float64 arrays of equal length; at least one finite point."""
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a mapping name -> (xs, ys), got {type(curves).__name__}")
    if not curves:
        raise ValueError("curves must hold at least one named curve")
    data: _Data = {}
    for name, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"curves[{name!r}] must be a pair (xs, ys), got "
                            f"{type(pair).__name__}")
        xs, ys = _values(pair[0], f"curves[{name!r}]"), _values(pair[1], f"curves[{name!r}]")
        if xs.size != ys.size:
            raise ValueError(f"curves[{name!r}] has {xs.size} x values and {ys.size} y values; "
                             f"they must match")
        data[str(name)] = (xs, ys)
    if not any((np.isfinite(xs) & np.isfinite(ys)).any() for xs, ys in data.values()):
        raise ValueError("curves must hold at least one point")
    return data


# ---------------------------------------------------------------------------------------------
# matplotlib
# ---------------------------------------------------------------------------------------------
def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _draw_matplotlib(figure: Figure, data: _Data, axes: _Axes) -> None:
    from matplotlib.ticker import PercentFormatter

    ax = figure.add_subplot()
    for index, (name, (xs, ys)) in enumerate(data.items()):
        ax.plot(xs, ys, color=_hex(_PALETTE[index % len(_PALETTE)]), linewidth=1.5,
                label=name)
    ax.set_title(axes.title)
    ax.set_xlabel(axes.xlabel)
    ax.set_ylabel(axes.ylabel)
    if axes.x_range is not None:
        ax.set_xlim(*axes.x_range)
    if axes.y_range is not None:
        ax.set_ylim(*axes.y_range)
    if axes.x_percent is not None:
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=axes.x_percent))
    if axes.y_percent is not None:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=axes.y_percent))
    ax.grid(True, color="0.88", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    if any(data):
        ax.legend(loc="best", framealpha=0.9, edgecolor="0.8")


# ---------------------------------------------------------------------------------------------
# OpenCV
# ---------------------------------------------------------------------------------------------
_ASCII = {"≥": ">=", "≤": "<=", "–": "-", "—": "-", "×": "x", "−": "-"}


def _ascii(text: str) -> str:
    """Text for OpenCV's Hershey font, which draws ASCII only."""
    text = "".join(_ASCII.get(c, c) for c in text)
    return text.encode("ascii", "replace").decode("ascii")


def _tick_label(value: float, percent: float | None) -> str:
    if percent is None:
        return f"{value:g}"
    return f"{round(value / percent * 100, 6):g}%"


def _axis_ticks(low: float, high: float, percent: float | None) -> list[float]:
    """Round ticks (about six), in percent steps when the axis shows percent."""
    if percent is None:
        return _ticks(low, high, count=6)
    factor = 100.0 / percent
    return [value / factor for value in _ticks(low * factor, high * factor, count=6)]


def _data_range(values: list[np.ndarray], fixed: tuple[float, float] | None
                ) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    low, high = float(finite.min()), float(finite.max())
    return low, high if high > low else low + 1.0


def _draw_opencv(data: _Data, axes: _Axes, size: tuple[int, int], dpi: float) -> np.ndarray:
    """The plot as ``ndarray[height, width, 3]`` RGB uint8; line widths, text and margins
    scale with ``dpi / 100``."""
    cv2 = _cv2()
    width, height = size
    s = dpi / 100.0
    font, thick = 0.4 * s, max(1, round(s))
    finite = [(xs, ys) for xs, ys in data.values()]
    keep = [np.isfinite(xs) & np.isfinite(ys) for xs, ys in finite]
    x_low, x_high = _data_range([xs[k] for (xs, _), k in zip(finite, keep, strict=True)],
                                axes.x_range)
    y_low, y_high = _data_range([ys[k] for (_, ys), k in zip(finite, keep, strict=True)],
                                axes.y_range)
    x_ticks = _axis_ticks(x_low, x_high, axes.x_percent)
    y_ticks = _axis_ticks(y_low, y_high, axes.y_percent)
    y_labels = [_tick_label(v, axes.y_percent) for v in y_ticks]
    left = max(round(56 * s), max((_text_width(t, font, thick) for t in y_labels), default=0)
               + round(12 * s))
    right, top, bottom = round(16 * s), round(44 * s), round(44 * s)
    plot_w, plot_h = max(1, width - left - right), max(1, height - top - bottom)
    canvas = np.full((height, width, 3), 255, np.uint8)
    area = np.full((plot_h, plot_w, 3), 255, np.uint8)

    def to_pixel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = (x - x_low) / (x_high - x_low) * (plot_w - 1)
        py = (plot_h - 1) - (y - y_low) / (y_high - y_low) * (plot_h - 1)
        return np.stack([px, py], axis=-1)

    grey = (225, 225, 225)
    for value in x_ticks:
        px = round(float(to_pixel(np.array(value), np.array(y_low))[0]))
        cv2.line(area, (px, 0), (px, plot_h - 1), grey, thick)
        label = _tick_label(value, axes.x_percent)
        _put_text(canvas, label, (left + px - _text_width(label, font, thick) // 2,
                                  height - bottom + round(16 * s)), font, thickness=thick)
    for value, label in zip(y_ticks, y_labels, strict=True):
        py = round(float(to_pixel(np.array(x_low), np.array(value))[1]))
        cv2.line(area, (0, py), (plot_w - 1, py), grey, thick)
        _put_text(canvas, label, (left - round(6 * s) - _text_width(label, font, thick),
                                  top + py + round(4 * s)), font, thickness=thick)
    line = max(1, round(2 * s))
    for index, ((xs, ys), k) in enumerate(zip(finite, keep, strict=True)):
        color = _PALETTE[index % len(_PALETTE)]
        points = to_pixel(xs, ys)
        # a run of consecutive finite points is one polyline; a NaN breaks the line
        breaks = np.flatnonzero(~k)
        for run in np.split(np.arange(xs.size), breaks):
            run = run[k[run]]
            if run.size:
                pixels = np.round(points[run]).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(area, [pixels], False, color, line, cv2.LINE_AA)
    canvas[top:top + plot_h, left:left + plot_w] = area
    cv2.rectangle(canvas, (left - 1, top - 1), (left + plot_w, top + plot_h), (0, 0, 0), thick)
    names = [_ascii(name) for name in data]
    if any(names):
        row = round(16 * s)
        box_w = max(_text_width(n, font, thick) for n in names) + round(40 * s)
        x0, y0 = left + plot_w - box_w - round(8 * s), top + round(8 * s)
        cv2.rectangle(canvas, (x0, y0), (x0 + box_w, y0 + row * len(names) + round(6 * s)),
                      (255, 255, 255), -1)
        cv2.rectangle(canvas, (x0, y0), (x0 + box_w, y0 + row * len(names) + round(6 * s)),
                      (200, 200, 200), thick)
        for index, name in enumerate(names):
            y = y0 + row * (index + 1)
            cv2.line(canvas, (x0 + round(6 * s), y - round(4 * s)),
                     (x0 + round(26 * s), y - round(4 * s)),
                     _PALETTE[index % len(_PALETTE)], line, cv2.LINE_AA)
            _put_text(canvas, name, (x0 + round(32 * s), y), font, thickness=thick)
    title, xlabel, ylabel = _ascii(axes.title), _ascii(axes.xlabel), _ascii(axes.ylabel)
    _put_text(canvas, title, (left, round(18 * s)), 1.25 * font, thickness=thick)
    _put_text(canvas, xlabel, (left + (plot_w - _text_width(xlabel, font, thick)) // 2,
                               height - round(8 * s)), font, thickness=thick)
    _put_text(canvas, ylabel, (round(4 * s), top - round(8 * s)), font, thickness=thick)
    return canvas


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten)."""
    raw = (high - low) / count
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.ceil(low / step - 1e-9) * step
    # "+ 0.0" turns a -0.0 tick into 0.0 (printed "0", not "-0").
    return [round(float(v), 10) + 0.0 for v in np.arange(first, high + step * 1e-9, step)]


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------
def _render_array(data: _Data, axes: _Axes, size: object, dpi: object,
                  backend: object) -> np.ndarray:
    """The plot as ``ndarray[height, width, 3]`` RGB uint8."""
    pixels, resolution = check_pixels(size, "size"), check_dpi(dpi)
    if choose_backend(backend, "png") == "opencv":
        return _draw_opencv(data, axes, pixels, resolution)
    figure = new_figure(pixels, resolution)
    _draw_matplotlib(figure, data, axes)
    return figure_to_array(figure, pixels)


def _render_file(path: str | os.PathLike[str], data: _Data, axes: _Axes, size: object,
                 dpi: object, backend: object) -> Path:
    """The plot written to ``path`` in the format its suffix names."""
    fmt = output_format(path)
    pixels, resolution = check_pixels(size, "size"), check_dpi(dpi)
    if choose_backend(backend, fmt) == "opencv":
        array = _draw_opencv(data, axes, pixels, resolution)
        return write_bytes_atomic(path, _encode_png(array, path))
    figure = new_figure(pixels, resolution)
    _draw_matplotlib(figure, data, axes)
    return write_bytes_atomic(path, figure_bytes(figure, fmt))


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 420),
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    x_percent: float | None = None,
    y_percent: float | None = None,
    dpi: float = 100,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> np.ndarray:
    """Line plot of named ``(x, y)`` curves, with axes, ticks, grid, title and a legend.

    Drawn with matplotlib when it is installed (``backend="auto"``), else with OpenCV.
    ``save_curves`` writes the same plot to a PNG, SVG or PDF file.

    Args:
        curves: ``name -> (xs, ys)``, each a sequence, array or 1-D tensor of numbers of equal
            length; a NaN breaks the line.
        title, xlabel, ylabel: texts of the plot.
        size: ``(width, height)`` of the picture in pixels.
        y_range, x_range: fixed axis limits ``(low, high)``; default: the data's range.
        x_percent, y_percent: show the axis in percent, with this data value as 100% (1.0 for
            fractions, 100.0 for values already in percent); default: plain numbers.
        dpi: pixels per inch: text and lines are sized in points, so a larger ``dpi`` with a
            proportionally larger ``size`` gives the same plot at a higher resolution.
        backend: ``"auto"``, ``"matplotlib"`` or ``"opencv"``.

    Returns:
        ndarray[height, width, 3], RGB ``uint8``.
    """
    data = _checked_curves(curves)
    axes = _axes(title, xlabel, ylabel, x_range, y_range, x_percent, y_percent)
    return _render_array(data, axes, size, dpi, backend)


def save_curves(
    path: str | os.PathLike[str],
    curves: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (1280, 840),
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    x_percent: float | None = None,
    y_percent: float | None = None,
    dpi: float = 200,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> Path:
    """Write the plot of ``plot_curves`` to ``path`` (atomically); return the path.

    The format follows the suffix: ``.png``, or the vector ``.svg`` and ``.pdf`` (these need
    matplotlib: text stays text in SVG, fonts are embedded as TrueType in PDF). The figure is
    ``size / dpi`` inches (6.4 × 4.2 by default); a PNG has ``size`` pixels. Other arguments as
    ``plot_curves``.
    """
    data = _checked_curves(curves)
    axes = _axes(title, xlabel, ylabel, x_range, y_range, x_percent, y_percent)
    return _render_file(path, data, axes, size, dpi, backend)


def curves_figure(
    curves: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 420),
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    x_percent: float | None = None,
    y_percent: float | None = None,
    dpi: float = 100,
) -> Figure:
    """The plot of ``plot_curves`` as a ``matplotlib.figure.Figure`` (needs matplotlib), to
    change further (``figure.axes[0]``) and write with ``save_figure``."""
    data = _checked_curves(curves)
    axes = _axes(title, xlabel, ylabel, x_range, y_range, x_percent, y_percent)
    pixels, resolution = check_pixels(size, "size"), check_dpi(dpi)
    choose_backend("matplotlib", "png")
    figure = new_figure(pixels, resolution)
    _draw_matplotlib(figure, data, axes)
    return figure
