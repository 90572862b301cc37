"""camkit: weakly-supervised object localization operators for PyTorch.

Importing ``camkit`` loads nothing heavy: each public name imports its module, and PyTorch, on
first use. The score-map metrics and ``camkit eval`` then run without importing PyTorch at all
(each ``--workers`` process starts in a fraction of a second instead of about one), and
OpenCV-backed modules (``camkit.boxes``, ``camkit.metrics``) load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camkit.acol import ACoLHead, ACoLOutput, acol_loss, erase_by_cam
    from camkit.adl import AttentionDropout, attention_dropout
    from camkit.augment import CutMixBatch, HideAndSeek, cutmix, cutmix_loss, hide_patches
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
    from camkit.spg import SPGHead, SPGOutput, spg_guidance_mask, spg_loss
    from camkit.threshold import PercentileThreshold, percentile_threshold

#: Submodules reachable as attributes (``camkit.metrics.BoxAccuracy``), imported on first access.
_LAZY_SUBMODULES = ("acol", "adl", "augment", "boxes", "cam", "cli", "cream", "data",
                    "localizer", "metrics", "pooling", "spg", "threshold", "viz")

#: Public name -> module that defines it (imported on first access).
_LAZY_ATTRIBUTES = {
    "ACoLHead": "camkit.acol",
    "ACoLOutput": "camkit.acol",
    "acol_loss": "camkit.acol",
    "erase_by_cam": "camkit.acol",
    "AttentionDropout": "camkit.adl",
    "attention_dropout": "camkit.adl",
    "CutMixBatch": "camkit.augment",
    "cutmix": "camkit.augment",
    "cutmix_loss": "camkit.augment",
    "HideAndSeek": "camkit.augment",
    "hide_patches": "camkit.augment",
    "ClassActivationMap": "camkit.cam",
    "NegativeWeightClamp": "camkit.cam",
    "class_activation_map": "camkit.cam",
    "normalize_map": "camkit.cam",
    "upsample_map": "camkit.cam",
    "ContextEmbeddingBank": "camkit.cream",
    "CreamDetails": "camkit.cream",
    "EMReActivation": "camkit.cream",
    "cream_map": "camkit.cream",
    "Localization": "camkit.localizer",
    "Localizer": "camkit.localizer",
    "attach": "camkit.localizer",
    "ThresholdedAvgPool": "camkit.pooling",
    "thresholded_avg_pool": "camkit.pooling",
    "SPGHead": "camkit.spg",
    "SPGOutput": "camkit.spg",
    "spg_guidance_mask": "camkit.spg",
    "spg_loss": "camkit.spg",
    "PercentileThreshold": "camkit.threshold",
    "percentile_threshold": "camkit.threshold",
}

__all__ = [
    "ACoLHead",
    "ACoLOutput",
    "AttentionDropout",
    "ClassActivationMap",
    "ContextEmbeddingBank",
    "CreamDetails",
    "CutMixBatch",
    "EMReActivation",
    "HideAndSeek",
    "Localization",
    "Localizer",
    "NegativeWeightClamp",
    "PercentileThreshold",
    "SPGHead",
    "SPGOutput",
    "ThresholdedAvgPool",
    "__version__",
    "acol_loss",
    "attach",
    "attention_dropout",
    "class_activation_map",
    "cream_map",
    "cutmix",
    "cutmix_loss",
    "erase_by_cam",
    "hide_patches",
    "normalize_map",
    "percentile_threshold",
    "spg_guidance_mask",
    "spg_loss",
    "thresholded_avg_pool",
    "upsample_map",
]


def _version() -> str:
    # importlib.metadata costs about 30 ms at import: only ``__version__`` needs it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("camkit")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    if name in _LAZY_ATTRIBUTES:
        value = getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"camkit.{name}")
    raise AttributeError(f"module 'camkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_LAZY_SUBMODULES))
