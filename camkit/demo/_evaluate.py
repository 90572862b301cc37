"""Evaluation of the demo: CAM, RCAM and CREAM scored with the reference metrics."""

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
from camkit.cam import class_activation_map, normalize_map, upsample_map
from camkit.cream import ContextEmbeddingBank, cream_map
from camkit.localizer import Localizer
from camkit.metrics import BoxAccuracy, LocalizationAccuracy, PixelAP

from ._model import to_input
from ._train import capture_outputs

__all__ = ["METHODS", "Evaluation", "evaluate"]

#: Table name → (``Localizer`` method, fixed-threshold rule of its GT-known / top-1 figures).
METHODS: dict[str, tuple[str, str]] = {
    "CAM": ("cam", "max"),
    "RCAM": ("rcam", "pas"),
    "CREAM": ("cream", "max"),
}


@dataclass
class _MethodMeters:
    boxes: BoxAccuracy
    part_boxes: BoxAccuracy
    pixels: PixelAP
    localization: LocalizationAccuracy
    focus_sums: np.ndarray = field(default_factory=lambda: np.zeros(3))
    focus_counts: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def update(self, scoremaps: Tensor, logits: Tensor, split: dict[str, Tensor],
               index: Tensor) -> None:
        boxes = [box[None].numpy() for box in split["boxes"][index]]
        part_boxes = [box[None].numpy() for box in split["part_boxes"][index]]
        masks = split["masks"][index]
        parts = split["part_masks"][index]
        self.boxes.update(scoremaps, boxes)
        self.part_boxes.update(scoremaps, part_boxes)
        self.pixels.update(scoremaps, masks.to(torch.uint8))
        self.localization.update(scoremaps, boxes, logits, split["labels"][index])
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


def _meters(grid: np.ndarray, rule: str) -> _MethodMeters:
    return _MethodMeters(
        boxes=BoxAccuracy(thresholds=grid, iou_thresholds=(0.3, 0.5, 0.7), multi_contour=True),
        part_boxes=BoxAccuracy(thresholds=grid, iou_thresholds=(0.3, 0.5, 0.7),
                               multi_contour=True),
        pixels=PixelAP(thresholds=grid),
        localization=LocalizationAccuracy(rule=rule),
    )


@dataclass
class Evaluation:
    """What ``evaluate`` measured; ``methods`` maps a table name to its figures."""

    top1: float
    methods: dict[str, dict[str, Any]]
    thresholds: list[float]
    ablation: dict[str, dict[str, float]] | None
    seconds: float


def evaluate(
    handles: dict[str, Localizer],
    split: dict[str, Tensor],
    *,
    cam_curve_interval: float,
    batch_size: int = 50,
    ablation_banks: dict[float, ContextEmbeddingBank] | None = None,
    ablation_iterations: tuple[int, ...] = (),
    feature_module: nn.Module | None = None,
    classifier_weight: Callable[[], Tensor] | None = None,
    progress: bool | None = None,
) -> Evaluation:
    """Score every method on a rendered test split.

    Args:
        handles: table name → the attached handle to localize with and its method; the
            first handle's model gives the classification accuracy.
        split: the output of ``render_split`` (with ``part_boxes``).
        ablation_banks: momentum → bank, for the momentum study (CREAM with T = 2).
        ablation_iterations: EM iterations for the iterations study (0 is plain CAM).
        feature_module, classifier_weight: where the ablations read features and weights.
    """
    start = time.perf_counter()
    grid = threshold_grid(cam_curve_interval)
    meters = {name: _meters(grid, rule) for name, (_, rule) in handles_rules(handles).items()}
    studies: dict[str, BoxAccuracy] = {}
    if ablation_iterations:
        studies.update({f"T={t}": _meters(grid, "max").boxes for t in ablation_iterations})
    if ablation_banks:
        studies.update({f"lambda={m:g}": _meters(grid, "max").boxes for m in ablation_banks})
    count = split["images"].shape[0]
    size = tuple(split["images"].shape[-2:])
    correct = 0
    first = next(iter(handles.values()))
    bar = ProgressBar(-(-count // batch_size), "evaluate", enabled=progress)
    if studies and (feature_module is None or classifier_weight is None):
        raise ValueError("ablations need feature_module and classifier_weight")
    with capture_outputs(feature_module if studies else None) as captured, bar:
        for begin in range(0, count, batch_size):
            index = torch.arange(begin, min(begin + batch_size, count))
            x = to_input(split["images"][index])
            labels = split["labels"][index]
            for position, (name, loc) in enumerate(handles.items()):
                method = METHODS[name.split("+")[0]][0]
                captured.clear()
                result = loc.localize(x, labels=labels, method=method, boxes=False)
                meters[name].update(result.scoremaps, result.logits, split, index)
                if position == 0:
                    correct += int((result.logits.argmax(1) == labels).sum())
                    if studies and captured:
                        _update_studies(studies, captured[-1], classifier_weight(), labels,
                                        first, ablation_banks or {}, ablation_iterations,
                                        size, split, index)
            bar.update()
    ablation = None
    if studies:
        ablation = {key: {"max_box_acc_v2": meter.compute().max_box_acc_v2}
                    for key, meter in studies.items()}
    return Evaluation(
        top1=100.0 * correct / count,
        methods={name: meter.result() for name, meter in meters.items()},
        thresholds=grid.tolist(),
        ablation=ablation,
        seconds=time.perf_counter() - start,
    )


def handles_rules(handles: dict[str, Localizer]) -> dict[str, tuple[str, str]]:
    """Table name → (method, rule) for the given handles (``"RCAM+TAP"`` is RCAM's)."""
    return {name: METHODS[name.split("+")[0]] for name in handles}


def _update_studies(studies: dict[str, BoxAccuracy], features: Tensor, weight: Tensor,
                    labels: Tensor, loc: Localizer, banks: dict[float, ContextEmbeddingBank],
                    iterations: tuple[int, ...], size: tuple[int, ...],
                    split: dict[str, Tensor], index: Tensor) -> None:
    boxes = [box[None].numpy() for box in split["boxes"][index]]
    cam = class_activation_map(features, weight, labels)
    for t in iterations:
        if t == 0:
            maps = cam
        else:
            maps = cream_map(features, loc.bank.fg[labels], loc.bank.bg[labels], cam=cam,
                             scale=loc.scale, iterations=t)
        studies[f"T={t}"].update(normalize_map(upsample_map(maps, size)), boxes)
    for momentum, bank in banks.items():
        maps = cream_map(features, bank.fg[labels], bank.bg[labels], cam=cam, scale=loc.scale,
                         iterations=loc.iterations)
        studies[f"lambda={momentum:g}"].update(normalize_map(upsample_map(maps, size)), boxes)
