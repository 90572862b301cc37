"""The protocol's level sets: quantization, the distinct sets of a threshold grid, box IoU.

The protocol thresholds ``q = uint8(map * 255)`` at ``q > int(t * max(q))`` for each ``t`` of a
grid. The kept set ``{q > L}`` equals ``{q >= v}`` with ``v`` the smallest *present* value above
``L``, so thresholds mapping to the same ``v`` share one set: at most 255 distinct non-empty
sets, whatever the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EMPTY_KEY = 256  # "no pixel kept": larger than every uint8 value


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """``uint8(map * 255)`` with truncation, for a float64 map in [0, 1]."""
    return (scoremap * 255).astype(np.uint8)


def threshold_levels(thresholds: np.ndarray, max_value: int) -> np.ndarray:
    """``int(t * max_value)`` for each threshold (same float64 product as the protocol)."""
    return np.floor(thresholds * float(max_value)).astype(np.int64)


@dataclass(frozen=True)
class LevelSets:
    """The distinct kept sets ``{q >= v}`` of a threshold grid.

    Attributes:
        kept: ``(S,)`` int64 ascending values ``v``, each present in the map.
        set_of_threshold: ``(T,)`` int64 non-decreasing index of each threshold's set; ``S``
            (one past the last kept value) for thresholds that keep nothing.
    """

    kept: np.ndarray
    set_of_threshold: np.ndarray

    def threshold_ranges(self, first_set: np.ndarray, last_set: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """First and last threshold index of the sets ``first_set..last_set`` (inclusive):
        the thresholds of one set are consecutive, the sets ascending along the grid."""
        sets = np.arange(self.kept.size + 1)
        first_of_set = np.searchsorted(self.set_of_threshold, sets, side="left")
        last_of_set = np.searchsorted(self.set_of_threshold, sets, side="right") - 1
        return first_of_set[first_set], last_of_set[last_set]


def level_sets(q: np.ndarray, thresholds: np.ndarray) -> LevelSets:
    """The distinct sets kept by ``thresholds`` (ascending) on the quantized map ``q``."""
    import cv2

    # Presence only: exact with OpenCV's float32 counts at any size.
    present = cv2.calcHist([q], [0], None, [256], [0, 256]).ravel() > 0
    values = np.flatnonzero(present)
    # next_present[L]: the smallest present value above L (_EMPTY_KEY if none), for L < 256.
    candidates = np.where(present, np.arange(256), _EMPTY_KEY)
    next_present = np.append(np.minimum.accumulate(candidates[::-1])[::-1][1:], _EMPTY_KEY)
    keys = next_present[threshold_levels(thresholds, int(values[-1]))]
    # Distinct keys (ascending, the empty set last) and each threshold's index among them.
    is_key = np.zeros(_EMPTY_KEY + 1, dtype=bool)
    is_key[keys] = True
    set_of_threshold = (np.cumsum(is_key) - 1)[keys]
    kept = np.flatnonzero(is_key[:_EMPTY_KEY])
    return LevelSets(kept=kept, set_of_threshold=set_of_threshold)


def crop_bounds(q: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``(S, 4)`` int64 ``y0, y1, x0, x1`` (ends exclusive): the bounding crop of ``{q >= v}``
    for every ``v`` in ``kept`` (each present in ``q``)."""
    height, width = q.shape
    row_max, col_max = q.max(axis=1), q.max(axis=0)

    def first_at_least(values: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.maximum.accumulate(values), kept, side="left")

    return np.stack([first_at_least(row_max), height - first_at_least(row_max[::-1]),
                     first_at_least(col_max), width - first_at_least(col_max[::-1])], axis=1)


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``(N, M)`` float64 IoU of int64 boxes, inclusive ``+1`` areas (the protocol's formula)."""
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    intersection = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    denominator = area_a + area_b - intersection
    degenerate = denominator <= 0
    iou = intersection / np.where(degenerate, 1, denominator)
    iou[degenerate] = 0.0
    return iou
