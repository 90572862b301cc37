"""Boxes of every level set of a map from its two component trees, without a contour search.

For a quantized map ``q`` and kept values ``v_0 < ... < v_{n-1}``, the protocol's boxes at
``v_j`` come from the contours of ``S_j = {q >= v_j}``. They are, exactly:

* one box per 8-connected component of ``S_j`` (its outer contour): the pixel bounding box
  ``(x0, y0, x1 + 1, y1 + 1)``, then the ``W - 1`` / ``H - 1`` clamp;
* one box per 4-connected component of the complement ``{q < v_j}`` that touches no image edge
  (a hole contour, traced on the surrounding pixels): the pixel bounding box grown by one
  pixel, ``(x0 - 1, y0 - 1, x1 + 2, y1 + 2)``, then the clamp.

Both families are read off component trees, built once per map:

1. **Basins.** Every pixel that has a strictly higher 4-neighbour (lower for the complement)
   on the *float* map steps to one of them. Paths are strictly monotone in the float values,
   hence monotone in ``q`` (truncation is monotone), so a pixel in a level set reaches its
   basin's extremum without leaving the set: each basin's part of a level set is 4-connected.
   Extrema with equal float values that touch form one basin. The basins are labelled in one
   pass, as the components of the steps drawn on a grid twice as fine.
2. **Basin graph.** Two basins are joined in a level set when two adjacent pixels, one in each,
   are both in it. Sorting the joins by the level at which they appear (Kruskal) gives the
   dendrogram of the level sets' components; with the image frame as one more node, the
   complement's components that reach it are the outside, not holes.
3. **Boxes.** A basin's bounding box within each level set is a cumulative min/max over its
   pixels grouped by level; a component's box is the min/max over its basins, which the
   dendrogram lays out contiguously, so one ``reduceat`` serves all components at all levels.

The cost is a few passes over the pixels plus a loop over basin joins, whatever the number of
levels; maps with too many basins (noise), where the per-level contour search is cheaper, are
handed back to it (``_TABLE_ENTRIES_MAX``).
"""

from __future__ import annotations

import threading

import numpy as np

from camkit.boxes._topology import (
    euler_numbers,
    hole_contour_boxes,
    outer_contour_boxes,
    settle_largest,
)

#: Maps whose sides are all below this many pixels keep their box tables in int16 (half the
#: memory traffic of int32); the largest value of the dtype marks an empty set.
_INT16_SIDES_BELOW = np.iinfo(np.int16).max
#: Shifts pairing each pixel with its forward neighbours (every adjacent pair once).
_PAIRS_8 = ((0, 1), (1, 0), (1, 1), (1, -1))
_PAIRS_4 = ((0, 1), (1, 0))
#: Largest (basins + 1) x levels for which a tree is built: its tables hold 8 int32 per entry
#: (about 64 MiB here); maps with more basins (noise) are searched level by level instead.
_TABLE_ENTRIES_MAX = 1 << 21
#: Largest basin count squared for which the first time of each basin pair is kept in a table
#: indexed by the pair (else the pairs are sorted).
_DENSE_JOINS_UP_TO = 1 << 16
#: Largest leaf table (int32 entries) kept for reuse between maps (``_table_buffer``).
_TABLE_KEPT_UP_TO = 1 << 22
#: With every contour, levels with holes are searched one by one up to this many; past it the
#: hole tree (about the cost of the outer one) is cheaper.
_SEARCH_HOLE_LEVELS_UP_TO = 16
#: With every contour, maps with more extrema of the complement off the image edge than this
#: (each hole holds one) get the hole tree without counting their levels with holes first.
_HOLE_TREE_ABOVE_EXTREMA = 16


def _better_neighbours(values: np.ndarray, connectivity: int) -> list[np.ndarray]:
    """Where a pixel's 4-neighbour is strictly better (higher with ``connectivity=8``, lower
    with ``4``): ``(H, W - 1)`` the right one of ``(y, x)``, the left one of ``(y, x + 1)``;
    ``(H - 1, W)`` the one below ``(y, x)``, the one above ``(y + 1, x)``."""
    better = np.greater if connectivity == 8 else np.less
    return [better(values[:, 1:], values[:, :-1]), better(values[:, :-1], values[:, 1:]),
            better(values[1:], values[:-1]), better(values[:-1], values[1:])]


def _interior_extrema(neighbours: list[np.ndarray]) -> int:
    """Pixels off the image edge with no strictly better 4-neighbour (``_better_neighbours``)."""
    right, left, below, above = neighbours
    stepped = np.zeros((below.shape[0] + 1, right.shape[1] + 1), bool)
    stepped[:, :-1] = right
    stepped[:, 1:] |= left
    stepped[:-1] |= below
    stepped[1:] |= above
    inner = stepped[1:-1, 1:-1]
    return inner.size - int(np.count_nonzero(inner))


def _basins(values: np.ndarray, connectivity: int,
            neighbours: list[np.ndarray] | None = None) -> tuple[np.ndarray, int]:
    """Flat basin index of every pixel (int32) and the number of basins.

    Every pixel with a strictly better 4-neighbour (higher with ``connectivity=8``, lower with
    ``4``) steps to one of them (the first of right, left, below, above); a basin is a tree of
    steps ending on an extremum (no better neighbour), touching extrema (of equal value)
    joined. A pixel of a level set steps towards its extremum without leaving the set, so each
    basin's part of a level set is 4-connected, hence 8-connected too.

    The steps are drawn as links on a grid twice as fine (a pixel on every even row and
    column, a link on the cell between two pixels) whose 4-connected components are the
    basins: one labelling pass instead of following the steps. ``neighbours``, when given, is
    ``_better_neighbours(values, connectivity)``, and is overwritten.
    """
    import cv2

    height, width = values.shape
    right, left, below, above = neighbours or _better_neighbours(values, connectivity)
    links, labels = _link_buffers(height, width)
    across = links[::2, 1::2].view(bool)  # between (y, x) and (y, x + 1)
    down = links[1::2, ::2].view(bool)  # between (y, x) and (y + 1, x)
    # ``stepped``: pixels whose step is chosen, growing with each direction in turn.
    stepped = np.zeros((height, width), bool)
    stepped[:, :-1] = right
    left &= ~stepped[:, 1:]  # (y, x + 1) steps left
    stepped[:, 1:] |= left
    below &= ~stepped[:-1]  # (y, x) steps down
    stepped[:-1] |= below
    above &= ~stepped[1:]  # (y + 1, x) steps up
    stepped[1:] |= above
    # A link where one pixel steps to the other, or both are extrema (touching extrema are
    # equal: one basin); built densely, then written once to the strided cells.
    for first, second, steps, cells in ((stepped[:, :-1], stepped[:, 1:], (right, left), across),
                                        (stepped[:-1], stepped[1:], (below, above), down)):
        joined = np.logical_or(first, second)
        np.logical_not(joined, out=joined)
        joined |= steps[0]
        joined |= steps[1]
        cells[...] = joined
    count, labels = cv2.connectedComponents(links, labels, 4, cv2.CV_32S)
    return np.subtract(labels[::2, ::2], 1).ravel(), count - 1


_BUFFERS = threading.local()


def _table_buffers(size: int, dtype: type[np.signedinteger]) -> tuple[np.ndarray, np.ndarray]:
    """Two flat arrays of ``size`` entries of ``dtype`` for ``_leaf_tables``, reused per thread
    (up to ``_TABLE_KEPT_UP_TO`` entries each): fresh arrays of this size cost page faults on
    every map. Their content is left over from the last use."""
    if size > _TABLE_KEPT_UP_TO:
        return np.empty(size, dtype), np.empty(size, dtype)
    nbytes = 2 * size * np.dtype(dtype).itemsize
    cached = getattr(_BUFFERS, "table", None)
    if cached is None or cached.size < nbytes:
        cached = _BUFFERS.table = np.empty(max(nbytes, 1 << 18), np.uint8)
    pair = cached[:nbytes].view(dtype)
    return pair[:size], pair[size:]


def _link_buffers(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The link grid of ``_basins`` (pixels set, links to fill) and its label image, kept per
    thread and shape: fresh arrays of this size cost page faults on every map."""
    key = (height, width)
    cached = getattr(_BUFFERS, "links", None)
    if cached is None or cached[0] != key:
        links = np.zeros((2 * height - 1, 2 * width - 1), np.uint8)
        links[::2, ::2] = 1
        cached = _BUFFERS.links = (key, links, np.empty(links.shape, np.int32))
    return cached[1], cached[2]


_Runs = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def _basin_runs(entry: np.ndarray, basin: np.ndarray) -> tuple[_Runs, list[np.ndarray]]:
    """The runs of equal basin along the rows, then along the columns: for each run, the
    first time one of its pixels is present (``times``: never), its basin, and its row (for
    row runs) or column (for column runs). Also where runs meet: the flat index of the first
    pixel of each pair ``(p, p + 1)``, then ``(p, p + W)``, of different basins."""
    height, width = entry.shape
    grid = basin.reshape(height, width)
    runs = []
    meets = []
    for along_rows, labels, entries, line in ((True, basin, entry.ravel(), width),
                                              (False, grid.T.ravel(), entry.T.ravel(), height)):
        starts_run = np.empty(labels.size, dtype=bool)
        np.not_equal(labels[1:], labels[:-1], out=starts_run[1:])
        starts_run[::line] = True
        starts = np.flatnonzero(starts_run)
        line_index, offset = np.divmod(starts, line)
        runs.append((np.minimum.reduceat(entries, starts).astype(np.intp), labels.take(starts),
                     line_index.astype(np.int32)))
        inside = offset > 0  # a run that starts inside its line meets the one before it
        meets.append(starts[inside] - 1 if along_rows else
                     (offset[inside] - 1) * width + line_index[inside])
    return runs, meets


def _leaf_tables(runs: _Runs, leaf_position: np.ndarray, leaves: int, times: int,
                 shape: tuple[int, int]) -> np.ndarray:
    """``(4, (times + 1) * leaves)`` ``x0, y0, -x1, -y1`` of the pixels with ``entry <= t`` of
    each leaf (basin ``b`` at ``leaf_position[b]``) at ``t * leaves + position``, the largest
    value of the dtype (int16 for maps of ``shape`` under ``_INT16_SIDES_BELOW``, else int32)
    where there are none: all four are minima. The row ``t = times`` is all empty.

    A row of the map meets a basin's pixels with ``entry <= t`` exactly when one of the row's
    runs of that basin holds an entry ``<= t``: the row extents come from the runs of equal
    basin along the rows, the column extents from those along the columns (``_basin_runs``),
    far fewer than the pixels. The tables live in a per-thread buffer that the next call
    overwrites: use them before building another tree.
    """
    dtype, empty = (np.int16, _INT16_SIDES_BELOW) if max(shape) < _INT16_SIDES_BELOW else \
        (np.int32, np.iinfo(np.int32).max)
    size = (times + 1) * leaves
    table, spare = (buffer.reshape(4, times + 1, leaves) for buffer in
                    _table_buffers(4 * size, dtype))
    table.fill(empty)
    flat = table.reshape(4, size)
    for (first_time, labels, position), low, high in zip(runs, (1, 0), (3, 2), strict=True):
        slots = first_time * leaves + leaf_position.take(labels)  # never present: t = times
        position = position.astype(dtype)  # (ufunc.at is many times slower when it casts)
        np.minimum.at(flat[low], slots, position)
        np.minimum.at(flat[high], slots, -position)
    # Minimum over t' <= t by doubling: log2(times) elementwise passes between the two
    # buffers, several times faster than ``np.minimum.accumulate`` along the strided axis.
    step = 1
    while step < times:
        spare[:, :step] = table[:, :step]
        np.minimum(table[:, step:times], table[:, :times - step], out=spare[:, step:times])
        table, spare = spare, table
        step *= 2
    table[:, times] = empty
    return table.reshape(4, size)


def _joins(entry: np.ndarray, basin: np.ndarray, count: int, times: int, connectivity: int,
           meets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Basin pairs ``(a, b)`` and the first time ``t`` at which two adjacent pixels of theirs
    are both present, one row per pair, sorted by ``t``; ``meets`` gives the pairs of
    different basins along the rows and columns (``_basin_runs``)."""
    height, width = entry.shape
    size = height * width
    flat_entry = entry.ravel()
    dense = count * count <= _DENSE_JOINS_UP_TO
    if dense:  # first time of each pair, in a table indexed by the pair
        first_time = np.full(count * count, times, dtype=np.int64)
    found = []
    for dy, dx in _PAIRS_8 if connectivity == 8 else _PAIRS_4:
        offset = dy * width + dx  # pixel p pairs with p + offset; drop pairs that wrap a row
        if dy >= height or offset >= size:
            continue
        if dy == 0 or dx == 0:
            here = meets[dy]  # (0, 1): where row runs meet; (1, 0): column runs
        else:
            different = basin[:size - offset] != basin[offset:]
            different[(width - 1 if dx == 1 else 0)::width] = False  # pairs across a row end
            here = np.flatnonzero(different)
        there = here + offset
        t = np.maximum(flat_entry.take(here), flat_entry.take(there)).astype(np.int64)
        a, b = basin.take(here).astype(np.int64), basin.take(there).astype(np.int64)
        pair = np.minimum(a, b) * count + np.maximum(a, b)
        if dense:
            np.minimum.at(first_time, pair, t)
        else:
            keep = t < times
            found.append(pair[keep] * 256 + t[keep])
    if dense:
        pair = np.flatnonzero(first_time < times)
        t = first_time[pair]
        order = np.argsort(t, kind="stable")
        pair, t = pair[order], t[order]
        return pair // count, pair % count, t
    keys = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
    pair = keys >> 8
    first = np.concatenate(([True], pair[1:] != pair[:-1])) if keys.size else keys.astype(bool)
    keys = keys[first]
    keys = keys[np.argsort(keys & 0xFF, kind="stable")]
    pair = keys >> 8
    return pair // count, pair % count, keys & 0xFF


def _frame_joins(entry: np.ndarray, basin: np.ndarray, count: int,
                 times: int) -> tuple[np.ndarray, np.ndarray]:
    """Basins that touch the image edge and the first time one of their edge pixels is present."""
    height, width = entry.shape
    grid = basin.reshape(height, width)
    edge_basin = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]]).astype(np.int64)
    edge_time = np.concatenate([entry[0], entry[-1], entry[:, 0], entry[:, -1]]).astype(np.int64)
    keys = np.sort(edge_basin[edge_time < times] * 256 + edge_time[edge_time < times])
    first = np.concatenate(([True], (keys[1:] >> 8) != (keys[:-1] >> 8))) if keys.size else \
        keys.astype(bool)
    return keys[first] >> 8, keys[first] & 0xFF


def _dendrogram(birth: np.ndarray, join_a: np.ndarray, join_b: np.ndarray, join_time: np.ndarray,
                times: int) -> tuple[np.ndarray, ...]:
    """Kruskal over the basin joins.

    Returns, for every node (leaves first, then one per merge): birth and death time (the
    node is a component of the level set for ``birth <= t < death``), first position and
    size of its leaves in the returned leaf order; then the leaf order and each leaf's
    position in it.
    """
    leaves = birth.size
    union = list(range(leaves))  # union-find over the leaves; a root heads its leaf list
    node_of_root = list(range(leaves))
    tail = list(range(leaves))
    following = [-1] * leaves
    births = birth.tolist()
    deaths = [times] * leaves
    first_leaf = list(range(leaves))
    size = [1] * leaves
    # (Plain lists and the finds written inline: this loop runs once per join.)
    for a, b, t in zip(join_a.tolist(), join_b.tolist(), join_time.tolist(), strict=True):
        while union[a] != a:  # find, halving the path
            union[a] = a = union[union[a]]
        while union[b] != b:
            union[b] = b = union[union[b]]
        if a == b:
            continue
        node_a, node_b = node_of_root[a], node_of_root[b]
        node_of_root[a] = len(births)
        births.append(t)
        deaths.append(times)
        deaths[node_a] = deaths[node_b] = t
        first_leaf.append(first_leaf[node_a])
        size.append(size[node_a] + size[node_b])
        following[tail[a]] = b  # b's leaves follow a's
        union[b] = a
        tail[a] = tail[b]

    order: list[int] = []
    for root in range(leaves):
        if union[root] == root:
            leaf = root
            while leaf != -1:
                order.append(leaf)
                leaf = following[leaf]
    leaf_order = np.asarray(order, dtype=np.intp)
    position = np.empty(leaves, dtype=np.intp)
    position[leaf_order] = np.arange(leaves)
    return (np.asarray(births, dtype=np.int64), np.asarray(deaths, dtype=np.int64),
            position[np.asarray(first_leaf, dtype=np.intp)], np.asarray(size, dtype=np.int64),
            leaf_order, position)


def _component_boxes(entry: np.ndarray, values: np.ndarray, connectivity: int, times: int,
                     frame: bool, cells: bool = False,
                     neighbours: list[np.ndarray] | None = None) -> tuple[np.ndarray, ...] | None:
    """Pixel bounding boxes of the components of every set ``{entry <= t}``, ``0 <= t < times``.

    Components are 8- or 4-connected; with ``frame`` the components touching the image edge
    are left out. Returns ``(t, boxes)``: ``(N,)`` times and ``(N, 4)`` inclusive
    ``x0, y0, x1, y1``, sorted by time, and with ``cells`` also ``(N,)`` the number of 2x2
    pixel blocks wholly in each component; or None when the map has so many basins that the
    tables would pass ``_TABLE_ENTRIES_MAX`` (noisy maps: a search per level is cheaper).
    """
    basin, count = _basins(values, connectivity, neighbours)
    if (count + 1) * times > _TABLE_ENTRIES_MAX:
        return None
    runs, meets = _basin_runs(entry, basin)
    birth = np.full(count, times, dtype=np.intp)  # first time each basin is present
    np.minimum.at(birth, runs[0][1], runs[0][0])
    join_a, join_b, join_time = _joins(entry, basin, count, times, connectivity, meets)
    if frame:  # one more leaf, the outside, joined by the basins that reach the image edge
        edge_basin, edge_time = _frame_joins(entry, basin, count, times)
        outside = count
        birth = np.append(birth, 0)
        join_a = np.concatenate([join_a, edge_basin])
        join_b = np.concatenate([join_b, np.full(edge_basin.size, outside)])
        join_time = np.concatenate([join_time, edge_time])
        order = np.argsort(join_time, kind="stable")
        join_a, join_b, join_time = join_a[order], join_b[order], join_time[order]
    births, deaths, first, size, leaf_order, position = _dendrogram(birth, join_a, join_b,
                                                                    join_time, times)
    alive = births < deaths
    lifetimes = deaths[alive] - births[alive]
    node = np.repeat(np.flatnonzero(alive), lifetimes)
    t = np.arange(node.size) - np.repeat(np.cumsum(lifetimes) - lifetimes, lifetimes) + births[node]
    leaves = leaf_order.size
    starts = t * leaves + first[node]
    order = np.argsort(starts, kind="stable")
    node, t, starts = node[order], t[order], starts[order]
    # Leaves laid out time-major in dendrogram order: the leaves of each component alive at t
    # are one run, followed only by leaves absent at t (empty entries), so one reduceat each.
    by_time = _leaf_tables(runs, position, leaves, times, entry.shape)
    reduced = np.minimum.reduceat(by_time, starts, axis=1) if starts.size else \
        np.zeros((4, 0), np.int32)
    if frame:  # drop the outside: every node whose leaves include it
        position_outside = int(position[count])
        inside = (first[node] > position_outside) | (first[node] + size[node] <= position_outside)
        t, reduced = t[inside], reduced[:, inside]
    boxes = np.stack([reduced[0], reduced[1], -reduced[2], -reduced[3]], axis=1)
    if not cells:
        return t, boxes.astype(np.int64)
    # A 2x2 block is in the set from the entry of its last pixel on, and in the component of
    # its top-left pixel's basin; per-basin counts are summed over the same leaf runs.
    block_entry = np.maximum(np.maximum(entry[:-1, :-1], entry[:-1, 1:]),
                             np.maximum(entry[1:, :-1], entry[1:, 1:])).ravel()
    block_basin = basin.reshape(entry.shape)[:-1, :-1].ravel()
    present_blocks = block_entry < times
    per_time = np.bincount(block_basin[present_blocks].astype(np.int64) * times
                           + block_entry[present_blocks], minlength=count * times)
    leaf_cells = np.cumsum(per_time.reshape(count, times), axis=1)
    cell_runs = leaf_cells[leaf_order].T.ravel()
    full = np.add.reduceat(cell_runs, starts) if starts.size else np.zeros(0, np.int64)
    return t, boxes.astype(np.int64), full


def _lookup(q: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[q]`` as uint8 (values 0..255), through OpenCV's lookup table (fast on uint8)."""
    import cv2

    return cv2.LUT(q, table.astype(np.uint8))


def tree_level_boxes(scoremap: np.ndarray, q: np.ndarray, kept: np.ndarray,
                     multi_contour: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of ``{q >= v}`` for each kept value ``v`` that the component trees settle.

    Args:
        scoremap: ``(H, W)`` float64 map that ``q`` was quantized from.
        q: ``(H, W)`` uint8 quantized map.
        kept: ``(n,)`` strictly increasing values present in ``q`` (``1 <= n <= 255``).
        multi_contour: every contour, or the one of largest area.

    Returns:
        ``(level, boxes, search)``: index into ``kept`` of each box (in no particular order),
        ``(N, 4)`` int64 protocol boxes (clamped); and the levels left to a contour search
        (none of their boxes is in ``boxes``). Those are, in single-contour mode, the levels
        whose largest contour the area bounds do not settle; with every contour, the levels
        with holes when they are few (a search per level then costs less than the hole tree).
    """
    levels = kept.size
    # Level index of each value: q is in S_j exactly for j < below[q].
    below = np.searchsorted(kept, np.arange(256), side="right")
    # Outer contours: sets grow as j falls; time = levels - 1 - j, a pixel enters at
    # levels - below[q] (== levels: never kept).
    found = _component_boxes(_lookup(q, levels - below), scoremap, 8, levels,
                             frame=False, cells=not multi_contour)
    if found is None:  # too many basins: every level is searched
        return np.zeros(0, np.int64), np.zeros((0, 4), np.int64), np.arange(levels)
    t_outer, outer = found[0], found[1]
    level = levels - 1 - t_outer
    boxes = outer_contour_boxes(outer, q.shape)
    if not multi_contour:
        return settle_largest(level, outer, boxes, found[2], levels)
    def hole_counts() -> np.ndarray:  # holes per level: components less the Euler number
        return np.bincount(level, minlength=levels) - euler_numbers(q, kept)

    # Each hole holds an extremum of the complement's basins off the image edge (its lowest
    # pixel). Maps with many of them nearly always have holes at many levels: the hole tree is
    # built at once, without the Euler numbers that tell which levels have holes.
    neighbours = _better_neighbours(scoremap, 4)
    holes = None
    if _interior_extrema(neighbours) <= _HOLE_TREE_ABOVE_EXTREMA:
        holes = hole_counts()
        if np.count_nonzero(holes > 0) <= _SEARCH_HOLE_LEVELS_UP_TO:
            return _hole_levels_searched(level, boxes, holes)
    # The complement {q < v_j} grows with j: a pixel is in it from j = below[q] on.
    found = _component_boxes(_lookup(q, below), scoremap, 4, levels, frame=True,
                             neighbours=neighbours)
    if found is not None:
        t_hole, inner = found
        return (np.concatenate([level, t_hole]),
                np.concatenate([boxes, hole_contour_boxes(inner, q.shape)]),
                np.zeros(0, np.int64))
    # Too many basins in the complement: the levels with holes are searched.
    return _hole_levels_searched(level, boxes, hole_counts() if holes is None else holes)


def _hole_levels_searched(level: np.ndarray, boxes: np.ndarray,
                          holes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tree_level_boxes``' result when the levels with holes (``holes`` per level) are left
    to a search: the outer boxes of the other levels, and those levels."""
    plain = holes[level] == 0
    return level[plain], boxes[plain], np.flatnonzero(holes > 0)
