"""CREAM inference: EM re-activation of the class activation map (Xu et al., CVPR 2022).

Each image's feature pixels are soft-clustered by a two-component mixture of von Mises-Fisher
style kernels ``p_k(f) ∝ exp(s * cos(f, mu_k))`` started from the class's foreground and
background context embeddings. The responsibilities of the last E-step, calibrated by the CAM,
give the re-activated map.

Cosine similarity is defined as 0 when either vector has zero norm (zero feature pixels, zero
centroids); every other vector is normalized exactly (``x / ||x||``, no epsilon). Norms are
taken of vectors scaled so that squaring neither overflows nor underflows (see
``_prepare_pixels``), so no NaN or infinity can arise from finite features of any magnitude.

One kernel, ``_cream_kernel``, does all the arithmetic in batched tensor operations: per EM
round one batched matrix product for the E-step similarities and one for the M-step sums.
``use_compile=True`` runs that same function through ``torch.compile``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import reduce
from typing import Literal, NamedTuple, overload

import torch
from torch import Tensor, nn

from camkit._validation import (
    check_finite_number,
    check_positive_int,
    check_same_device,
    check_tensor,
    compute_dtype,
)
from camkit.cam import normalize_map, saturate

__all__ = ["CreamDetails", "EMReActivation", "calibrate", "cream_map"]

_CENTROID_FEATURES = ("raw", "normalized")
_Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
#: ``(pixels (B, C, N), inv_norm (B, 1, N), weight (B, 1, N) | None, peak (B, 1, 1) | None)``
_Pixels = tuple[Tensor, Tensor, Tensor | None, Tensor | None]
#: ``torch.compile(_cream_kernel)``, made by the first ``use_compile=True`` call. One object
#: for every option: ``torch.compile`` guards on shapes, dtypes and the static options itself.
_compiled_kernel: Callable[..., _Outputs] | None = None


class CreamDetails(NamedTuple):
    """Everything ``cream_map(..., return_details=True)`` computes, for inspection.

    Attributes:
        map (Tensor[B, h, w]): the output map, as ``cream_map`` returns it.
        responsibilities (Tensor[B, 2, h, w]): responsibilities of the last E-step (before
            calibration); index 0 is the cluster started from ``fg``, index 1 the one started
            from ``bg``. They sum to 1 over dim 1.
        centroids (Tensor[B, 2, C]): centroids after the last M-step (same cluster order).
        mixing (Tensor[B, 2]): mixing weights after the last M-step (sum to 1).
    """

    map: Tensor
    responsibilities: Tensor
    centroids: Tensor
    mixing: Tensor


def _inverse_norm(vectors: Tensor, dim: int) -> Tensor:
    """``1 / ||v||`` along ``dim`` (kept), and exactly 0 for zero vectors."""
    squared = (vectors * vectors).sum(dim=dim, keepdim=True)
    return torch.where(squared > 0, torch.rsqrt(squared), torch.zeros_like(squared))


def _by_peak(vectors: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """``(v / peak, peak)``, ``peak`` the largest magnitude along ``dim`` (kept, >= tiny): the
    scaled vectors' squared norms neither overflow nor underflow, and zeros stay zeros."""
    if vectors.shape[dim] == 0:
        return vectors, vectors.new_ones((*vectors.shape[:dim], 1, *vectors.shape[dim + 1:]))
    peak = vectors.abs().amax(dim=dim, keepdim=True).clamp_min(torch.finfo(vectors.dtype).tiny)
    return vectors / peak, peak


def _prepare_pixels(pixels: Tensor) -> _Pixels:
    """The kernel's view of ``pixels (B, C, N)`` (see ``_Pixels``): the plain pixels while each
    squared norm is a normal float below ``sqrt(max)`` or an all-zero pixel's (then no dot or
    sum overflows; tested on CPU tensors only, no device sync), else pixels divided by their
    largest magnitude, weighed in the raw M-step by that peak over the image's ``peak``."""
    if pixels.numel() == 0:
        return pixels, _inverse_norm(pixels, dim=1), None, None
    if pixels.device.type == "cpu":
        info = torch.finfo(pixels.dtype)
        squared = (pixels * pixels).sum(dim=1, keepdim=True)
        low, high = (float(bound) for bound in torch.aminmax(squared))
        if info.tiny <= low and high <= math.sqrt(info.max):  # False for NaN
            return pixels, torch.rsqrt(squared), None, None
        zero = squared == 0  # all-zero pixels, or pixels below sqrt(tiny): look at them
        low, high = (float(bound) for bound in torch.aminmax(squared.masked_fill(zero, 1)))
        if info.tiny <= low and high <= math.sqrt(info.max) and not bool(
                pixels.transpose(1, 2)[zero.squeeze(1)].any()):
            return pixels, torch.where(zero, 0.0, torch.rsqrt(squared)), None, None
    scaled, pixel_peak = _by_peak(pixels, dim=1)
    image_peak = pixel_peak.amax(dim=2, keepdim=True)
    return scaled, _inverse_norm(scaled, dim=1), pixel_peak / image_peak, image_peak


def calibrate(z_fg: Tensor, z_bg: Tensor, cam_normalized: Tensor, delta: float | Tensor
              ) -> Tensor:
    """Pick, per image, the responsibility map that agrees with the CAM's foreground.

    ``A_fg = cam_normalized > delta``; ``P_fg = mean(z_fg over A_fg)``, ``P_bg`` likewise; the
    result is ``z_fg`` where ``P_fg >= P_bg`` and ``z_bg`` otherwise. An empty ``A_fg`` (a
    constant CAM) gives ``P_fg = P_bg = 0`` and keeps ``z_fg``. The result is made of the
    inputs' values (NaN and infinities in them are passed on as they are).

    Args:
        z_fg, z_bg (Tensor[B, N]): responsibilities of the two clusters.
        cam_normalized (Tensor[B, N]): min-max normalized CAM, same dtype.
        delta: foreground threshold in [0, 1] (a float or a 0-d tensor).

    Returns:
        Tensor[B, N]: the calibrated foreground responsibilities.
    """
    for name, value in (("z_fg", z_fg), ("z_bg", z_bg), ("cam_normalized", cam_normalized)):
        check_tensor(value, name, ndim=2, shape_doc="(B, N)")
        check_same_device(z_fg, "z_fg", **{name: value})
        if value.shape != z_fg.shape:
            raise ValueError(f"{name} must have the shape of z_fg {tuple(z_fg.shape)}, "
                             f"got {tuple(value.shape)}")
    return _calibrate(z_fg, z_bg, cam_normalized,
                      check_finite_number(delta, "delta", low=0.0, high=1.0))


def _calibrate(z_fg: Tensor, z_bg: Tensor, cam_normalized: Tensor, delta: float | Tensor
               ) -> Tensor:
    """``calibrate`` without the checks (the kernel's; ``delta`` may be a 0-d tensor)."""
    region = cam_normalized > delta
    count = region.sum(dim=1).clamp_min(1).to(z_fg.dtype)
    # Responsibilities outside the region must not enter the sums at all (0 * inf is NaN).
    p_fg = torch.where(region, z_fg, 0.0).sum(dim=1) / count
    p_bg = torch.where(region, z_bg, 0.0).sum(dim=1) / count
    flip = (p_fg < p_bg).unsqueeze(1)
    return torch.where(flip, z_bg, z_fg)


def _cream_kernel(prepared: _Pixels, mu_fg: Tensor, mu_bg: Tensor, scale: Tensor,
                  log_ratio: Tensor, cam: Tensor | None, added: Tensor | None, delta: Tensor,
                  *, iterations: int, final_m_step: bool, normalized_means: bool, refresh: bool,
                  add_cam: bool) -> _Outputs:
    """The EM over each image's pixels, then the CAM calibration: ``cream_map``'s arithmetic.

    Args: ``prepared``, the features ``(B, C, N)`` (float32 or float64) by ``_prepare_pixels``;
    initial centroids ``mu_fg, mu_bg (Tensor[B, C])``; 0-d ``scale`` and ``delta``; initial
    ``log_ratio = log(pi_fg / pi_bg) (Tensor[B])``; raw ``cam (Tensor[B, h, w])`` with ``h * w =
    N``, or None; raw ``added (Tensor[B, h, w])`` added in place of ``cam``, or None (``cam``
    itself); ``iterations`` EM rounds; ``final_m_step``: run the last round's M-step (only
    the details need it); ``normalized_means``: M-step means of unit-norm pixels; ``refresh``:
    one more E-step with the final centroids; ``add_cam``: add ``normalize_map(cam)`` (or of
    ``added``).

    Returns:
        ``out (Tensor[B, N])`` (the calibrated map, or ``z_fg`` without ``cam``), ``z_fg,
        z_bg (Tensor[B, N])``, ``centroids (Tensor[B, 2, C])``, ``mixing (Tensor[B, 2])``;
        the last two are the initial values when no M-step ran.
    """
    pixels, inv_pixel_norm, pixel_weight, pixel_peak = prepared
    num_pixels = pixels.shape[2]
    largest = torch.finfo(pixels.dtype).max
    centroids = torch.stack((mu_fg, mu_bg), dim=1)  # (B, 2, C)
    # Cosines ignore positive scale: start from centroids scaled to a peak of 1 (no overflow),
    # go on with the raw M-step sums; an empty cluster's sum is 0 (cosine 0), its mixing 0.
    directions = _by_peak(centroids, dim=2)[0]
    mixing = torch.sigmoid(torch.stack((log_ratio, -log_ratio), dim=1))
    rounds = iterations + 1 if refresh else iterations
    z_fg = z_bg = inv_pixel_norm.squeeze(1)
    for step in range(rounds):
        # E-step: a softmax over two clusters is the sigmoid of the logit difference. The
        # clamp keeps a huge scale from meeting an empty cluster's -inf log-ratio as inf - inf.
        dots = torch.bmm(directions, pixels) * inv_pixel_norm  # (B, 2, N)
        cosines = dots * _inverse_norm(directions, dim=2)
        spread = scale * (cosines[:, 0] - cosines[:, 1])
        logits = spread.clamp(-largest, largest) + log_ratio.unsqueeze(1)
        z_fg = torch.sigmoid(logits)
        z_bg = torch.sigmoid(-logits)
        if step == iterations or (step == iterations - 1 and not final_m_step):
            break
        # M-step: responsibility-weighted sums, counts, mixing weights.
        weights = torch.stack((z_fg, z_bg), dim=1)  # (B, 2, N)
        counts = weights.sum(dim=2)  # (B, 2)
        if normalized_means:
            weights = weights * inv_pixel_norm
        elif pixel_weight is not None:
            weights = weights * pixel_weight  # scaled pixels back to one scale per image
        directions = torch.bmm(weights, pixels.transpose(1, 2))  # (B, 2, C)
        occupied = (counts > 0).unsqueeze(2)
        means = directions / counts.clamp_min(1e-30).unsqueeze(2)
        if pixel_peak is not None and not normalized_means:
            means = saturate(means * pixel_peak, means.dtype)
        centroids = torch.where(occupied, means, centroids)
        mixing = counts / num_pixels
        log_ratio = torch.log(counts[:, 0]) - torch.log(counts[:, 1])
    out = z_fg
    if cam is not None:
        cam_normalized = normalize_map(cam).reshape(z_fg.shape)
        out = _calibrate(z_fg, z_bg, cam_normalized, delta)
        if add_cam:
            out = out + (cam_normalized if added is None
                         else normalize_map(added).reshape(z_fg.shape))
    return out, z_fg, z_bg, centroids, mixing


def _kernel(use_compile: bool) -> Callable[..., _Outputs]:
    """``_cream_kernel``, or its ``torch.compile`` (made once, on first use)."""
    global _compiled_kernel
    # Inside a graph that torch.compile is tracing, the plain kernel is traced inline.
    if not use_compile or torch.compiler.is_compiling():
        return _cream_kernel
    if _compiled_kernel is None:
        _compiled_kernel = torch.compile(_cream_kernel, fullgraph=True)
    return _compiled_kernel


def _check_centroids(value: object, name: str, features: Tensor) -> Tensor:
    """Check a ``(B, C)`` or ``(C,)`` centroid tensor against ``features (B, C, h, w)``."""
    value = check_tensor(value, name, ndim=(1, 2), shape_doc="(B, C) or (C,)")
    check_same_device(features, "features", **{name: value})
    batch, channels = features.shape[:2]
    expected = (channels,) if value.dim() == 1 else (batch, channels)
    if tuple(value.shape) != expected:
        raise ValueError(f"{name} must have shape (B, C) = ({batch}, {channels}) or (C,) = "
                         f"({channels},) to match features, got {tuple(value.shape)}")
    return value


def _check_options(scale: float, iterations: int, delta: float, mixing_init: float,
                   centroid_features: str, use_compile: bool) -> tuple[float, int, float, float]:
    scale = check_finite_number(scale, "scale", low=0.0)
    iterations = check_positive_int(iterations, "iterations")
    delta = check_finite_number(delta, "delta", low=0.0, high=1.0)
    mixing_init = check_finite_number(mixing_init, "mixing_init", low=0.0, high=1.0,
                                      low_inclusive=False, high_inclusive=False)
    if centroid_features not in _CENTROID_FEATURES:
        raise ValueError(f"centroid_features must be 'raw' or 'normalized', got "
                         f"{centroid_features!r}")
    if not isinstance(use_compile, bool):
        raise TypeError(f"use_compile must be True or False, got {use_compile!r}")
    return scale, iterations, delta, mixing_init


@overload
def cream_map(features: Tensor, fg: Tensor, bg: Tensor, *, cam: Tensor | None = ...,
              added_map: Tensor | None = ..., scale: float = ..., iterations: int = ...,
              delta: float = ..., mixing_init: float = ..., centroid_features: str = ...,
              refresh_responsibilities: bool = ..., add_cam: bool = ..., use_compile: bool = ...,
              return_details: Literal[False] = ...) -> Tensor: ...


@overload
def cream_map(features: Tensor, fg: Tensor, bg: Tensor, *, cam: Tensor | None = ...,
              added_map: Tensor | None = ..., scale: float = ..., iterations: int = ...,
              delta: float = ..., mixing_init: float = ..., centroid_features: str = ...,
              refresh_responsibilities: bool = ..., add_cam: bool = ..., use_compile: bool = ...,
              return_details: Literal[True]) -> CreamDetails: ...


@overload
def cream_map(features: Tensor, fg: Tensor, bg: Tensor, *, cam: Tensor | None = ...,
              added_map: Tensor | None = ..., scale: float = ..., iterations: int = ...,
              delta: float = ..., mixing_init: float = ..., centroid_features: str = ...,
              refresh_responsibilities: bool = ..., add_cam: bool = ..., use_compile: bool = ...,
              return_details: bool) -> Tensor | CreamDetails: ...


@torch.no_grad()
def cream_map(features: Tensor, fg: Tensor, bg: Tensor, *, cam: Tensor | None = None,
              added_map: Tensor | None = None, scale: float = 8.0, iterations: int = 2,
              delta: float = 0.2, mixing_init: float = 0.5, centroid_features: str = "raw",
              refresh_responsibilities: bool = False, add_cam: bool = True,
              use_compile: bool = False, return_details: bool = False
              ) -> Tensor | CreamDetails:
    """CREAM re-activation map: EM soft clustering of feature pixels around context embeddings.

    Per image, with pixels ``f`` (C-vectors) and centroids started at ``fg[b]``, ``bg[b]``:
    E-step ``z_fg = softmax_k(scale * cos(f, mu_k) + log pi_k)[fg]``, ``z_bg = 1 - z_fg``;
    M-step ``mu_k = sum z_k f / sum z_k``, ``pi_k = mean z_k``. ``iterations`` rounds of one
    E-step then one M-step; the responsibilities of the last E-step are the output.

    With ``cam``: the responsibilities are calibrated (see ``calibrate``: the cluster that
    covers ``normalize_map(cam) > delta`` best is foreground) and the result is
    ``calibrated + normalize_map(cam)``, at feature resolution, not normalized (follow with
    ``normalize_map(upsample_map(...))``); with ``added_map`` too, ``calibrated +
    normalize_map(added_map)`` (e.g. the CAM of clamped weights calibrates, the plain CAM is
    added). Without ``cam``: the responsibilities of the cluster started from ``fg``.

    Computed in float32 (float64 for float64 inputs) without gradient, batched over images.
    Zero feature vectors and zero centroids have cosine 0 with everything; an empty cluster
    keeps its previous centroid and gets mixing weight 0. Finite features, centroids and CAMs
    of any magnitude give a finite map (norms are taken of rescaled vectors); NaN and
    infinities in them propagate to the affected images (no device sync looks for them).

    Args:
        features (Tensor[B, C, h, w]): feature maps of the last convolutional block.
        fg (Tensor[B, C] or Tensor[C]): initial foreground centroid per image (e.g.
            ``bank.fg[classes]``), or one shared by the whole batch.
        bg (Tensor[B, C] or Tensor[C]): initial background centroid, likewise.
        cam (Tensor[B, h, w], optional): raw CAM of the image's class at feature resolution.
        added_map (Tensor[B, h, w], optional): raw map whose min-max normalization is added in
            place of ``cam``'s (needs ``cam`` and ``add_cam=True``) [choice: None, ``cam``].
        scale: the concentration ``s`` of the kernels (>= 0; a value past the compute
            dtype's largest float acts as that float).
        iterations: number ``T`` of EM rounds (>= 1).
        delta: CAM foreground threshold of the calibration, in [0, 1].
        mixing_init: initial foreground mixing weight ``pi_fg`` in (0, 1) [choice: 0.5].
        centroid_features: M-step means of ``"raw"`` features [choice] or of unit-norm
            (``"normalized"``) ones.
        refresh_responsibilities: run one more E-step with the final centroids and output
            those responsibilities instead of the last E-step's [choice: False].
        add_cam: add ``normalize_map(cam)`` (or ``added_map``'s) to the calibrated map
            [choice: True].
        use_compile: run the same kernel through ``torch.compile`` (default backend; the
            first call per shape compiles it). Errors of the compiler are not caught.
        return_details: return a ``CreamDetails`` instead of the map.

    Returns:
        Tensor[B, h, w] in ``features``' dtype, or ``CreamDetails`` with ``return_details``.
    """
    check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
    fg = _check_centroids(fg, "fg", features)
    bg = _check_centroids(bg, "bg", features)
    scale, iterations, delta, mixing_init = _check_options(
        scale, iterations, delta, mixing_init, centroid_features, use_compile
    )
    batch, channels, height, width = features.shape
    if height == 0 or width == 0:
        raise ValueError(f"features must have non-empty spatial dims, got shape "
                         f"{tuple(features.shape)}")
    if added_map is not None and (cam is None or not add_cam):
        raise ValueError("added_map= is added in place of cam=; it needs cam= and add_cam=True, "
                         f"got {'cam=None' if cam is None else 'add_cam=False'}")
    for name, value in (("cam", cam), ("added_map", added_map)):
        if value is not None:
            check_tensor(value, name, ndim=3, shape_doc="(B, h, w)")
            check_same_device(features, "features", **{name: value})
            if tuple(value.shape) != (batch, height, width):
                raise ValueError(f"{name} must have shape (B, h, w) = ({batch}, {height}, "
                                 f"{width}) to match features, got {tuple(value.shape)}")
    # The widest input dtype: a float64 centroid or CAM must not overflow into float32.
    dtypes = [t.dtype for t in (features, fg, bg, cam, added_map) if t is not None]
    dtype, device = compute_dtype(reduce(torch.promote_types, dtypes)), features.device
    # Scalars as 0-d tensors: a compiled kernel then serves every value without recompiling.
    logit = math.log(mixing_init) - math.log1p(-mixing_init)
    kernel = _kernel(use_compile and batch > 0)
    out, z_fg, z_bg, centroids, mixing = kernel(
        _prepare_pixels(features.reshape(batch, channels, height * width).to(dtype)),
        fg.to(dtype).expand(batch, channels).contiguous(),
        bg.to(dtype).expand(batch, channels).contiguous(),
        torch.full((), min(scale, torch.finfo(dtype).max), dtype=dtype, device=device),
        torch.full((batch,), logit, dtype=dtype, device=device),
        None if cam is None else cam.to(dtype),
        None if added_map is None else added_map.to(dtype),
        torch.full((), delta, dtype=dtype, device=device),
        iterations=iterations,
        # Without the details, the last M-step's outputs are unused.
        final_m_step=return_details or refresh_responsibilities,
        normalized_means=centroid_features == "normalized",
        refresh=refresh_responsibilities,
        add_cam=add_cam,
    )
    out = out.reshape(batch, height, width).to(features.dtype)
    if not return_details:
        return out
    responsibilities = torch.stack((z_fg, z_bg), dim=1).reshape(batch, 2, height, width)
    return CreamDetails(out, responsibilities.to(features.dtype),
                        saturate(centroids, features.dtype).to(features.dtype),
                        mixing.to(features.dtype))


class EMReActivation(nn.Module):
    """Configuration holder for ``cream_map`` (CREAM's EM re-activation).

    Args: see ``cream_map`` (``scale``, ``iterations``, ``delta``, ``mixing_init``,
    ``centroid_features``, ``refresh_responsibilities``, ``add_cam``, ``use_compile``).

    Shape:
        ``features (B, C, h, w)``, ``fg``/``bg`` ``(B, C)`` or ``(C,)``, ``cam`` and
        ``added_map`` ``(B, h, w)`` → ``(B, h, w)``.
    """

    def __init__(self, scale: float = 8.0, iterations: int = 2, delta: float = 0.2, *,
                 mixing_init: float = 0.5, centroid_features: str = "raw",
                 refresh_responsibilities: bool = False, add_cam: bool = True,
                 use_compile: bool = False) -> None:
        super().__init__()
        self.scale, self.iterations, self.delta, self.mixing_init = _check_options(
            scale, iterations, delta, mixing_init, centroid_features, use_compile
        )
        self.centroid_features = centroid_features
        self.refresh_responsibilities = bool(refresh_responsibilities)
        self.add_cam = bool(add_cam)
        self.use_compile = use_compile

    def forward(self, features: Tensor, fg: Tensor, bg: Tensor, cam: Tensor | None = None,
                added_map: Tensor | None = None, *, return_details: bool = False
                ) -> Tensor | CreamDetails:
        """``cream_map(features, fg, bg, cam=cam, added_map=added_map, ...)`` with this
        module's options."""
        return cream_map(
            features, fg, bg, cam=cam, added_map=added_map, scale=self.scale,
            iterations=self.iterations, delta=self.delta, mixing_init=self.mixing_init,
            centroid_features=self.centroid_features,
            refresh_responsibilities=self.refresh_responsibilities, add_cam=self.add_cam,
            use_compile=self.use_compile, return_details=return_details,
        )

    def extra_repr(self) -> str:
        return (f"scale={self.scale}, iterations={self.iterations}, delta={self.delta}, "
                f"mixing_init={self.mixing_init}, centroid_features={self.centroid_features!r}, "
                f"refresh_responsibilities={self.refresh_responsibilities}, "
                f"add_cam={self.add_cam}, use_compile={self.use_compile}")
