"""PxAP: pixel-wise average precision of score maps against masks, pooled over a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from camkit._checks import is_tensor
from camkit.boxes import threshold_grid
from camkit.boxes._inputs import as_float64_maps, as_thresholds
from camkit.metrics._state import CountingState

if TYPE_CHECKING:
    import torch

__all__ = ["IGNORE", "PixelAP", "PixelAPResult", "pixel_ap"]

#: Mask value of pixels left out of PxAP.
IGNORE = 255


def as_masks(value: object, shape: tuple[int, ...]) -> np.ndarray:
    """Masks of ``{0: background, 1: foreground, 255: ignore}`` (or bool) of ``shape``, as
    uint8: kind, dtype, shape and (for wider dtypes) range are checked here; the values 2..254
    of uint8 masks while ``PixelAP.update`` counts them (``_LABEL_SLOTS``)."""
    if is_tensor(value):
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
    return value


def _refuse_mask_values(masks: np.ndarray) -> None:
    """``ValueError`` naming the first mask value other than 0, 1 and ``IGNORE`` (the label
    slots found one; looked for only then)."""
    refused = masks[(masks > 1) & (masks != IGNORE)]
    raise ValueError(f"masks must hold only 0, 1 and {IGNORE}, got {int(refused[0])}")


#: Label slot of the mask values other than 0, 1 and 255: counting them is how the masks are
#: checked, without a pass of their own.
_REFUSED = 3
#: Label slot of each mask value: 0 background, 1 foreground, 2 ignored (255), else _REFUSED.
_LABEL_SLOTS = np.full(256, _REFUSED, dtype=np.uint8)
_LABEL_SLOTS[[0, 1, IGNORE]] = 0, 1, 2
#: Slots per bin: one per label slot.
_SLOTS = _REFUSED + 1

#: Cells per unit score of the binning table: each score falls in cell ``floor(score * 2**16)``.
_CELLS = 1 << 16


def _cell_table(edges: np.ndarray) -> tuple[np.ndarray, int]:
    """Slot table of the binning: ``(table, ambiguous_start)``.

    Cell ``k`` holds the scores in ``[k / _CELLS, (k + 1) / _CELLS)``. When no edge lies strictly
    inside it, every score in it has the bin of ``k / _CELLS`` (numpy.histogram's left-closed
    bins, -1 below the first edge) and the table holds ``_SLOTS * (bin + 1)``. A cell that an edge
    splits gets a slot of its own from ``ambiguous_start`` on, so that its few pixels can be
    placed against the real edges afterwards. ``_CELLS + 1`` entries: a score of 1 is cell
    ``_CELLS``.
    """
    lower = np.arange(_CELLS + 1, dtype=np.float64) / _CELLS
    bins = np.searchsorted(edges, lower, side="right") - 1
    table = _SLOTS * (bins + 1)
    # An edge strictly inside cell k: k / _CELLS < edge < (k + 1) / _CELLS.
    inner = edges[(edges > 0) & (edges < 1)]
    cells = np.floor(inner * _CELLS).astype(np.intp)
    split = np.unique(cells[cells / _CELLS < inner])
    ambiguous_start = _SLOTS * edges.size  # past the slots of every bin
    table[split] = ambiguous_start + _SLOTS * np.arange(split.size)
    return table.astype(np.intp), ambiguous_start


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
        self._cell_slots, self._ambiguous_start = _cell_table(self._edges)
        super().__init__()

    def _count_map(self, scores: np.ndarray, labels: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Counts of one map's pixels per ``_SLOTS * (bin + 1) + label`` slot.

        ``scores`` (float64) and ``labels`` (uint8, 0 background, 1 foreground, 2 ignored,
        ``_REFUSED``) are flat; ``index`` is an intp work buffer of the same size.
        """
        # Exact (a power of two), then truncated to the cell (= floor for scores >= 0).
        np.multiply(scores, float(_CELLS), out=index, casting="unsafe")
        # mode="clip" lets take() write into `index` unbuffered; indices are in range.
        np.take(self._cell_slots, index, out=index, mode="clip")
        index += labels
        start = self._ambiguous_start
        counts = np.bincount(index, minlength=start)
        if counts.size > start:  # pixels in a cell that an edge splits: place them exactly
            ambiguous = np.flatnonzero(index >= start)
            bins = np.searchsorted(self._edges, scores[ambiguous], side="right")
            slots = _SLOTS * bins + (index[ambiguous] - start) % _SLOTS
            counts = counts[:start] + np.bincount(slots, minlength=start)
        return counts

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
        bins = self._edges.size - 1
        counts = np.zeros(_SLOTS * (bins + 1), dtype=np.int64)
        # Per map (a working set that stays in cache, in buffers allocated once: fresh
        # temporaries of a map's size cost page faults), one bincount over
        # _SLOTS * (bin + 1) + label with label 0 background, 1 foreground, 2 ignored, _REFUSED
        # any other mask value (refused below, before the state changes); bin -1, the scores below
        # the first edge that numpy.histogram drops, lands in row 0.
        pixels = labels[0].size
        index = np.empty(pixels, np.intp)
        label_slot = np.empty((1, pixels), np.uint8)
        for scores, label in zip(maps.reshape(labels.shape), labels, strict=True):
            cv2.LUT(label.reshape(1, -1), _LABEL_SLOTS, dst=label_slot)
            counts += self._count_map(scores.reshape(-1), label_slot[0], index)
        per_label = counts.reshape(bins + 1, _SLOTS)
        if per_label[:, _REFUSED].any():
            _refuse_mask_values(labels)
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
