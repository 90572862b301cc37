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
    masks = value.astype(np.uint8) if value.dtype == np.bool_ else value
    bad = (masks != 0) & (masks != 1) & (masks != IGNORE)
    if bad.any():
        raise ValueError(f"masks must hold only 0, 1 and {IGNORE}, got {masks[bad][0]!r}")
    return masks


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
        self._lookup: np.ndarray | None = None
        super().__init__()

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
        maps = maps.reshape(labels.shape)
        bins = self.thresholds.size + 2
        # Per label a block of bins + 1 codes: code 0 = below the first edge (dropped, as
        # numpy.histogram does), code i + 1 = bin i; ignored pixels land in a third block.
        block = bins + 1
        offsets = np.zeros(256, dtype=np.intp)
        offsets[1], offsets[IGNORE] = block, 2 * block
        codes = self._edge_counts(maps.ravel()) + offsets[labels.ravel().astype(np.uint8)]
        counts = np.bincount(codes, minlength=3 * block)
        self._state["background"] += counts[1:block]
        self._state["foreground"] += counts[block + 1:2 * block]
        self._state["num_images"] += labels.shape[0]

    def _edge_counts(self, scores: np.ndarray) -> np.ndarray:
        """Number of edges ``<= score`` for each score (``searchsorted(edges, s, "right")``).

        A lookup table over a uniform grid of [0, 1] gives a first guess; exact comparisons with
        the edges then correct it, so the result equals ``searchsorted`` bit for bit.
        """
        if self._lookup is None:
            cells = 1 << max(10, int(4 * self._edges.size).bit_length())
            left_ends = np.arange(cells) / cells
            self._lookup = np.searchsorted(self._edges, left_ends, side="right")
        lookup = self._lookup
        cells = lookup.size
        guess = (scores * cells).astype(np.intp)
        np.minimum(guess, cells - 1, out=guess)
        count = lookup[guess]
        padded = np.concatenate(([-np.inf], self._edges, [np.inf]))
        while True:  # raise while score >= next edge, lower while score < current edge
            up = scores >= padded[count + 1]
            down = scores < padded[count]
            if not (up.any() or down.any()):
                return count
            count += up
            count -= down

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
