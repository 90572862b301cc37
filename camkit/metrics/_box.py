"""MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020), accumulated over a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camkit._checks import check_bool, check_finite_number, is_tensor, real_number
from camkit.boxes import ThresholdBoxes, box_iou, threshold_boxes, threshold_grid
from camkit.boxes._inputs import as_boxes, as_float64_maps, as_thresholds
from camkit.metrics._state import CountingState, as_image_list

if TYPE_CHECKING:
    import torch

__all__ = ["BoxAccuracy", "BoxAccuracyResult", "box_accuracy"]


def reached_runs(boxes: ThresholdBoxes, gt_boxes: np.ndarray,
                 iou_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The disjoint runs of thresholds at which a box of the map reaches each IoU threshold
    with one of ``gt_boxes``: inclusive ``(starts, ends)``, threshold indices offset by
    ``row * (T + 1)`` for the IoU threshold of row ``row``.

    Each box reaching IoU ``d`` covers its own range of thresholds; the union of those ranges,
    row by row, is found by sorting them (the offsets keep rows apart). The work grows with
    the boxes that reach, not with the grid.
    """
    best = np.asarray(box_iou(boxes.boxes, gt_boxes)).max(axis=1)
    row, box = np.nonzero(best[None, :] >= iou_thresholds[:, None])
    if box.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    offset = row * (boxes.num_thresholds + 1)
    first, last = boxes.first[box] + offset, boxes.last[box] + offset
    order = np.argsort(first, kind="stable")
    first, last = first[order], np.maximum.accumulate(last[order])
    # A run starts where a range begins past every earlier range of its row.
    start = np.flatnonzero(np.concatenate(([True], first[1:] > last[:-1])))
    end = np.append(start[1:] - 1, first.size - 1)
    return first[start], last[end]


def add_runs(correct: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """Add 1 to ``correct`` ``(R, T)`` over every run of ``reached_runs`` (offset indices)."""
    rows, width = correct.shape[0], correct.shape[1] + 1
    change = np.bincount(starts, minlength=rows * width) - \
        np.bincount(ends + 1, minlength=rows * width)
    correct += np.cumsum(change.reshape(rows, width), axis=1)[:, :-1]


def split_batch(scoremaps: object, gt_boxes: object) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validate ``(B, H, W)`` maps (or one ``(H, W)`` map) and their per-image GT boxes, which
    must lie on the maps (``as_boxes`` with ``size``)."""
    maps = as_float64_maps(scoremaps, "scoremaps", ndim=(2, 3))
    if maps.ndim == 2:
        maps, gt_boxes = maps[None], [gt_boxes]
    items = as_image_list(gt_boxes, "gt_boxes", maps.shape[0])
    size = (maps.shape[1], maps.shape[2])
    boxes = [as_boxes(item, f"gt_boxes[{index}]", size=size) for index, item in enumerate(items)]
    for index, item in enumerate(boxes):
        if item.shape[0] == 0:
            raise ValueError(f"gt_boxes[{index}] must hold at least one box, got none")
    return maps, boxes


@dataclass(frozen=True)
class BoxAccuracyResult:
    """Result of ``BoxAccuracy.compute()``; accuracies in percent.

    Attributes:
        max_box_acc: IoU threshold → best accuracy over the score-map thresholds.
        best_threshold: IoU threshold → score-map threshold reaching it (first one on ties).
        curves: IoU threshold → ``(T,)`` accuracy at every score-map threshold.
        max_box_acc_v2: mean of ``max_box_acc`` over the IoU thresholds (MaxBoxAccV2 for
            ``(0.3, 0.5, 0.7)`` and multi-contour boxes).
        thresholds: ``(T,)`` score-map thresholds.
        num_images: images accumulated.
    """

    max_box_acc: dict[float, float]
    best_threshold: dict[float, float]
    curves: dict[float, np.ndarray]
    max_box_acc_v2: float
    thresholds: np.ndarray
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (IoU thresholds become string keys)."""
        return {
            "max_box_acc": {str(k): v for k, v in self.max_box_acc.items()},
            "best_threshold": {str(k): v for k, v in self.best_threshold.items()},
            "max_box_acc_v2": self.max_box_acc_v2,
            "curves": {str(k): v.tolist() for k, v in self.curves.items()},
            "thresholds": self.thresholds.tolist(),
            "num_images": self.num_images,
        }


class BoxAccuracy(CountingState):
    """Box accuracy of score maps against GT boxes at every score-map threshold.

    For each image and threshold ``t``, the boxes of the map (``camkit.boxes.
    boxes_from_scoremap``) are compared with every GT box; the image counts as correct at ``t``
    for IoU threshold ``d`` when the best IoU is ``>= d``. ``compute()`` reports, per ``d``, the
    best accuracy over ``t`` — identical to the reference protocol's ``BoxEvaluator``.

    ``BoxAccuracy()`` is MaxBoxAccV2; ``BoxAccuracy(multi_contour=False,
    iou_thresholds=(0.5,))`` is MaxBoxAcc.

    Args:
        thresholds: score-map thresholds, strictly increasing in [0, 1]; default
            ``threshold_grid(0.01)``.
        iou_thresholds: IoU thresholds in [0, 1], distinct (one number is one threshold).
        multi_contour: boxes of every contour, or only of the largest one (a bool).

    State: ``correct`` ``(len(iou_thresholds), T)`` int64 counts and ``num_images``.
    """

    _metric_name = "BoxAccuracy"

    def __init__(
        self,
        thresholds: Sequence[float] | np.ndarray | None = None,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        multi_contour: bool = True,
    ) -> None:
        grid = threshold_grid(0.01) if thresholds is None else thresholds
        self.thresholds = as_thresholds(grid, "thresholds")
        self.iou_thresholds = as_iou_thresholds(iou_thresholds)
        self.multi_contour = check_bool(multi_contour, "multi_contour")
        super().__init__()

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"correct": (len(self.iou_thresholds), self.thresholds.size)}

    def _check_counts(self) -> None:
        worst = int(self._state["correct"].max())
        if worst > self.num_images:
            raise ValueError(f"snapshot state must satisfy correct <= num_images, got "
                             f"correct={worst}, num_images={self.num_images}")

    def config(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds.tolist(),
            "iou_thresholds": list(self.iou_thresholds),
            "multi_contour": self.multi_contour,
        }

    def update(self, scoremaps: np.ndarray | torch.Tensor, gt_boxes: object) -> None:
        """Accumulate a batch.

        Args:
            scoremaps (ndarray or Tensor[B, H, W]): float maps, finite, in [0, 1] (one
                ``(H, W)`` map is also accepted, with ``gt_boxes`` its ``(n, 4)`` boxes).
            gt_boxes: ``B`` integer arrays ``(n_i, 4)`` of ``x0, y0, x1, y1`` boxes in the
                maps' pixel grid (``resize_boxes`` maps original-image boxes there): ``0 <= x0
                < W``, ``0 <= y0 < H``, ``x1 <= W``, ``y1 <= H``.
        """
        maps, boxes = split_batch(scoremaps, gt_boxes)
        self._make_room(maps.shape[0], "num_images")  # every count is <= num_images
        per_map = threshold_boxes(maps, self.thresholds, multi_contour=self.multi_contour)
        if isinstance(per_map, ThresholdBoxes):  # (maps is (B, H, W): a list comes back)
            per_map = [per_map]
        iou_thresholds = np.asarray(self.iou_thresholds)
        runs = [reached_runs(map_boxes, gt, iou_thresholds)
                for map_boxes, gt in zip(per_map, boxes, strict=True)]
        if runs:  # one pass over the grid per batch, not per map
            add_runs(self._state["correct"], np.concatenate([starts for starts, _ in runs]),
                     np.concatenate([ends for _, ends in runs]))
        self._state["num_images"] += maps.shape[0]

    def compute(self) -> BoxAccuracyResult:
        """Accuracies in percent; raises ``ValueError`` before any update."""
        if self.num_images == 0:
            raise ValueError("BoxAccuracy.compute() needs at least one update, got none")
        curves = {
            iou: counts.astype(np.float64) * 100.0 / float(self.num_images)
            for iou, counts in zip(self.iou_thresholds, self._state["correct"], strict=True)
        }
        best_index = {iou: int(curve.argmax()) for iou, curve in curves.items()}
        maxima = {iou: float(curve.max()) for iou, curve in curves.items()}
        return BoxAccuracyResult(
            max_box_acc=maxima,
            best_threshold={iou: float(self.thresholds[i]) for iou, i in best_index.items()},
            curves=curves,
            max_box_acc_v2=float(np.average(np.asarray(list(maxima.values())))),
            thresholds=self.thresholds.copy(),
            num_images=self.num_images,
        )


def as_iou_thresholds(value: object) -> tuple[float, ...]:
    """Check a non-empty sequence of distinct IoU thresholds in [0, 1] (or one number)."""
    if real_number(value) is not None and getattr(value, "ndim", 0) == 0:
        candidates: list[object] = [value]
    elif isinstance(value, (list, tuple)) or (
            (isinstance(value, np.ndarray) or is_tensor(value)) and value.ndim == 1):
        candidates = list(value)
    else:
        raise TypeError(f"iou_thresholds must be a number or a sequence of numbers, got "
                        f"{type(value).__name__}")
    items = tuple(check_finite_number(item, "iou_thresholds") for item in candidates)
    if not items or any(not (0.0 <= item <= 1.0) for item in items):
        raise ValueError(f"iou_thresholds must be a non-empty sequence in [0, 1], got {value}")
    if len(set(items)) != len(items):
        raise ValueError(f"iou_thresholds must be distinct, got {list(items)}")
    return items


def box_accuracy(
    scoremaps: np.ndarray | torch.Tensor,
    gt_boxes: object,
    thresholds: Sequence[float] | np.ndarray | None = None,
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    multi_contour: bool = True,
) -> BoxAccuracyResult:
    """Functional form of ``BoxAccuracy`` for one batch (same arguments and result)."""
    metric = BoxAccuracy(thresholds, iou_thresholds, multi_contour)
    metric.update(scoremaps, gt_boxes)
    return metric.compute()
