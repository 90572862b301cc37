"""CREAM training: per-class context embeddings learned by CAM-guided momentum updates.

For each sample with label ``c`` and min-max normalized CAM ``Mn``: ``A_fg = Mn > delta``,
``A_bg`` its complement, ``v_fg``/``v_bg`` the mean feature over each mask, and
``fg[c] = lam * fg[c] + (1 - lam) * v_fg`` (``bg`` likewise), ``lam = momentum``.

Every mean and every update is a weighted average, formed so that it cannot overflow: finite
features of any magnitude keep the embeddings finite.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from camkit._validation import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    check_finite_number,
    check_positive_int,
    check_same_device,
    check_tensor,
    compute_dtype,
    index_bounds,
)
from camkit.cam import normalize_map, saturate

__all__ = ["ContextEmbeddingBank"]

_REPEATS = ("sequential", "mean")
_INITS = ("normal", "zeros")


def _sample_statistics(features: Tensor, cam: Tensor, delta: float, dtype: torch.dtype
                       ) -> tuple[Tensor, Tensor]:
    """Masked spatial means of each sample's features.

    Returns:
        ``means (Tensor[B, 2, C])`` (foreground, background) and ``valid (Tensor[B, 2])``, false
        where the mask is empty or the mean is not finite (those means are zeroed).
    """
    batch, channels, height, width = features.shape
    pixels = features.reshape(batch, channels, height * width).to(dtype)
    cam = cam.to(torch.promote_types(cam.dtype, dtype))  # never narrower: no overflow
    foreground = normalize_map(cam).reshape(batch, height * width) > delta
    masks = torch.stack((foreground, ~foreground), dim=1).to(dtype)  # (B, 2, N)
    counts = masks.sum(dim=2)  # (B, 2)
    # Masks of 2**-k > N**-1 instead of 1: the sums stay below the largest feature and, a power
    # of two being exact, the means are those of the plain sums.
    unit = 2.0 ** -(height * width).bit_length()
    sums = torch.bmm(masks * unit, pixels.transpose(1, 2))  # (B, 2, C)
    means = sums / (counts.clamp_min(1.0) * unit).unsqueeze(2)
    valid = (counts > 0) & torch.isfinite(means).all(dim=2)
    means = torch.where(valid.unsqueeze(2), means, torch.zeros_like(means))
    return means, valid


def _check_loaded_state(module: nn.Module, state_dict: dict[str, object], prefix: str,
                        *args: object) -> None:
    """``load_state_dict`` pre-hook: refuse embeddings and counts that would poison inference
    before anything is copied (a missing or non-tensor entry is left to load_state_dict)."""
    for name in ("fg", "bg", "seen", "seen_bg"):
        key, value = prefix + name, state_dict.get(prefix + name)
        counts = name.startswith("seen")
        if not isinstance(value, Tensor):
            continue
        if value.dtype not in (INDEX_DTYPES if counts else FLOAT_DTYPES):
            kind = "integer counts" if counts else "floating-point embeddings"
            raise TypeError(f"{key} must hold {kind}, got dtype {value.dtype}")
        if not counts and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{key} must hold finite embeddings, got NaN or infinite values")
        bounds = index_bounds(value) if counts else None
        if bounds is not None and bounds[0] < 0:
            raise ValueError(f"{key} must hold counts >= 0, got {bounds[0]}")


def _gather_statistics(means: Tensor, valid: Tensor, labels: Tensor,
                       group: dist.ProcessGroup | None) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate every rank's per-sample statistics in rank order (batches may differ)."""
    world = dist.get_world_size(group)
    size = torch.tensor([labels.shape[0]], dtype=torch.long, device=labels.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    counts = [int(s.item()) for s in sizes]
    pad = max(counts) - labels.shape[0]
    meta = torch.stack((labels, valid[:, 0].long(), valid[:, 1].long()), dim=1)
    meta = torch.nn.functional.pad(meta, (0, 0, 0, pad))
    padded = torch.nn.functional.pad(means, (0, 0, 0, 0, 0, pad))
    metas = [torch.empty_like(meta) for _ in range(world)]
    stats = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(metas, meta, group=group)
    dist.all_gather(stats, padded, group=group)
    meta = torch.cat([m[:n] for m, n in zip(metas, counts, strict=True)])
    means = torch.cat([s[:n] for s, n in zip(stats, counts, strict=True)])
    return means, meta[:, 1:].bool(), meta[:, 0]


class ContextEmbeddingBank(nn.Module):
    """Per-class foreground/background context embeddings (CREAM, Xu et al., CVPR 2022).

    Buffers (saved in ``state_dict``, moved by ``.to()``): ``fg``, ``bg`` ``(K, C)`` and the
    update counts ``seen`` (foreground, ``(K,)``) and ``seen_bg`` (background, ``(K,)``). A
    class whose embeddings were never updated keeps its random initialization; list such
    classes with ``unseen_classes()`` before inference. ``load_state_dict`` refuses NaN or
    infinite embeddings and negative or non-integer counts before copying anything.

    Distributed: when ``torch.distributed`` is initialized (and ``sync_distributed``), each
    ``update`` gathers every rank's per-sample statistics, so all ranks apply the same update,
    equal to a single-process update over all ranks' batches concatenated in rank order. The
    first such update also broadcasts the bank from rank 0 of the group, so differently seeded
    initializations agree.

    Args:
        num_classes: number of classes ``K``.
        channels: feature channels ``C``.
        momentum: ``lam``, the weight of the old embedding in [0, 1] (1 never updates).
        delta: CAM foreground threshold in [0, 1] (``A_fg = minmax(CAM) > delta``).
        repeats: a class occurring several times in a batch is updated once per sample, in
            batch order (``"sequential"`` [choice]), or once with the mean of its samples'
            statistics (``"mean"``).
        init: initial embeddings, ``"normal"`` (standard normal [choice]) or ``"zeros"``.
        generator: random generator for the initialization.
        sync_distributed: gather statistics across ranks when distributed is initialized.
        process_group: the group to gather over (default: the world).
    """

    fg: Tensor
    bg: Tensor
    seen: Tensor
    seen_bg: Tensor

    def __init__(self, num_classes: int, channels: int, momentum: float = 0.8,
                 delta: float = 0.2, *, repeats: str = "sequential", init: str = "normal",
                 generator: torch.Generator | None = None, sync_distributed: bool = True,
                 process_group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        num_classes = check_positive_int(num_classes, "num_classes")
        channels = check_positive_int(channels, "channels")
        self.momentum = check_finite_number(momentum, "momentum", low=0.0, high=1.0)
        self.delta = check_finite_number(delta, "delta", low=0.0, high=1.0)
        if repeats not in _REPEATS:
            raise ValueError(f"repeats must be 'sequential' or 'mean', got {repeats!r}")
        if init not in _INITS:
            raise ValueError(f"init must be 'normal' or 'zeros', got {init!r}")
        self.repeats = repeats
        self.sync_distributed = bool(sync_distributed)
        self.process_group = process_group
        self._synced = False
        shape = (num_classes, channels)
        fg, bg = ((torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
                  if init == "normal" else (torch.zeros(shape), torch.zeros(shape)))
        self.register_buffer("fg", fg)
        self.register_buffer("bg", bg)
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("seen_bg", torch.zeros(num_classes, dtype=torch.long))
        self.register_load_state_dict_pre_hook(_check_loaded_state)

    @property
    def num_classes(self) -> int:
        """Number of classes ``K`` (rows of ``fg`` and ``bg``)."""
        return self.fg.shape[0]

    @property
    def channels(self) -> int:
        """Feature channels ``C`` (columns of ``fg`` and ``bg``)."""
        return self.fg.shape[1]

    def unseen_classes(self) -> Tensor:
        """Classes with an embedding never updated (still at its initialization), ``(M,)``."""
        return torch.nonzero((self.seen == 0) | (self.seen_bg == 0)).flatten()

    def lookup(self, classes: Tensor) -> tuple[Tensor, Tensor]:
        """``(fg[classes], bg[classes])``, each ``(B, C)``, for ``cream_map``.

        Args:
            classes (Tensor[B]): class indices in ``[0, K)``, on the CPU or the bank's device.
                The range check costs a CUDA tensor one device sync (as in
                ``class_activation_map``): a negative index would pick another class silently.
        """
        check_tensor(classes, "classes", ndim=1, dtypes=INDEX_DTYPES, shape_doc="(B,)")
        if classes.device.type != "cpu":
            check_same_device(self.fg, "the bank", classes=classes)
        bounds = index_bounds(classes)
        if bounds is not None and (bounds[0] < 0 or bounds[1] >= self.num_classes):
            raise ValueError(f"classes must lie in [0, {self.num_classes - 1}], got values in "
                             f"[{bounds[0]}, {bounds[1]}]")
        index = classes.to(self.fg.device).long()
        return self.fg[index], self.bg[index]

    def _distributed(self) -> bool:
        return (self.sync_distributed and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def _check_update(self, features: Tensor, cam: Tensor, labels: Tensor) -> None:
        check_tensor(features, "features", ndim=4, shape_doc="(B, C, h, w)")
        check_tensor(cam, "cam", ndim=3, shape_doc="(B, h, w)")
        check_tensor(labels, "labels", ndim=1, dtypes=INDEX_DTYPES, shape_doc="(B,)")
        check_same_device(self.fg, "the bank", features=features, cam=cam, labels=labels)
        batch, channels, height, width = features.shape
        if channels != self.channels:
            raise ValueError(f"features must have C={self.channels} channels (the bank's), "
                             f"got {channels}")
        if tuple(cam.shape) != (batch, height, width):
            raise ValueError(f"cam must have shape (B, h, w) = ({batch}, {height}, {width}) to "
                             f"match features, got {tuple(cam.shape)}")
        if labels.shape[0] != batch:
            raise ValueError(f"labels must hold B={batch} entries, got {labels.shape[0]}")
        bounds = index_bounds(labels)  # one device sync on CUDA, as in lookup
        if bounds is not None and (bounds[0] < 0 or bounds[1] >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}], got values in "
                             f"[{bounds[0]}, {bounds[1]}]")

    @torch.no_grad()
    def update(self, features: Tensor, cam: Tensor, labels: Tensor) -> None:
        """CAM-guided momentum update of the labels' embeddings (no gradient).

        Args:
            features (Tensor[B, C, h, w]): feature maps of the last convolutional block.
            cam (Tensor[B, h, w]): raw CAM of each sample's label class, same resolution.
            labels (Tensor[B]): class of each sample.

        Statistics are accumulated in float32 (float64 for float64 inputs) with autocast
        disabled. A sample whose mask is empty (e.g. a constant CAM has no foreground) skips
        that embedding's update, and so does one whose masked features hold NaN or infinities
        (never taken in). Finite features of any magnitude give finite embeddings.
        """
        self._check_update(features, cam, labels)
        dtype = torch.promote_types(compute_dtype(features.dtype), torch.float32)
        with torch.autocast(features.device.type, enabled=False):
            means, valid = _sample_statistics(features, cam, self.delta, dtype)
            means = saturate(means, self.fg.dtype)  # float64 means into a float32 bank
            labels = labels.long()
            if self._distributed():
                if not self._synced:
                    self._broadcast_from_first_rank()
                means, valid, labels = _gather_statistics(means, valid, labels,
                                                          self.process_group)
            self._apply_statistics(means, valid, labels)

    def _broadcast_from_first_rank(self) -> None:
        source = dist.get_global_rank(self.process_group, 0) if self.process_group else 0
        for buffer in (self.fg, self.bg, self.seen, self.seen_bg):
            dist.broadcast(buffer, src=source, group=self.process_group)
        self._synced = True

    def _apply_statistics(self, means: Tensor, valid: Tensor, labels: Tensor) -> None:
        """Apply per-sample statistics ``means (B, 2, C)``, ``valid (B, 2)``, ``labels (B,)``."""
        dtype = torch.promote_types(self.fg.dtype, torch.float32)
        means = means.to(dtype)
        weights_valid = valid.to(dtype)
        per_class = torch.zeros(self.num_classes, 2, dtype=dtype, device=means.device)
        per_class.index_add_(0, labels, weights_valid)  # updates per class and embedding
        old = torch.stack((self.fg, self.bg), dim=1).to(dtype)  # (K, 2, C)
        lam = self.momentum
        if self.repeats == "sequential":
            # Closed form of the in-order loop: a class updated m times becomes
            # lam^m * old + sum_i (1 - lam) * lam^(later_i) * v_i, where later_i counts the
            # valid updates of the same class after sample i.
            same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
            after = torch.ones_like(same).triu(diagonal=1)  # j > i
            later = (same & after).to(dtype) @ weights_valid  # (B, 2)
            lam_t = torch.tensor(lam, dtype=dtype, device=means.device)
            weights = (1.0 - lam) * lam_t.pow(later) * weights_valid
            added = torch.zeros_like(old).index_add_(0, labels, weights.unsqueeze(2) * means)
            new = lam_t.pow(per_class).unsqueeze(2) * old + added
        else:
            # Each sample weighs 1 / (its class's count): the mean is a weighted average, whose
            # sum cannot overflow the way the plain total of large means can.
            share = weights_valid / per_class[labels].clamp_min(1.0)
            mean = torch.zeros_like(old).index_add_(0, labels, share.unsqueeze(2) * means)
            new = torch.where((per_class > 0).unsqueeze(2), lam * old + (1.0 - lam) * mean, old)
        # Weighted averages of finite values: only rounding can carry one past the largest
        # float. Saturate while copying (into a buffer of the same dtype, no extra pass).
        for buffer, values in ((self.fg, new[:, 0]), (self.bg, new[:, 1])):
            largest = torch.finfo(buffer.dtype).max
            torch.clamp(values.to(buffer.dtype), -largest, largest, out=buffer)
        self.seen.add_(per_class[:, 0].to(self.seen.dtype))
        self.seen_bg.add_(per_class[:, 1].to(self.seen_bg.dtype))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, channels={self.channels}, "
                f"momentum={self.momentum}, delta={self.delta}, repeats={self.repeats!r}")
