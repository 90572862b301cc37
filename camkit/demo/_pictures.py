"""Pictures of a demo seed: overlay grid and box-accuracy-vs-threshold curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from camkit import viz

from ._model import to_input

if TYPE_CHECKING:
    from ._run import Trained

__all__ = ["draw_pictures"]


def _overlay_grid(trained: Trained, count: int) -> np.ndarray:
    split = trained.split
    index = torch.arange(min(count, split["images"].shape[0]))
    images = split["images"][index]
    x = to_input(images)
    labels = split["labels"][index]
    gt_boxes = split["boxes"][index]
    columns: list[list[np.ndarray]] = [
        [viz.draw_boxes(img, box[None], color=(0, 220, 0), thickness=1)
         for img, box in zip(images, gt_boxes, strict=True)]]
    for row in trained.rows:
        result = trained.handles[row.model].localize(x, labels=labels, method=row.method)
        column = []
        for b in range(len(index)):
            panel = viz.overlay_heatmap(images[b], result.scoremaps[b], alpha=0.5)
            panel = viz.draw_boxes(panel, gt_boxes[b][None], color=(0, 220, 0), thickness=1)
            boxes = result.boxes[b]
            assert boxes is not None  # localize extracts boxes by default
            column.append(viz.draw_boxes(panel, boxes, color=(255, 255, 255), thickness=1))
        columns.append(column)
    rows = [list(row) for row in zip(*columns, strict=True)]
    scale = max(1, 128 // images.shape[-1])
    if scale > 1:
        import cv2

        rows = [[cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
                 for tile in row] for row in rows]
    return viz.image_grid(rows, column_titles=["image + GT box", *(r.name for r in trained.rows)])


def _curve_plot(methods: dict[str, dict[str, Any]], thresholds: list[float]) -> np.ndarray:
    curves = {name: (thresholds, fig["curves"]["0.5"]) for name, fig in methods.items()}
    return viz.plot_curves(curves, title="Box accuracy (IoU >= 0.5) vs CAM threshold",
                           xlabel="CAM threshold", ylabel="accuracy (%)", y_range=(0.0, 100.0))


def draw_pictures(out: Path, results: dict[str, Any], trained: Trained) -> list[Path]:
    """``overlays.png`` (when ``overlays`` > 0) and ``threshold_curves.png``."""
    written = []
    count = results["config"]["overlays"]
    if count:
        written.append(viz.save_png(out / "overlays.png", _overlay_grid(trained, count)))
    written.append(viz.save_png(out / "threshold_curves.png",
                                _curve_plot(results["methods"], results["thresholds"])))
    return written
