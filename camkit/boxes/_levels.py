"""Boxes of every level set of a quantized score map, computed once per distinct pixel set.

The protocol thresholds ``q = uint8(map * 255)`` at ``q > int(t * max(q))`` for each ``t`` of a
grid and runs ``cv2.findContours`` on every binary image. Two facts make that cheaper while
keeping every box identical:

* the kept set ``{q > L}`` equals ``{q >= v}`` with ``v`` the smallest *present* value above
  ``L``: thresholds mapping to the same ``v`` share one contour search (at most 255 of them,
  whatever the grid);
* ``findContours`` on the bounding crop of the kept pixels returns the contours of the full
  image shifted by the crop origin (the function pads the image with background), so each
  search scans only the crop.

Boxes then follow the protocol: ``(x, y, x + w, y + h)`` of each contour's bounding rectangle,
``x1`` clamped to ``W - 1`` and ``y1`` to ``H - 1``; ``(0, 0, 0, 0)`` when nothing is kept; in
single-contour mode the contour of largest ``cv2.contourArea`` (first one on ties, as
``max`` over the contour list).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_EMPTY_KEY = 256  # "no pixel kept": larger than every uint8 value
_VECTORIZE_ABOVE = 12  # contour count above which bounding rectangles are computed in bulk
#: Distinct sets above which the component trees replace most per-set contour searches: their
#: cost is a few passes over the pixels, about that of this many searches on typical maps.
_TREE_ABOVE = 120
#: Past this many distinct sets (and up to ``_TREE_ABOVE``), cluttered maps get the trees too:
#: with more than one local maximum per ``_PIXELS_PER_MAXIMUM_CLUTTERED`` pixels, a level
#: holds many components, each a contour to trace, while a tree's cost barely grows with them.
#: (The benchmark's 224x224 maps hold 24-64 maxima from a 14x14 feature grid, 180-235 from a
#: cluttered 28x28 one; on the latter the trees win from about 70 sets.)
_CLUTTERED_TREE_ABOVE = 72
_PIXELS_PER_MAXIMUM_CLUTTERED = 500
#: Except in single-contour mode on noisy maps, with a maximum per fewer pixels than this: the
#: area bounds then settle few sets, which are searched anyway (and ``RETR_EXTERNAL`` skips
#: the holes that make the searches of such maps slow with every contour).
_PIXELS_PER_MAXIMUM_NOISY = 64
#: Dilation kernel: a pixel's 4-neighbours, not the pixel itself.
_NEIGHBOURS_4 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.uint8)
#: Distinct sets above which the compiled union-find (``camkit[fast]``), when installed, gives
#: the boxes in single-contour mode: it costs about as much as this many searches on smooth
#: maps. With every contour it follows the trees' rule (``_trees_pay_off``).
_COMPILED_ABOVE = 48
#: Whether the compiled union-find (``camkit[fast]``) replaces the trees when numba is there;
#: tests and the benchmark switch it off to time or check the default install's path.
_USE_COMPILED = True


@dataclass(frozen=True)
class LevelBoxes:
    """Boxes of the distinct kept sets of one map.

    Attributes:
        boxes: ``(N, 4)`` int64 ``x0, y0, x1, y1``, the boxes of every distinct set, in blocks.
        starts: ``(S,)`` first row of each block (each block holds at least one box).
        set_of_threshold: ``(T,)`` block index of each threshold.
        pruned: ``(S,)`` bool, sets left unsearched because none of their boxes can reach the
            IoU asked for (``level_boxes(..., prune=...)``); their block holds one placeholder
            ``(0, 0, 0, 0)`` box. None when nothing was pruned.
    """

    boxes: np.ndarray
    starts: np.ndarray
    set_of_threshold: np.ndarray
    pruned: np.ndarray | None = None

    def block(self, index: int) -> np.ndarray:
        stop = self.starts[index + 1] if index + 1 < self.starts.size else self.boxes.shape[0]
        return self.boxes[self.starts[index]:stop]


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """``uint8(map * 255)`` with truncation, for a float64 map in [0, 1]."""
    return (scoremap * 255).astype(np.uint8)


def threshold_levels(thresholds: np.ndarray, max_value: int) -> np.ndarray:
    """``int(t * max_value)`` for each threshold (same float64 product as the protocol)."""
    return np.floor(thresholds * float(max_value)).astype(np.int64)


def _trees_pay_off(scoremap: np.ndarray, sets: int, multi_contour: bool) -> bool:
    """Whether the component trees should give the boxes of ``sets`` distinct sets of the map
    rather than a contour search per set (``_TREE_ABOVE``, ``_CLUTTERED_TREE_ABOVE``)."""
    if sets > _TREE_ABOVE:
        return True
    if sets <= _CLUTTERED_TREE_ABOVE:
        return False
    maxima = _local_maxima(scoremap)
    cluttered = maxima * _PIXELS_PER_MAXIMUM_CLUTTERED > scoremap.size
    return cluttered and (multi_contour or maxima * _PIXELS_PER_MAXIMUM_NOISY <= scoremap.size)


def _local_maxima(scoremap: np.ndarray) -> int:
    """Pixels higher than each of their 4-neighbours: a cheap measure of how many components
    the level sets of the map hold (flat tops, as of a clipped map, do not count)."""
    import cv2

    return int(np.count_nonzero(scoremap > cv2.dilate(scoremap, _NEIGHBOURS_4)))


def _first_at_least(prefix_max: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the first entry of a non-decreasing array that is >= each value."""
    return np.searchsorted(prefix_max, values, side="left")


def _crop_bounds(q: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Inclusive row/column bounds of ``{q >= v}`` for every ``v`` in ``keys`` (all present)."""
    height, width = q.shape
    row_max, col_max = q.max(axis=1), q.max(axis=0)
    top = _first_at_least(np.maximum.accumulate(row_max), keys)
    bottom = height - 1 - _first_at_least(np.maximum.accumulate(row_max[::-1]), keys)
    left = _first_at_least(np.maximum.accumulate(col_max), keys)
    right = width - 1 - _first_at_least(np.maximum.accumulate(col_max[::-1]), keys)
    return top, bottom, left, right


def _bounding_rects(contours: Sequence[np.ndarray]) -> np.ndarray:
    """``cv2.boundingRect`` of each contour, as ``(N, 4)`` int64 ``(x, y, w, h)`` rows."""
    import cv2

    if len(contours) <= _VECTORIZE_ABOVE:
        return np.array([cv2.boundingRect(contour) for contour in contours],
                        dtype=np.int64).reshape(-1, 4)
    points = np.concatenate(contours).reshape(-1, 2)
    starts = np.zeros(len(contours), dtype=np.intp)
    np.cumsum(np.array(list(map(len, contours[:-1]))), out=starts[1:])
    low = np.minimum.reduceat(points, starts, axis=0)
    high = np.maximum.reduceat(points, starts, axis=0)
    return np.column_stack([low, high - low + 1]).astype(np.int64)


def _find_contours(q: np.ndarray, value: int, bounds: list[int],
                   multi_contour: bool) -> tuple[Sequence[np.ndarray], np.ndarray | None]:
    """Contours of ``{q >= value}`` searched on the crop ``bounds = [y0, y1, x0, x1]`` (ends
    exclusive), in crop coordinates, and ``cv2.findContours``' hierarchy (None when there is
    no contour): every contour, or the outer ones only in single mode."""
    import cv2

    y0, y1, x0, x1 = bounds
    binary = (q[y0:y1, x0:x1] >= value).view(np.uint8)
    # The largest contour is always a top-level outer one (a hole's or an island's area is
    # inside its parent's), and the outer ones come in the same order in both modes, so the
    # first of the largest is the same: the single box needs no hole contours.
    mode = cv2.RETR_TREE if multi_contour else cv2.RETR_EXTERNAL
    return cv2.findContours(binary, mode, cv2.CHAIN_APPROX_SIMPLE)


def _largest_rect(contours: Sequence[np.ndarray]) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the contour of largest ``cv2.contourArea`` (the first of them on
    ties, as ``max``)."""
    import cv2

    largest = contours[0] if len(contours) == 1 else max(contours, key=cv2.contourArea)
    return cv2.boundingRect(largest)


def _live_region(rects: Iterable[Sequence[int]], origin: tuple[int, int],
                 size: tuple[int, int], gt_boxes: list[tuple[int, int, int, int, float]], *,
                 first: bool) -> tuple[int, int, int, int] | None:
    """Inclusive pixel bounds ``(x0, y0, x1, y1)`` of the contours whose bounding rectangles
    ``(x, y, w, h)`` are ``rects`` (relative to ``origin = (x0, y0)``, in an image of ``size =
    (height, width)``) and whose protocol box may hold a box reaching the IoU each of
    ``gt_boxes`` carries as ``(x0, y0, x1, y1, iou * area * (1 - 1e-9))``; None when none may.
    With ``first``, the bounds of the first such contour only.

    Every component of a higher level lies within a component of this one, so its boxes lie
    within that component's protocol box: only the components inside the returned region can
    give a higher level a box that counts.
    """
    x_origin, y_origin = origin
    height, width = size
    # Plain Python: the rectangles are few (top-level outer contours) or the first that
    # reaches ends the loop, and setting up arrays costs more; the test is ``_reach_mask``'s.
    region: tuple[int, int, int, int] | None = None
    for x, y, w, h in rects:
        left, top = x + x_origin, y + y_origin
        right, bottom = min(left + w, width - 1), min(top + h, height - 1)
        for gx0, gy0, gx1, gy1, needed in gt_boxes:
            overlap_w = min(right, gx1) - max(left, gx0) + 1
            overlap_h = min(bottom, gy1) - max(top, gy0) + 1
            if overlap_w > 0 and overlap_h > 0 and overlap_w * overlap_h >= needed:
                pixels = (left, top, left + w - 1, top + h - 1)
                if first:
                    return pixels
                region = pixels if region is None else (
                    min(region[0], left), min(region[1], top),
                    max(region[2], pixels[2]), max(region[3], pixels[3]))
                break
    return region


def _reach_mask(rects: np.ndarray, size: tuple[int, ...],
                gt_boxes: list[tuple[int, int, int, int, float]]) -> np.ndarray:
    """``(N,)`` bool: which of the ``(N, 4)`` image-coordinate ``(x, y, w, h)`` rectangles have
    a protocol box (``x + w``, ``y + h`` clamped to the image of ``size = (height, width)``)
    whose overlap with one of ``gt_boxes`` reaches the overlap it carries
    (``_needed_overlaps``)."""
    left, top = rects[:, 0], rects[:, 1]
    right = np.minimum(left + rects[:, 2], size[1] - 1)
    bottom = np.minimum(top + rects[:, 3], size[0] - 1)
    reach = np.zeros(len(rects), dtype=bool)
    for gx0, gy0, gx1, gy1, needed in gt_boxes:
        overlap_w = np.minimum(right, gx1) - np.maximum(left, gx0) + 1
        overlap_h = np.minimum(bottom, gy1) - np.maximum(top, gy0) + 1
        reach |= (overlap_w > 0) & (overlap_h > 0) & (overlap_w * overlap_h >= needed)
    return reach


def level_boxes(q: np.ndarray, levels: np.ndarray, *, multi_contour: bool,
                scoremap: np.ndarray | None = None,
                prune: tuple[np.ndarray, float] | None = None) -> LevelBoxes:
    """Boxes of ``{q > L}`` for each ``L`` in ``levels`` (the protocol's contour procedure).

    Args:
        q: ``(H, W)`` uint8 quantized map, C-contiguous.
        levels: ``(T,)`` int64 levels ``int(t * max(q))``.
        multi_contour: every contour (outer and hole) or the single largest one.
        scoremap: the float64 map ``q`` came from. With it, boxes within a set come in no
            particular order, and the boxes of most sets come from the compiled union-find
            (``camkit.boxes._compiled``, with numba: past ``_COMPILED_ABOVE`` sets in single
            mode, where the trees would be with every contour) or else the component trees
            (``camkit.boxes._trees``: past ``_TREE_ABOVE`` sets, or past
            ``_CLUTTERED_TREE_ABOVE`` on cluttered maps). Without it, boxes are in
            ``cv2.findContours``' order.
        prune: ``(gt_boxes, iou)``, for IoUs of ``iou`` or more with ``gt_boxes`` (``(M, 4)``
            int64) only: sets none of whose boxes can reach it are not searched
            (``LevelBoxes.pruned``), and a set's search covers only the part of its crop where
            a box that reaches it may be, given the boxes of the set searched before (lower
            sets hold the higher ones). Boxes that cannot reach ``iou`` may then be missing or
            cut; the best IoU of a set is exact whenever it is ``iou`` or more.
    """
    import cv2

    height, width = q.shape
    hist = cv2.calcHist([q], [0], None, [256], [0, 256]).ravel()
    present = np.flatnonzero(hist)
    position = np.searchsorted(present, levels, side="right")
    keys = np.where(position < present.size,
                    present[np.minimum(position, present.size - 1)], _EMPTY_KEY)
    # Distinct keys (0..256) and each threshold's index among them, without a sort.
    is_key = np.zeros(_EMPTY_KEY + 1, dtype=bool)
    is_key[keys] = True
    unique_keys = np.flatnonzero(is_key)
    set_of_threshold = (np.cumsum(is_key) - 1)[keys]
    kept = unique_keys[unique_keys != _EMPTY_KEY]

    from camkit.boxes import _compiled

    trees = scoremap is not None and _trees_pay_off(scoremap, kept.size, multi_contour)
    compiled = None
    # With every contour, the union-find loses to the searches on the maps where the trees do
    # (smooth maps at the 0.01 grid, measured): it follows the trees' rule there.
    if scoremap is not None and kept.size > _COMPILED_ABOVE and _USE_COMPILED and \
            (trees or not multi_contour):
        compiled = _compiled.compiled_level_boxes(q, kept, multi_contour)
    if compiled is not None:
        tree_level, tree_boxes, search = compiled
    elif trees:
        from camkit.boxes._trees import tree_level_boxes

        tree_level, tree_boxes, search = tree_level_boxes(scoremap, q, kept, multi_contour)
    else:
        tree_level = np.zeros(0, dtype=np.int64)
        tree_boxes = np.zeros((0, 4), dtype=np.int64)
        search = np.arange(kept.size)
    search = np.sort(search)  # lowest value first: the sets shrink along the search
    # Each searched set is searched on its bounding crop: (y0, y1, x0, x1), ends exclusive.
    if search.size:
        top, bottom, left, right = _crop_bounds(q, kept[search])
        bounds = np.stack([top, bottom + 1, left, right + 1], axis=1)
    else:
        bounds = np.zeros((0, 4), dtype=np.int64)
    pruned = np.zeros(kept.size, dtype=bool)
    needed = _needed_overlaps(*prune) if prune is not None else []
    if needed and search.size:
        unreachable = _unreachable(bounds, q.shape, needed)
        pruned[search[unreachable]] = True
        search, bounds = search[~unreachable], bounds[~unreachable]
    found: list[np.ndarray] = []  # every contour's rectangle, per searched set (multi)
    largest: list[tuple[int, int, int, int]] = []  # the largest contour's rectangle (single)
    counts: list[int] = []
    live: tuple[int, int, int, int] | None = None  # where boxes that count may still be
    for index, value in enumerate(kept[search].tolist()):
        y0, y1, x0, x1 = bounds[index].tolist()
        if live is not None and multi_contour:
            # Components outside the live region cannot count here: search only the part of
            # the crop inside it. Components cut by it give boxes inside non-counting ones,
            # so below the lowest IoU as well. (In single mode a cut component could pass for
            # the largest one: there the live region only says whether to go on.)
            y0, y1 = max(y0, live[1]), min(y1, live[3] + 1)
            x0, x1 = max(x0, live[0]), min(x1, live[2] + 1)
            bounds[index] = (y0, y1, x0, x1)
        contours: Sequence[np.ndarray] = ()
        if y0 < y1 and x0 < x1:
            contours, hierarchy = _find_contours(q, value, [y0, y1, x0, x1], multi_contour)
        live = None
        if contours:  # (none only when the live region holds no pixel of the set)
            counts.append(len(contours) if multi_contour else 1)
            if multi_contour:
                found.append(_bounding_rects(contours))
            else:
                largest.append(_largest_rect(contours))
            if not needed:
                continue
            if multi_contour:
                # Holes and islands lie inside their top-level outer contour's box: the
                # outer contours alone give the live region.
                outer = found[-1][hierarchy[0, :, 3] < 0].tolist()
                live = _live_region(outer, (x0, y0), (height, width), needed, first=False)
            else:  # only whether one may reach: the largest first (most often it does)
                live = _live_region(largest[-1:], (x0, y0), (height, width), needed,
                                    first=True) or \
                    _live_region(map(cv2.boundingRect, contours), (x0, y0), (height, width),
                                 needed, first=True)
        if live is None:  # the sets shrink along the search: none above can count either
            done = len(counts)
            pruned[search[done:]] = True
            search, bounds = search[:done], bounds[:done]
            break

    if counts:
        xywh = np.concatenate(found) if multi_contour else np.array(largest, dtype=np.int64)
        origin = np.repeat(bounds[:, [2, 0]].astype(np.int64), counts, axis=0)
        x_min, y_min = xywh[:, 0] + origin[:, 0], xywh[:, 1] + origin[:, 1]
        searched = np.column_stack([
            x_min, y_min,
            np.minimum(x_min + xywh[:, 2], width - 1),
            np.minimum(y_min + xywh[:, 3], height - 1),
        ])
    else:
        searched = np.zeros((0, 4), dtype=np.int64)
    searched_level = np.repeat(search.astype(np.int64), counts)
    placeholder = np.flatnonzero(pruned)  # one (0, 0, 0, 0) box per pruned set
    level = np.concatenate([tree_level, searched_level, placeholder])
    boxes = np.concatenate([tree_boxes, searched,
                            np.zeros((placeholder.size, 4), dtype=np.int64)])
    # The searched levels come sorted; the tree's and the pruned ones are merged in (each set
    # is the tree's, searched or pruned, so a stable sort keeps every block's order).
    if tree_level.size or placeholder.size:
        order = np.argsort(level, kind="stable")
        level, boxes = level[order], boxes[order]
    sizes = np.bincount(level, minlength=kept.size)
    if kept.size < unique_keys.size:  # the empty set sorts last: one (0, 0, 0, 0) box
        boxes = np.concatenate([boxes, np.zeros((1, 4), dtype=np.int64)])
        sizes = np.append(sizes, 1)
        pruned = np.append(pruned, False)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    return LevelBoxes(boxes=boxes, starts=starts, set_of_threshold=set_of_threshold.ravel(),
                      pruned=pruned if pruned.any() else None)


def _needed_overlaps(gt_boxes: np.ndarray, iou: float) -> list[tuple[int, int, int, int, float]]:
    """``(x0, y0, x1, y1, overlap)`` per GT box: a box within ``R`` reaches IoU ``iou`` with it
    only if ``|R & g| >= overlap`` (``iou * |g|``, less a relative margin far above float64
    rounding, so that a bound just under it is searched)."""
    return [(x0, y0, x1, y1, iou * (x1 - x0 + 1) * (y1 - y0 + 1) * (1.0 - 1e-9))
            for x0, y0, x1, y1 in gt_boxes.tolist()]


def _unreachable(bounds: np.ndarray, size: tuple[int, ...],
                 gt_boxes: list[tuple[int, int, int, int, float]]) -> np.ndarray:
    """``(S,)`` bool: the sets with crops ``bounds`` (``(S, 4)`` ``y0, y1, x0, x1``, ends
    exclusive, in an image of ``size``) none of whose boxes can reach the overlap each of
    ``gt_boxes`` carries (``_needed_overlaps``).

    Every box of a set, outer or hole, lies within its pixel crop extended by one pixel to the
    right and bottom (the ``x + w`` of ``boundingRect``; a hole's box ends at most there),
    clamped to the image: call it ``R``, the protocol box of the crop seen as one rectangle.
    For a box ``b`` within ``R`` and a GT box ``g``, ``IoU(b, g) = |b & g| / |b | g| <=
    |R & g| / |g|`` (inclusive areas, as the protocol's).
    """
    y0, y1, x0, x1 = bounds.T
    crops = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    return ~_reach_mask(crops, size, gt_boxes)


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


def best_iou_per_threshold(level: LevelBoxes, gt_boxes: np.ndarray) -> np.ndarray:
    """``(T,)`` best IoU over the boxes of each threshold and all ``gt_boxes``; 0 for pruned
    sets (whose best IoU is below the pruning IoU)."""
    per_box = box_iou_matrix(level.boxes, gt_boxes).max(axis=1)
    per_set = np.maximum.reduceat(per_box, level.starts)
    if level.pruned is not None:
        per_set[level.pruned] = 0.0
    return per_set[level.set_of_threshold]
