"""PxAP: pixel-wise average precision of score maps against masks, pooled over a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    """Masks of ``{0: background, 1: foreground, 255: ignore}`` (or bool, True foreground) of
    ``shape``, as uint8; ``TypeError``/``ValueError`` on a wrong kind, dtype, shape or value (the
    error names the first value other than 0, 1 and ``IGNORE``)."""
    if is_tensor(value):
        if value.is_floating_point() or value.is_complex():  # (bfloat16 has no NumPy dtype)
            raise TypeError(f"masks must have an integer or bool dtype, got {value.dtype}")
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
    if value.dtype != np.bool_:
        refused = (value != 0) & (value != 1) & (value != IGNORE)
        if refused.any():
            raise ValueError(f"masks must hold only 0, 1 and {IGNORE}, got "
                             f"{int(value[refused][0])}")
    return value.astype(np.uint8, copy=False)


#: Cells per unit score of the binning table: a power of two, so ``score * _CELLS`` is exact and
#: its integer part is the score's cell. With 2**16 cells the table is 512 KiB and a grid whose
#: spacing exceeds 2**-16 (0.0001 and coarser) has at most one edge inside any cell.
_CELLS = 1 << 16


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
        # Binning by table: a binary search per pixel is slower than the reference's sort at the
        # 0.001 grid. _cell_index[k] is the bin index of the cell's lower bound k / _CELLS;
        # _steps is the most edges strictly inside one cell (the table cannot place those).
        self._cell_index = np.searchsorted(
            self._edges, np.arange(_CELLS + 1) / _CELLS, side="right"
        )
        scaled = self._edges[self._edges <= 1.0] * _CELLS
        split_cells = np.floor(scaled[scaled != np.floor(scaled)])
        self._steps = (
            int(np.unique(split_cells, return_counts=True)[1].max()) if split_cells.size else 0
        )
        super().__init__()

    def _bin_index(self, scores: np.ndarray) -> np.ndarray:
        """Number of edges ``<= score`` for each score in [0, 1], exactly as
        ``searchsorted(edges, scores, side="right")``: 0 below the first edge (which
        numpy.histogram drops), ``k + 1`` in bin ``k`` (a score on an edge opens its bin)."""
        if self._steps > np.log2(self._edges.size):  # edges packed closer than 2**-16
            # A binary search costs about log2(edges) comparisons per score, a step one.
            return np.searchsorted(self._edges, scores, side="right")
        index = self._cell_index[(scores * _CELLS).astype(np.intp)]  # truncation: floor
        for _ in range(self._steps):  # past each edge inside the cell that the score reaches
            index += scores >= self._edges[index]  # never past the 2.0 edge: scores <= 1
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
        self._make_room(labels.shape[0], "num_images")
        self._make_room(labels.size, "foreground", "background")  # at most every pixel in a bin
        # Per map, so that the temporaries stay in cache; index 0 (below the first edge) dropped.
        foreground = np.zeros(self._edges.size, dtype=np.int64)
        background = np.zeros(self._edges.size, dtype=np.int64)
        for scores, label in zip(maps.reshape(labels.shape), labels, strict=True):
            index = self._bin_index(scores)
            foreground += np.bincount(index[label == 1], minlength=self._edges.size)
            background += np.bincount(index[label == 0], minlength=self._edges.size)
        self._state["foreground"] += foreground[1:]
        self._state["background"] += background[1:]
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
