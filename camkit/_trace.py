"""Model plumbing for discovery: unwrap wrappers, pick the logits, resolve modules, and record
one traced forward pass (every submodule's first input and output, in the order they finish).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Event", "LogitsSelector", "is_token_output", "resolve_module", "select_logits",
           "shape_text", "shares_memory", "trace", "unwrap_model"]

LogitsSelector = str | int | Callable[[object], Tensor] | None


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
class Event:
    """One module call that finished during the traced forward."""

    name: str
    module: nn.Module
    leaf: bool
    input: Tensor | None
    output: Tensor | None


def trace(model: nn.Module, example: Tensor) -> tuple[list[Event], object]:
    events: list[Event] = []
    handles = []

    def make_hook(module_name: str, leaf: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            first = args[0] if args and isinstance(args[0], Tensor) else None
            out = output if isinstance(output, Tensor) else None
            events.append(Event(module_name, module, leaf, first, out))
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


def is_token_output(t: Tensor | None) -> bool:
    return t is not None and t.dim() == 3 and t.shape[1] > 1



def shape_text(t: Tensor | None) -> str:
    return "-" if t is None else "x".join(str(s) for s in t.shape[1:])


def shares_memory(a: Tensor | None, b: Tensor | None) -> bool:
    return a is not None and b is not None and a.data_ptr() == b.data_ptr()

