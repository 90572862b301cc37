"""Boxes from score maps and box IoU, in the convention of the WSOL evaluation protocol.

Boxes are ``x0, y0, x1, y1`` integer pixel coordinates with inclusive areas
``(x1 - x0 + 1) * (y1 - y0 + 1)``; sizes are ``(H, W)`` pairs as everywhere in camkit. Results
are identical, bit for bit, to the protocol of Choe et al. (CVPR 2020): ``cv2.findContours`` on
every thresholded map, bounding rectangles, clamping and IoU as in its reference code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from camkit._checks import check_bool, check_size, is_tensor, real_number
from camkit.boxes._engine import ThresholdBoxes, threshold_boxes_of_map
from camkit.boxes._inputs import COORDINATE_LIMIT, as_boxes, as_float64_maps, as_thresholds
from camkit.boxes._levels import box_iou_matrix

if TYPE_CHECKING:
    import torch

__all__ = [
    "ThresholdBoxes",
    "box_iou",
    "boxes_from_scoremap",
    "resize_boxes",
    "threshold_boxes",
    "threshold_grid",
]


#: Most thresholds ``threshold_grid`` builds (``interval >= 1e-6``). The protocol's grids have
#: 100 (``0.01``) and 1000 (``0.001``) thresholds; a million still makes a grid of 8 MB and
#: metric states of tens of MB that update in well under a second, while a finer interval can
#: only tell apart the same 255 quantized levels of a map (and ``1e-9`` would allocate 8 GB and
#: run for minutes).
MAX_THRESHOLDS = 1_000_000


def threshold_grid(interval: float = 0.01) -> np.ndarray:
    """The protocol's score-map threshold grid ``numpy.arange(0, 1, interval)`` (1 excluded).

    ``interval=0.01`` gives the 100 thresholds of the published protocol; training code often
    uses ``0.001``. ``interval`` must be at least ``1e-6`` (a million thresholds at most);
    NumPy scalars and one-element arrays or tensors are accepted.
    """
    number = real_number(interval)
    if number is None:
        raise TypeError(f"interval must be a float, got {type(interval).__name__}")
    if not (math.isfinite(number) and 0.0 < number <= 1.0):
        raise ValueError(f"interval must be in (0, 1], got {number}")
    # The first test keeps 1 / number finite for the second (a denormal's inverse is inf).
    if number < 1.0 / MAX_THRESHOLDS or math.ceil(1.0 / number) > MAX_THRESHOLDS:
        raise ValueError(f"interval must give at most {MAX_THRESHOLDS} thresholds (interval "
                         f">= 1e-6), got {number}")
    return np.arange(0, 1, number)


def _like(array: np.ndarray, tensor: torch.Tensor) -> torch.Tensor:
    """``array`` as a tensor on ``tensor``'s device (PyTorch is imported: ``tensor`` exists)."""
    import torch

    return torch.from_numpy(array).to(tensor.device)


def box_iou(boxes_a: object, boxes_b: object) -> np.ndarray | torch.Tensor:
    """Pairwise IoU in the protocol's convention.

    Areas are inclusive (``+1``), the intersection is clamped at 0 and a non-positive
    denominator gives IoU 0; two ``(0, 0, 0, 0)`` boxes have IoU 1.

    Args:
        boxes_a (ndarray or Tensor[N, 4]): integer ``x0, y0, x1, y1`` with ``x0 <= x1``,
            ``y0 <= y1``, within ``±2**30`` (so that no integer area wraps around).
        boxes_b (ndarray or Tensor[M, 4]): same convention.

    Returns:
        ``(N, M)`` float64 IoU: a tensor (on ``boxes_a``'s device) when ``boxes_a`` is a
        tensor, else a NumPy array.
    """
    iou = box_iou_matrix(as_boxes(boxes_a, "boxes_a"), as_boxes(boxes_b, "boxes_b"))
    if is_tensor(boxes_a):
        return _like(iou, boxes_a)
    return iou


def threshold_boxes(
    scoremap: np.ndarray | torch.Tensor,
    thresholds: Sequence[float] | np.ndarray,
    *,
    multi_contour: bool = True,
) -> ThresholdBoxes | list[ThresholdBoxes]:
    """Boxes of a score map at every threshold, by the protocol's contour procedure.

    The map is quantized to ``q = uint8(map * 255)`` (truncation, computed in float64); at
    threshold ``t`` the kept pixels are ``q > int(t * max(q))``; each 8-connected outer contour
    and each hole contour of the kept region gives the box ``(x, y, x + w, y + h)`` of its
    bounding rectangle, with ``x1`` clamped to ``W - 1`` and ``y1`` to ``H - 1``. Nothing kept
    gives the single box ``(0, 0, 0, 0)``. With ``multi_contour=False`` only the contour of
    largest polygon area (``cv2.contourArea``, the first of them on ties) is kept.

    A box that several consecutive thresholds share is stored once with its range
    (``ThresholdBoxes``), so the result of a fine grid costs little more than that of a coarse
    one: a map has at most 255 distinct level sets.

    Args:
        scoremap (ndarray or Tensor[H, W] or [B, H, W]): float16/32/64, finite, in [0, 1].
        thresholds: 1-D strictly increasing values in [0, 1], e.g. ``threshold_grid(0.01)``.
        multi_contour: all contours (MaxBoxAccV2) or the largest one (MaxBoxAcc).

    Returns:
        A ``ThresholdBoxes`` for an ``(H, W)`` map; a list of ``B`` of them for ``(B, H, W)``.
    """
    maps = as_float64_maps(scoremap, "scoremap", ndim=(2, 3))
    grid = as_thresholds(thresholds, "thresholds")
    multi = check_bool(multi_contour, "multi_contour")
    if maps.ndim == 2:
        return threshold_boxes_of_map(maps, grid, multi)
    return [threshold_boxes_of_map(single, grid, multi) for single in maps]


def boxes_from_scoremap(
    scoremap: np.ndarray | torch.Tensor,
    thresholds: Sequence[float] | np.ndarray,
    *,
    multi_contour: bool = True,
) -> list:
    """Boxes of a score map at each threshold, by the protocol's contour procedure.

    The same boxes as ``threshold_boxes`` (see there for the procedure), listed threshold by
    threshold.

    Args:
        scoremap (ndarray or Tensor[H, W] or [B, H, W]): float16/32/64, finite, in [0, 1].
        thresholds: 1-D strictly increasing values in [0, 1], e.g. ``threshold_grid(0.01)``.
        multi_contour: all contours (MaxBoxAccV2) or the largest one (MaxBoxAcc).

    Returns:
        For an ``(H, W)`` map, a list with one ``(n_t, 4)`` int64 array per threshold, boxes
        sorted by ``x0, y0, x1, y1``; for ``(B, H, W)``, a list of ``B`` such lists.
    """
    result = threshold_boxes(scoremap, thresholds, multi_contour=multi_contour)
    if isinstance(result, ThresholdBoxes):
        return result.per_threshold()
    return [single.per_threshold() for single in result]


def resize_boxes(
    boxes: object, from_size: tuple[int, int], to_size: tuple[int, int]
) -> np.ndarray | torch.Tensor:
    """Rescale boxes between image sizes with the protocol's truncation.

    Each coordinate becomes ``int(x * new_w / w)`` (x-coordinates) or ``int(y * new_h / h)``
    (y-coordinates), computed in float64 left to right and truncated toward zero.

    Args:
        boxes (ndarray or Tensor[N, 4]): integer ``x0, y0, x1, y1``.
        from_size: ``(H, W)`` of the image the boxes refer to (note: the protocol's
            ``image_sizes.txt`` stores ``width,height``).
        to_size: ``(H, W)`` of the target image, ``(224, 224)`` in the protocol.

    Returns:
        ``(N, 4)`` int64 boxes, a tensor when ``boxes`` is a tensor; ``ValueError`` when a
        coordinate would pass ``±2**30``.
    """
    array = as_boxes(boxes, "boxes")
    old_h, old_w = check_size(from_size, "from_size")
    new_h, new_w = check_size(to_size, "to_size")
    scale = np.array([new_w, new_h, new_w, new_h], dtype=np.float64)
    old = np.array([old_w, old_h, old_w, old_h], dtype=np.float64)
    scaled = np.trunc(array.astype(np.float64) * scale / old)
    # Checked in float64, before the cast: a size of 2**63 would wrap around int64.
    if scaled.size and np.abs(scaled).max() > COORDINATE_LIMIT:
        raise ValueError(f"boxes resized from {(old_h, old_w)} to {(new_h, new_w)} must stay "
                         f"within +-2**30, got values up to {np.abs(scaled).max():.6g}")
    resized = scaled.astype(np.int64)
    if is_tensor(boxes):
        return _like(resized, boxes)
    return resized
