"""CREAM inference: EM re-activation of the class activation map (Xu et al., CVPR 2022).

Each image's feature pixels are soft-clustered by a two-component mixture of von Mises-Fisher
style kernels ``p_k(f) ∝ exp(s * cos(f, mu_k))`` started from the class's foreground and
background context embeddings. The responsibilities of the last E-step, calibrated by the CAM,
give the re-activated map.

Cosine similarity is defined as 0 when either vector has zero norm (zero feature pixels, zero
centroids); every other vector is normalized exactly (``x / ||x||``, no epsilon), so no NaN or
infinity can arise from finite features.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from camkit._validation import (
    check_finite_number,
    check_positive_int,
    check_same_device,
    check_tensor,
    compute_dtype,
)
from camkit.cream._compile import calibrate_responsibilities, constant, run_cream

__all__ = ["CreamDetails", "EMReActivation", "cream_map"]

_CENTROID_FEATURES = ("raw", "normalized")


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


def _check_centroids(value: object, name: str, features: Tensor) -> Tensor:
    """Check a ``(B, C)`` or ``(C,)`` centroid tensor against ``features (B, C, h, w)``."""
    value = check_tensor(value, name, ndim=(1, 2), shape_doc="(B, C) or (C,)")
    check_same_device(features, "features", **{name: value})
    batch, channels = features.shape[:2]
    expected = (channels,) if value.dim() == 1 else (batch, channels)
    if tuple(value.shape) != expected:
        raise ValueError(
            f"{name} must have shape (B, C) = ({batch}, {channels}) or (C,) = ({channels},) "
            f"to match features, got {tuple(value.shape)}"
        )
    return value


def _check_options(
    scale: float, iterations: int, delta: float, mixing_init: float, centroid_features: str
) -> tuple[float, int, float, float]:
    scale = check_finite_number(scale, "scale", low=0.0)
    iterations = check_positive_int(iterations, "iterations")
    delta = check_finite_number(delta, "delta", low=0.0, high=1.0)
    mixing_init = check_finite_number(
        mixing_init, "mixing_init", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    if centroid_features not in _CENTROID_FEATURES:
        raise ValueError(
            f"centroid_features must be 'raw' or 'normalized', got {centroid_features!r}"
        )
    return scale, iterations, delta, mixing_init


def _use_compile(compile: bool | str, features: Tensor) -> bool:
    if compile == "auto":
        return features.device.type == "cuda"
    if isinstance(compile, bool):
        return compile
    raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")


def calibrate(z_fg: Tensor, z_bg: Tensor, cam_normalized: Tensor, delta: float) -> Tensor:
    """Pick, per image, the responsibility map that agrees with the CAM's foreground.

    ``A_fg = cam_normalized > delta``; ``P_fg = mean(z_fg over A_fg)``, ``P_bg`` likewise; the
    result is ``z_fg`` where ``P_fg >= P_bg`` and ``z_bg`` otherwise. An empty ``A_fg`` (a
    constant CAM) gives ``P_fg = P_bg = 0`` and keeps ``z_fg``.

    Args:
        z_fg, z_bg (Tensor[B, N]): responsibilities of the two clusters.
        cam_normalized (Tensor[B, N]): min-max normalized CAM, same dtype.
        delta: foreground threshold in [0, 1].

    Returns:
        Tensor[B, N]: the calibrated foreground responsibilities.
    """
    return calibrate_responsibilities(z_fg, z_bg, cam_normalized, delta)


@torch.no_grad()
def cream_map(
    features: Tensor,
    fg: Tensor,
    bg: Tensor,
    *,
    cam: Tensor | None = None,
    scale: float = 8.0,
    iterations: int = 2,
    delta: float = 0.2,
    mixing_init: float = 0.5,
    centroid_features: str = "raw",
    refresh_responsibilities: bool = False,
    add_cam: bool = True,
    compile: bool | str = False,
    return_details: bool = False,
) -> Tensor | CreamDetails:
    """CREAM re-activation map: EM soft clustering of feature pixels around context embeddings.

    Per image, with pixels ``f`` (C-vectors) and centroids started at ``fg[b]``, ``bg[b]``:
    E-step ``z_fg = softmax_k(scale * cos(f, mu_k) + log pi_k)[fg]``, ``z_bg = 1 - z_fg``;
    M-step ``mu_k = sum z_k f / sum z_k``, ``pi_k = mean z_k``. ``iterations`` rounds of one
    E-step then one M-step; the responsibilities of the last E-step are the output.

    With ``cam``: the responsibilities are calibrated (see ``calibrate``: the cluster that
    covers ``normalize_map(cam) > delta`` best is foreground) and the result is
    ``calibrated + normalize_map(cam)``, at feature resolution, not normalized (follow with
    ``normalize_map(upsample_map(...))``). Without ``cam``: the responsibilities of the cluster
    started from ``fg``.

    Computed in float32 (float64 for float64 inputs) without gradient, batched over images.
    Zero feature vectors and zero centroids have cosine 0 with everything; an empty cluster
    keeps its previous centroid and gets mixing weight 0. Features must be finite.

    Args:
        features (Tensor[B, C, h, w]): feature maps of the last convolutional block.
        fg (Tensor[B, C] or Tensor[C]): initial foreground centroid per image (e.g.
            ``bank.fg[classes]``), or one shared by the whole batch.
        bg (Tensor[B, C] or Tensor[C]): initial background centroid, likewise.
        cam (Tensor[B, h, w], optional): raw CAM of the image's class at feature resolution.
        scale: the concentration ``s`` of the kernels (>= 0).
        iterations: number ``T`` of EM rounds (>= 1).
        delta: CAM foreground threshold of the calibration, in [0, 1].
        mixing_init: initial foreground mixing weight ``pi_fg`` in (0, 1) [choice: 0.5].
        centroid_features: M-step means of ``"raw"`` features [choice] or of unit-norm
            (``"normalized"``) ones.
        refresh_responsibilities: run one more E-step with the final centroids and output
            those responsibilities instead of the last E-step's [choice: False].
        add_cam: add ``normalize_map(cam)`` to the calibrated map [choice: True].
        compile: run the EM through ``torch.compile`` (``True``), eagerly (``False``), or
            compiled on CUDA only (``"auto"``). On CPU, batches of two cache-sized chunks or
            more run chunk by chunk in a kernel that inductor compiles ahead of time
            (``torch.export`` + AOTInductor), once per feature shape and dtype: the first
            such call takes seconds (the package is kept on disk for later processes; see
            ``docs/troubleshooting.md``). Falls back to eager, with one warning, when
            compilation fails.
        return_details: return a ``CreamDetails`` instead of the map.

    Returns:
        Tensor[B, h, w] in ``features``' dtype, or ``CreamDetails`` with ``return_details``.
    """
    check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
    fg = _check_centroids(fg, "fg", features)
    bg = _check_centroids(bg, "bg", features)
    scale, iterations, delta, mixing_init = _check_options(
        scale, iterations, delta, mixing_init, centroid_features
    )
    batch, channels, height, width = features.shape
    if height == 0 or width == 0:
        raise ValueError(
            f"features must have non-empty spatial dims, got shape {tuple(features.shape)}"
        )
    if cam is not None:
        check_tensor(cam, "cam", ndim=3, shape_doc="(B, h, w)")
        check_same_device(features, "features", cam=cam)
        if tuple(cam.shape) != (batch, height, width):
            raise ValueError(
                f"cam must have shape (B, h, w) = ({batch}, {height}, {width}) to match "
                f"features, got {tuple(cam.shape)}"
            )
    use_compile = _use_compile(compile, features)

    dtype = compute_dtype(features.dtype)
    num_pixels = height * width
    pixels = features.reshape(batch, channels, num_pixels).to(dtype)
    mu_fg = fg.to(dtype).expand(batch, channels).contiguous()
    mu_bg = bg.to(dtype).expand(batch, channels).contiguous()
    scale_t = constant(scale, (), dtype, features.device)
    log_ratio = constant(_logit(mixing_init), (batch,), dtype, features.device)
    out, z_fg, z_bg, centroids, mixing = run_cream(
        pixels,
        mu_fg,
        mu_bg,
        scale_t,
        log_ratio,
        None if cam is None else cam.to(dtype),
        delta,
        iterations=iterations,
        final_m_step=return_details or refresh_responsibilities,
        normalized_means=centroid_features == "normalized",
        refresh=refresh_responsibilities,
        add_cam=add_cam,
        compile=use_compile,
    )
    out = out.reshape(batch, height, width).to(features.dtype)
    if not return_details:
        return out
    return CreamDetails(
        map=out,
        responsibilities=torch.stack((z_fg, z_bg), dim=1)
        .reshape(batch, 2, height, width)
        .to(features.dtype),
        centroids=centroids.to(features.dtype),
        mixing=mixing.to(features.dtype),
    )


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class EMReActivation(nn.Module):
    """Configuration holder for ``cream_map`` (CREAM's EM re-activation).

    Args: see ``cream_map`` (``scale``, ``iterations``, ``delta``, ``mixing_init``,
    ``centroid_features``, ``refresh_responsibilities``, ``add_cam``, ``compile``).

    Shape:
        ``features (B, C, h, w)``, ``fg``/``bg`` ``(B, C)`` or ``(C,)``, ``cam (B, h, w)``
        → ``(B, h, w)``.
    """

    def __init__(
        self,
        scale: float = 8.0,
        iterations: int = 2,
        delta: float = 0.2,
        *,
        mixing_init: float = 0.5,
        centroid_features: str = "raw",
        refresh_responsibilities: bool = False,
        add_cam: bool = True,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        self.scale, self.iterations, self.delta, self.mixing_init = _check_options(
            scale, iterations, delta, mixing_init, centroid_features
        )
        if compile not in (True, False, "auto"):
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
        self.centroid_features = centroid_features
        self.refresh_responsibilities = bool(refresh_responsibilities)
        self.add_cam = bool(add_cam)
        self.compile = compile

    def forward(
        self,
        features: Tensor,
        fg: Tensor,
        bg: Tensor,
        cam: Tensor | None = None,
        *,
        return_details: bool = False,
    ) -> Tensor | CreamDetails:
        """``cream_map(features, fg, bg, cam=cam, ...)`` with this module's options."""
        return cream_map(
            features,
            fg,
            bg,
            cam=cam,
            scale=self.scale,
            iterations=self.iterations,
            delta=self.delta,
            mixing_init=self.mixing_init,
            centroid_features=self.centroid_features,
            refresh_responsibilities=self.refresh_responsibilities,
            add_cam=self.add_cam,
            compile=self.compile,
            return_details=return_details,
        )

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, iterations={self.iterations}, delta={self.delta}, "
            f"mixing_init={self.mixing_init}, centroid_features={self.centroid_features!r}, "
            f"refresh_responsibilities={self.refresh_responsibilities}, "
            f"add_cam={self.add_cam}, compile={self.compile!r}"
        )
