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
import warnings
from collections.abc import Callable

import numpy as np

from camkit.boxes._topology import hole_contour_boxes, outer_contour_boxes, settle_largest

_SIZE, _X0, _Y0, _X1, _Y1, _EDGE, _CELLS = range(1, 8)  # columns of the node table
#: The compiled kernel once loaded; ``False`` when numba is missing or disabled.
_KERNEL: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] | bool | None = None


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


def _level_components(q: np.ndarray, entry_of_value: np.ndarray, times: int, connectivity: int,
                      frame: bool, blocks_too: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, inclusive pixel boxes and full 2x2 pixel blocks of the components of
    ``{entry <= t}`` for every ``0 <= t < times``, with ``entry = entry_of_value[q]`` (those
    touching the image edge left out with ``frame``; blocks counted with ``blocks_too`` only,
    for the single-contour mode's area bound, else 0)."""
    height, width = q.shape
    stride = width + 2  # a one-pixel frame that is never present: no bounds checks
    # Counting sort of the pixels by entry time, kept as framed indices and coordinates.
    counts = np.zeros(times + 2, np.int64)
    for y in range(height):
        for x in range(width):
            counts[entry_of_value[q[y, x]] + 1] += 1
    for t in range(times + 1):
        counts[t + 1] += counts[t]
    fill = counts[:times + 1].copy()
    order = np.empty(height * width, np.int32)
    order_y = np.empty(height * width, np.int32)
    order_x = np.empty(height * width, np.int32)
    for y in range(height):
        for x in range(width):
            t = entry_of_value[q[y, x]]
            order[fill[t]] = (y + 1) * stride + x + 1
            order_y[fill[t]], order_x[fill[t]] = y, x
            fill[t] += 1

    # Parents apart (finds touch nothing else); one row of 8 int32 per cell for the size, the
    # box and the edge flag, so that a union touches one cache line per set.
    parent = np.full((height + 2) * stride, -1, np.int32)
    node = np.empty(((height + 2) * stride, 8), np.int32)
    live = np.empty(height * width, np.int32)
    live_count = 0
    if connectivity == 8:
        steps = np.array([-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride,
                          stride + 1])
    else:
        steps = np.array([-stride, -1, 1, stride])
    corners = np.array([-stride - 1, -stride, -1, 0])  # top-left cells of p's 2x2 blocks
    capacity = 1024
    out_t = np.empty(capacity, np.int64)
    out_box = np.empty((capacity, 4), np.int64)
    out_cells = np.empty(capacity, np.int64)
    written = 0
    for t in range(times):
        for k in range(counts[t], counts[t + 1]):
            p = order[k]
            y, x = order_y[k], order_x[k]
            on_edge = y == 0 or x == 0 or y == height - 1 or x == width - 1
            root = -1
            for step in steps:
                up = parent[p + step]
                if up < 0 or up == root:  # absent, or already joined (its parent is the root)
                    continue
                other = _find(parent, up)
                if root < 0:  # the first set met takes p in: no set of its own
                    root = other
                    parent[p] = root
                    node[root, _SIZE] += 1
                    node[root, _X0] = min(node[root, _X0], x)
                    node[root, _Y0] = min(node[root, _Y0], y)
                    node[root, _X1] = max(node[root, _X1], x)
                    node[root, _Y1] = max(node[root, _Y1], y)
                    node[root, _EDGE] = node[root, _EDGE] | on_edge
                    continue
                if other == root:
                    continue
                if node[root, _SIZE] >= node[other, _SIZE]:
                    a, b = root, other
                else:
                    a, b = other, root
                parent[b] = a  # b's box, size and edge flag go to a
                node[a, _SIZE] += node[b, _SIZE]
                node[a, _X0] = min(node[a, _X0], node[b, _X0])
                node[a, _Y0] = min(node[a, _Y0], node[b, _Y0])
                node[a, _X1] = max(node[a, _X1], node[b, _X1])
                node[a, _Y1] = max(node[a, _Y1], node[b, _Y1])
                node[a, _EDGE] = node[a, _EDGE] | node[b, _EDGE]
                node[a, _CELLS] += node[b, _CELLS]
                root = a
            if root < 0:  # no present neighbour: a new set, and a new live root
                parent[p] = p
                node[p, _SIZE] = 1
                node[p, _X0], node[p, _Y0], node[p, _X1], node[p, _Y1] = x, y, x, y
                node[p, _EDGE] = on_edge
                node[p, _CELLS] = 0
                live[live_count] = p
                live_count += 1
                root = p
            if blocks_too:  # 2x2 blocks that p completes (all in p's set)
                blocks = 0
                for corner_step in corners:
                    corner = p + corner_step
                    if parent[corner] >= 0 and parent[corner + 1] >= 0 and \
                            parent[corner + stride] >= 0 and parent[corner + stride + 1] >= 0:
                        blocks += 1
                if blocks:
                    node[_find(parent, root), _CELLS] += blocks
        kept = 0  # compact the live roots, writing out each one's box
        for k in range(live_count):
            root = live[k]
            if parent[root] != root:
                continue
            live[kept] = root
            kept += 1
            if frame and node[root, _EDGE]:
                continue
            if written == capacity:
                capacity *= 2
                grown_t = np.empty(capacity, np.int64)
                grown_box = np.empty((capacity, 4), np.int64)
                grown_cells = np.empty(capacity, np.int64)
                grown_t[:written] = out_t[:written]
                grown_box[:written] = out_box[:written]
                grown_cells[:written] = out_cells[:written]
                out_t, out_box, out_cells = grown_t, grown_box, grown_cells
            out_t[written] = t
            out_cells[written] = node[root, _CELLS]
            out_box[written, 0], out_box[written, 1] = node[root, _X0], node[root, _Y0]
            out_box[written, 2], out_box[written, 3] = node[root, _X1], node[root, _Y1]
            written += 1
        live_count = kept
    return out_t[:written], out_box[:written], out_cells[:written]


def compiled_level_boxes(q: np.ndarray, kept: np.ndarray,
                         multi_contour: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``tree_level_boxes``' contract (see there), computed by the compiled union-find,
    with the same contour-area bounds in single-contour mode; None when the compiled path
    cannot run here (numba missing or disabled, or the kernel failed to compile: then a
    warning, once, and the NumPy/OpenCV paths from then on)."""
    global _KERNEL
    if not available() or not callable(_KERNEL):
        return None
    kernel = _KERNEL
    levels = kept.size
    below = np.searchsorted(kept, np.arange(256), side="right")
    try:
        t_outer, outer, cells = kernel(q, levels - below, levels, 8, False, not multi_contour)
        holes = kernel(q, below, levels, 4, True, False) if multi_contour else None
    except Exception as error:  # numba could not compile or run the kernel on this machine
        _KERNEL = False
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
        warnings.warn(f"camkit: the compiled box kernel (camkit[fast]) failed ({reason}); "
                      "using the NumPy/OpenCV path from now on (same results)",
                      RuntimeWarning, stacklevel=2)
        return None
    level = levels - 1 - t_outer
    boxes = outer_contour_boxes(outer, q.shape)
    if holes is None:
        return settle_largest(level, outer, boxes, cells, levels)
    t_hole, inner, _ = holes
    return (np.concatenate([level, t_hole]),
            np.concatenate([boxes, hole_contour_boxes(inner, q.shape)]), np.zeros(0, np.int64))
