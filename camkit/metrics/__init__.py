"""WSOL metrics of the evaluation protocol of Choe et al. (CVPR 2020), bit-exact and fast.

* ``BoxAccuracy``: MaxBoxAcc / MaxBoxAccV2 over a score-map threshold grid.
* ``PixelAP``: PxAP, pixel precision-recall pooled over a split.
* ``LocalizationAccuracy``: GT-known, top-1 and top-5 localization at a fixed threshold.

Each metric accumulates fixed-size integer counts with ``update``; ``merge`` adds another
instance, ``sync`` sums over ``torch.distributed`` processes, ``to_json``/``from_json``
serialize, ``compute`` returns a result dataclass with ``to_dict()``.
"""

from camkit.boxes import threshold_grid
from camkit.metrics._box import BoxAccuracy, BoxAccuracyResult, box_accuracy
from camkit.metrics._localization import LocalizationAccuracy, LocalizationResult
from camkit.metrics._pixel import IGNORE, PixelAP, PixelAPResult, pixel_ap

__all__ = [
    "IGNORE",
    "BoxAccuracy",
    "BoxAccuracyResult",
    "LocalizationAccuracy",
    "LocalizationResult",
    "PixelAP",
    "PixelAPResult",
    "box_accuracy",
    "pixel_ap",
    "threshold_grid",
]
