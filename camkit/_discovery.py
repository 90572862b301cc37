"""Find the feature map and the classifier of a CNN classifier from one traced forward pass.

One forward on an example input runs with temporary forward hooks on every submodule (removed
in ``finally``); the order in which modules finish and the shapes they produce identify:

* the **classifier**: the last ``nn.Linear`` or 1x1 ``nn.Conv2d`` whose output has the size of
  the logits;
* the **feature layer**: the last module before it with a 4-D output of spatial size > 1x1;
* the **head**: per-vector modules between the two (e.g. MobileNet-v3's ``Linear + Hardswish``
  or ConvNeXt's ``LayerNorm2d``), applied to every pixel's feature vector when forming CAMs;
* the **pooling** module that collapses the feature map, when the model has one.

The pick is then checked numerically: the classifier applied to the pooled features (through
the head) must reproduce the model's logits.
"""

from __future__ import annotations

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
                   root: nn.Module) -> int:
    if explicit is not None:
        name, module = resolve_module(root, explicit, "feature_layer")
        found = [i for i in range(stop) if events[i].module is module]
        if not found:
            raise ValueError(f"feature_layer={name!r} is not called before the classifier in "
                             "the model's forward")
        output = events[found[-1]].output
        if output is None or output.dim() != 4:
            raise ValueError(f"feature_layer={name!r} must output a 4-D (B, C, h, w) tensor, got "
                             f"{_shape(output)}")
        return found[-1]
    spatial = [i for i, e in enumerate(events[:stop]) if e.output is not None
               and e.output.dim() == 4 and e.output.shape[2:].numel() > 1]
    if not spatial:
        raise ValueError("no module outputs a 4-D feature map with spatial size > 1x1 before "
                         f"the classifier {events[stop].name!r}; the example input may be too "
                         f"small (pass example_input=), or {_HOW_TO}")
    return spatial[-1]


def _build_head(
    events: list[_Event], first: int, stop: int, channels: int, classifier_name: str,
    feature_name: str,
) -> tuple[list[tuple[nn.Module, tuple[int, ...]]], int]:
    """Per-vector modules between feature map and classifier, with their per-sample inputs."""
    head: list[tuple[nn.Module, tuple[int, ...]]] = []
    width = channels
    features = events[first].output
    for event in events[first + 1:stop]:
        if not event.leaf or isinstance(event.module, _PASS_THROUGH):
            continue
        side_branch = (event.input is not None and event.input.dim() == 4
                       and event.input.shape[2:].numel() > 1
                       and not _shares_memory(event.input, features))
        if side_branch:  # a feature map other than ours: not on the path to the classifier
            continue
        if event.input is None or event.output is None:
            raise ValueError(f"module {event.name!r} between {feature_name!r} and "
                             f"{classifier_name!r} does not map a tensor to a tensor; {_HOW_TO}")
        per_sample = tuple(event.input.shape[1:])
        if event.input[0].numel() != width or any(s != 1 for s in per_sample[1:]):
            raise ValueError(
                f"module {event.name!r} (input {_shape(event.input)}) between the feature map "
                f"{feature_name!r} ({channels} channels) and the classifier "
                f"{classifier_name!r} does not act on one pooled vector; CAM needs a global "
                f"pooling right after the feature map (a model without one, such as VGG's "
                f"flattening head, is unsupported); {_HOW_TO}")
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


def discover(model: nn.Module, *, feature_layer: nn.Module | str | None = None,
             classifier: nn.Module | str | None = None, num_classes: int | None = None,
             logits: LogitsSelector = None, example_input: Tensor | None = None) -> Discovery:
    """Locate feature layer, classifier, head and pooling of ``model`` (already unwrapped)."""
    example = _example_input(model) if example_input is None else example_input
    events, output = _trace(model, example)
    logit_tensor = select_logits(output, logits)
    if num_classes is not None and logit_tensor.shape[1] != num_classes:
        raise ValueError(f"num_classes={num_classes} but the model produces "
                         f"{logit_tensor.shape[1]} logits")
    c_index = _pick_classifier(events, logit_tensor, classifier, model)
    f_index = _pick_features(events, c_index, feature_layer, model)
    c_event, f_event = events[c_index], events[f_index]
    assert f_event.output is not None  # checked by _pick_features
    classifier_module = c_event.module
    assert isinstance(classifier_module, (nn.Linear, nn.Conv2d))  # checked by _pick_classifier
    channels = f_event.output.shape[1]
    head, width = _build_head(events, f_index, c_index, channels, c_event.name, f_event.name)
    found = Discovery(f_event.name, f_event.module, c_event.name, classifier_module, channels,
                      _in_features(classifier_module), logit_tensor.shape[1], head)
    if found.embed_channels != width:
        through = f" ({width} after the head)" if head else ""
        raise ValueError(f"the classifier {c_event.name!r} takes {found.embed_channels} inputs "
                         f"but the feature map {f_event.name!r} has {channels} channels"
                         f"{through}: is there a global pooling between them? {_HOW_TO}")
    for event in events[f_index + 1:c_index]:
        if isinstance(event.module, _GLOBAL_POOLS) and _shares_memory(event.input, f_event.output):
            found.pool_name, pool = event.name, event.module
            break
    theta = pool.theta if found.pool_name and isinstance(pool, ThresholdedAvgPool) else None
    found.pooling = _pool_reproduces(f_event.output, logit_tensor, found, theta)
    if found.pooling is None:
        spatial = [f"{e.name} ({_shape(e.output)})" for e in events[:c_index]
                   if e.output is not None and e.output.dim() == 4
                   and e.output.shape[2:].numel() > 1][-6:]
        message = (f"the classifier {c_event.name!r} applied to the globally pooled output of "
                   f"{f_event.name!r} does not reproduce the model's logits, so CAM would not "
                   f"explain them; last feature-map candidates: {spatial}; {_HOW_TO}")
        if feature_layer is None or classifier is None:
            raise ValueError(message)
        import warnings

        warnings.warn(message, UserWarning, stacklevel=3)
    return found
