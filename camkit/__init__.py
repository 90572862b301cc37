"""camkit: weakly-supervised object localization operators for PyTorch.

Importing ``camkit`` loads only PyTorch and NumPy; OpenCV-backed modules (``camkit.boxes``,
``camkit.metrics``) and the command line load on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from camkit.cam import (
    ClassActivationMap,
    NegativeWeightClamp,
    class_activation_map,
    normalize_map,
    upsample_map,
)
from camkit.cream import ContextEmbeddingBank, CreamDetails, EMReActivation, cream_map
from camkit.localizer import Localization, Localizer, attach
from camkit.pooling import ThresholdedAvgPool, thresholded_avg_pool
from camkit.threshold import PercentileThreshold, percentile_threshold

try:
    __version__ = version("camkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_LAZY_SUBMODULES = ("boxes", "metrics", "data", "viz", "cli")

__all__ = [
    "ClassActivationMap",
    "ContextEmbeddingBank",
    "CreamDetails",
    "EMReActivation",
    "Localization",
    "Localizer",
    "NegativeWeightClamp",
    "PercentileThreshold",
    "ThresholdedAvgPool",
    "__version__",
    "attach",
    "class_activation_map",
    "cream_map",
    "normalize_map",
    "percentile_threshold",
    "thresholded_avg_pool",
    "upsample_map",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"camkit.{name}")
    raise AttributeError(f"module 'camkit' has no attribute {name!r}")
