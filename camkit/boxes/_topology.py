"""Facts about the level sets of a quantized map that spare contour searches.

* ``euler_numbers``: components minus holes of every level set at once, from 2x2 pixel quads;
  with the number of components known, it tells which levels have holes.
* ``largest_contour``: bounds on the area of each component's outer contour, which settle the
  single-contour mode's choice without computing the areas (``settle_largest`` applies it).
* ``outer_contour_boxes`` / ``hole_contour_boxes``: the protocol box of a contour from the
  pixel box of the component it bounds.

The component trees (``_trees``) and the compiled union-find (``_compiled``) share them.
"""

from __future__ import annotations

import numpy as np

#: OpenCV's histograms count in float32: exact below 2**24 pixels, NumPy's bincount past it.
_HISTOGRAM_EXACT_BELOW = 1 << 24


def euler_numbers(q: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Euler number (8-connected components minus 4-connected holes) of ``{q >= v}`` for each
    kept value ``v``, from the 2x2 pixel quads of the zero-padded map (Gray's bit quads):
    ``4 E = n1 - n3 - 2 nD``, counted for every level at once from each quad's sorted values."""
    import cv2

    padded = cv2.copyMakeBorder(q, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    a, b = padded[:-1, :-1], padded[:-1, 1:]
    c, d = padded[1:, :-1], padded[1:, 1:]
    # The quad's diagonals are (a, d) and (b, c); sort its four values s1 >= s2 >= s3 >= s4.
    high_1, low_1 = np.maximum(a, d), np.minimum(a, d)
    high_2, low_2 = np.maximum(b, c), np.minimum(b, c)
    s1, s4 = np.maximum(high_1, high_2), np.minimum(low_1, low_2)
    middle_high, middle_low = np.minimum(high_1, high_2), np.maximum(low_1, low_2)
    s2, s3 = np.maximum(middle_high, middle_low), np.minimum(middle_high, middle_low)
    # At level v the quad has one pixel on for s2 < v <= s1, two for s3 < v <= s2 (a diagonal
    # pair when both of one diagonal beat both of the other), three for s4 < v <= s3.
    diagonal = ((low_1 > high_2) | (low_2 > high_1)).view(np.uint8)

    exact_in_float32 = padded.size < _HISTOGRAM_EXACT_BELOW

    def starts(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Quads whose interval opens above each value."""
        if exact_in_float32:  # much cheaper than bincount's cast of uint8 to intp
            return cv2.calcHist([values], [0], mask, [256], [0, 256]).ravel().astype(np.int64)
        chosen = values if mask is None else values[mask.view(bool)]
        return np.bincount(chosen.ravel(), minlength=256).astype(np.int64)

    change = (starts(s2) - starts(s1)) - (starts(s4) - starts(s3))
    change -= 2 * (starts(s3, diagonal) - starts(s2, diagonal))
    # An interval (lo, hi] covers v when lo < v <= hi: shift by one, then accumulate.
    quarter = np.cumsum(np.concatenate(([0], change[:-1])))
    return quarter[kept] // 4


def largest_contour(level: np.ndarray, pixel_boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Rows of the components whose contour is, provably, the one of largest area at its level.

    A contour through the centres of a component's border pixels encloses every 2x2 block of
    the component (area >= ``cells``) and lies in the box of its pixel centres (area <=
    ``(x1 - x0) * (y1 - y0)``). When only one component's upper bound reaches the largest
    lower bound of its level, it is the winner (ties between areas cannot occur then);
    otherwise the level is left to a contour search, which compares exact areas.
    """
    upper = (pixel_boxes[:, 2] - pixel_boxes[:, 0]) * (pixel_boxes[:, 3] - pixel_boxes[:, 1])
    group = np.flatnonzero(np.concatenate(([True], level[1:] != level[:-1])))
    sizes = np.diff(np.append(group, level.size))
    best = np.repeat(np.maximum.reduceat(cells, group), sizes)
    contenders = np.repeat(np.add.reduceat((upper >= best).astype(np.int64), group), sizes)
    return np.flatnonzero((contenders == 1) & (cells == best))


def outer_contour_boxes(pixel_boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Protocol boxes of outer contours from the inclusive pixel boxes ``(N, 4)`` of their
    8-connected components: ``(x0, y0, x1 + 1, y1 + 1)``, clamped to ``W - 1`` / ``H - 1``."""
    height, width = shape
    return np.column_stack([pixel_boxes[:, 0], pixel_boxes[:, 1],
                            np.minimum(pixel_boxes[:, 2] + 1, width - 1),
                            np.minimum(pixel_boxes[:, 3] + 1, height - 1)])


def hole_contour_boxes(pixel_boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Protocol boxes of hole contours from the inclusive pixel boxes ``(N, 4)`` of the holes
    (4-connected background components off the image edge): the contour runs on the pixels
    around the hole, so the box grows by one pixel, then ``x + w`` / ``y + h`` and the clamp."""
    height, width = shape
    return np.column_stack([pixel_boxes[:, 0] - 1, pixel_boxes[:, 1] - 1,
                            np.minimum(pixel_boxes[:, 2] + 2, width - 1),
                            np.minimum(pixel_boxes[:, 3] + 2, height - 1)])


def settle_largest(level: np.ndarray, pixel_boxes: np.ndarray, boxes: np.ndarray,
                   cells: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-contour mode: ``(level, boxes, search)`` with the box of each level whose largest
    contour ``largest_contour`` proves, and the levels left to a contour search."""
    winner = largest_contour(level, pixel_boxes, cells)
    settled = np.zeros(levels, dtype=bool)
    settled[level[winner]] = True
    return level[winner], boxes[winner], np.flatnonzero(~settled)
