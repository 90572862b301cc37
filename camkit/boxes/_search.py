"""Boxes of each kept set by its own ``cv2.findContours`` call: the protocol's procedure.

Each set ``{q >= v}`` is searched on its bounding crop: ``findContours`` pads the image with
background, so the contours of the crop are those of the full image shifted by the crop origin.
This is the fallback when the compiled kernel is not built, the path for few sets (where a
search per set costs less than the kernel's passes) and the single-contour mode's path (the
kernel gives pixel boxes, not the polygon areas that choose the largest contour).
"""

from __future__ import annotations

import numpy as np

from camkit.boxes._levels import crop_bounds


def search_boxes(q: np.ndarray, kept: np.ndarray,
                 multi_contour: bool) -> tuple[np.ndarray, np.ndarray]:
    """Protocol boxes of the sets ``{q >= v}``, ``v`` in ``kept``.

    Args:
        q: ``(H, W)`` uint8 quantized map.
        kept: ``(S,)`` values present in ``q``.
        multi_contour: the box of every contour (outer and hole), or of the one of largest
            ``cv2.contourArea`` (the first of them on ties, as ``max`` over the contour list).

    Returns:
        ``(N, 4)`` int64 boxes ``x0, y0, x1, y1`` and ``(N,)`` int64 index of each box's set.
    """
    import cv2

    height, width = q.shape
    bounds = crop_bounds(q, kept)
    # The largest contour is a top-level outer one (a hole's or an island's area lies inside
    # its parent's) and the outer ones come in the same order in both modes: single mode needs
    # no hole contours.
    mode = cv2.RETR_TREE if multi_contour else cv2.RETR_EXTERNAL
    rects: list[tuple[int, int, int, int]] = []
    counts: list[int] = []
    for value, (y0, y1, x0, x1) in zip(kept.tolist(), bounds.tolist(), strict=True):
        binary = (q[y0:y1, x0:x1] >= value).view(np.uint8)
        contours = cv2.findContours(binary, mode, cv2.CHAIN_APPROX_SIMPLE)[0]
        if not multi_contour and len(contours) > 1:
            contours = (max(contours, key=cv2.contourArea),)
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            rects.append((x + x0, y + y0, w, h))
        counts.append(len(contours))
    xywh = np.array(rects, dtype=np.int64).reshape(-1, 4)
    boxes = np.column_stack([xywh[:, 0], xywh[:, 1],
                             np.minimum(xywh[:, 0] + xywh[:, 2], width - 1),
                             np.minimum(xywh[:, 1] + xywh[:, 3], height - 1)])
    return boxes, np.repeat(np.arange(kept.size, dtype=np.int64), counts)
