"""The chunked CREAM kernel compiled ahead of time, and kept on disk between processes.

``torch.export`` traces ``chunked_kernel(kernel)`` with a symbolic chunk count and AOTInductor
compiles it into a library. Calling that library costs a few microseconds, where a
``torch.compile``'d function pays dynamo's guards and wrappers on every call, a sizeable part
of the EM's time at the benchmark's smallest shape.

Compiling takes seconds (the first-call column of ``docs/benchmarks.md``), so the package is
kept in inductor's cache folder (``camkit-cream/`` in ``TORCHINDUCTOR_CACHE_DIR``, by default a
folder of the system's temporary directory) under a name that hashes everything the library
depends on: torch's version and build, the CPU's vector instruction set (the code is compiled
for this host), camkit's version and the source of the modules the kernel is written in, and
the kernel's options, chunk shape and dtype. A package is written under a temporary name and
renamed into place, so a reader never sees half of one; one that fails to load is compiled
again. ``CAMKIT_DISABLE_KERNEL_CACHE=1`` turns the disk cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from camkit._io import write_bytes_atomic
from camkit.cream._scan import _MIN_CHUNKS, chunked_kernel

__all__ = ["compile_ahead_of_time"]

#: Folder of the cached packages; None: ``camkit-cream`` in inductor's cache folder.
_CACHE_ROOT: Path | None = None


class _Chunked(torch.nn.Module):
    """``chunked_kernel(kernel)`` as a module, the unit ``torch.export`` takes."""

    def __init__(self, kernel: Callable[..., tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.run = chunked_kernel(kernel)

    def forward(self, pixels: Tensor, mu_fg: Tensor, mu_bg: Tensor, scale: Tensor,
                log_ratio: Tensor, cam: Tensor | None, delta: Tensor) -> tuple[Tensor, ...]:
        return self.run(pixels, mu_fg, mu_bg, scale, log_ratio, cam, delta)


def _cache_folder() -> Path | None:
    """Where packages are kept, or None when the disk cache is off or cannot be found."""
    if os.environ.get("CAMKIT_DISABLE_KERNEL_CACHE", "") not in ("", "0"):
        return None
    if _CACHE_ROOT is not None:
        return _CACHE_ROOT
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir
    except ImportError:
        return None
    return Path(cache_dir()) / "camkit-cream"


def _host_and_source() -> list[str]:
    """What a package compiled here depends on besides the kernel's own options."""
    import camkit
    from camkit import cam
    from camkit.cream import _compile, _scan

    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        isa = str(pick_vec_isa())
    except Exception:  # an unknown instruction set: the CPU capability below still tells
        isa = "?"
    parts = [torch.__version__, str(torch.version.git_version), isa,
             torch.backends.cpu.get_cpu_capability(), platform.machine(), camkit.__version__]
    for module in (cam, _compile, _scan):
        parts.append(hashlib.sha256(Path(module.__file__ or "").read_bytes()).hexdigest())
    return parts


def _package_path(key: tuple[object, ...]) -> Path | None:
    folder = _cache_folder()
    if folder is None:
        return None
    text = repr((_host_and_source(), key)).encode()
    return folder / f"{hashlib.sha256(text).hexdigest()[:40]}.pt2"


def _load(path: Path) -> Callable[..., tuple[Tensor, ...]]:
    """The package at ``path``, called through the loader's boxed entry point: the model's own
    ``__call__`` parses its input and output specs on every call, and the outputs are a flat
    tuple anyway."""
    model = torch._inductor.aoti_load_package(str(path))
    boxed_run = getattr(getattr(model, "loader", None), "boxed_run", None)
    if boxed_run is None:
        return model

    def run(*inputs: Tensor | None) -> tuple[Tensor, ...]:
        return tuple(boxed_run([tensor for tensor in inputs if tensor is not None]))

    return run


def compile_ahead_of_time(kernel: Callable[..., tuple[Tensor, ...]],
                          args: tuple[Tensor | None, ...],
                          key: tuple[object, ...]) -> Callable[..., tuple[Tensor, ...]]:
    """``chunked_kernel(kernel)`` compiled by AOTInductor for ``args``' chunk shape and dtypes,
    any chunk count from 2 on; ``key`` names the kernel's options, shapes and dtype for the
    disk cache. Raises whatever export or compilation raises."""
    path = _package_path(key)
    if path is not None and path.is_file():
        try:
            return _load(path)
        except Exception:  # a damaged or foreign package: compile it again
            with contextlib.suppress(OSError):  # (replaced below if the folder is writable)
                path.unlink(missing_ok=True)
    chunks = torch.export.Dim("chunks", min=_MIN_CHUNKS)
    dynamic = tuple({0: chunks} if arg is not None and arg.dim() > 0 else None for arg in args)
    with warnings.catch_warnings():
        # torch 2.13's own pytree code trips its LeafSpec deprecation: nothing a user can act on.
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.export.export(_Chunked(kernel), args, dynamic_shapes=dynamic)
        with tempfile.TemporaryDirectory(prefix="camkit-cream-") as folder:
            built = Path(torch._inductor.aoti_compile_and_package(
                program, package_path=os.path.join(folder, "cream.pt2")))
            if path is not None and _keep(built, path):
                return _load(path)
            return _load(built)  # loaded into memory before the folder goes


def _keep(built: Path, path: Path) -> bool:
    """Copy ``built`` to ``path`` atomically; False when the cache folder is not writable."""
    try:
        write_bytes_atomic(path, built.read_bytes())
    except OSError:
        return False
    return True
