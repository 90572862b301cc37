"""Boxes of a quantized map at every threshold of a grid, each box stored once with the range
of thresholds it is a box of.

Two exact paths give the same boxes:

* the compiled kernel (``camkit.boxes._union_find``, built from ``_union_find.c`` at install):
  two union-find passes over the value-sorted pixels give the contours of every level set at
  once (outer contours: 8-connected components of the set; hole contours: 4-connected
  components of its complement off the image edge);
* one ``cv2.findContours`` per distinct set on its bounding crop (``_search``).

The rule between them is a cost model. The kernel costs the same per pixel on any map: its
cost grows with the map's area. A contour search scans the binary image fast and spends its
time tracing contours: on CAM-like maps its cost grows with the contours' length, a few times
the map's side. So the kernel costs about as much as ``_SEARCHES_PER_SIDE * side`` searches
(``side = sqrt(H * W)``), and runs when there are more distinct sets than that. The cheapest
maps to search (smooth, few contours) set the constant, so the kernel never runs where the
searches would have cost less by much, and never where the straightforward implementation (a
full-map search per threshold) would; maps with more contours cost the searches more and the
kernel the same, so the kernel is then the cheaper path by more. Single-contour mode always
searches: the kernel gives pixel boxes, not the polygon areas (``cv2.contourArea``) that
choose the largest contour.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt
from types import ModuleType

import numpy as np

from camkit.boxes._levels import level_sets, quantize
from camkit.boxes._search import search_boxes

#: The kernel's cost in full-map contour searches per pixel of map side, on the maps cheapest to
#: search, rounded up. ``benchmarks/bench_metrics.py --only kernel-cost`` measures it: 0.20-0.21 on
#: a single Gaussian blob at 112 and 224 pixels a side (0.14-0.16 at 448), medians of 0.09-0.16
#: (up to 0.21) on smooth CAM-like maps, 0.04 on cluttered ones. A search costs less on a set
#: smaller than the map, which moves the balance toward the searches again.
_SEARCHES_PER_SIDE = 0.25
#: The kernel packs padded coordinates in 16 bits: longer sides are searched.
_KERNEL_MAX_SIDE = 65533


def _load_kernel() -> ModuleType | None:
    try:
        from camkit.boxes import _union_find
    except ImportError:  # not built (no compiler at install): the searches give the boxes
        return None
    return _union_find


#: The compiled kernel, or None when the package was installed without it.
KERNEL = _load_kernel()


@dataclass(frozen=True)
class ThresholdBoxes:
    """The protocol boxes of one score map at every threshold of a grid.

    Each distinct box of consecutive thresholds is stored once: box ``i`` is a box of the map
    at every threshold index from ``first[i]`` to ``last[i]``, inclusive. The boxes at one
    threshold are those whose range holds it (``at``), as many as the contours there.

    Attributes:
        boxes (ndarray[N, 4]): int64 ``x0, y0, x1, y1``.
        first (ndarray[N]): int64 first threshold index of each box.
        last (ndarray[N]): int64 last threshold index of each box.
        num_thresholds: ``T``, the grid's length.
    """

    boxes: np.ndarray
    first: np.ndarray
    last: np.ndarray
    num_thresholds: int

    def at(self, index: int) -> np.ndarray:
        """``(n, 4)`` boxes at threshold ``index``, sorted by ``x0, y0, x1, y1``."""
        if not 0 <= index < self.num_thresholds:
            raise IndexError(f"index must be in [0, {self.num_thresholds}), got {index}")
        chosen = self.boxes[(self.first <= index) & (self.last >= index)]
        return chosen[np.lexsort(chosen.T[::-1])]

    def per_threshold(self) -> list[np.ndarray]:
        """The boxes at every threshold (``at`` for each index), in one pass."""
        spans = self.last - self.first + 1
        owner = np.repeat(np.arange(self.boxes.shape[0]), spans)
        offset = np.arange(owner.size) - np.repeat(np.cumsum(spans) - spans, spans)
        index = self.first[owner] + offset
        boxes = self.boxes[owner]
        order = np.lexsort((*boxes.T[::-1], index))
        split = np.searchsorted(index[order], np.arange(1, self.num_thresholds))
        return np.split(boxes[order], split)


def threshold_boxes_of_map(scoremap: np.ndarray, thresholds: np.ndarray,
                           multi_contour: bool) -> ThresholdBoxes:
    """``ThresholdBoxes`` of a validated float64 ``(H, W)`` map and threshold grid."""
    q = quantize(scoremap)
    sets = level_sets(q, thresholds)
    kept = sets.kept
    if multi_contour and KERNEL is not None and max(q.shape) <= _KERNEL_MAX_SIDE and \
            kept.size > _SEARCHES_PER_SIDE * sqrt(q.size):
        wanted = np.zeros(256, dtype=np.uint8)
        wanted[kept] = 1
        records = np.frombuffer(KERNEL.level_boxes(q, wanted, True), dtype=np.int64)
        records = records.reshape(-1, 6)
        boxes, first_set, last_set = records[:, :4], records[:, 4], records[:, 5]
    else:
        boxes, first_set = search_boxes(q, kept, multi_contour)
        last_set = first_set
    first, last = sets.threshold_ranges(first_set, last_set)
    empty = int(np.count_nonzero(sets.set_of_threshold == kept.size))
    if empty:  # thresholds at or past the maximum keep nothing: the box (0, 0, 0, 0)
        count = sets.set_of_threshold.size
        boxes = np.concatenate([boxes, np.zeros((1, 4), dtype=np.int64)])
        first = np.append(first, count - empty)
        last = np.append(last, count - 1)
    return ThresholdBoxes(boxes=boxes, first=first, last=last,
                          num_thresholds=int(sets.set_of_threshold.size))
