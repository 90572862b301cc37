"""Running the model with the ``Localizer``'s capture hooks active, and turning the captured
outputs into one ``(B, C, h, w)`` feature map (replicas gathered, tokens laid out on the patch
grid, or ``reshape_transform`` applied).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from camkit._hooks import Capture
from camkit._tokens import tokens_to_map

__all__ = ["feature_map", "gather", "run_captured"]


def run_captured(model: nn.Module, x: Tensor,
                 captures: Sequence[Capture]) -> tuple[object, list[dict[torch.device, Tensor]]]:
    """Call ``model(x)`` with ``captures`` active (under the first one's lock).

    Returns the model's output and what each capture stored (the captures are left empty and
    inactive, also on an exception).
    """
    with captures[0].lock:
        for each in captures:
            each.store.clear()
            each.active = True
        try:
            output = model(x)
        finally:
            for each in captures:
                each.active = False
            stores = [dict(each.store) for each in captures]
            for each in captures:
                each.store.clear()
    return output, stores


def gather(model: nn.Module, store: dict[torch.device, Tensor]) -> Tensor:
    """One tensor from the per-device captures of ``model`` (``DataParallel`` replicas)."""
    if len(store) == 1:
        return next(iter(store.values()))
    wrapper = model  # DataParallel: replicas in device_ids order, to output_device
    while not isinstance(wrapper, nn.DataParallel) and isinstance(
            original := getattr(wrapper, "_orig_mod", None), nn.Module):
        wrapper = original
    order = [torch.device("cuda", i) for i in getattr(wrapper, "device_ids", [])]
    order = [d for d in order if d in store] or list(store)
    target = torch.device("cuda", wrapper.output_device) if isinstance(
        wrapper, nn.DataParallel) else order[0]
    return torch.cat([store[d].to(target) for d in order])


def feature_map(features: Tensor, grids: dict[torch.device, Tensor],
                reshape_transform: Callable[[Tensor], Tensor] | None,
                token_prefix: int | None) -> Tensor:
    """The captured feature layer output as ``(B, C, h, w)``.

    Token models: the ``(B, N, C)`` tokens lose their prefix tokens and are laid out on the patch
    grid captured in the same forward (``grids``); ``reshape_transform`` (when given) maps the
    feature layer's output instead.
    """
    if reshape_transform is not None:
        features = reshape_transform(features)
        if not isinstance(features, Tensor) or features.dim() != 4:
            raise ValueError("reshape_transform must return a (B, C, h, w) tensor, got "
                             f"{getattr(features, 'shape', type(features).__name__)}")
    elif token_prefix is not None:
        grid = next(iter(grids.values())).shape[-2:] if grids else None
        features = tokens_to_map(features, token_prefix,
                                 None if grid is None else (grid[0], grid[1]))
    return features
