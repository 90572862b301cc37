"""Evaluation of the demo: each row and study variant scored with the reference metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camkit._progress import ProgressBar
from camkit.boxes import threshold_grid
from camkit.cam import normalize_map, upsample_map
from camkit.localizer import Localizer
from camkit.metrics import BoxAccuracy, LocalizationAccuracy, PixelAP

from ._model import to_input
from ._train import capture_outputs

__all__ = ["Evaluation", "MapFn", "Row", "evaluate"]

#: ``map_fn(features, labels)``: a feature-resolution map ``(B, h, w)`` of a study variant.
MapFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Row:
    """A row of the table: the trained model (a key of the handles) and how it localizes.

    ``method`` is passed to ``Localizer.localize``; ``rule`` is the fixed-threshold rule of
    the row's GT-known and top-1 localization (``"max"`` or ``"pas"``).
    """

    name: str
    model: str
    method: str
    rule: str


@dataclass
class _Targets:
    """Ground truth of one evaluation batch, converted once for every method."""

    boxes: list[np.ndarray]
    part_boxes: list[np.ndarray]
    masks: Tensor
    part_masks: Tensor
    labels: Tensor

    @classmethod
    def of(cls, split: dict[str, Tensor], index: Tensor) -> _Targets:
        return cls(boxes=[box[None].numpy() for box in split["boxes"][index]],
                   part_boxes=[box[None].numpy() for box in split["part_boxes"][index]],
                   masks=split["masks"][index], part_masks=split["part_masks"][index],
                   labels=split["labels"][index])


@dataclass
class _MethodMeters:
    boxes: BoxAccuracy
    part_boxes: BoxAccuracy
    pixels: PixelAP
    localization: LocalizationAccuracy
    focus_sums: np.ndarray = field(default_factory=lambda: np.zeros(3))
    focus_counts: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def update(self, scoremaps: Tensor, logits: Tensor, targets: _Targets) -> None:
        masks, parts = targets.masks, targets.part_masks
        self.boxes.update(scoremaps, targets.boxes)
        self.part_boxes.update(scoremaps, targets.part_boxes)
        self.pixels.update(scoremaps, masks.to(torch.uint8))
        self.localization.update(scoremaps, targets.boxes, logits, targets.labels)
        # Mean score on the discriminative part, on the rest of the object, on background.
        regions = (parts, masks & ~parts, ~masks)
        for slot, region in enumerate(regions):
            self.focus_sums[slot] += float(scoremaps[region].double().sum())
            self.focus_counts[slot] += int(region.sum())

    def result(self) -> dict[str, Any]:
        boxes = self.boxes.compute()
        localization = self.localization.compute()
        focus = self.focus_sums / np.maximum(self.focus_counts, 1)
        return {
            "max_box_acc_v2": boxes.max_box_acc_v2,
            "max_box_acc": {f"{k:g}": v for k, v in boxes.max_box_acc.items()},
            "best_threshold": {f"{k:g}": v for k, v in boxes.best_threshold.items()},
            "curves": {f"{k:g}": v.tolist() for k, v in boxes.curves.items()},
            "pxap": self.pixels.compute().pxap,
            "gt_known_loc": localization.gt_known,
            "top1_loc": localization.top1,
            "part_max_box_acc_v2": self.part_boxes.compute().max_box_acc_v2,
            "mean_score": {"part": focus[0], "rest_of_object": focus[1], "background": focus[2]},
        }


def _box_meter(grid: np.ndarray) -> BoxAccuracy:
    """MaxBoxAccV2: IoU 0.3, 0.5 and 0.7, every contour."""
    return BoxAccuracy(thresholds=grid, iou_thresholds=(0.3, 0.5, 0.7), multi_contour=True)


def _meters(grid: np.ndarray, rule: str) -> _MethodMeters:
    return _MethodMeters(
        boxes=_box_meter(grid),
        part_boxes=_box_meter(grid),
        pixels=PixelAP(thresholds=grid),
        localization=LocalizationAccuracy(rule=rule),
    )


@dataclass
class _StudyMeters:
    boxes: BoxAccuracy
    pixels: PixelAP

    def update(self, scoremaps: Tensor, targets: _Targets) -> None:
        self.boxes.update(scoremaps, targets.boxes)
        self.pixels.update(scoremaps, targets.masks.to(torch.uint8))

    def result(self) -> dict[str, Any]:
        boxes = self.boxes.compute()
        return {"max_box_acc_v2": boxes.max_box_acc_v2,
                "max_box_acc": {f"{k:g}": v for k, v in boxes.max_box_acc.items()},
                "pxap": self.pixels.compute().pxap}


@dataclass
class Evaluation:
    """What ``evaluate`` measured: classification top-1 per model, the figures of each
    row, and of each study variant (model → variant → figures)."""

    top1: dict[str, float]
    methods: dict[str, dict[str, Any]]
    thresholds: list[float]
    studies: dict[str, dict[str, dict[str, Any]]]
    seconds: float


def evaluate(
    handles: dict[str, Localizer],
    rows: list[Row],
    split: dict[str, Tensor],
    *,
    cam_curve_interval: float,
    batch_size: int = 50,
    studies: dict[str, tuple[nn.Module, dict[str, MapFn]]] | None = None,
    progress: bool | None = None,
) -> Evaluation:
    """Score every row (and study variant) on a rendered split.

    Args:
        handles: model key → the handle attached to that trained model.
        rows: the table's rows, in order.
        split: the output of ``render_split`` (with ``part_boxes``).
        studies: model key → (the module whose output is the CAM features, variant name →
            map function); each variant is scored with MaxBoxAccV2 and PxAP.
    """
    start = time.perf_counter()
    studies = studies or {}
    unused = set(handles) - {row.model for row in rows}
    if unused:
        raise ValueError(f"every handle needs a row; no row uses {sorted(unused)}")
    grid = threshold_grid(cam_curve_interval)
    meters = {row.name: _meters(grid, row.rule) for row in rows}
    study_meters = {model: {name: _StudyMeters(_box_meter(grid), PixelAP(thresholds=grid))
                            for name in variants} for model, (_, variants) in studies.items()}
    count = split["images"].shape[0]
    size = (split["images"].shape[-2], split["images"].shape[-1])
    correct = dict.fromkeys(handles, 0)
    bar = ProgressBar(-(-count // batch_size), "evaluate", enabled=progress)
    with bar:
        for begin in range(0, count, batch_size):
            index = torch.arange(begin, min(begin + batch_size, count))
            x = to_input(split["images"][index])
            targets = _Targets.of(split, index)
            for model, loc in handles.items():
                module = studies[model][0] if model in studies else None
                model_rows = [row for row in rows if row.model == model]
                with capture_outputs(module) as captured:
                    results = [loc.localize(x, labels=targets.labels, method=row.method,
                                            boxes=False) for row in model_rows]
                for row, result in zip(model_rows, results, strict=True):
                    meters[row.name].update(result.scoremaps, result.logits, targets)
                correct[model] += int((results[0].logits.argmax(1) == targets.labels).sum())
                if model in studies and captured:
                    for name, map_fn in studies[model][1].items():
                        maps = normalize_map(upsample_map(map_fn(captured[0], targets.labels),
                                                          size))
                        study_meters[model][name].update(maps, targets)
            bar.update()
    return Evaluation(
        top1={model: 100.0 * hits / count for model, hits in correct.items()},
        methods={row.name: meters[row.name].result() for row in rows},
        thresholds=grid.tolist(),
        studies={model: {name: meter.result() for name, meter in variants.items()}
                 for model, variants in study_meters.items()},
        seconds=time.perf_counter() - start,
    )
