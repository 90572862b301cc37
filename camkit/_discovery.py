"""Find the feature map and the classifier of a classifier from one traced forward pass.

One forward on an example input runs with temporary forward hooks on every submodule (removed
in ``finally``); the order in which modules finish and the shapes they produce identify:

* the **classifier**: the last ``nn.Linear`` or 1x1 ``nn.Conv2d`` whose output has the size of
  the logits;
* the **feature layer**: the last module before it with a 4-D output of spatial size > 1x1;
* the **head**: per-vector modules between the two (e.g. MobileNet-v3's ``Linear + Hardswish``
  or ConvNeXt's ``LayerNorm2d``), applied to every pixel's feature vector when forming CAMs;
* the **pooling** module that collapses the feature map, when the model has one.

Token models (vision transformers whose head averages the patch tokens) have no 4-D feature
map: when a ``(B, N, C)`` token tensor is produced after the last 4-D output and before the
classifier, the last such tensor is the feature layer (the tokens after the final norm). Its
prefix tokens (class, distillation, register) are dropped and the patch tokens reshaped to
``(B, C, h, w)`` on the patch grid, read from the patch embedding's 4-D output (``h * w``
equals the number of patch tokens) at every forward, so non-square and resized inputs work. A
norm applied after the pooling (timm's ``fc_norm``) is part of the head, applied to every
token as ConvNeXt's post-pool ``LayerNorm2d`` is applied to every pixel.

The pick is then checked numerically: the classifier applied to the pooled features (through
the head) must reproduce the model's logits. A token model whose logits come from one token
(a class token) is refused: no map of patch features averages to its logits.

This module picks the layers and ties the steps together; the traced forward and the logits
selection live in ``camkit._trace``, the head and the numerical check in
``camkit._classifier_head``, and the token-model path in ``camkit._tokens``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from camkit._classifier_head import (
    HOW_TO,
    Discovery,
    build_head,
    checked_discovery,
    pool_reproduces,
)
from camkit._tokens import discover_tokens, pick_tokens
from camkit._trace import (
    Event,
    LogitsSelector,
    is_token_output,
    resolve_module,
    select_logits,
    shape_text,
    shares_memory,
    trace,
)
from camkit.pooling import ThresholdedAvgPool

__all__ = ["Discovery", "discover"]

_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d,
                 ThresholdedAvgPool)


def _is_classifier_type(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
            and module.groups == 1)



def _example_input(model: nn.Module) -> Tensor:
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = conv.in_channels if conv is not None else 3
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, channels, 224, 224, generator=generator).to(device, dtype)


def _pick_classifier(events: list[Event], logits: Tensor, explicit: nn.Module | str | None,
                     root: nn.Module) -> int:
    batch, classes = logits.shape
    if explicit is not None:
        name, module = resolve_module(root, explicit, "classifier")
        if not _is_classifier_type(module):
            raise ValueError(f"classifier={name!r} must be an nn.Linear or a 1x1 nn.Conv2d, got "
                             f"{type(module).__name__}")
        found = [i for i, e in enumerate(events) if e.module is module]
        if not found:
            raise ValueError(f"classifier={name!r} is not called in the model's forward")
        return found[-1]
    candidates = [i for i, e in enumerate(events) if e.leaf and _is_classifier_type(e.module)
                  and e.output is not None and e.output.shape[0] == batch
                  and e.output[0].numel() == classes]
    if not candidates:
        seen = [f"{e.name} ({type(e.module).__name__} -> {shape_text(e.output)})" for e in events
                if e.leaf and _is_classifier_type(e.module)]
        raise ValueError(f"no nn.Linear or 1x1 nn.Conv2d produces the K={classes} logits; "
                         f"candidates seen: {seen or 'none'}; {HOW_TO}")
    last = candidates[-1]
    modules = {id(events[i].module): events[i].name for i in candidates}
    if len(modules) > 1 and not shares_memory(events[last].output, logits):
        raise ValueError("ambiguous classifier: several layers produce K="
                         f"{classes} outputs: {sorted(modules.values())}; {HOW_TO}")
    return last


def _pick_features(events: list[Event], stop: int, explicit: nn.Module | str | None,
                   root: nn.Module, any_tensor: bool = False) -> int:
    """Index of the feature layer's event: explicit, else the last 4-D spatial output.

    An explicit layer must output a 4-D feature map or ``(B, N, C)`` tokens (any tensor when
    ``any_tensor``: a ``reshape_transform`` maps it).
    """
    if explicit is not None:
        name, module = resolve_module(root, explicit, "feature_layer")
        found = [i for i in range(stop) if events[i].module is module]
        if not found:
            raise ValueError(f"feature_layer={name!r} is not called before the classifier in "
                             "the model's forward")
        output = events[found[-1]].output
        if output is None or not (any_tensor or output.dim() == 4 or is_token_output(output)):
            raise ValueError(f"feature_layer={name!r} must output a 4-D (B, C, h, w) feature "
                             f"map or (B, N, C) tokens, got {shape_text(output)}; pass "
                             "reshape_transform= to map another layout to (B, C, h, w)")
        return found[-1]
    spatial = [i for i, e in enumerate(events[:stop]) if e.output is not None
               and e.output.dim() == 4 and e.output.shape[2:].numel() > 1]
    if not spatial:
        raise ValueError("no module outputs a 4-D feature map with spatial size > 1x1 before "
                         f"the classifier {events[stop].name!r}; the example input may be too "
                         f"small (pass example_input=), or {HOW_TO}")
    return spatial[-1]


def _transformed(reshape_transform: Callable[[Tensor], Tensor], output: Tensor | None,
                 name: str) -> Tensor:
    if output is None:
        raise ValueError(f"feature_layer={name!r} does not output a tensor for "
                         "reshape_transform=")
    result = reshape_transform(output)
    if not isinstance(result, Tensor) or result.dim() != 4:
        got = shape_text(result) if isinstance(result, Tensor) else type(result).__name__
        raise ValueError(f"reshape_transform must map the output of {name!r} "
                         f"({shape_text(output)}) to a (B, C, h, w) tensor, got {got}")
    return result


def discover(model: nn.Module, *, feature_layer: nn.Module | str | None = None,
             classifier: nn.Module | str | None = None, num_classes: int | None = None,
             logits: LogitsSelector = None, example_input: Tensor | None = None,
             reshape_transform: Callable[[Tensor], Tensor] | None = None) -> Discovery:
    """Locate feature layer, classifier, head and pooling of ``model`` (already unwrapped)."""
    example = _example_input(model) if example_input is None else example_input
    events, output = trace(model, example)
    logit_tensor = select_logits(output, logits)
    if num_classes is not None and logit_tensor.shape[1] != num_classes:
        raise ValueError(f"num_classes={num_classes} but the model produces "
                         f"{logit_tensor.shape[1]} logits")
    c_index = _pick_classifier(events, logit_tensor, classifier, model)
    if feature_layer is not None:
        f_index = _pick_features(events, c_index, feature_layer, model,
                                 any_tensor=reshape_transform is not None)
    else:
        t_index = pick_tokens(events, c_index)
        f_index = (t_index if t_index is not None
                   else _pick_features(events, c_index, None, model))
    explicit = feature_layer is not None and classifier is not None
    raw = events[f_index].output
    if reshape_transform is not None:
        features = _transformed(reshape_transform, raw, events[f_index].name)
        return _discover_map(events, f_index, c_index, features, logit_tensor, explicit)
    assert raw is not None  # checked by _pick_features / pick_tokens
    if raw.dim() == 3:
        return discover_tokens(events, f_index, c_index, raw, logit_tensor, explicit)
    return _discover_map(events, f_index, c_index, raw, logit_tensor, explicit)



def _discover_map(events: list[Event], f_index: int, c_index: int, features: Tensor,
                  logit_tensor: Tensor, explicit: bool) -> Discovery:
    """CNN path: ``features (B, C, h, w)`` is the feature layer's (mapped) output."""
    c_event, f_event = events[c_index], events[f_index]
    channels = features.shape[1]
    head, width = build_head(events, f_index, c_index, channels, c_event.name, f_event.name,
                             features)
    found = checked_discovery(events, f_index, c_index, features, width, head,
                              logit_tensor.shape[1])
    for event in events[f_index + 1:c_index]:
        if isinstance(event.module, _GLOBAL_POOLS) and shares_memory(event.input, features):
            found.pool_name, pool = event.name, event.module
            break
    theta = pool.theta if found.pool_name and isinstance(pool, ThresholdedAvgPool) else None
    found.pooling = pool_reproduces(features, logit_tensor, found, theta)
    if found.pooling is None:
        spatial = [f"{e.name} ({shape_text(e.output)})" for e in events[:c_index]
                   if e.output is not None and e.output.dim() == 4
                   and e.output.shape[2:].numel() > 1][-6:]
        message = (f"the classifier {c_event.name!r} applied to the globally pooled output of "
                   f"{f_event.name!r} does not reproduce the model's logits, so CAM would not "
                   f"explain them; last feature-map candidates: {spatial}; {HOW_TO}")
        if not explicit:
            raise ValueError(message)
        import warnings

        warnings.warn(message, UserWarning, stacklevel=4)
    return found
