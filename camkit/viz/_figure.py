"""Shared plumbing of the figures: which renderer draws (matplotlib or OpenCV), output formats,
argument checks, and writing a matplotlib figure to PNG, SVG or PDF atomically.

matplotlib is used through ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` only: never
``pyplot``, so no backend is selected and no figure is registered anywhere. Its style settings
(``rcParams``) are the user's; only the font embedding of SVG and PDF files is set, for the
time of one ``savefig`` (``rc_context``).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from camkit._checks import real_number
from camkit._io import write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure"]

Format = Literal["png", "svg", "pdf"]

_FORMATS: dict[str, Format] = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_BACKENDS = ("auto", "matplotlib", "opencv")
_INSTALL = "pip install 'camkit[plots]'"

#: No creation date in the files, so that the same figure gives the same bytes.
_METADATA: dict[Format, dict[str, str | None]] = {
    "png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None},
}


def matplotlib_error() -> ImportError | None:
    """``None`` when matplotlib's figure and Agg canvas import, else the import error."""
    try:
        import matplotlib.figure  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401
    except ImportError as error:
        return error
    return None


def output_format(path: object) -> Format:
    """The format a path's suffix names: ``png``, ``svg`` or ``pdf`` (case-insensitive)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"path must end in .png, .svg or .pdf, got {os.fspath(path)!r}")
    return _FORMATS[suffix]


def choose_backend(backend: object, fmt: Format) -> Literal["matplotlib", "opencv"]:
    """The renderer for ``backend`` and an output format.

    ``"auto"``: matplotlib when it imports, else OpenCV, which draws PNG only.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be 'auto', 'matplotlib' or 'opencv', got {backend!r}")
    if backend == "opencv":
        if fmt != "png":
            raise ValueError(f"backend='opencv' draws PNG only, got a .{fmt} path; vector "
                             f"files need matplotlib (backend='auto' or 'matplotlib')")
        return "opencv"
    error = matplotlib_error()
    if error is None:
        return "matplotlib"
    if backend == "matplotlib":
        raise ImportError(f"backend='matplotlib' needs matplotlib, which could not be "
                          f"imported ({error}); install it with {_INSTALL}")
    if fmt != "png":
        raise ImportError(f"writing a .{fmt} file needs matplotlib, which could not be "
                          f"imported ({error}); install it with {_INSTALL}, or write a .png "
                          f"(drawn with OpenCV)")
    return "opencv"


def check_pixels(value: object, name: str) -> tuple[int, int]:
    """A ``(width, height)`` pair of positive ints."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (width, height) of ints, got {value!r}")
    pair = []
    for item in value:
        number = real_number(item)
        if (isinstance(item, float) or number is None or not math.isfinite(number)
                or number != int(number) or number <= 0):
            raise ValueError(f"{name} must hold positive ints (width, height), got {value!r}")
        pair.append(int(number))
    return pair[0], pair[1]


def check_dpi(value: object) -> float:
    number = real_number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"dpi must be a positive number, got {value!r}")
    return number


def check_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check_range(value: object, name: str) -> tuple[float, float] | None:
    """``None`` or a ``(low, high)`` pair of finite numbers with ``low < high``."""
    if value is None:
        return None
    items = list(value) if isinstance(value, (tuple, list)) and len(value) == 2 else []
    low, high = (real_number(item) for item in items) if items else (None, None)
    if (low is None or high is None or not math.isfinite(low) or not math.isfinite(high)
            or low >= high):
        raise ValueError(f"{name} must be a pair (low, high) of finite numbers with low < high, "
                         f"got {value!r}")
    return low, high


def check_percent(value: object, name: str) -> float | None:
    """``None`` or the positive finite data value shown as 100 %."""
    if value is None:
        return None
    number = real_number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be None or the positive data value shown as 100%, "
                         f"got {value!r}")
    return number


def new_figure(size: tuple[int, int], dpi: float) -> Figure:
    """A white matplotlib figure of ``size`` pixels at ``dpi``, on its own Agg canvas, laid out
    by the constrained layout engine."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, facecolor="white",
                    layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Figure, size: tuple[int, int]) -> np.ndarray:
    """Render on the Agg canvas; ``ndarray[height, width, 3]`` RGB ``uint8`` of exactly
    ``size`` pixels (a rounding pixel is padded or cut)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) \
        else FigureCanvasAgg(figure)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    width, height = size
    out = np.full((height, width, 3), 255, np.uint8)
    h, w = min(height, rgb.shape[0]), min(width, rgb.shape[1])
    out[:h, :w] = rgb[:h, :w]
    return out


def figure_bytes(figure: Figure, fmt: Format, dpi: float | None = None) -> bytes:
    """The figure encoded as ``fmt``; vector text kept as text (SVG) or TrueType (PDF)."""
    from matplotlib import rc_context

    buffer = io.BytesIO()
    # Font handling of the vector formats: SVG keeps text as <text> (searchable, editable,
    # drawn in the reader's font), PDF embeds TrueType (Type 42) fonts, as publishers ask; a
    # fixed hash salt gives the same SVG ids, so the same figure gives the same bytes.
    with rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "camkit"}):
        figure.savefig(buffer, format=fmt, dpi="figure" if dpi is None else dpi,
                       metadata=_METADATA[fmt])
    return buffer.getvalue()


def save_figure(path: str | os.PathLike[str], figure: Figure, *,
                dpi: float | None = None) -> Path:
    """Write a matplotlib figure (e.g. from ``curves_figure`` or ``overlay_figure``, after any
    change of yours) as PNG, SVG or PDF by the path's suffix, atomically; return the path.

    Args:
        path: ends in ``.png``, ``.svg`` or ``.pdf``.
        figure: a ``matplotlib.figure.Figure``.
        dpi: pixels per inch of a PNG (default: the figure's own).
    """
    fmt = output_format(path)
    error = matplotlib_error()
    if error is not None:
        raise ImportError(f"save_figure needs matplotlib, which could not be imported "
                          f"({error}); install it with {_INSTALL}")
    from matplotlib.figure import Figure

    if not isinstance(figure, Figure):
        raise TypeError(f"figure must be a matplotlib.figure.Figure, got "
                        f"{type(figure).__name__}")
    return write_bytes_atomic(path, figure_bytes(figure, fmt,
                                                 None if dpi is None else check_dpi(dpi)))
