"""The energy-based pointing game (Wang et al., "Score-CAM", CVPR workshops 2020): the fraction
of a map's energy (the sum of its values) that falls on the object, averaged over the maps. It
takes its inputs as the pointing game does (``camkit.metrics._pointing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camkit.metrics._pointing import TARGETS, check_choice, default_target, split_targets
from camkit.metrics._state import CountingState

if TYPE_CHECKING:
    import torch

__all__ = ["ENERGY_UNIT", "EnergyPointingGame", "EnergyPointingGameResult",
           "energy_pointing_game"]

#: Fixed-point units of one map's energy fraction: integer sums are exact and do not depend on
#: the order of updates, merges and processes; the rounding is at most 2**-33 per map.
ENERGY_UNIT = 1 << 32


def energy_units(maps: np.ndarray, objects: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """``(B,)`` int64: each map's fraction of energy on its object, in units of
    ``1 / ENERGY_UNIT`` (rounded to nearest). Pixels outside ``kept`` (ignored mask pixels)
    count nowhere; a map without energy there has fraction 0."""
    weights = maps if kept is None else np.where(kept, maps, 0.0)
    total = weights.reshape(maps.shape[0], -1).sum(axis=1)
    inside = np.where(objects, weights, 0.0).reshape(maps.shape[0], -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
    # A subset's float sum can pass the whole's by a rounding step.
    fraction = np.clip(fraction, 0.0, 1.0)
    return np.rint(fraction * ENERGY_UNIT).astype(np.int64)


@dataclass(frozen=True)
class EnergyPointingGameResult:
    """Result of ``EnergyPointingGame.compute()``.

    Attributes:
        energy: mean over the scored maps of the fraction of each map's energy that lies on
            its object, in percent.
        scored: maps scored (``num_images - skipped``).
        skipped: maps left out with ``ignore``.
        num_images: maps accumulated.
    """

    energy: float
    scored: int
    skipped: int
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"energy": self.energy, "scored": self.scored, "skipped": self.skipped,
                "num_images": self.num_images}


class EnergyPointingGame(CountingState):
    """Energy-based pointing game (Score-CAM): how much of the map lies on the object.

    For each map, the fraction ``sum(map on the object) / sum(map)`` (the object: the union of
    its GT boxes, inclusive ends, or its mask pixels of value 1; ignored mask pixels (255)
    count in neither sum); a map whose sum is 0 scores 0. ``compute()`` gives the mean over the
    maps, in percent. Maps must be non-negative (e.g. after a ReLU, or ``normalize_map``).
    Wang et al. further keep only the objects whose box covers less than half of the image:
    pass ``ignore`` for the others.

    Args:
        target: ``"boxes"`` (default) or ``"masks"``: which argument of ``update`` marks the
            objects (the other one is not looked at), as for ``PointingGame``.

    Each fraction is stored in fixed point, ``round(fraction * 2**32)``, so that the sums are
    exact integers whatever the order of updates, merges and processes; the mean is within
    ``2**-33`` of the floating-point mean.

    State: ``energy`` (fixed-point sum), ``skipped`` and ``num_images``, int64 counts.
    """

    _metric_name = "EnergyPointingGame"

    def __init__(self, target: str = "boxes") -> None:
        self.target = check_choice(target, "target", TARGETS)
        super().__init__()

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"energy": (1,), "skipped": (1,)}

    def _check_counts(self) -> None:
        energy, skipped = int(self._state["energy"][0]), int(self._state["skipped"][0])
        if skipped > self.num_images or energy > (self.num_images - skipped) * ENERGY_UNIT:
            raise ValueError(f"snapshot state must satisfy skipped <= num_images and energy <= "
                             f"(num_images - skipped) * 2**32, got energy={energy}, "
                             f"skipped={skipped}, num_images={self.num_images}")

    def config(self) -> dict[str, Any]:
        return {"target": self.target}

    def update(
        self,
        scoremaps: np.ndarray | torch.Tensor,
        gt_boxes: object = None,
        *,
        masks: np.ndarray | torch.Tensor | None = None,
        ignore: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps (ndarray or Tensor[B, H, W] or [H, W]): float maps, finite, ``>= 0``.
            gt_boxes: with ``target="boxes"``, ``B`` integer arrays ``(n_i, 4)`` of ``x0, y0,
                x1, y1`` boxes on the maps' pixel grid.
            masks (ndarray or Tensor, the maps' shape): with ``target="masks"``, 1 object,
                0 background, 255 ignored.
            ignore (ndarray or Tensor[B]): bool, maps to leave out, counted as ``skipped``.
        """
        maps, objects, kept, ignored = split_targets(scoremaps, gt_boxes, masks, ignore,
                                                     nonnegative=True, target=self.target)
        batch = maps.shape[0]
        self._make_room(batch, "num_images")
        self._make_room(batch * ENERGY_UNIT, "energy")
        used = slice(None) if not ignored.any() else ~ignored  # (no copy of the batch)
        units = energy_units(maps[used], objects[used], None if kept is None else kept[used])
        self._state["energy"] += int(units.sum())
        self._state["skipped"] += int(ignored.sum())
        self._state["num_images"] += batch

    def compute(self) -> EnergyPointingGameResult:
        """Mean energy fraction in percent; ``ValueError`` when no map was scored."""
        skipped = int(self._state["skipped"][0])
        scored = self.num_images - skipped
        if scored == 0:
            raise ValueError(f"EnergyPointingGame.compute() needs at least one map that is not "
                             f"ignored, got none in {self.num_images} maps")
        energy = int(self._state["energy"][0])
        return EnergyPointingGameResult(
            energy=energy / (scored * ENERGY_UNIT) * 100.0,  # exact int ratio, rounded once
            scored=scored,
            skipped=skipped,
            num_images=self.num_images,
        )


def energy_pointing_game(
    scoremaps: np.ndarray | torch.Tensor,
    gt_boxes: object = None,
    *,
    masks: np.ndarray | torch.Tensor | None = None,
    ignore: np.ndarray | torch.Tensor | None = None,
    target: str | None = None,
) -> EnergyPointingGameResult:
    """Functional form of ``EnergyPointingGame`` for one batch (same arguments and result);
    ``target`` defaults to the one argument given, ``gt_boxes`` or ``masks``."""
    metric = EnergyPointingGame(default_target(target, gt_boxes, masks))
    metric.update(scoremaps, gt_boxes, masks=masks, ignore=ignore)
    return metric.compute()
