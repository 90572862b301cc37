"""GT-known, top-1 and top-5 localization accuracy at one fixed box threshold per image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from camkit._checks import check_bool, check_finite_number
from camkit.boxes import ThresholdBoxes, threshold_boxes
from camkit.boxes._inputs import as_array
from camkit.metrics._box import reached_runs, split_batch
from camkit.metrics._state import CountingState

if TYPE_CHECKING:
    import torch

__all__ = ["LocalizationAccuracy", "LocalizationResult"]

_RULES = ("max", "pas")


@dataclass(frozen=True)
class LocalizationResult:
    """Result of ``LocalizationAccuracy.compute()``, in percent."""

    gt_known: float
    top1: float
    top5: float
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"gt_known": self.gt_known, "top1": self.top1, "top5": self.top5,
                "num_images": self.num_images}


class LocalizationAccuracy(CountingState):
    """Localization accuracy at a fixed threshold: GT-known, top-1 and top-5.

    The maps given to ``update`` are those of the ground-truth class. An image is
    *GT-known correct* when the best IoU between its map's boxes and its GT boxes is
    ``>= iou_threshold``; *top-1 correct* when, in addition, the top-scoring class is the label;
    *top-5 correct* when the label is among the 5 top-scoring classes (all of them when there
    are fewer) and the image is GT-known correct. Boxes follow the protocol's contour procedure
    (``camkit.boxes.boxes_from_scoremap``) at one threshold ``t`` per image:

    * ``rule="max"``: ``t = theta`` (default 0.2), i.e. keep ``q > int(theta * max(q))``;
    * ``rule="pas"``: ``t = theta * percentile_q(map)`` with the percentile of the float map
      (``camkit.threshold.percentile_threshold``, defaults ``q=90, theta=0.35``), i.e. keep
      ``q > int(t * max(q))``. For min-max normalized maps (max 1) this is the PaS threshold
      ``theta * percentile_q`` on the map's own scale.

    Here ``q = uint8(map * 255)``. A ``t`` at or above 1 keeps nothing: box ``(0, 0, 0, 0)``.

    Args:
        rule: ``"max"`` or ``"pas"``.
        theta: multiplier; ``None`` gives 0.2 for ``"max"`` and 0.35 for ``"pas"``.
        q: percentile for ``"pas"``, in [0, 100].
        iou_threshold: IoU needed to count a box as correct.
        multi_contour: boxes of every contour (best one counts) or only the largest contour
            (the classic CAM evaluation, default); a bool.
    """

    _metric_name = "LocalizationAccuracy"

    def __init__(
        self,
        rule: str = "max",
        theta: float | None = None,
        q: float = 90.0,
        iou_threshold: float = 0.5,
        multi_contour: bool = False,
    ) -> None:
        if not isinstance(rule, str) or rule not in _RULES:  # (an array would compare elementwise)
            raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
        self.rule = rule
        default_theta = 0.2 if rule == "max" else 0.35
        self.theta = check_finite_number(default_theta if theta is None else theta, "theta",
                                         low=0.0)
        self.q = check_finite_number(q, "q", low=0.0, high=100.0)
        self.iou_threshold = check_finite_number(iou_threshold, "iou_threshold", low=0.0,
                                                 high=1.0)
        self.multi_contour = check_bool(multi_contour, "multi_contour")
        super().__init__()

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"gt_known": (1,), "top1": (1,), "top5": (1,)}

    def _check_counts(self) -> None:
        # Top-1 correct implies top-5 correct, which implies GT-known correct.
        names = ("top1", "top5", "gt_known", "num_images")
        counts = [int(self._state[name][0]) for name in names]
        if counts != sorted(counts):
            found = ", ".join(f"{name}={count}" for name, count in zip(names, counts, strict=True))
            raise ValueError(f"snapshot state must satisfy top1 <= top5 <= gt_known <= "
                             f"num_images, got {found}")

    def config(self) -> dict[str, Any]:
        return {"rule": self.rule, "theta": self.theta, "q": self.q,
                "iou_threshold": self.iou_threshold, "multi_contour": self.multi_contour}

    def box_thresholds(self, maps: np.ndarray) -> np.ndarray:
        """``(B,)`` float64 threshold ``t`` of each ``(B, H, W)`` float64 map."""
        if self.rule == "max":
            return np.full(maps.shape[0], self.theta)
        import torch

        from camkit.threshold import percentile_threshold

        return percentile_threshold(torch.from_numpy(maps), self.q, self.theta).numpy()

    def update(self, scoremaps: np.ndarray | torch.Tensor, gt_boxes: object,
               logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        """Accumulate a batch.

        Args:
            scoremaps (ndarray or Tensor[B, H, W]): ground-truth-class maps, float, in [0, 1].
            gt_boxes: ``B`` integer ``(n_i, 4)`` arrays of ``x0, y0, x1, y1`` boxes.
            logits (ndarray or Tensor[B, K]): class scores, float, finite.
            labels (ndarray or Tensor[B]): ground-truth class indices in ``[0, K)``, of an
                integer dtype (not bool).
        """
        import torch

        maps, boxes = split_batch(scoremaps, gt_boxes)
        batch = maps.shape[0]
        self._make_room(batch, "num_images")  # every count is <= num_images
        found = _as_array(logits, "logits")
        if (found.ndim != 2 or found.shape[0] != batch or found.shape[1] == 0
                or found.dtype.kind != "f"):
            raise ValueError(f"logits must be a float (B, K) array with B = {batch}, got "
                             f"{found.dtype} of shape {tuple(found.shape)}")
        if not np.isfinite(found).all():  # NaN has no rank among the classes
            raise ValueError("logits must be finite, got NaN or infinite values")
        # float16 and longdouble to a dtype that topk supports everywhere; the order is kept.
        scores = torch.from_numpy(np.ascontiguousarray(
            found if found.dtype in (np.float32, np.float64) else found.astype(np.float64)))
        found = _as_array(labels, "labels")
        if found.shape != (batch,) or found.dtype.kind not in "iu":  # not bool: not a class
            raise ValueError(f"labels must be (B,) integers with B = {batch}, got "
                             f"{found.dtype} of shape {tuple(found.shape)}")
        classes = scores.shape[1]
        if batch and (int(found.min()) < 0 or int(found.max()) >= classes):
            raise ValueError(f"labels must lie in [0, {classes}), got {found.tolist()}")
        targets = torch.from_numpy(found.astype(np.int64))
        top = scores.topk(min(5, classes), dim=1).indices
        in_top5 = (top == targets[:, None]).any(dim=1).numpy()
        in_top1 = (top[:, 0] == targets).numpy()
        thresholds = self.box_thresholds(maps)
        iou_threshold = np.array([self.iou_threshold])
        for index, (scoremap, gt, t) in enumerate(zip(maps, boxes, thresholds, strict=True)):
            # A threshold at or past 1 keeps nothing, as 1 does: q > int(t * max(q)) >= max(q).
            map_boxes = cast(ThresholdBoxes,  # one (H, W) map: one ThresholdBoxes
                             threshold_boxes(scoremap, [min(float(t), 1.0)],
                                             multi_contour=self.multi_contour))
            if reached_runs(map_boxes, gt, iou_threshold)[0].size:  # one threshold: one run
                self._state["gt_known"] += 1
                self._state["top1"] += int(in_top1[index])
                self._state["top5"] += int(in_top5[index])
        self._state["num_images"] += batch

    def compute(self) -> LocalizationResult:
        """Accuracies in percent; raises ``ValueError`` before any update."""
        if self.num_images == 0:
            raise ValueError("LocalizationAccuracy.compute() needs at least one update, got none")
        scale = 100.0 / float(self.num_images)
        return LocalizationResult(
            gt_known=float(self._state["gt_known"][0]) * scale,
            top1=float(self._state["top1"][0]) * scale,
            top5=float(self._state["top5"][0]) * scale,
            num_images=self.num_images,
        )


def _as_array(value: object, name: str) -> np.ndarray:
    """``value`` (an array, a tensor on any device or nested sequences) as a NumPy array."""
    found = as_array(value)
    if found is None:
        raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor, got "
                        f"{type(value).__name__}")
    return found
