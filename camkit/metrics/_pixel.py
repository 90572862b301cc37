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
_FOREGROUND_BIT = np.uint64(1 << 63)
_ALLOWED_LABELS = np.zeros(256, dtype=bool)
_ALLOWED_LABELS[[0, 1, IGNORE]] = True


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
    allowed = _ALLOWED_LABELS[value]
    if not allowed.all():
        raise ValueError(f"masks must hold only 0, 1 and {IGNORE}, got {value[~allowed][0]!r}")
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
        edge_bits = np.ascontiguousarray(self._edges).view(np.uint64)
        self._edge_keys = np.concatenate([edge_bits, edge_bits | _FOREGROUND_BIT])
        self._label_bits = np.zeros(256, dtype=np.uint64)
        self._label_bits[1] = _FOREGROUND_BIT
        self._label_bits[IGNORE] = np.iinfo(np.uint64).max
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
        # One sort per map instead of a histogram per label: the bit patterns of non-negative
        # float64 values order like the values, so key = bits(score) | (label 1 -> top bit)
        # sorts background scores, then foreground scores; ignored pixels get the largest key.
        # Counting keys between consecutive edge keys gives numpy.histogram's bins exactly.
        edges = self._edges.size
        for scores, label in zip(maps.reshape(labels.shape), labels, strict=True):
            keys = (scores.ravel() + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into +0.0
            keys |= self._label_bits[label.ravel()]
            keys.sort()
            positions = np.searchsorted(keys, self._edge_keys, side="left")
            self._state["background"] += np.diff(positions[:edges])
            self._state["foreground"] += np.diff(positions[edges:])
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
