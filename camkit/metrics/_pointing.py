"""The pointing game (Zhang et al.), and the inputs it shares with its energy-based variant
(``camkit.metrics._energy``).

* ``PointingGame``: a map *hits* when its maximum lies within ``tolerance`` pixels of the
  object (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016 / IJCV
  2018; the rule of TorchRay's ``PointingGame``, their reference benchmark code).
* ``EnergyPointingGame`` (in ``_energy``): the fraction of a map's energy (the sum of its
  values) that falls on the object (Wang et al., "Score-CAM", CVPR workshops 2020).

Both take any finite float maps (the pointing game does not depend on the map's scale, so raw
and normalized maps give the same hits), an object given as boxes or as masks, and accumulate
fixed-size integer counts like the other metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camkit._checks import check_finite_number, check_positive_int
from camkit.boxes._inputs import as_array, as_boxes, as_float64_maps
from camkit.metrics._pixel import IGNORE, as_masks
from camkit.metrics._state import CountingState, as_image_list

if TYPE_CHECKING:
    import torch

__all__ = ["PointingGame", "PointingGameResult", "pointing_game"]

#: How a map with several maximal pixels points.
TIES = ("first", "any", "all")

#: What marks the object: the ``gt_boxes`` or the ``masks`` argument of ``update``.
TARGETS = ("boxes", "masks")


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def as_any_float_maps(value: object, *, nonnegative: bool) -> np.ndarray:
    """``scoremaps`` as a C-contiguous float64 ``(B, H, W)`` or ``(H, W)`` array: a float array or
    tensor, finite, with non-empty spatial dims (and no negative value with ``nonnegative``).
    Unlike the box and pixel metrics, any range is accepted."""
    array = as_float64_maps(value, "scoremaps", ndim=(2, 3), unit_interval=False)
    if nonnegative and array.size and (low := float(array.min())) < 0.0:
        raise ValueError(f"scoremaps must be non-negative for the energy pointing game (its "
                         f"energy is the sum of the map's values), got a minimum of {low}")
    return array


def split_targets(
    scoremaps: object, gt_boxes: object, masks: object, ignore: object, *, nonnegative: bool,
    target: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Validate a batch of maps and their objects, read from ``gt_boxes`` or ``masks`` as
    ``target`` says (the other argument is not looked at).

    Returns ``(maps, objects, kept, ignored)``: ``(B, H, W)`` float64 maps, ``(B, H, W)`` bool
    object pixels (the union of the boxes, inclusive of both ends as the protocol's IoU, or the
    mask pixels of value 1), ``(B, H, W)`` bool pixels that are not ``IGNORE`` in the masks
    (``None`` for boxes), and ``(B,)`` bool maps to leave out. Every map not left out must
    have an object.
    """
    argument = "gt_boxes" if target == "boxes" else "masks"
    if (gt_boxes if target == "boxes" else masks) is None:
        raise ValueError(f"{argument} must be given with target={target!r}, got None")
    maps = as_any_float_maps(scoremaps, nonnegative=nonnegative)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    batch, height, width = maps.shape
    ignored = as_flags(ignore, batch, single)
    kept: np.ndarray | None = None
    if target == "boxes":
        items = as_image_list([gt_boxes] if single else gt_boxes, "gt_boxes", batch)
        objects = np.zeros(maps.shape, dtype=bool)
        for index, item in enumerate(items):
            if isinstance(item, (list, tuple)) and not item:  # no box (an ignored map)
                item = np.zeros((0, 4), dtype=np.int64)
            boxes = as_boxes(item, f"gt_boxes[{index}]", size=(height, width))
            for x0, y0, x1, y1 in boxes.tolist():  # inclusive ends; an end at W or H is clipped
                objects[index, y0:min(y1, height - 1) + 1, x0:min(x1, width - 1) + 1] = True
    else:
        values = as_masks(masks, maps.shape)
        objects = values == 1
        kept = values != IGNORE
    empty = ~objects.reshape(batch, -1).any(axis=1) & ~ignored
    if empty.any():
        index = int(np.flatnonzero(empty)[0])
        raise ValueError(f"{argument}[{index}] must mark an object (a box, or a mask pixel of "
                         f"value 1), got none; pass ignore= to leave the map out")
    return maps, objects, kept, ignored


def as_flags(value: object, batch: int, single: bool) -> np.ndarray:
    """``ignore`` as a ``(B,)`` bool array (``None``: nothing ignored; one bool for one map)."""
    if value is None:
        return np.zeros(batch, dtype=bool)
    found = as_array(value)
    if found is None:
        found = np.asarray(None)
    if single and found.ndim == 0:
        found = found.reshape(1)
    if found.dtype != np.bool_ or found.shape != (batch,):
        raise ValueError(f"ignore must be a (B,) bool array with B = {batch}, got {found.dtype} "
                         f"of shape {tuple(found.shape)}")
    return found


def as_labels(value: object, batch: int, num_classes: int | None) -> np.ndarray | None:
    """``labels`` as ``(B,)`` int64 classes in ``[0, num_classes)`` (``None`` stays ``None``)."""
    if value is None:
        if num_classes is not None:
            raise ValueError(f"labels must be given with num_classes={num_classes} (the class "
                             f"of each map), got None")
        return None
    found = as_array(value)
    if found is None:
        found = np.asarray(None)
    if found.shape != (batch,) or found.dtype.kind not in "iu":  # not bool: not a class
        raise ValueError(f"labels must be (B,) integers with B = {batch}, got "
                         f"{found.dtype} of shape {tuple(found.shape)}")
    if batch and (int(found.min()) < 0 or
                  (num_classes is not None and int(found.max()) >= num_classes)):
        bound = num_classes if num_classes is not None else "inf"
        raise ValueError(f"labels must lie in [0, {bound}), got {found.tolist()}")
    return found.astype(np.int64)


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """``value`` as one of ``choices`` (an array would compare elementwise: refused first)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def default_target(target: str | None, gt_boxes: object, masks: object) -> str:
    """The functional forms' ``target``: as given, else the one of ``gt_boxes`` and ``masks``
    that is given (``"boxes"`` when neither is: the update names what is missing)."""
    if target is not None:
        return target
    if gt_boxes is not None and masks is not None:
        raise ValueError("target must be 'boxes' or 'masks' when both gt_boxes and masks are "
                         "given, got None")
    return "masks" if masks is not None else "boxes"


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
def disc_offsets(tolerance: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """``(dy, dx)`` of every offset with ``dy**2 + dx**2 < tolerance**2`` (``|dy|, |dx| <=
    limit``: farther offsets leave any map of that size)."""
    reach = min(math.ceil(tolerance) - 1, limit)
    steps = np.arange(-reach, reach + 1)
    dy, dx = np.meshgrid(steps, steps, indexing="ij")
    inside = dy * dy + dx * dx < tolerance * tolerance
    return dy[inside], dx[inside]


def acceptance_region(objects: np.ndarray, tolerance: float) -> np.ndarray:
    """``(H, W)`` bool: the pixels ``p`` with an object pixel ``q`` such that ``|p - q|**2 <
    tolerance**2``, and the object pixels themselves (``tolerance = 0``).

    Exact integer distances: the distance of each pixel to the nearest object pixel in each
    column, then every column within reach.
    """
    if tolerance == 0 or not objects.any():
        return objects.copy()
    height, width = objects.shape
    reach = min(math.ceil(tolerance) - 1, max(height, width))
    rows = np.arange(height)[:, None]
    far = height + reach + 1
    above = np.maximum.accumulate(np.where(objects, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(objects, rows, height + far)[::-1], axis=0)[::-1]
    # Vertical distance to the column's nearest object pixel, capped past reach (never within).
    vertical = np.minimum(np.minimum(rows - above, below - rows), reach + 1).astype(np.int64)
    squared = vertical * vertical
    limit = tolerance * tolerance
    region = squared < limit
    for dx in range(1, min(reach, width - 1) + 1):
        near = squared + dx * dx < limit
        region[:, dx:] |= near[:, :-dx]
        region[:, :-dx] |= near[:, dx:]
    return region


def point_hits(objects: np.ndarray, ys: np.ndarray, xs: np.ndarray, tolerance: float,
               offsets: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(P,)`` bool: whether each point ``(ys, xs)`` lies within ``tolerance > 0`` of the
    object; ``offsets`` are ``disc_offsets(tolerance, ...)``.

    A few points look at their own disc of offsets; many points (a flat map's maxima) look up
    the acceptance region, which costs a fixed number of passes over the map.
    """
    height, width = objects.shape
    dy, dx = offsets
    if ys.size * dy.size > objects.size * (2 * int(dy.max()) + 1):
        return acceptance_region(objects, tolerance)[ys, xs]
    yy, xx = ys[:, None] + dy[None], xs[:, None] + dx[None]
    on_map = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
    hit = np.zeros(yy.shape, dtype=bool)
    hit[on_map] = objects[yy[on_map], xx[on_map]]
    return np.asarray(hit.any(axis=1))


def pointing_hits(maps: np.ndarray, objects: np.ndarray, tolerance: float, ties: str
                  ) -> np.ndarray:
    """``(B,)`` bool: whether each map's maximum points at its object.

    ``ties``: ``"first"`` the first maximal pixel in row-major order (``argmax``, as the
    reference code), ``"any"`` a hit when some maximal pixel hits, ``"all"`` only when every
    maximal pixel hits.
    """
    hits = np.zeros(maps.shape[0], dtype=bool)
    height, width = maps.shape[1:]
    offsets = disc_offsets(tolerance, max(height, width)) if tolerance > 0 else None
    for index, (scoremap, region) in enumerate(zip(maps, objects, strict=True)):
        if ties == "first":
            flat = np.array([int(scoremap.argmax())])
        else:
            flat = np.flatnonzero(scoremap == scoremap.max())
        found = (region[flat // width, flat % width] if offsets is None
                 else point_hits(region, flat // width, flat % width, tolerance, offsets))
        hits[index] = found.all() if ties == "all" else found.any()
    return hits


# ---------------------------------------------------------------------------------------------
# Pointing game
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointingGameResult:
    """Result of ``PointingGame.compute()``; accuracies in percent.

    Attributes:
        accuracy: ``hits / (hits + misses)``; with ``num_classes``, the mean of
            ``class_accuracy`` over the classes with at least one map (the benchmark's mean
            class accuracy).
        class_accuracy: ``(num_classes,)`` accuracy per class, NaN for a class without maps;
            ``None`` without ``num_classes``.
        hits, misses: maps whose maximum did / did not point at the object.
        skipped: maps left out with ``ignore``.
        num_images: maps accumulated (``hits + misses + skipped``).
    """

    accuracy: float
    class_accuracy: np.ndarray | None
    hits: int
    misses: int
    skipped: int
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN class accuracies become ``None``)."""
        per_class = None if self.class_accuracy is None else [
            None if np.isnan(value) else float(value) for value in self.class_accuracy]
        return {"accuracy": self.accuracy, "class_accuracy": per_class, "hits": self.hits,
                "misses": self.misses, "skipped": self.skipped, "num_images": self.num_images}


class PointingGame(CountingState):
    """Pointing game: does the map's maximum point at the object?

    A map *hits* when its maximal pixel ``m`` lies within ``tolerance`` pixels of an object
    pixel ``q``: ``|m - q|**2 < tolerance**2`` (strictly, as TorchRay's reference code; 15 px
    in Zhang et al.), or ``m`` lies on the object (``tolerance=0``). The object is the union of
    the map's GT boxes (pixels ``x0..x1``, ``y0..y1`` inclusive, as the protocol's IoU) or the
    mask pixels of value 1. Accuracy is ``hits / (hits + misses)``, in percent. The maps may
    have any finite values: the maximum does not depend on their scale.

    Args:
        tolerance: pixels, a real number ``>= 0``; default 15, which accepts distances below
            15 px (pixel distances are ``sqrt`` of integers): pass e.g. ``15.01`` to accept
            exactly 15 px as well.
        ties: which maximal pixel points when several share the maximum: ``"first"`` in
            row-major order (``argmax``, as the reference code), ``"any"`` (a hit when one of
            them hits) or ``"all"`` (a hit only when all of them hit).
        num_classes: with a number of classes, ``update`` takes the class of each map
            (``labels``) and the accuracy is the mean over classes of the per-class accuracy,
            as the benchmark reports it; ``None`` (default) pools every map.
        target: ``"boxes"`` (default): ``update`` reads the objects from ``gt_boxes``;
            ``"masks"``: from ``masks``. The other argument is not looked at, so one call can
            feed several metrics (a ``MetricCollection``).

    State: ``hits`` and ``misses`` ``(num_classes or 1,)``, ``skipped`` and ``num_images``, int64
    counts.
    """

    _metric_name = "PointingGame"

    def __init__(self, tolerance: float = 15.0, ties: str = "first",
                 num_classes: int | None = None, target: str = "boxes") -> None:
        self.tolerance = check_finite_number(tolerance, "tolerance", low=0.0)
        self.ties = check_choice(ties, "ties", TIES)
        self.num_classes = None if num_classes is None else check_positive_int(num_classes,
                                                                                 "num_classes")
        self.target = check_choice(target, "target", TARGETS)
        super().__init__()

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        classes = self.num_classes or 1
        return {"hits": (classes,), "misses": (classes,), "skipped": (1,)}

    def _check_counts(self) -> None:
        counts = {name: int(self._state[name].sum()) for name in ("hits", "misses", "skipped")}
        if sum(counts.values()) != self.num_images:
            found = ", ".join(f"{name}={count}" for name, count in counts.items())
            raise ValueError(f"snapshot state must satisfy hits + misses + skipped == "
                             f"num_images, got {found}, num_images={self.num_images}")

    def config(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "ties": self.ties, "num_classes": self.num_classes,
                "target": self.target}

    def update(
        self,
        scoremaps: np.ndarray | torch.Tensor,
        gt_boxes: object = None,
        *,
        masks: np.ndarray | torch.Tensor | None = None,
        labels: np.ndarray | torch.Tensor | None = None,
        ignore: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps (ndarray or Tensor[B, H, W] or [H, W]): float maps, finite, any range.
            gt_boxes: with ``target="boxes"``, ``B`` integer arrays ``(n_i, 4)`` of ``x0, y0,
                x1, y1`` boxes on the maps' pixel grid (one ``(n, 4)`` array for one map).
            masks (ndarray or Tensor, the maps' shape): with ``target="masks"``, 1 object,
                0 background, 255 ignored (bool: True object).
            labels (ndarray or Tensor[B]): the class of each map, integers; needed with
                ``num_classes`` (checked and unused without it).
            ignore (ndarray or Tensor[B]): bool, maps to leave out (e.g. PASCAL VOC's
                difficult objects), counted as ``skipped``; their targets may be empty.
        """
        maps, objects, _, ignored = split_targets(scoremaps, gt_boxes, masks, ignore,
                                                  nonnegative=False, target=self.target)
        batch = maps.shape[0]
        classes = as_labels(labels, batch, self.num_classes)
        self._make_room(batch, "num_images")  # every count is <= num_images
        used = slice(None) if not ignored.any() else ~ignored  # (no copy of the batch)
        hits = pointing_hits(maps[used], objects[used], self.tolerance, self.ties)
        rows = (classes[used] if classes is not None and self.num_classes is not None
                else np.zeros(hits.size, dtype=np.int64))
        size = self.num_classes or 1
        self._state["hits"] += np.bincount(rows[hits], minlength=size)
        self._state["misses"] += np.bincount(rows[~hits], minlength=size)
        self._state["skipped"] += int(ignored.sum())
        self._state["num_images"] += batch

    def compute(self) -> PointingGameResult:
        """Accuracy in percent; ``ValueError`` when no map was scored."""
        hits = self._state["hits"].astype(np.float64)
        trials = hits + self._state["misses"]
        if trials.sum() == 0:
            raise ValueError(f"PointingGame.compute() needs at least one map that is not "
                             f"ignored, got none in {self.num_images} maps")
        class_accuracy = None
        if self.num_classes is None:
            accuracy = float(hits[0] * 100.0 / trials[0])
        else:
            seen = trials > 0
            class_accuracy = np.full(self.num_classes, np.nan)
            class_accuracy[seen] = hits[seen] * 100.0 / trials[seen]
            accuracy = float(class_accuracy[seen].mean())
        return PointingGameResult(
            accuracy=accuracy,
            class_accuracy=class_accuracy,
            hits=int(self._state["hits"].sum()),
            misses=int(self._state["misses"].sum()),
            skipped=int(self._state["skipped"][0]),
            num_images=self.num_images,
        )


def pointing_game(
    scoremaps: np.ndarray | torch.Tensor,
    gt_boxes: object = None,
    *,
    masks: np.ndarray | torch.Tensor | None = None,
    labels: np.ndarray | torch.Tensor | None = None,
    ignore: np.ndarray | torch.Tensor | None = None,
    tolerance: float = 15.0,
    ties: str = "first",
    num_classes: int | None = None,
    target: str | None = None,
) -> PointingGameResult:
    """Functional form of ``PointingGame`` for one batch (same arguments and result);
    ``target`` defaults to the one argument given, ``gt_boxes`` or ``masks``."""
    metric = PointingGame(tolerance, ties, num_classes, default_target(target, gt_boxes, masks))
    metric.update(scoremaps, gt_boxes, masks=masks, labels=labels, ignore=ignore)
    return metric.compute()
