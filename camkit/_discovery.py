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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit.pooling import ThresholdedAvgPool, thresholded_avg_pool

LogitsSelector = str | int | Callable[[object], Tensor] | None

#: Modules between the feature map and the classifier that only pool, reshape or regularize.
_PASS_THROUGH = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    ThresholdedAvgPool,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
)
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d,
                 ThresholdedAvgPool)
_HOW_TO = ("pass feature_layer= and classifier= explicitly (an nn.Module or a dotted name such "
           "as 'layer4' / 'fc')")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip ``DataParallel``, ``DistributedDataParallel`` and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(original := getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = original
        else:
            return model


def select_logits(output: object, selector: LogitsSelector = None) -> Tensor:
    """Pick the logits ``Tensor[B, K]`` out of a model's output.

    Default: a tensor as is; the first element of a tuple/list; the ``"logits"`` entry of a
    mapping (``dict`` or a ``ModelOutput``) or its only tensor value; a ``.logits`` attribute.
    ``selector`` may name a key or attribute (str), an index (int), or be a callable.
    ``(B, K, 1, 1)`` logits are flattened to ``(B, K)``.
    """
    value: object  # checked to be a tensor below
    if callable(selector):
        value = selector(output)
    elif isinstance(selector, str):
        value = output[selector] if isinstance(output, Mapping) else getattr(output, selector,
                                                                             None)
        if value is None:
            raise ValueError(f"logits={selector!r} selects nothing in the model's output of "
                             f"type {type(output).__name__}")
    elif isinstance(selector, int) and not isinstance(selector, bool):
        value = output[selector]  # type: ignore[index]
    elif selector is not None:
        raise TypeError(f"logits must be None, a str, an int or a callable, got {selector!r}")
    elif isinstance(output, Tensor):
        value = output
    elif isinstance(output, Mapping):
        keys = [k for k, v in output.items() if isinstance(v, Tensor)]
        if "logits" in output:
            value = output["logits"]
        elif len(keys) == 1:
            value = output[keys[0]]
        else:
            raise ValueError(f"the model returned a mapping with tensor entries {keys} and no "
                             "'logits' entry; pass logits='<key>' to attach()")
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        value = output[0]
    elif isinstance(getattr(output, "logits", None), Tensor):
        value = output.logits  # type: ignore[attr-defined]
    else:
        raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}; "
                        "pass logits= (a key, an index or a callable) to attach()")
    if not isinstance(value, Tensor):
        raise TypeError(f"the selected logits must be a Tensor, got {type(value).__name__}")
    if value.dim() == 4 and value.shape[2:] == (1, 1):
        value = value.flatten(1)
    if value.dim() != 2:
        raise ValueError(f"logits must be (B, K) or (B, K, 1, 1), got shape {tuple(value.shape)}")
    return value


def resolve_module(root: nn.Module, spec: nn.Module | str, name: str) -> tuple[str, nn.Module]:
    """Turn a module or a dotted name into ``(dotted name, module)`` inside ``root``."""
    if isinstance(spec, str):
        try:
            return spec, root.get_submodule(spec)
        except AttributeError as error:
            raise ValueError(f"{name}={spec!r} is not a submodule of the model ({error})") from None
    if isinstance(spec, nn.Module):
        for module_name, module in root.named_modules():
            if module is spec:
                return module_name, module
        raise ValueError(f"{name} ({type(spec).__name__}) is not a submodule of the model")
    raise TypeError(f"{name} must be an nn.Module or a dotted name, got {type(spec).__name__}")


@dataclass
class _Event:
    """One module call that finished during the traced forward."""

    name: str
    module: nn.Module
    leaf: bool
    input: Tensor | None
    output: Tensor | None


def _trace(model: nn.Module, example: Tensor) -> tuple[list[_Event], object]:
    events: list[_Event] = []
    handles = []

    def make_hook(module_name: str, leaf: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            first = args[0] if args and isinstance(args[0], Tensor) else None
            out = output if isinstance(output, Tensor) else None
            events.append(_Event(module_name, module, leaf, first, out))
        return hook

    training = {m: m.training for m in model.modules()}
    try:
        for module_name, module in model.named_modules():
            if module_name:
                leaf = next(module.children(), None) is None
                handles.append(module.register_forward_hook(make_hook(module_name, leaf)))
        model.eval()
        with torch.no_grad():
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in training.items():
            module.training = mode
    return events, output


def _is_token_output(t: Tensor | None) -> bool:
    return t is not None and t.dim() == 3 and t.shape[1] > 1


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


def _is_classifier_type(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
            and module.groups == 1)


def _in_features(module: nn.Linear | nn.Conv2d) -> int:
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


def _shape(t: Tensor | None) -> str:
    return "-" if t is None else "x".join(str(s) for s in t.shape[1:])


def _shares_memory(a: Tensor | None, b: Tensor | None) -> bool:
    return a is not None and b is not None and a.data_ptr() == b.data_ptr()


@dataclass
class Discovery:
    """What ``attach`` found: names, modules and the per-pixel head between them."""

    feature_name: str
    feature_layer: nn.Module
    classifier_name: str
    classifier: nn.Linear | nn.Conv2d
    channels: int
    embed_channels: int
    num_classes: int
    head: list[tuple[nn.Module, tuple[int, ...]]] = field(default_factory=list)
    pool_name: str | None = None
    pooling: str | None = None
    #: Token models: prefix tokens dropped from the feature layer's ``(B, N, C)`` output.
    token_prefix: int | None = None
    #: Token models: the layer whose 4-D output gives the patch grid ``(h, w)`` (its last two
    #: dimensions) at every forward; ``None``: a square grid.
    grid_name: str | None = None
    grid_layer: nn.Module | None = None


def _example_input(model: nn.Module) -> Tensor:
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = conv.in_channels if conv is not None else 3
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, channels, 224, 224, generator=generator).to(device, dtype)


def _pick_classifier(events: list[_Event], logits: Tensor, explicit: nn.Module | str | None,
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
        seen = [f"{e.name} ({type(e.module).__name__} -> {_shape(e.output)})" for e in events
                if e.leaf and _is_classifier_type(e.module)]
        raise ValueError(f"no nn.Linear or 1x1 nn.Conv2d produces the K={classes} logits; "
                         f"candidates seen: {seen or 'none'}; {_HOW_TO}")
    last = candidates[-1]
    modules = {id(events[i].module): events[i].name for i in candidates}
    if len(modules) > 1 and not _shares_memory(events[last].output, logits):
        raise ValueError("ambiguous classifier: several layers produce K="
                         f"{classes} outputs: {sorted(modules.values())}; {_HOW_TO}")
    return last


def _pick_features(events: list[_Event], stop: int, explicit: nn.Module | str | None,
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
        if output is None or not (any_tensor or output.dim() == 4 or _is_token_output(output)):
            raise ValueError(f"feature_layer={name!r} must output a 4-D (B, C, h, w) feature "
                             f"map or (B, N, C) tokens, got {_shape(output)}; pass "
                             "reshape_transform= to map another layout to (B, C, h, w)")
        return found[-1]
    spatial = [i for i, e in enumerate(events[:stop]) if e.output is not None
               and e.output.dim() == 4 and e.output.shape[2:].numel() > 1]
    if not spatial:
        raise ValueError("no module outputs a 4-D feature map with spatial size > 1x1 before "
                         f"the classifier {events[stop].name!r}; the example input may be too "
                         f"small (pass example_input=), or {_HOW_TO}")
    return spatial[-1]


def _pick_tokens(events: list[_Event], stop: int) -> int | None:
    """The last ``(B, N, C)`` token output before ``stop`` and after every 4-D spatial output."""
    last_spatial = max((i for i, e in enumerate(events[:stop]) if e.output is not None
                        and e.output.dim() == 4 and e.output.shape[2:].numel() > 1), default=-1)
    tokens = [i for i in range(last_spatial + 1, stop) if _is_token_output(events[i].output)]
    return tokens[-1] if tokens else None


def _grid_candidates(events: list[_Event], t_index: int) -> list[tuple[int, int | None]]:
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


def _refuse_head_module(event: _Event, features: Tensor, channels: int, feature_name: str,
                        classifier_name: str) -> None:
    """Raise the error for a head module that does not act on one pooled vector."""
    assert event.input is not None
    spatial = features.shape[2:].numel()
    pools_map = event.input.dim() == 4 and event.input.shape[1:] == features.shape[1:]
    out = event.output
    pooled = out is not None and (out.dim() == 2 or (out.dim() == 4 and out.shape[2:].numel() == 1))
    if pools_map and pooled and out is not None and out[0].numel() in (channels, 2 * channels):
        raise ValueError(
            f"module {event.name!r} ({type(event.module).__name__}) pools the feature map "
            f"{feature_name!r} ({_shape(features)}) in a way CAM cannot express (e.g. timm "
            "global_pool='avgmax', 'catavgmax' or a generalized-mean pooling); CAM needs the "
            "feature map globally average-pooled (max and thresholded average pooling work "
            f"too) and then fed to the linear classifier {classifier_name!r}: use an "
            "average-pooled head (timm: global_pool='avg') and fine-tune the classifier")
    if event.input.dim() == 2 and event.input.shape[1] == channels * spatial > channels:
        raise ValueError(
            f"module {event.name!r} ({type(event.module).__name__}, input "
            f"{_shape(event.input)}) takes the whole flattened feature map {feature_name!r} "
            f"({channels} channels x {spatial} positions): a fully connected head on a "
            "flattened map, as in torchvision's VGG, has no class activation map, and no "
            "feature_layer= or classifier= can change that. CAM needs a feature map that is "
            "globally average-pooled and then fed to a linear classifier: replace the head by "
            f"nn.AdaptiveAvgPool2d(1) + nn.Flatten() + nn.Linear({channels}, num_classes) "
            "and fine-tune it (the VGG-GAP model of the WSOL literature)")
    raise ValueError(
        f"module {event.name!r} (input {_shape(event.input)}) between the feature map "
        f"{feature_name!r} ({channels} channels) and the classifier {classifier_name!r} does "
        "not act on one pooled vector; CAM needs the feature map globally pooled and then fed "
        f"to a linear classifier (through modules acting on the pooled vector only); {_HOW_TO}")


def _build_head(
    events: list[_Event], first: int, stop: int, channels: int, classifier_name: str,
    feature_name: str, features: Tensor | None = None,
) -> tuple[list[tuple[nn.Module, tuple[int, ...]]], int]:
    """Per-vector modules between feature map and classifier, with their per-sample inputs.

    ``features``: the ``(B, C, h, w)`` feature map (default: the output of ``events[first]``);
    for token models, modules fed with ``(B, N, C)`` tokens (a pooling module) are skipped.
    """
    head: list[tuple[nn.Module, tuple[int, ...]]] = []
    width = channels
    raw = events[first].output
    features = raw if features is None else features
    assert features is not None
    tokens = raw if raw is not None and raw.dim() == 3 else None
    for event in events[first + 1:stop]:
        if not event.leaf or isinstance(event.module, _PASS_THROUGH):
            continue
        side_branch = (event.input is not None and event.input.dim() == 4
                       and event.input.shape[2:].numel() > 1
                       and not _shares_memory(event.input, features))
        if side_branch:  # a feature map other than ours: not on the path to the classifier
            continue
        if tokens is not None and event.input is not None and _is_token_output(event.input):
            continue  # acts on the tokens before the pooling (checked numerically)
        if event.input is None or event.output is None:
            raise ValueError(f"module {event.name!r} between {feature_name!r} and "
                             f"{classifier_name!r} does not map a tensor to a tensor; {_HOW_TO}")
        per_sample = tuple(event.input.shape[1:])
        if event.input[0].numel() != width or any(s != 1 for s in per_sample[1:]):
            _refuse_head_module(event, features, channels, feature_name, classifier_name)
        head.append((event.module, per_sample))
        width = event.output[0].numel()
    return head, width


def apply_head(features: Tensor, head: list[tuple[nn.Module, tuple[int, ...]]]) -> Tensor:
    """Apply the head modules to every pixel's feature vector: ``(B, C, h, w) -> (B, C', h, w)``."""
    if not head:
        return features
    batch, _, height, width = features.shape
    x = features.permute(0, 2, 3, 1).reshape(batch * height * width, -1)
    for module, per_sample in head:
        x = module(x.reshape(x.shape[0], *per_sample)).reshape(x.shape[0], -1)
    return x.reshape(batch, height, width, -1).permute(0, 3, 1, 2)


def _pool_reproduces(features: Tensor, logits: Tensor, found: Discovery,
                     theta: float | None) -> str | None:
    weight = found.classifier.weight.flatten(1)
    bias = getattr(found.classifier, "bias", None)
    pools = {"avg": lambda f: f.mean(dim=(2, 3), keepdim=True),
             "max": lambda f: f.amax(dim=(2, 3), keepdim=True)}
    if theta is not None:
        pools = {"tap": lambda f: thresholded_avg_pool(f, theta), **pools}
    scale = float(logits.abs().max()) + 1e-6
    for kind, pool in pools.items():
        pooled = apply_head(pool(features), found.head).flatten(1)
        if pooled.shape[1] != weight.shape[1]:
            return None
        predicted = F.linear(pooled, weight, bias)
        if torch.allclose(predicted.double(), logits.double(), rtol=1e-3, atol=1e-4 * scale):
            return kind
    return None


def _transformed(reshape_transform: Callable[[Tensor], Tensor], output: Tensor | None,
                 name: str) -> Tensor:
    if output is None:
        raise ValueError(f"feature_layer={name!r} does not output a tensor for "
                         "reshape_transform=")
    result = reshape_transform(output)
    if not isinstance(result, Tensor) or result.dim() != 4:
        got = _shape(result) if isinstance(result, Tensor) else type(result).__name__
        raise ValueError(f"reshape_transform must map the output of {name!r} "
                         f"({_shape(output)}) to a (B, C, h, w) tensor, got {got}")
    return result


def discover(model: nn.Module, *, feature_layer: nn.Module | str | None = None,
             classifier: nn.Module | str | None = None, num_classes: int | None = None,
             logits: LogitsSelector = None, example_input: Tensor | None = None,
             reshape_transform: Callable[[Tensor], Tensor] | None = None) -> Discovery:
    """Locate feature layer, classifier, head and pooling of ``model`` (already unwrapped)."""
    example = _example_input(model) if example_input is None else example_input
    events, output = _trace(model, example)
    logit_tensor = select_logits(output, logits)
    if num_classes is not None and logit_tensor.shape[1] != num_classes:
        raise ValueError(f"num_classes={num_classes} but the model produces "
                         f"{logit_tensor.shape[1]} logits")
    c_index = _pick_classifier(events, logit_tensor, classifier, model)
    if feature_layer is not None:
        f_index = _pick_features(events, c_index, feature_layer, model,
                                 any_tensor=reshape_transform is not None)
    else:
        t_index = _pick_tokens(events, c_index)
        f_index = (t_index if t_index is not None
                   else _pick_features(events, c_index, None, model))
    explicit = feature_layer is not None and classifier is not None
    raw = events[f_index].output
    if reshape_transform is not None:
        features = _transformed(reshape_transform, raw, events[f_index].name)
        return _discover_map(events, f_index, c_index, features, logit_tensor, explicit)
    assert raw is not None  # checked by _pick_features / _pick_tokens
    if raw.dim() == 3:
        return _discover_tokens(events, f_index, c_index, raw, logit_tensor, explicit)
    return _discover_map(events, f_index, c_index, raw, logit_tensor, explicit)


def _found(events: list[_Event], f_index: int, c_index: int, features: Tensor, width: int,
           head: list[tuple[nn.Module, tuple[int, ...]]], num_classes: int) -> Discovery:
    c_event, f_event = events[c_index], events[f_index]
    classifier_module = c_event.module
    assert isinstance(classifier_module, (nn.Linear, nn.Conv2d))  # checked by _pick_classifier
    channels = features.shape[1]
    found = Discovery(f_event.name, f_event.module, c_event.name, classifier_module, channels,
                      _in_features(classifier_module), num_classes, head)
    if found.embed_channels != width:
        through = f" ({width} after the head)" if head else ""
        raise ValueError(f"the classifier {c_event.name!r} takes {found.embed_channels} inputs "
                         f"but the feature map {f_event.name!r} has {channels} channels"
                         f"{through}: is there a global pooling between them? {_HOW_TO}")
    return found


def _discover_map(events: list[_Event], f_index: int, c_index: int, features: Tensor,
                  logit_tensor: Tensor, explicit: bool) -> Discovery:
    """CNN path: ``features (B, C, h, w)`` is the feature layer's (mapped) output."""
    c_event, f_event = events[c_index], events[f_index]
    channels = features.shape[1]
    head, width = _build_head(events, f_index, c_index, channels, c_event.name, f_event.name,
                              features)
    found = _found(events, f_index, c_index, features, width, head, logit_tensor.shape[1])
    for event in events[f_index + 1:c_index]:
        if isinstance(event.module, _GLOBAL_POOLS) and _shares_memory(event.input, features):
            found.pool_name, pool = event.name, event.module
            break
    theta = pool.theta if found.pool_name and isinstance(pool, ThresholdedAvgPool) else None
    found.pooling = _pool_reproduces(features, logit_tensor, found, theta)
    if found.pooling is None:
        spatial = [f"{e.name} ({_shape(e.output)})" for e in events[:c_index]
                   if e.output is not None and e.output.dim() == 4
                   and e.output.shape[2:].numel() > 1][-6:]
        message = (f"the classifier {c_event.name!r} applied to the globally pooled output of "
                   f"{f_event.name!r} does not reproduce the model's logits, so CAM would not "
                   f"explain them; last feature-map candidates: {spatial}; {_HOW_TO}")
        if not explicit:
            raise ValueError(message)
        import warnings

        warnings.warn(message, UserWarning, stacklevel=4)
    return found


def _discover_tokens(events: list[_Event], f_index: int, c_index: int, tokens: Tensor,
                     logit_tensor: Tensor, explicit: bool) -> Discovery:
    """Token path: ``tokens (B, N, C)``, averaged over the patch tokens by the model's head."""
    c_event, f_event = events[c_index], events[f_index]
    channels = tokens.shape[2]
    column = tokens.transpose(1, 2).unsqueeze(-1)  # (B, C, N, 1): every token as a position
    head, width = _build_head(events, f_index, c_index, channels, c_event.name, f_event.name,
                              column)
    base = _found(events, f_index, c_index, column, width, head, logit_tensor.shape[1])
    candidates = _grid_candidates(events, f_index)
    first: Discovery | None = None
    for prefix, g_index in candidates:
        grid_out = None if g_index is None else events[g_index].output
        grid = None if grid_out is None else (grid_out.shape[-2], grid_out.shape[-1])
        found = Discovery(**{**base.__dict__, "token_prefix": prefix,
                             "grid_name": None if g_index is None else events[g_index].name,
                             "grid_layer": None if g_index is None else events[g_index].module})
        found.pooling = _pool_reproduces(tokens_to_map(tokens, prefix, grid), logit_tensor,
                                         found, None)
        if found.pooling is not None:
            return found
        first = first or found
    seen = [f"{e.name} ({_shape(e.output)})" for e in events[:c_index]
            if _is_token_output(e.output)][-4:]
    grids = sorted({events[g].name for _, g in candidates if g is not None})
    layers = (f"layers seen: tokens {f_event.name!r} ({_shape(tokens)}), last token outputs "
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
