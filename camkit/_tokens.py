"""Token models (vision transformers whose head averages the patch tokens) in discovery.

The feature layer is the last ``(B, N, C)`` token output after every 4-D spatial output and
before the classifier. Its prefix tokens (class, distillation, register) are dropped and the
patch tokens laid out as ``(B, C, h, w)`` on the patch grid, read from the patch embedding's 4-D
output; the pooled map must reproduce the logits. A model whose logits come from one token (a
class token) is refused: no map of patch features averages to its logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from camkit._classifier_head import (
    Discovery,
    apply_head,
    build_head,
    checked_discovery,
    pool_reproduces,
)
from camkit._trace import Event, is_token_output, shape_text

__all__ = ["discover_tokens", "pick_tokens", "tokens_to_map"]


def tokens_to_map(tokens: Tensor, prefix: int, grid: tuple[int, int] | None) -> Tensor:
    """Patch tokens ``(B, N, C)`` to a feature map ``(B, C, h, w)``, dropping ``prefix`` tokens.

    ``grid`` is ``(h, w)`` with ``h * w == N - prefix``; ``None``: a square grid.
    """
    patches = tokens[:, prefix:]
    count = patches.shape[1]
    if grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"cannot infer the patch grid of {count} patch tokens (not a "
                             "square number and no patch-embedding layer found); pass "
                             "reshape_transform= to attach()")
        grid = (side, side)
    if grid[0] * grid[1] != count:
        raise ValueError(f"the patch grid {grid[0]}x{grid[1]} does not match the {count} patch "
                         "tokens; pass reshape_transform= to attach()")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def pick_tokens(events: list[Event], stop: int) -> int | None:
    """The last ``(B, N, C)`` token output before ``stop`` and after every 4-D spatial output."""
    last_spatial = max((i for i, e in enumerate(events[:stop]) if e.output is not None
                        and e.output.dim() == 4 and e.output.shape[2:].numel() > 1), default=-1)
    tokens = [i for i in range(last_spatial + 1, stop) if is_token_output(events[i].output)]
    return tokens[-1] if tokens else None


def grid_candidates(events: list[Event], t_index: int) -> list[tuple[int, int | None]]:
    """``(prefix, grid event index)`` pairs for the tokens of ``events[t_index]``.

    The grid comes from the last 4-D output before the tokens whose ``h * w`` leaves at most
    ``N - 1`` prefix tokens (the patch embedding); without one, square grids are tried.
    """
    tokens = events[t_index].output
    assert tokens is not None  # a token event
    count = tokens.shape[1]
    for i in range(t_index - 1, -1, -1):
        out = events[i].output
        if out is not None and out.dim() == 4 and 1 < out.shape[2] * out.shape[3] <= count:
            return [(count - out.shape[2] * out.shape[3], i)]
    return [(p, None) for p in range(min(count - 1, 33))
            if math.isqrt(count - p) ** 2 == count - p and count - p > 1]


def discover_tokens(events: list[Event], f_index: int, c_index: int, tokens: Tensor,
                    logit_tensor: Tensor, explicit: bool) -> Discovery:
    """Token path: ``tokens (B, N, C)``, averaged over the patch tokens by the model's head."""
    c_event, f_event = events[c_index], events[f_index]
    channels = tokens.shape[2]
    column = tokens.transpose(1, 2).unsqueeze(-1)  # (B, C, N, 1): every token as a position
    head, width = build_head(events, f_index, c_index, channels, c_event.name, f_event.name,
                             column)
    base = checked_discovery(events, f_index, c_index, column, width, head,
                             logit_tensor.shape[1])
    candidates = grid_candidates(events, f_index)
    first: Discovery | None = None
    for prefix, g_index in candidates:
        grid_out = None if g_index is None else events[g_index].output
        grid = None if grid_out is None else (grid_out.shape[-2], grid_out.shape[-1])
        found = Discovery(**{**base.__dict__, "token_prefix": prefix,
                             "grid_name": None if g_index is None else events[g_index].name,
                             "grid_layer": None if g_index is None else events[g_index].module})
        found.pooling = pool_reproduces(tokens_to_map(tokens, prefix, grid), logit_tensor,
                                        found, None)
        if found.pooling is not None:
            return found
        first = first or found
    seen = [f"{e.name} ({shape_text(e.output)})" for e in events[:c_index]
            if is_token_output(e.output)][-4:]
    grids = sorted({events[g].name for _, g in candidates if g is not None})
    layers = (f"layers seen: tokens {f_event.name!r} ({shape_text(tokens)}), last token outputs "
              f"{seen}, patch grid {grids[0] if grids else None!r}, classifier "
              f"{c_event.name!r}")
    class_token = _class_token(tokens, logit_tensor, base)
    if class_token is not None:
        raise ValueError(
            f"the model's logits come from token {class_token} of {f_event.name!r} alone (a "
            "class token), not from an average of the patch tokens, so CAM is undefined for "
            "this model: no map over the patches adds up to its logits. Use a model whose "
            "head averages the patch tokens (timm: create_model(..., global_pool='avg'), then "
            "fine-tune the head), or pass feature_layer=, classifier= and reshape_transform= "
            f"to get a map that does not explain the logits, with a warning; {layers}")
    message = (f"the classifier {c_event.name!r} applied to the average of the patch tokens of "
               f"{f_event.name!r} (prefix tokens tried: {[p for p, _ in candidates]}) does not "
               "reproduce the model's logits: the head pools the tokens in a way CAM cannot "
               "express (e.g. timm global_pool='avgmax' or attention pooling 'map') or the "
               "patch grid was not found. Use an average-pooled head (timm: global_pool='avg') "
               f"or map the tokens to (B, C, h, w) with reshape_transform=; {layers}")
    if not explicit or first is None:
        raise ValueError(message)
    import warnings

    warnings.warn(message, UserWarning, stacklevel=4)
    return first


def _class_token(tokens: Tensor, logits: Tensor, found: Discovery) -> int | None:
    """Index of a (prefix) token that alone reproduces the logits through the head, if any."""
    weight = found.classifier.weight.flatten(1)
    bias = getattr(found.classifier, "bias", None)
    scale = float(logits.abs().max()) + 1e-6
    for index in range(min(tokens.shape[1], 8)):
        vector = apply_head(tokens[:, index, :, None, None], found.head).flatten(1)
        if vector.shape[1] != weight.shape[1]:
            return None
        predicted = F.linear(vector, weight, bias)
        if torch.allclose(predicted.double(), logits.double(), rtol=1e-3, atol=1e-4 * scale):
            return index
    return None
