"""Curves of the metrics: PxAP's pixel precision-recall curve and box accuracy against the
score-map threshold, as data for ``plot_curves`` and as plots."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from ._curves import plot_curves, save_curves

if TYPE_CHECKING:
    from camkit.metrics import BoxAccuracyResult, PixelAPResult

__all__ = [
    "plot_pr_curve",
    "plot_threshold_curves",
    "pr_curves",
    "save_pr_curve",
    "save_threshold_curves",
    "threshold_curves",
]

_Data = dict[str, tuple[np.ndarray, np.ndarray]]


def _named(results: object, kind: type, name: str) -> dict[str, object]:
    if isinstance(results, kind):
        return {"": results}
    if isinstance(results, Mapping) and results and all(
            isinstance(value, kind) for value in results.values()):
        return {str(key): value for key, value in results.items()}
    raise TypeError(f"{name} must be a {kind.__name__} or a non-empty mapping name -> "
                    f"{kind.__name__}, got {type(results).__name__}")


def pr_curves(
    results: PixelAPResult | Mapping[str, PixelAPResult],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pixel precision-recall curves of PxAP results, ready for ``plot_curves``.

    Each curve is the staircase whose area is the PxAP: precision ``p_i`` over the recall
    interval ``(r_{i-1}, r_i]`` (points without a prediction, where precision is NaN, are left
    out; the first step starts at recall 0).

    Args:
        results: one ``PixelAPResult`` or ``name -> PixelAPResult`` (e.g. one per method).

    Returns:
        ``label -> (recall, precision)``, fractions in [0, 1]; the label carries the PxAP
        (``"CAM (PxAP 63.2)"``, or ``"PxAP 63.2"`` for a single result).
    """
    from camkit.metrics import PixelAPResult

    data: _Data = {}
    for name, result in _named(results, PixelAPResult, "results").items():
        result = cast("PixelAPResult", result)
        precision = np.asarray(result.precision, dtype=np.float64)
        recall = np.asarray(result.recall, dtype=np.float64)
        keep = ~np.isnan(precision)
        if not keep.any():
            raise ValueError(f"results[{name!r}] has no threshold at which a pixel is "
                             f"predicted (precision is NaN everywhere)")
        r, p = recall[keep], precision[keep]
        label = f"{name} (PxAP {result.pxap:.1f})" if name else f"PxAP {result.pxap:.1f}"
        data[label] = (np.concatenate([[0.0], np.repeat(r, 2)[:-1]]), np.repeat(p, 2))
    return data


def plot_pr_curve(
    results: PixelAPResult | Mapping[str, PixelAPResult],
    *,
    title: str = "Pixel precision-recall",
    size: tuple[int, int] = (640, 420),
    dpi: float = 100,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> np.ndarray:
    """The precision-recall curve of PxAP (``pr_curves``), both axes in percent, with the
    PxAP of each curve in the legend. Arguments as ``plot_curves``; returns
    ``ndarray[height, width, 3]`` RGB ``uint8``."""
    return plot_curves(pr_curves(results), title=title, xlabel="recall", ylabel="precision",
                       size=size, x_range=(0.0, 1.0), y_range=(0.0, 1.02), x_percent=1.0,
                       y_percent=1.0, dpi=dpi, backend=backend)


def save_pr_curve(
    path: str | os.PathLike[str],
    results: PixelAPResult | Mapping[str, PixelAPResult],
    *,
    title: str = "Pixel precision-recall",
    size: tuple[int, int] = (1280, 840),
    dpi: float = 200,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> Path:
    """Write the plot of ``plot_pr_curve`` as PNG, SVG or PDF (see ``save_curves``)."""
    return save_curves(path, pr_curves(results), title=title, xlabel="recall",
                       ylabel="precision", size=size, x_range=(0.0, 1.0), y_range=(0.0, 1.02),
                       x_percent=1.0, y_percent=1.0, dpi=dpi, backend=backend)


def threshold_curves(
    results: BoxAccuracyResult | Mapping[str, BoxAccuracyResult],
    *,
    iou_threshold: float | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Box accuracy against the score-map threshold, ready for ``plot_curves``.

    Args:
        results: one ``BoxAccuracyResult`` (one curve per IoU threshold, or only
            ``iou_threshold``) or ``name -> BoxAccuracyResult`` (one curve per name at
            ``iou_threshold``, default 0.5).

    Returns:
        ``label -> (thresholds, accuracy in percent)``; the label carries the MaxBoxAcc.
    """
    from camkit.metrics import BoxAccuracyResult

    named = _named(results, BoxAccuracyResult, "results")
    single = list(named) == [""]
    data: _Data = {}
    for name, result in named.items():
        result = cast("BoxAccuracyResult", result)
        chosen = 0.5 if iou_threshold is None and not single else iou_threshold
        ious = list(result.curves) if chosen is None else [
            iou for iou in result.curves if np.isclose(iou, chosen)]
        if not ious:
            raise ValueError(f"iou_threshold must be one of {sorted(result.curves)} (the IoU "
                             f"thresholds of results{f'[{name!r}]' if name else ''}), got "
                             f"{chosen}")
        for iou in ious:
            label = f"IoU ≥ {iou:g}" if single else name
            data[f"{label} (MaxBoxAcc {result.max_box_acc[iou]:.1f})"] = (
                np.asarray(result.thresholds, np.float64),
                np.asarray(result.curves[iou], np.float64))
    return data


def _threshold_title(results: object, iou_threshold: float | None) -> str:
    if isinstance(results, Mapping) or iou_threshold is not None:
        return f"Box accuracy at IoU ≥ {0.5 if iou_threshold is None else iou_threshold:g}"
    return "Box accuracy"


def plot_threshold_curves(
    results: BoxAccuracyResult | Mapping[str, BoxAccuracyResult],
    *,
    iou_threshold: float | None = None,
    title: str | None = None,
    size: tuple[int, int] = (640, 420),
    dpi: float = 100,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> np.ndarray:
    """Box accuracy (percent) against the score-map threshold (``threshold_curves``), with
    the MaxBoxAcc of each curve in the legend. Arguments as ``plot_curves`` (``title``
    defaults to one naming the IoU threshold); returns ``ndarray[height, width, 3]``."""
    data = threshold_curves(results, iou_threshold=iou_threshold)
    return plot_curves(data, title=_threshold_title(results, iou_threshold) if title is None
                       else title, xlabel="score-map threshold", ylabel="box accuracy",
                       size=size, y_range=(0.0, 100.0), y_percent=100.0, dpi=dpi,
                       backend=backend)


def save_threshold_curves(
    path: str | os.PathLike[str],
    results: BoxAccuracyResult | Mapping[str, BoxAccuracyResult],
    *,
    iou_threshold: float | None = None,
    title: str | None = None,
    size: tuple[int, int] = (1280, 840),
    dpi: float = 200,
    backend: Literal["auto", "matplotlib", "opencv"] = "auto",
) -> Path:
    """Write the plot of ``plot_threshold_curves`` as PNG, SVG or PDF (see ``save_curves``)."""
    data = threshold_curves(results, iou_threshold=iou_threshold)
    return save_curves(path, data, title=_threshold_title(results, iou_threshold)
                       if title is None else title, xlabel="score-map threshold",
                       ylabel="box accuracy", size=size, y_range=(0.0, 100.0), y_percent=100.0,
                       dpi=dpi, backend=backend)

