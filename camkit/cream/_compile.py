"""The kernels of CREAM inference (EM, calibration) and their ``torch.compile`` path.

``em_kernel`` and ``cream_kernel`` (EM, then the CAM calibration and ``+ minmax(CAM)``) are
written once, in plain tensor operations, and serve both paths: run eagerly the EM does two
batched matrix products per round (one for the E-step similarities, one for the M-step sums)
plus one pass for the pixel norms; traced by ``torch.compile`` the norm pass and the
element-wise work fuse into the surrounding kernels (the products stay library calls, which
run at memory bandwidth), and so do the calibration's dozen small operations on ``(B, N)``
maps, which eagerly cost one interpreter round trip each. Without the details
(centroids, mixing) the M-step of the last round is skipped: ``T`` rounds read the features
``2T`` times (``2T - 1`` products and one norm pass).

Inductor does not fuse the E- and M-step of a round into one pass (they reduce over
different axes). On CPU the compiled path instead runs cache-sized chunks of the batch one
after the other inside the graph (``camkit.cream._scan``): a chunk's first pass streams its
features from memory and its other passes read them from the cores' caches.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from camkit.cam import normalize_map
from camkit.cream._ahead import compile_ahead_of_time
from camkit.cream._scan import chunked_kernel, scan_chunk, split_batch

__all__ = ["calibrate_responsibilities", "constant", "cream_kernel", "em_kernel", "run_cream"]

#: Backend given to ``torch.compile``; tests swap in a counting backend.
_BACKEND: str | Callable[..., object] = "inductor"
_Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
#: Compiled callables keyed by static configuration (device type, dtype, options). Shapes and
#: dtypes are guarded by ``torch.compile`` itself; the batch dimension is marked dynamic.
_COMPILED: dict[tuple[object, ...], Callable[..., _Outputs]] = {}
#: Keys whose compilation failed; they run eagerly from then on.
_FAILED: set[tuple[object, ...]] = set()
_WARNED = False
_LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=64)
def constant(value: float, shape: tuple[int, ...], dtype: torch.dtype,
             device: torch.device) -> Tensor:
    """A tensor filled with ``value``, made once per arguments: the kernels' scalar inputs
    (``scale``, ``delta``, the initial mixing ratio) cost a tensor construction per call
    otherwise. Read only: the kernels never write their inputs."""
    return torch.full(shape, value, dtype=dtype, device=device)


def _inverse_norm(vectors: Tensor, dim: int) -> Tensor:
    """``1 / ||v||`` along ``dim`` (kept), and exactly 0 for zero vectors."""
    squared = (vectors * vectors).sum(dim=dim, keepdim=True)
    return torch.where(squared > 0, torch.rsqrt(squared), torch.zeros_like(squared))


def em_kernel(
    pixels: Tensor,
    mu_fg: Tensor,
    mu_bg: Tensor,
    scale: Tensor,
    log_ratio: Tensor,
    *,
    iterations: int,
    final_m_step: bool,
    normalized_means: bool,
    refresh: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Two-component EM over each image's pixels.

    Args:
        pixels (Tensor[B, C, N]): features, float32 or float64.
        mu_fg, mu_bg (Tensor[B, C]): initial centroids, same dtype.
        scale (Tensor[]): kernel concentration ``s``.
        log_ratio (Tensor[B]): initial ``log(pi_fg / pi_bg)``.
        iterations: EM rounds (>= 1).
        final_m_step: run the M-step of the last round (only its outputs need it).
        normalized_means: M-step means of unit-norm pixels instead of raw ones.
        refresh: one more E-step with the final centroids (implies ``final_m_step``).

    Returns:
        ``z_fg, z_bg (Tensor[B, N])``, ``centroids (Tensor[B, 2, C])``, ``mixing
        (Tensor[B, 2])``; the last two are the initial values when no M-step ran.
    """
    num_pixels = pixels.shape[2]
    pixels_t = pixels.transpose(1, 2)  # (B, N, C), a view for the M-step product
    inv_pixel_norm = _inverse_norm(pixels, dim=1)  # (B, 1, N)
    centroids = torch.stack((mu_fg, mu_bg), dim=1)  # (B, 2, C)
    # Any positive multiple of a centroid gives the same cosines: use the raw M-step sums.
    # An empty cluster's sum is 0 (cosine 0), and its mixing weight 0 already rules it out.
    directions = centroids
    mixing = torch.sigmoid(torch.stack((log_ratio, -log_ratio), dim=1))
    rounds = iterations + 1 if refresh else iterations
    z_fg = z_bg = inv_pixel_norm.squeeze(1)
    for step in range(rounds):
        # E-step: a softmax over two clusters is the sigmoid of the logit difference.
        dots = torch.bmm(directions, pixels) * inv_pixel_norm  # (B, 2, N)
        cosines = dots * _inverse_norm(directions, dim=2)
        logits = scale * (cosines[:, 0] - cosines[:, 1]) + log_ratio.unsqueeze(1)
        z_fg = torch.sigmoid(logits)
        z_bg = torch.sigmoid(-logits)
        if step == iterations or (step == iterations - 1 and not final_m_step):
            break
        # M-step: responsibility-weighted sums, counts, mixing weights.
        weights = torch.stack((z_fg, z_bg), dim=1)  # (B, 2, N)
        counts = weights.sum(dim=2)  # (B, 2)
        if normalized_means:
            weights = weights * inv_pixel_norm
        directions = torch.bmm(weights, pixels_t)  # (B, 2, C)
        occupied = (counts > 0).unsqueeze(2)
        means = directions / counts.clamp_min(1e-30).unsqueeze(2)
        centroids = torch.where(occupied, means, centroids)
        mixing = counts / num_pixels
        log_ratio = torch.log(counts[:, 0]) - torch.log(counts[:, 1])
    return z_fg, z_bg, centroids, mixing


def calibrate_responsibilities(
    z_fg: Tensor, z_bg: Tensor, cam_normalized: Tensor, delta: float | Tensor
) -> Tensor:
    """``camkit.cream.calibrate``; ``delta`` may be a 0-d tensor (no recompile per value)."""
    region = (cam_normalized > delta).to(z_fg.dtype)
    count = region.sum(dim=1).clamp_min(1.0)
    p_fg = (z_fg * region).sum(dim=1) / count
    p_bg = (z_bg * region).sum(dim=1) / count
    flip = (p_fg < p_bg).unsqueeze(1)
    return torch.where(flip, z_bg, z_fg)


def cream_kernel(
    pixels: Tensor,
    mu_fg: Tensor,
    mu_bg: Tensor,
    scale: Tensor,
    log_ratio: Tensor,
    cam: Tensor | None,
    delta: float | Tensor,
    *,
    iterations: int,
    final_m_step: bool,
    normalized_means: bool,
    refresh: bool,
    add_cam: bool,
) -> _Outputs:
    """``em_kernel`` followed by the CAM calibration: the whole of ``cream_map``'s arithmetic.

    Args:
        pixels, mu_fg, mu_bg, scale, log_ratio: see ``em_kernel``.
        cam (Tensor[B, h, w], optional): raw CAM in ``pixels``' dtype, ``h * w = N``.
        delta: CAM foreground threshold of the calibration.
        iterations, final_m_step, normalized_means, refresh: see ``em_kernel``.
        add_cam: add ``normalize_map(cam)`` to the calibrated responsibilities.

    Returns:
        ``out (Tensor[B, N])`` (the calibrated map, or ``z_fg`` without ``cam``), then
        ``em_kernel``'s ``z_fg, z_bg, centroids, mixing``.
    """
    z_fg, z_bg, centroids, mixing = em_kernel(
        pixels,
        mu_fg,
        mu_bg,
        scale,
        log_ratio,
        iterations=iterations,
        final_m_step=final_m_step,
        normalized_means=normalized_means,
        refresh=refresh,
    )
    out = z_fg
    if cam is not None:
        cam_normalized = normalize_map(cam).reshape(z_fg.shape)
        out = calibrate_responsibilities(z_fg, z_bg, cam_normalized, delta)
        if add_cam:
            out = out + cam_normalized
    return out, z_fg, z_bg, centroids, mixing


def _make_static(
    iterations: int, final_m_step: bool, normalized_means: bool, refresh: bool, add_cam: bool
) -> Callable[..., _Outputs]:
    """``cream_kernel`` with its static options bound (what ``torch.compile`` traces)."""
    return functools.partial(
        cream_kernel,
        iterations=iterations,
        final_m_step=final_m_step,
        normalized_means=normalized_means,
        refresh=refresh,
        add_cam=add_cam,
    )


def _warn_fallback(reason: str) -> None:
    global _WARNED
    if not _WARNED:
        _WARNED = True
        warnings.warn(
            f"camkit.cream_map: torch.compile is unavailable ({reason}); running the EM "
            "eagerly instead (this warning is shown once)",
            RuntimeWarning,
            stacklevel=6,  # the caller of cream_map (through its no_grad wrapper)
        )


def _is_compiling() -> bool:
    """True while ``torch.compile`` traces the caller (then run the kernel inline)."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    return bool(torch._dynamo.is_compiling())


def _describe(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause of ``error``."""
    while True:
        inner = getattr(error, "inner_exception", None) or error.__cause__
        if not isinstance(inner, BaseException) or inner is error:
            break
        error = inner
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def run_cream(
    pixels: Tensor,
    mu_fg: Tensor,
    mu_bg: Tensor,
    scale: Tensor,
    log_ratio: Tensor,
    cam: Tensor | None,
    delta: float,
    *,
    iterations: int,
    final_m_step: bool,
    normalized_means: bool,
    refresh: bool,
    add_cam: bool,
    compile: bool,
) -> _Outputs:
    """Run ``cream_kernel`` eagerly or through a cached ``torch.compile`` of it.

    Compiled on CPU, batches of at least two cache-sized chunks run chunk by chunk in one
    compiled ``scan`` (``camkit.cream._scan``; ahead of time with inductor,
    ``camkit.cream._ahead``), the images past the last whole chunk through the whole-batch
    graph.
    """
    static = (iterations, final_m_step or refresh, normalized_means, refresh, add_cam)
    kernel = _make_static(*static)
    if not compile or _is_compiling() or pixels.shape[0] == 0:
        return kernel(pixels, mu_fg, mu_bg, scale, log_ratio, cam, delta)
    key = (pixels.device.type, pixels.dtype, cam is not None, *static)
    # A tensor threshold: a new ``delta`` must not recompile.
    delta_t = constant(float(delta), (), pixels.dtype, pixels.device)
    chunk = scan_chunk(pixels)
    if chunk and ("scan", chunk, *key) not in _FAILED:
        batch = pixels.shape[0]
        head = batch - batch % chunk
        parts = [split_batch(t, head, chunk) for t in (pixels, mu_fg, mu_bg, log_ratio, cam)]
        (pixels_h, pixels_t), (fg_h, fg_t), (bg_h, bg_t), (ratio_h, ratio_t), (cam_h, cam_t) = parts
        outputs = _run_scan(("scan", chunk, *key), kernel,
                            (pixels_h, fg_h, bg_h, scale, ratio_h, cam_h, delta_t))
        if outputs is not None:
            outputs = [o.reshape(head, *o.shape[2:]) for o in outputs]
            if head < batch:  # the images past the last whole chunk
                rest = _run_compiled(key, kernel,
                                     (pixels_t, fg_t, bg_t, scale, ratio_t, cam_t, delta_t))
                outputs = [torch.cat(pair) for pair in zip(outputs, rest, strict=True)]
            out, z_fg, z_bg, centroids, mixing = outputs
            return out, z_fg, z_bg, centroids, mixing
    return _run_compiled(key, kernel, (pixels, mu_fg, mu_bg, scale, log_ratio, cam, delta_t))


def _run_scan(key: tuple[object, ...], kernel: Callable[..., _Outputs],
              args: tuple[Tensor | None, ...]) -> tuple[Tensor, ...] | None:
    """The chunked kernel, compiled once per key (and chunk shape, ahead of time with
    inductor); None when it cannot be compiled, and from then on for ``key``: the caller then
    runs the whole-batch graph, which warns if it fails too."""
    if _BACKEND == "inductor":
        shapes = tuple(tuple(arg.shape[1:]) for arg in args if arg is not None)
        ahead = ("ahead", *key, shapes)
        if ahead not in _FAILED:
            # The library was compiled for contiguous inputs (no-ops when they are).
            dense = tuple(None if arg is None else arg.contiguous() for arg in args)
            try:
                runner = _COMPILED.get(ahead)
                if runner is None:
                    runner = _COMPILED[ahead] = compile_ahead_of_time(kernel, dense, ahead)
                return tuple(runner(*dense))
            except Exception as error:
                _give_up(ahead, "ahead-of-time compile", error)
    if key in _FAILED:
        return None
    try:
        _mark_first_dim_dynamic(args)  # the chunk count; chunks keep a fixed shape
        compiled = _COMPILED.get(key)
        if compiled is not None:
            return compiled(*args)
        compiled = torch.compile(chunked_kernel(kernel), backend=_BACKEND, dynamic=False,
                                 fullgraph=True)
        _COMPILED[key] = compiled
        # The scan reads its chunk through an index tensor's value, which the trace must
        # capture (the setting is read when tracing; later calls only check guards).
        with torch._dynamo.config.patch(capture_scalar_outputs=True):
            return compiled(*args)
    except Exception as error:
        _give_up(key, "chunked compile", error)
        return None


def _give_up(key: tuple[object, ...], what: str, error: Exception) -> None:
    """Never try ``key`` again in this process; say why at DEBUG level (a fallback follows)."""
    _FAILED.add(key)
    _COMPILED.pop(key, None)
    _LOG.debug("camkit.cream_map: %s unavailable (%s)", what, _describe(error))


def _mark_first_dim_dynamic(args: tuple[Tensor | None, ...]) -> None:
    """Let the first dimension of every non-scalar tensor be symbolic: a new batch size (or
    chunk count) must not recompile."""
    for tensor in args:
        if tensor is not None and tensor.dim() > 0:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)


def _run_compiled(key: tuple[object, ...], kernel: Callable[..., _Outputs],
                  args: tuple[Tensor | None, ...]) -> _Outputs:
    """The whole-batch kernel, compiled once per key (batch size symbolic); eager, with one
    warning, when compilation fails."""
    if key in _FAILED:
        return kernel(*args)
    compiled = _COMPILED.get(key)
    if compiled is None:
        if not torch._dynamo.is_dynamo_supported():
            _FAILED.add(key)
            _warn_fallback("torch._dynamo does not support this platform")
            return kernel(*args)
        compiled = torch.compile(kernel, backend=_BACKEND, dynamic=False, fullgraph=True)
        _COMPILED[key] = compiled
    try:
        _mark_first_dim_dynamic(args)
        return compiled(*args)
    except Exception as error:  # compilation failed: remember and fall back, once warned
        _FAILED.add(key)
        _COMPILED.pop(key, None)
        _warn_fallback(_describe(error))
        return kernel(*args)


def reset_compile_cache() -> None:
    """Forget compiled EM kernels and past failures (the warning may then show again)."""
    global _WARNED
    _COMPILED.clear()
    _FAILED.clear()
    _WARNED = False
