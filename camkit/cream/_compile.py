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

Sharing one pass between the E- and M-step of a round would need the batch processed in
chunks small enough to stay in cache: inductor does not fuse the two (they reduce over
different axes), and in torch 2.13 the loops that could chunk a dynamic batch inside the graph
fail or add a guard on the batch size (``scan`` needs a non-empty chunk count, ``while_loop``
with data-dependent slices does not compile), so the features are still read ``2T`` times.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from camkit.cam import normalize_map

__all__ = ["calibrate_responsibilities", "cream_kernel", "em_kernel", "run_cream"]

#: Backend given to ``torch.compile``; tests swap in a counting backend.
_BACKEND: str | Callable[..., object] = "inductor"
_Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
#: Compiled callables keyed by static configuration (device type, dtype, options). Shapes and
#: dtypes are guarded by ``torch.compile`` itself; the batch dimension is marked dynamic.
_COMPILED: dict[tuple[object, ...], Callable[..., _Outputs]] = {}
#: Keys whose compilation failed; they run eagerly from then on.
_FAILED: set[tuple[object, ...]] = set()
_WARNED = False


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
            stacklevel=5,  # the caller of cream_map (through its no_grad wrapper)
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
    """Run ``cream_kernel`` eagerly or through a cached ``torch.compile`` of it."""
    static = (iterations, final_m_step or refresh, normalized_means, refresh, add_cam)
    kernel = _make_static(*static)
    if not compile or _is_compiling() or pixels.shape[0] == 0:
        return kernel(pixels, mu_fg, mu_bg, scale, log_ratio, cam, delta)
    key = (pixels.device.type, pixels.dtype, cam is not None, *static)
    # A tensor threshold: a new ``delta`` must not recompile.
    args = (pixels, mu_fg, mu_bg, scale, log_ratio, cam,
            torch.tensor(delta, dtype=pixels.dtype, device=pixels.device))
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
    # A new batch size must not recompile: let the batch dimension be symbolic.
    try:
        for tensor in (pixels, mu_fg, mu_bg, log_ratio, cam):
            if tensor is not None:
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
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
