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

__all__ = ["METHODS", "Evaluation", "evaluate", "method_of"]

#: Table name → (``Localizer`` method, fixed-threshold rule of its GT-known / top-1 figures).
METHODS: dict[str, tuple[str, str]] = {
    "CAM": ("cam", "max"),
    "RCAM": ("rcam", "pas"),
    "CREAM": ("cream", "max"),
}


def method_of(name: str) -> tuple[str, str]:
    """(method, rule) of a table name; a variant such as ``"RCAM+TAP"`` is its base's."""
    return METHODS[name.split("+")[0]]


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
    meters = {name: _meters(grid, method_of(name)[1]) for name in handles}
    studies = {f"T={t}": _box_meter(grid) for t in ablation_iterations}
    studies.update({f"lambda={m:g}": _box_meter(grid) for m in ablation_banks or {}})
    count = split["images"].shape[0]
    size = (split["images"].shape[-2], split["images"].shape[-1])
    correct = 0
    bar = ProgressBar(-(-count // batch_size), "evaluate", enabled=progress)
    if studies and (feature_module is None or classifier_weight is None):
        raise ValueError("ablations need feature_module and classifier_weight")
    with capture_outputs(feature_module if studies else None) as captured, bar:
        for begin in range(0, count, batch_size):
            index = torch.arange(begin, min(begin + batch_size, count))
            x = to_input(split["images"][index])
            targets = _Targets.of(split, index)
            for position, (name, loc) in enumerate(handles.items()):
                captured.clear()
                result = loc.localize(x, labels=targets.labels, method=method_of(name)[0],
                                      boxes=False)
                meters[name].update(result.scoremaps, result.logits, targets)
                if position == 0:
                    correct += int((result.logits.argmax(1) == targets.labels).sum())
                    if studies and captured:
                        assert classifier_weight is not None  # checked above
                        _update_studies(studies, captured[-1], classifier_weight(), loc,
                                        ablation_banks or {}, ablation_iterations, size,
                                        targets)
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


def _update_studies(studies: dict[str, BoxAccuracy], features: Tensor, weight: Tensor,
                    loc: Localizer, banks: dict[float, ContextEmbeddingBank],
                    iterations: tuple[int, ...], size: tuple[int, int],
                    targets: _Targets) -> None:
    labels, boxes = targets.labels, targets.boxes
    cam = class_activation_map(features, weight, labels)
    for t in iterations:
        if t == 0:
            maps = cam
        else:
            assert loc.bank is not None  # the first handle, attached with method="cream"
            maps = cream_map(features, loc.bank.fg[labels], loc.bank.bg[labels], cam=cam,
                             scale=loc.scale, iterations=t)
        studies[f"T={t}"].update(normalize_map(upsample_map(maps, size)), boxes)
    for momentum, bank in banks.items():
        maps = cream_map(features, bank.fg[labels], bank.bg[labels], cam=cam, scale=loc.scale,
                         iterations=loc.iterations)
        studies[f"lambda={momentum:g}"].update(normalize_map(upsample_map(maps, size)), boxes)
