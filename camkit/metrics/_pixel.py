"""PxAP: pixel-wise average precision of score maps against masks, pooled over a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from camkit.boxes import threshold_grid
from camkit.boxes._inputs import as_float64_maps, as_thresholds
from camkit.metrics._state import CountingState

__all__ = ["IGNORE", "PixelAP", "PixelAPResult", "pixel_ap"]

#: Mask value of pixels left out of PxAP.
IGNORE = 255


def as_masks(value: object, shape: tuple[int, ...]) -> np.ndarray:
    """Check masks of ``{0: background, 1: foreground, 255: ignore}`` (or bool) of ``shape``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"masks must be a numpy.ndarray or torch.Tensor, got {type(value).__name__}"
        )
    if not (value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer)):
        raise TypeError(f"masks must have an integer or bool dtype, got {value.dtype}")
    if value.ndim == len(shape) - 1:
        value = value[None]
    if value.shape != shape:
        raise ValueError(f"masks must have the scoremaps' shape {shape}, got {value.shape}")
    if value.dtype != np.uint8:
        low, high = (int(value.min()), int(value.max())) if value.size else (0, 0)
        if low < 0 or high > IGNORE:
            raise ValueError(f"masks must hold only 0, 1 and {IGNORE}, got values in "
                             f"[{low}, {high}]")
        value = value.astype(np.uint8)
    refused = (value > 1) & (value != IGNORE)  # uint8 comparisons: cheaper than a lookup
    if refused.any():
        raise ValueError(f"masks must hold only 0, 1 and {IGNORE}, got {value[refused][0]!r}")
    return value


@dataclass(frozen=True)
class PixelAPResult:
    """Result of ``PixelAP.compute()``.

    Attributes:
        pxap: area under the precision-recall curve, in percent.
        precision, recall: ``(T + 2,)`` curves at "score >= edge" for ``edges``, in descending
            order; precision is NaN where no pixel reaches the edge.
        edges: ``(T + 2,)`` ``[2, 1, t_{T-1}, ..., t_0]``.
        num_images: images accumulated.
    """

    pxap: float
    precision: np.ndarray
    recall: np.ndarray
    edges: np.ndarray
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN precision becomes ``None``)."""
        return {
            "pxap": self.pxap,
            "precision": [None if np.isnan(p) else float(p) for p in self.precision],
            "recall": self.recall.tolist(),
            "edges": self.edges.tolist(),
            "num_images": self.num_images,
        }


class PixelAP(CountingState):
    """PxAP (Choe et al., CVPR 2020): pixel precision-recall over a whole split.

    Scores of foreground and background pixels are counted in histograms whose bins have right
    edges ``thresholds ++ [1, 2, 3]`` (left-closed bins, as ``numpy.histogram``); ignored pixels
    are dropped. ``compute()`` turns the pooled histograms into precision and recall and sums
    ``precision[1:] * diff(recall)`` over the bins where something is predicted, exactly as the
    reference ``MaskEvaluator``. A perfect map gives 100, a constant map the foreground fraction.

    Args:
        thresholds: score thresholds, strictly increasing in [0, 1]; default
            ``threshold_grid(0.01)``.

    State: ``foreground`` and ``background`` ``(T + 2,)`` int64 histograms and ``num_images``.
    """

    _metric_name = "PixelAP"

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None) -> None:
        grid = threshold_grid(0.01) if thresholds is None else thresholds
        self.thresholds = as_thresholds(grid, "thresholds")
        self._edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        steps = np.diff(self.thresholds)
        # The arithmetic binning of _bin_index needs evenly spaced edges up to 1 (the grid's
        # next step): a grid that stops short of it has a wide bin before the 1.0 edge.
        uniform = steps.size > 0 and bool(
            np.all(np.abs(steps - steps[0]) <= 1e-9 * steps[0])
            and abs(self.thresholds[-1] + steps[0] - 1.0) <= 1e-9)
        self._step: float | None = float(steps[0]) if uniform else None
        super().__init__()

    def _bin_index(self, scores: np.ndarray) -> np.ndarray:
        """Bin of each score in [0, 1]: ``i`` with ``edges[i] <= score < edges[i + 1]``
        (numpy.histogram's left-closed bins), or -1 below the first edge."""
        edges = self._edges
        last = edges.size - 2
        if self._step is None:
            return np.searchsorted(edges, scores, side="right") - 1
        # Evenly spaced thresholds: the arithmetic guess is at most one bin off (the grid's
        # floats differ from exact multiples of the step by rounding only), and one correction
        # against the real edges makes it exact. A score below the first edge ends at -1;
        # edges[last + 1] (3.0) is never reached by scores in [0, 1].
        shifted = scores - edges[0] if edges[0] else scores
        index = (shifted * (1.0 / self._step)).astype(np.intp)
        if edges[0] > 0:  # scores below the first edge may give negative guesses
            np.maximum(index, 0, out=index)
        np.minimum(index, last, out=index)
        index -= scores < edges[index]
        index += scores >= edges[index + 1]
        return index

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        bins = self.thresholds.size + 2
        return {"foreground": (bins,), "background": (bins,)}

    def config(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds.tolist()}

    def update(
        self, scoremaps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps (ndarray or Tensor[B, H, W] or [H, W]): float maps, finite, in [0, 1].
            masks (ndarray or Tensor, same shape): 0 background, 1 foreground, 255 ignore
                (bool masks: True foreground).
        """
        maps = as_float64_maps(scoremaps, "scoremaps", ndim=(2, 3))
        labels = as_masks(masks, maps.shape if maps.ndim == 3 else (1, *maps.shape))
        # Per map (a working set that stays in cache), one bincount over (bin, label) with
        # label 0 background, 1 foreground, 2 ignored (255 clipped to 2: masks hold only
        # 0, 1, 255); bin row 0 takes the scores below the first edge, which
        # numpy.histogram drops.
        bins = self._edges.size - 1
        size = 3 * (bins + 1)
        counts = np.zeros(size, dtype=np.int64)
        # 3 * (bin + 1) + label = 3 * bin + (label + 3): bin -1 lands in row 0.
        label_slot = np.minimum(labels, 2) + np.uint8(3)
        for scores, slot in zip(maps.reshape(labels.shape), label_slot, strict=True):
            index = self._bin_index(scores.reshape(-1))
            index *= 3
            index += slot.reshape(-1)
            counts += np.bincount(index, minlength=size)
        per_label = counts.reshape(bins + 1, 3)
        self._state["background"] += per_label[1:, 0]
        self._state["foreground"] += per_label[1:, 1]
        self._state["num_images"] += labels.shape[0]

    def compute(self) -> PixelAPResult:
        """PxAP in percent and the curve; ``ValueError`` when no foreground pixel was seen."""
        foreground = self._state["foreground"].astype(np.float64)
        background = self._state["background"].astype(np.float64)
        num_positive = foreground.sum()
        if num_positive <= 0:
            raise ValueError(
                f"PixelAP.compute() needs at least one foreground pixel (mask value 1), got none "
                f"in {self.num_images} images"
            )
        tp = foreground[::-1].cumsum()
        fn = num_positive - tp
        fp = background[::-1].cumsum()
        predicted = (tp + fp) != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        pxap = (precision[1:] * np.diff(recall))[predicted[1:]].sum() * 100
        return PixelAPResult(
            pxap=float(pxap),
            precision=precision,
            recall=recall,
            edges=self._edges[-2::-1].copy(),
            num_images=self.num_images,
        )


def pixel_ap(
    scoremaps: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> PixelAPResult:
    """Functional form of ``PixelAP`` for one batch (same arguments and result)."""
    metric = PixelAP(thresholds)
    metric.update(scoremaps, masks)
    return metric.compute()
