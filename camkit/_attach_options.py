"""Checks of ``attach``'s keyword arguments that need no model inspection (run first, so a
refused call leaves no hook behind)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["ADDED_MAPS", "CALIBRATION_MAPS", "METHODS", "check_attach_options"]

METHODS = ("cam", "rcam", "cream")
#: CREAM's calibration map and added map: the CAM of the classifier's weights as they are
#: (``"cam"``) or with negative weights clamped to zero (``"rcam"``, NWC).
CALIBRATION_MAPS = ("cam", "rcam")
ADDED_MAPS = ("cam", "rcam", "same", "none")


def check_attach_options(model: object, method: str | None,
                         reshape_transform: Callable[[Tensor], Tensor] | None,
                         localization_map: Callable[[Tensor, Tensor], Tensor] | None,
                         map_layer: nn.Module | str | None, calibration_map: str | None,
                         added_map: str) -> None:
    """Raise ``TypeError``/``ValueError`` for an invalid combination of ``attach`` options."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} or None, got {method!r}")
    if reshape_transform is not None and not callable(reshape_transform):
        raise TypeError("reshape_transform must be a callable Tensor -> Tensor[B, C, h, w] "
                        f"or None, got {type(reshape_transform).__name__}")
    if localization_map is not None and not callable(localization_map):
        raise TypeError("localization_map must be a callable (features, classes) -> "
                        f"Tensor[B, h, w] or None, got {type(localization_map).__name__}")
    if localization_map is not None and method != "cam":
        raise ValueError("localization_map= replaces the CAM of method='cam' only (RCAM's "
                         "weight clamping and CREAM's re-activation act on the classifier's "
                         f"CAM); attach with method='cam', got method={method!r}")
    if map_layer is not None and localization_map is None:
        raise ValueError("map_layer= names the input of localization_map=; give both")
    if calibration_map is not None and calibration_map not in CALIBRATION_MAPS:
        raise ValueError(f"calibration_map must be one of {CALIBRATION_MAPS} or None, got "
                         f"{calibration_map!r}")
    if added_map not in ADDED_MAPS:
        raise ValueError(f"added_map must be one of {ADDED_MAPS}, got {added_map!r}")
    if method in ("cam", "rcam") and (calibration_map is not None or added_map != "same"):
        raise ValueError("calibration_map= and added_map= choose the maps of CREAM's "
                         "re-activation; attach with method='cream' or the default None, "
                         f"got method={method!r}")
