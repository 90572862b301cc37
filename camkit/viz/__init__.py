"""Pictures of localization results: heat-map overlays, boxes, grids and curve plots.

* Raster helpers drawn with OpenCV into RGB ``uint8`` arrays: ``to_rgb_uint8`` (with
  ``mean=``/``std=`` to un-normalize normalized tensors), ``overlay_heatmap``, ``draw_boxes``,
  ``image_grid``, and ``save_png``.
* Figures: ``plot_curves`` / ``save_curves`` (named curves), ``plot_pr_curve`` /
  ``save_pr_curve`` (PxAP's precision-recall curve), ``plot_threshold_curves`` /
  ``save_threshold_curves`` (box accuracy against the score-map threshold) and
  ``plot_overlay`` / ``save_overlay`` (an image with its heat map, class name, colour bar and
  GT and predicted boxes in a legend). They are drawn with matplotlib when it is installed
  (``pip install 'camkit[plots]'``): real fonts, and ``save_*`` writes PNG, SVG or PDF by the
  path's suffix. Without matplotlib OpenCV draws them, as PNG only. ``curves_figure`` and
  ``overlay_figure`` return the matplotlib figure to change further; ``save_figure`` writes it.

Files are written atomically (a temporary file renamed over the target). Importing this
module imports neither PyTorch nor matplotlib; OpenCV and matplotlib load on first use.
"""

from camkit.viz._curves import _ticks, curves_figure, plot_curves, save_curves
from camkit.viz._figure import save_figure
from camkit.viz._image import (
    _PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    draw_boxes,
    image_grid,
    overlay_heatmap,
    save_png,
    to_rgb_uint8,
)
from camkit.viz._metrics import (
    plot_pr_curve,
    plot_threshold_curves,
    pr_curves,
    save_pr_curve,
    save_threshold_curves,
    threshold_curves,
)
from camkit.viz._overlay import overlay_figure, plot_overlay, save_overlay

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "curves_figure",
    "draw_boxes",
    "image_grid",
    "overlay_figure",
    "overlay_heatmap",
    "plot_curves",
    "plot_overlay",
    "plot_pr_curve",
    "plot_threshold_curves",
    "pr_curves",
    "save_curves",
    "save_figure",
    "save_overlay",
    "save_png",
    "save_pr_curve",
    "save_threshold_curves",
    "threshold_curves",
    "to_rgb_uint8",
]

_PRIVATE = (_PALETTE, _ticks)  # kept importable as camkit.viz._PALETTE / camkit.viz._ticks
