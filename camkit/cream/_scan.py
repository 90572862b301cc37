"""Cache-sized chunks for the compiled CREAM kernel on CPU.

Compiled over a whole batch, every pass of the EM (E-step product, pixel norms, M-step product,
next E-step) streams the batch's features from memory: ``2T`` passes at memory bandwidth. Run
over chunks of ``K`` images whose features fit in the cores' caches, only the first pass of a
chunk comes from memory; the chunk's other passes hit the cache. The chunk loop must live
inside the compiled graph (a Python loop pays the compiled call's overhead per chunk and loses
the gain), so it is a ``scan`` over ``(n, K, ...)`` views of the inputs, with ``n`` symbolic (a
new batch size does not recompile) and ``K`` static (the kernels keep their fixed shapes). The
features are read through an index into one ``(n, K, C, N)`` view rather than scanned as a
sequence: a scanned sequence is copied first, which is a pass over the features of its own.

With inductor, the chunked kernel is compiled ahead of time (``camkit.cream._ahead``); with
another backend it goes through ``torch.compile``.

``scan`` is a prototype API of ``torch._higher_order_ops`` (torch 2.13); any failure to trace
or compile the chunked kernel hands over to the compiled kernel over the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["chunked_kernel", "scan_chunk", "split_batch"]

#: Features per chunk, in bytes: about the L2 caches of the cores that run the chunk
#: (2 MiB per core on the machine ``docs/benchmarks.md`` describes).
_CHUNK_BYTES = 4 << 20
#: Fewest chunks for which the scan is used: smaller batches run the whole-batch kernel (and a
#: scan over one chunk would be specialized to that length by the compiler).
_MIN_CHUNKS = 2


def scan_chunk(pixels: Tensor) -> int:
    """Images per scan step for ``pixels (Tensor[B, C, N])``, a power of two; 0 for none.

    0 when the batch is on another device than the CPU, when one image's features exceed half
    of ``_CHUNK_BYTES`` (each pass then streams from memory anyway), or when the batch holds
    fewer than ``_MIN_CHUNKS`` chunks.
    """
    if pixels.device.type != "cpu":
        return 0
    per_image = pixels.shape[1] * pixels.shape[2] * pixels.element_size()
    images = _CHUNK_BYTES // max(per_image, 1)
    if images < 2:
        return 0
    chunk = 1 << (int(images).bit_length() - 1)
    return chunk if pixels.shape[0] >= _MIN_CHUNKS * chunk else 0


def chunked_kernel(kernel: Callable[..., tuple[Tensor, ...]]) -> Callable[..., tuple[Tensor, ...]]:
    """``kernel`` run chunk by chunk in one ``scan``.

    The returned function takes ``kernel``'s positional arguments with every per-image tensor
    reshaped to ``(n, K, ...)`` (``scale`` and ``delta`` stay 0-d; ``cam`` may be None) and
    returns ``kernel``'s outputs, each ``(n, K, ...)``.
    """
    from torch._higher_order_ops.scan import scan

    def run(pixels: Tensor, mu_fg: Tensor, mu_bg: Tensor, scale: Tensor, log_ratio: Tensor,
            cam: Tensor | None, delta: Tensor) -> tuple[Tensor, ...]:
        chunks = pixels.shape[0]
        sequence = [torch.arange(chunks, device=pixels.device), mu_fg, mu_bg, log_ratio]
        if cam is not None:
            sequence.append(cam)

        def step(carry: Tensor, chunk: list[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
            index = chunk[0].item()
            torch._check(index >= 0)
            torch._check(index < chunks)
            chunk_cam = chunk[4] if cam is not None else None
            outputs = kernel(pixels.select(0, index), chunk[1], chunk[2], scale, chunk[3],
                             chunk_cam, delta)
            if cam is None:  # the map is z_fg itself; a scan's outputs must not alias
                outputs = (outputs[0].clone(), *outputs[1:])
            return carry + 0, outputs  # nor its carry the input one

        _, outputs = scan(step, torch.zeros((), device=pixels.device), sequence)
        return tuple(outputs)

    return run


def split_batch(tensor: Tensor | None, head: int, chunk: int) -> tuple[Tensor | None, ...]:
    """``(tensor[:head]`` viewed as ``(head // chunk, chunk, ...)``, ``tensor[head:])``; the
    second is None when ``head`` is the whole batch (no slicing then)."""
    if tensor is None:
        return None, None
    if head == tensor.shape[0]:
        return tensor.view(head // chunk, chunk, *tensor.shape[1:]), None
    return tensor[:head].reshape(head // chunk, chunk, *tensor.shape[1:]), tensor[head:]

