"""The optional compiled path for level-set boxes: union-find over pixels in value order.

Installed with ``pip install camkit[fast]`` (numba). Same contract and results as
``camkit.boxes._trees.tree_level_boxes``: the 8-connected components of ``{q >= v_j}`` are
grown by adding pixels from the highest value down and joining each to its present
neighbours; the 4-connected components of the complement ``{q < v_j}`` likewise from the
lowest value up, a component that reaches the image edge being the outside rather than a
hole. After each level's pixels, every live component's box is written out: a few
operations per pixel whatever the number of levels.

numba is imported, and the kernel compiled (cached on disk), on the first call of
``available()``, never at ``import camkit``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

#: The compiled kernel once loaded; ``False`` when numba is missing or disabled.
_KERNEL: Callable[..., tuple[np.ndarray, np.ndarray]] | bool | None = None


def available() -> bool:
    """Whether the compiled path can run: numba imports and ``CAMKIT_DISABLE_NUMBA`` is unset
    (or ``0``). The first call imports numba."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = False
        if os.environ.get("CAMKIT_DISABLE_NUMBA", "") in ("", "0"):
            try:
                import numba
            except ImportError:
                return False
            global _find
            _find = numba.njit(cache=True, nogil=True)(_find)
            _KERNEL = numba.njit(cache=True, nogil=True)(_level_components)
    return _KERNEL is not False


def _find(parent: np.ndarray, item: int) -> int:
    while parent[item] != item:  # path halving
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


def _level_components(entry: np.ndarray, times: int, connectivity: int,
                      frame: bool) -> tuple[np.ndarray, np.ndarray]:
    """Times and inclusive pixel boxes of the components of ``{entry <= t}`` for every
    ``0 <= t < times`` (those touching the image edge left out with ``frame``)."""
    height, width = entry.shape
    size = height * width
    flat = entry.ravel()
    # Counting sort of the pixels by entry time.
    counts = np.zeros(times + 1, np.int64)
    for p in range(size):
        counts[flat[p]] += 1
    start = np.zeros(times + 2, np.int64)
    for t in range(times + 1):
        start[t + 1] = start[t] + counts[t]
    order = np.empty(size, np.int64)
    row = np.empty(size, np.int64)
    column = np.empty(size, np.int64)
    fill = start[:times + 1].copy()
    p = 0
    for y in range(height):
        for x in range(width):
            order[fill[flat[p]]] = p
            fill[flat[p]] += 1
            row[p], column[p] = y, x
            p += 1

    parent = np.full(size, -1, np.int64)
    weight = np.zeros(size, np.int64)
    x0 = np.empty(size, np.int64)
    y0 = np.empty(size, np.int64)
    x1 = np.empty(size, np.int64)
    y1 = np.empty(size, np.int64)
    edge = np.zeros(size, np.bool_)
    live = np.empty(size, np.int64)
    live_count = 0
    if connectivity == 8:
        dys = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
        dxs = np.array([-1, 0, 1, -1, 1, -1, 0, 1])
    else:
        dys = np.array([-1, 0, 0, 1])
        dxs = np.array([0, -1, 1, 0])
    capacity = 1024
    out_t = np.empty(capacity, np.int64)
    out_box = np.empty((capacity, 4), np.int64)
    written = 0
    for t in range(times):
        for k in range(start[t], start[t + 1]):
            p = order[k]
            y, x = row[p], column[p]
            parent[p] = p
            weight[p] = 1
            x0[p], y0[p], x1[p], y1[p] = x, y, x, y
            edge[p] = y == 0 or x == 0 or y == height - 1 or x == width - 1
            live[live_count] = p
            live_count += 1
            root = p
            for d in range(dys.size):
                ny, nx = y + dys[d], x + dxs[d]
                if ny < 0 or nx < 0 or ny >= height or nx >= width:
                    continue
                n = ny * width + nx
                if parent[n] < 0:
                    continue
                other = _find(parent, n)
                if other == root:
                    continue
                a, b = (root, other) if weight[root] >= weight[other] else (other, root)
                parent[b] = a  # b's box, size and edge flag go to a
                weight[a] += weight[b]
                x0[a], y0[a] = min(x0[a], x0[b]), min(y0[a], y0[b])
                x1[a], y1[a] = max(x1[a], x1[b]), max(y1[a], y1[b])
                edge[a] = edge[a] or edge[b]
                root = a
        kept = 0  # compact the live roots, writing out each one's box
        for k in range(live_count):
            root = live[k]
            if parent[root] != root:
                continue
            live[kept] = root
            kept += 1
            if frame and edge[root]:
                continue
            if written == capacity:
                capacity *= 2
                grown_t = np.empty(capacity, np.int64)
                grown_box = np.empty((capacity, 4), np.int64)
                grown_t[:written] = out_t[:written]
                grown_box[:written] = out_box[:written]
                out_t, out_box = grown_t, grown_box
            out_t[written] = t
            out_box[written, 0], out_box[written, 1] = x0[root], y0[root]
            out_box[written, 2], out_box[written, 3] = x1[root], y1[root]
            written += 1
        live_count = kept
    return out_t[:written], out_box[:written]


def compiled_level_boxes(q: np.ndarray, kept: np.ndarray,
                         multi_contour: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tree_level_boxes``' contract (see there), computed by the compiled union-find; no
    level is left to a search except, in single-contour mode, those with several
    components. Call only after ``available()`` returned True."""
    kernel = _KERNEL
    assert callable(kernel), "compiled_level_boxes called before available()"
    height, width = q.shape
    levels = kept.size
    below = np.searchsorted(kept, np.arange(256), side="right")
    t_outer, outer = kernel((levels - below[q]).astype(np.int64), levels, 8, False)
    level = levels - 1 - t_outer
    boxes = np.column_stack([outer[:, 0], outer[:, 1], np.minimum(outer[:, 2] + 1, width - 1),
                             np.minimum(outer[:, 3] + 1, height - 1)])
    if not multi_contour:
        components = np.bincount(level, minlength=levels)
        single = components[level] == 1
        return level[single], boxes[single], np.flatnonzero(components > 1)
    t_hole, inner = kernel(below[q].astype(np.int64), levels, 4, True)
    hole_boxes = np.column_stack([inner[:, 0] - 1, inner[:, 1] - 1,
                                  np.minimum(inner[:, 2] + 2, width - 1),
                                  np.minimum(inner[:, 3] + 2, height - 1)])
    return (np.concatenate([level, t_hole]), np.concatenate([boxes, hole_boxes]),
            np.zeros(0, np.int64))
