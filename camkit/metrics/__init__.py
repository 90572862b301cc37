"""WSOL metrics of the evaluation protocol of Choe et al. (CVPR 2020), bit-exact and fast.

* ``BoxAccuracy``: MaxBoxAcc / MaxBoxAccV2 over a score-map threshold grid.
* ``PixelAP``: PxAP, pixel precision-recall pooled over a split.
* ``LocalizationAccuracy``: GT-known, top-1 and top-5 localization at a fixed threshold.
* ``PointingGame``: whether each map's maximum lies within 15 px of the object (Zhang et al.);
  ``EnergyPointingGame``: the fraction of each map's energy on the object (Score-CAM).

Each metric accumulates fixed-size integer counts with ``update``; ``merge`` adds another
instance, ``sync`` sums over ``torch.distributed`` processes, ``to_json``/``from_json``
serialize, ``compute`` returns a result dataclass with ``to_dict()``. The torchmetrics
versions of the metrics are in ``camkit.metrics.torchmetrics`` (the ``torchmetrics`` extra),
which this package does not import.
"""

from camkit.boxes import threshold_grid
from camkit.metrics._box import BoxAccuracy, BoxAccuracyResult, box_accuracy
from camkit.metrics._energy import (
    EnergyPointingGame,
    EnergyPointingGameResult,
    energy_pointing_game,
)
from camkit.metrics._localization import LocalizationAccuracy, LocalizationResult
from camkit.metrics._pixel import IGNORE, PixelAP, PixelAPResult, pixel_ap
from camkit.metrics._pointing import PointingGame, PointingGameResult, pointing_game

__all__ = [
    "IGNORE",
    "BoxAccuracy",
    "BoxAccuracyResult",
    "EnergyPointingGame",
    "EnergyPointingGameResult",
    "LocalizationAccuracy",
    "LocalizationResult",
    "PixelAP",
    "PixelAPResult",
    "PointingGame",
    "PointingGameResult",
    "box_accuracy",
    "energy_pointing_game",
    "pixel_ap",
    "pointing_game",
    "threshold_grid",
]
