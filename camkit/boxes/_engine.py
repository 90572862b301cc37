"""Boxes of a quantized map at every threshold of a grid, each box stored once with the range
of thresholds it is a box of.

Two exact paths give the same boxes:

* the compiled kernel (``camkit.boxes._union_find``, built from ``_union_find.c`` at install):
  two union-find passes over the value-sorted pixels give the contours of every level set at
  once (outer contours: 8-connected components of the set; hole contours: 4-connected
  components of its complement off the image edge);
* one ``cv2.findContours`` per distinct set on its bounding crop (``_search``).

The rule between them is a cost model: both costs are linear in the pixels they visit. The
kernel visits every pixel of the map twice, each visit costing about
``_KERNEL_COST_IN_SCANS`` times a contour search's raster scan of one pixel; the searches scan
the crops of the sets. The kernel runs when the searches would scan more, so neither path costs
more than the other would (maps with many contours cost the searches more per pixel, which only
moves the balance further toward the kernel). Single-contour mode always searches: the kernel
gives pixel boxes, not the polygon areas (``cv2.contourArea``) that choose the largest contour.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from camkit.boxes._levels import crop_bounds, level_sets, quantize
from camkit.boxes._search import search_boxes

#: Cost of one pixel of the kernel's two passes in pixels of contour-search raster scan: the
#: passes read 8 neighbours and follow a parent chain per pixel, a search thresholds and scans
#: it once. ``benchmarks/bench_metrics.py --kernel-cost`` measures the ratio (16-24 on the
#: machines measured so far); the lower end keeps the kernel where it is the faster path.
_KERNEL_COST_IN_SCANS = 16


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
    bounds = crop_bounds(q, kept)
    scanned = int(((bounds[:, 1] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 2])).sum())
    if multi_contour and KERNEL is not None and scanned > _KERNEL_COST_IN_SCANS * q.size:
        wanted = np.zeros(256, dtype=np.uint8)
        wanted[kept] = 1
        records = np.frombuffer(KERNEL.level_boxes(q, wanted, True), dtype=np.int64)
        records = records.reshape(-1, 6)
        boxes, first_set, last_set = records[:, :4], records[:, 4], records[:, 5]
    else:
        boxes, first_set = search_boxes(q, kept, multi_contour, bounds)
        last_set = first_set
    first, last = sets.threshold_ranges(first_set, last_set)
    empty = int(np.count_nonzero(sets.set_of_threshold == kept.size))
    if empty:  # thresholds at or past the maximum keep nothing: the box (0, 0, 0, 0)
        count = sets.set_of_threshold.size
        boxes = np.concatenate([boxes, np.zeros((1, 4), dtype=np.int64)])
        first = np.append(first, count - empty)
        last = np.append(last, count - 1)
    return ThresholdBoxes(boxes=np.ascontiguousarray(boxes), first=first, last=last,
                          num_thresholds=int(sets.set_of_threshold.size))
