"""camkit's metrics as ``torchmetrics.Metric`` s (the ``torchmetrics`` extra).

``BoxAccuracyMetric``, ``PixelAPMetric``, ``LocalizationAccuracyMetric``, ``PointingGameMetric``
and ``EnergyPointingGameMetric`` take the arguments of ``BoxAccuracy``, ``PixelAP``,
``LocalizationAccuracy``, ``PointingGame`` and ``EnergyPointingGame`` (plus torchmetrics'
own keywords, e.g. ``sync_on_compute``), and their ``update`` the same batches. Each update
runs the camkit metric's own kernel on the batch and adds its int64 counts to the
torchmetrics states, which are summed over processes (``dist_reduce_fx="sum"``); ``compute``
rebuilds the camkit metric from the counts and returns its numbers as float64 tensors, equal
to the camkit metric's to the last bit. So they work in ``MetricCollection``, move with
``.to(device)``, and Lightning logs them with ``self.log`` / ``self.log_dict``.

Importing ``camkit`` or ``camkit.metrics`` never imports this module or torchmetrics.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

try:
    import torch
    from torch import nn
    from torchmetrics import Metric
except ModuleNotFoundError as error:  # pragma: no cover - exercised in a subprocess
    if error.name != "torchmetrics":
        raise
    raise ImportError("camkit.metrics.torchmetrics needs torchmetrics, which is not "
                      "installed: pip install 'camkit[torchmetrics]'") from error

from camkit.metrics._box import BoxAccuracy
from camkit.metrics._energy import EnergyPointingGame
from camkit.metrics._localization import LocalizationAccuracy
from camkit.metrics._pixel import PixelAP
from camkit.metrics._pointing import PointingGame
from camkit.metrics._state import CountingState

__all__ = [
    "BoxAccuracyMetric",
    "EnergyPointingGameMetric",
    "LocalizationAccuracyMetric",
    "PixelAPMetric",
    "PointingGameMetric",
]


class _CountingMetric(Metric):
    """A ``torchmetrics.Metric`` holding the int64 counts of a camkit metric (``_kernel``).

    States: the camkit metric's counts, each an int64 tensor summed over processes, and
    ``config_id``, a fixed number derived from the class and its options (not a count,
    reduced by ``max``): ``MetricCollection`` shares the states of metrics whose states are
    equal after their first update, which must never join two metrics of different options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0

    def __init__(self, kernel: CountingState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kernel = kernel
        self._output_dtype = torch.float64
        for name, counts in kernel.state_dict()["state"].items():
            self.add_state(name, default=torch.tensor(counts, dtype=torch.int64),
                           dist_reduce_fx="sum")
        text = json.dumps([type(kernel).__name__, kernel.config()], sort_keys=True)
        config_id = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")
        self.add_state("config_id", default=torch.tensor(config_id, dtype=torch.int64),
                       dist_reduce_fx="max")

    def _add_batch(self) -> None:
        """Add the counts that ``_kernel`` (reset, then updated with one batch) holds."""
        for name, counts in self._kernel._state.items():
            state = getattr(self, name)
            setattr(self, name, state + torch.from_numpy(counts).to(state.device))

    def _camkit(self) -> CountingState:
        """The camkit metric holding this metric's current counts (checked as a snapshot)."""
        snapshot = self._kernel.state_dict()
        snapshot["state"] = {name: getattr(self, name).detach().cpu().tolist()
                             for name in snapshot["state"]}
        return type(self._kernel).from_state_dict(snapshot)

    def _synced_camkit(self) -> CountingState:
        """``_camkit()`` of the counts summed over processes, as ``compute`` sees them."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync,
                               should_unsync=self._should_unsync):
            return self._camkit()

    def _tensor(self, value: float) -> torch.Tensor:
        """A computed number as a scalar tensor of the output dtype on the metric's device."""
        return torch.tensor(value, dtype=self._output_dtype, device=self.device)

    def _apply(self, fn: Callable[..., Any], exclude_state: Sequence[str] = "") -> nn.Module:
        # ``.to(torch.float16)`` would cast a cached compute() result; it is recomputed from
        # the counts instead, in the output dtype.
        this = super()._apply(fn, exclude_state)  # (self)
        self._computed = None
        return this

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of ``compute()``'s tensors (the counts are always int64)."""
        return self._output_dtype

    def set_dtype(self, dst_type: str | torch.dtype) -> Metric:
        """Set the dtype of ``compute()``'s tensors; float64 (the default) holds camkit's
        numbers exactly. The counts stay int64 (a float count would lose images)."""
        dtype = getattr(torch, dst_type.removeprefix("torch."), None) \
            if isinstance(dst_type, str) else dst_type
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dst_type must be a floating torch.dtype, got {dst_type!r}")
        self._output_dtype = dtype
        self._computed = None
        return self


class BoxAccuracyMetric(_CountingMetric):
    """``BoxAccuracy`` as a ``torchmetrics.Metric``; ``compute()`` gives MaxBoxAccV2 (the mean
    over the IoU thresholds of the best accuracy; MaxBoxAcc for one IoU threshold), in percent,
    as a scalar float64 tensor. ``to_camkit().compute()`` gives the curves and per-IoU values.

    Args: those of ``BoxAccuracy``; ``**kwargs`` go to ``torchmetrics.Metric``.
    """

    def __init__(
        self,
        thresholds: Sequence[float] | np.ndarray | None = None,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        multi_contour: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(BoxAccuracy(thresholds, iou_thresholds, multi_contour), **kwargs)

    def update(self, scoremaps: np.ndarray | torch.Tensor, gt_boxes: object) -> None:
        """``BoxAccuracy.update``: ``(B, H, W)`` maps in [0, 1] and ``B`` ``(n_i, 4)`` boxes."""
        self._kernel.reset()
        cast(BoxAccuracy, self._kernel).update(scoremaps, gt_boxes)
        self._add_batch()

    def compute(self) -> torch.Tensor:
        """MaxBoxAccV2 in percent."""
        return self._tensor(cast(BoxAccuracy, self._camkit()).compute().max_box_acc_v2)

    def to_camkit(self) -> BoxAccuracy:
        """A ``BoxAccuracy`` with these counts (summed over processes, as ``compute``)."""
        return cast(BoxAccuracy, self._synced_camkit())


class PixelAPMetric(_CountingMetric):
    """``PixelAP`` as a ``torchmetrics.Metric``; ``compute()`` gives PxAP in percent as a
    scalar float64 tensor. ``to_camkit().compute()`` gives the precision-recall curve.

    Args: those of ``PixelAP``; ``**kwargs`` go to ``torchmetrics.Metric``.
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None,
                 **kwargs: Any) -> None:
        super().__init__(PixelAP(thresholds), **kwargs)

    def update(self, scoremaps: np.ndarray | torch.Tensor,
               masks: np.ndarray | torch.Tensor) -> None:
        """``PixelAP.update``: maps in [0, 1] and masks of 0, 1 and 255 of the same shape."""
        self._kernel.reset()
        cast(PixelAP, self._kernel).update(scoremaps, masks)
        self._add_batch()

    def compute(self) -> torch.Tensor:
        """PxAP in percent."""
        return self._tensor(cast(PixelAP, self._camkit()).compute().pxap)

    def to_camkit(self) -> PixelAP:
        """A ``PixelAP`` with these counts (summed over processes, as ``compute``)."""
        return cast(PixelAP, self._synced_camkit())


class LocalizationAccuracyMetric(_CountingMetric):
    """``LocalizationAccuracy`` as a ``torchmetrics.Metric``; ``compute()`` gives a dict of
    scalar float64 tensors ``{"gt_known", "top1", "top5"}`` in percent (log it with
    ``self.log_dict(metric.compute())``, or put it in a ``MetricCollection``, whose
    ``compute()`` merges the keys).

    Args: those of ``LocalizationAccuracy``; ``**kwargs`` go to ``torchmetrics.Metric``.
    """

    def __init__(
        self,
        rule: str = "max",
        theta: float | None = None,
        q: float = 90.0,
        iou_threshold: float = 0.5,
        multi_contour: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(LocalizationAccuracy(rule, theta, q, iou_threshold, multi_contour),
                         **kwargs)

    def update(self, scoremaps: np.ndarray | torch.Tensor, gt_boxes: object,
               logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        """``LocalizationAccuracy.update``: GT-class maps, GT boxes, ``(B, K)`` logits and
        ``(B,)`` labels."""
        self._kernel.reset()
        cast(LocalizationAccuracy, self._kernel).update(scoremaps, gt_boxes, logits, labels)
        self._add_batch()

    def compute(self) -> dict[str, torch.Tensor]:
        """GT-known, top-1 and top-5 localization accuracy in percent."""
        result = cast(LocalizationAccuracy, self._camkit()).compute()
        return {"gt_known": self._tensor(result.gt_known), "top1": self._tensor(result.top1),
                "top5": self._tensor(result.top5)}

    def to_camkit(self) -> LocalizationAccuracy:
        """A ``LocalizationAccuracy`` with these counts (summed over processes)."""
        return cast(LocalizationAccuracy, self._synced_camkit())


class PointingGameMetric(_CountingMetric):
    """``PointingGame`` as a ``torchmetrics.Metric``; ``compute()`` gives the accuracy (mean
    class accuracy with ``num_classes``) in percent as a scalar float64 tensor.

    Args: those of ``PointingGame``; ``**kwargs`` go to ``torchmetrics.Metric``.
    """

    def __init__(self, tolerance: float = 15.0, ties: str = "first",
                 num_classes: int | None = None, target: str = "boxes", **kwargs: Any) -> None:
        super().__init__(PointingGame(tolerance, ties, num_classes, target), **kwargs)

    def update(
        self,
        scoremaps: np.ndarray | torch.Tensor,
        gt_boxes: object = None,
        *,
        masks: np.ndarray | torch.Tensor | None = None,
        labels: np.ndarray | torch.Tensor | None = None,
        ignore: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """``PointingGame.update``: maps, and ``gt_boxes`` or ``masks`` (as ``target``
        says; the other one is not looked at)."""
        self._kernel.reset()
        cast(PointingGame, self._kernel).update(scoremaps, gt_boxes, masks=masks,
                                                labels=labels, ignore=ignore)
        self._add_batch()

    def compute(self) -> torch.Tensor:
        """Pointing accuracy in percent."""
        return self._tensor(cast(PointingGame, self._camkit()).compute().accuracy)

    def to_camkit(self) -> PointingGame:
        """A ``PointingGame`` with these counts (summed over processes, as ``compute``)."""
        return cast(PointingGame, self._synced_camkit())


class EnergyPointingGameMetric(_CountingMetric):
    """``EnergyPointingGame`` as a ``torchmetrics.Metric``; ``compute()`` gives the mean
    energy fraction on the object in percent as a scalar float64 tensor.

    Args: ``target`` of ``EnergyPointingGame``; ``**kwargs`` go to ``torchmetrics.Metric``.
    """

    def __init__(self, target: str = "boxes", **kwargs: Any) -> None:
        super().__init__(EnergyPointingGame(target), **kwargs)

    def update(
        self,
        scoremaps: np.ndarray | torch.Tensor,
        gt_boxes: object = None,
        *,
        masks: np.ndarray | torch.Tensor | None = None,
        ignore: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """``EnergyPointingGame.update``: non-negative maps, and ``gt_boxes`` or ``masks``
        (as ``target`` says)."""
        self._kernel.reset()
        cast(EnergyPointingGame, self._kernel).update(scoremaps, gt_boxes, masks=masks,
                                                      ignore=ignore)
        self._add_batch()

    def compute(self) -> torch.Tensor:
        """Mean energy fraction in percent."""
        return self._tensor(cast(EnergyPointingGame, self._camkit()).compute().energy)

    def to_camkit(self) -> EnergyPointingGame:
        """An ``EnergyPointingGame`` with these counts (summed over processes)."""
        return cast(EnergyPointingGame, self._synced_camkit())
