"""Training and evaluation loops of the WSOL classifier (CAM, RCAM, CREAM).

* ``cam``: global average pooling, CAM at evaluation.
* ``rcam``: TAP replaces the pooling (in the model), NWC at evaluation, PaS box threshold for
  the fixed-threshold localization accuracies.
* ``cream``: CAM training that also learns the context-embedding bank (an update per step,
  from the step's features and its label-class CAM); EM re-activation at evaluation.

Each combines with a training method (``WSOLTraining``, ``--wsol-method``): ``cam`` (plain
cross-entropy), ``has`` (Hide-and-Seek on the batch), ``adl`` (ADL layers in the model),
``cutmix`` (CutMix batch and loss), ``acol`` and ``spg`` (their heads and losses). Under CutMix
CREAM's bank is updated with each image's own label (the label of the image the box was pasted
into, whose share of the pixels is ``lam``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit import (
    ACoLOutput,
    SPGOutput,
    acol_loss,
    class_activation_map,
    cutmix,
    cutmix_loss,
    hide_patches,
    normalize_map,
    spg_loss,
    upsample_map,
)
from camkit.boxes import threshold_grid
from camkit.cream import ContextEmbeddingBank, cream_map
from camkit.metrics import BoxAccuracy, LocalizationAccuracy, PixelAP

from .backbones import WSOLNet
from .config import WSOL_DEFAULTS, WSOL_METHODS
from .data import EvalSplit, load_masks
from .distributed import Runtime, all_reduce_sum

__all__ = [
    "EvalOptions",
    "WSOLTraining",
    "autocast",
    "evaluate",
    "localization_maps",
    "progress",
    "summarize_training",
    "train_epoch",
]


@dataclass(frozen=True)
class EvalOptions:
    """Evaluation settings."""

    method: str
    size: int  # evaluation image size (the protocol: 224)
    curve_interval: float = 0.01  # score-map threshold grid of MaxBoxAccV2 / PxAP
    loc_rule: str = "max"  # fixed-threshold rule of GT-known / top-1 / top-5 loc
    loc_theta: float | None = None
    cream_scale: float = 8.0
    cream_iterations: int = 2
    mask_root: Path | None = None
    normalization: str = "minmax"  # per-map normalization: "minmax" or "ivr" (CAM_IVR)


@dataclass(frozen=True)
class WSOLTraining:
    """How a training step changes the batch and the loss (defaults: ``config.WSOLDefaults``).

    ``spg_size`` is the resolution of SPG's guidance masks (the protocol: 224, its crop).
    ``generator`` is None: every draw comes from PyTorch's default generators, whose states the
    checkpoints save, so a resumed run draws what an uninterrupted one would.
    """

    method: str = "cam"
    has_grid: int = WSOL_DEFAULTS.has_grid
    has_prob: float = WSOL_DEFAULTS.has_prob
    cutmix_alpha: float = WSOL_DEFAULTS.cutmix_alpha
    cutmix_prob: float = WSOL_DEFAULTS.cutmix_prob
    spg_size: int = 224

    def __post_init__(self) -> None:
        if self.method not in WSOL_METHODS:
            raise ValueError(f"--wsol-method must be one of {WSOL_METHODS}, got "
                             f"{self.method!r}")

    def step(self, model: nn.Module, images: Tensor, labels: Tensor,
             runtime: Runtime) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, logits, features)`` of one training batch (images augmented here)."""
        partner, lam = labels, 1.0
        if self.method == "has":
            images = hide_patches(images, self.has_grid, self.has_prob)
        elif self.method == "cutmix":
            mixed = cutmix(images, labels, self.cutmix_alpha, prob=self.cutmix_prob)
            images, partner, lam = mixed.images, mixed.partner_labels, mixed.lam
        with autocast(runtime):
            output, features = model(images, labels)
        if isinstance(output, ACoLOutput):
            output = output._replace(logits=output.logits.float(),
                                     logits_b=output.logits_b.float())
            return acol_loss(output, labels), output.logits, features
        if isinstance(output, SPGOutput):
            output = SPGOutput(*(t.float() for t in output))
            return spg_loss(output, labels, size=self.spg_size), output.logits, features
        logits = output.float()
        if self.method == "cutmix":
            return cutmix_loss(logits, labels, partner, lam), logits, features
        return F.cross_entropy(logits, labels), logits, features


def progress(iterable: object, total: int, description: str, enabled: bool) -> object:
    """Wrap ``iterable`` in a progress bar on stderr (tqdm when installed)."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=description, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def autocast(runtime: Runtime) -> torch.autocast:
    return torch.autocast(runtime.device.type, dtype=runtime.amp_dtype or torch.bfloat16,
                          enabled=runtime.amp_dtype is not None)


def localization_maps(net: WSOLNet, features: Tensor, classes: Tensor, *, method: str,
                      bank: ContextEmbeddingBank | None, size: int, scale: float = 8.0,
                      iterations: int = 2, normalization: str = "minmax") -> Tensor:
    """Score maps ``Tensor[B, size, size]`` in [0, 1] of ``classes`` from ``features``.

    CAM (NWC for ``rcam``) or CREAM's map at feature resolution, then bicubic upsampling and
    per-image normalization (the protocol's order): min-max, or ``"ivr"`` (inferior value
    removal, the CAM_IVR rows of CREAM's Table 1).
    """
    features = features.float()
    weight = net.cam_weight().detach().float()
    cam = class_activation_map(features, weight, classes, clamp_negative=method == "rcam")
    if method == "cream":
        if bank is None:
            raise ValueError("method 'cream' needs the context-embedding bank, got None")
        fg, bg = bank.lookup(classes)
        maps = cream_map(features, fg, bg, cam=cam, scale=scale, iterations=iterations)
    else:
        maps = cam
    return normalize_map(upsample_map(maps, size), method=normalization)


def train_epoch(model: nn.Module, net: WSOLNet, bank: ContextEmbeddingBank | None,
                loader: torch.utils.data.DataLoader, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, runtime: Runtime, *,
                totals: Tensor | None = None, max_steps: int | None = None,
                after_step: Callable[[int, Tensor], None] | None = None,
                first_step: int = 0, show_progress: bool = False,
                wsol: WSOLTraining | None = None) -> Tensor:
    """One epoch of training by ``wsol`` (default: cross-entropy), and bank updates for CREAM.

    Args:
        model: what is called on the images (``net``, or its DDP / compiled wrapper).
        net: the plain ``WSOLNet`` (its classifier weight forms the bank's CAMs).
        totals: running ``float64 [loss_sum, correct, count]`` of this process, to continue
            an interrupted epoch.
        max_steps: stop after this many steps of this epoch (counting ``first_step``).
        after_step: called with ``(steps done in this epoch, totals)`` after every step.
        first_step: steps of this epoch already done before (the loader skips them).
        wsol: the training method; the bank learns each image's own label (under CutMix, the
            image the box was pasted into).

    Returns:
        ``totals`` of this process.
    """
    model.train()
    totals = torch.zeros(3, dtype=torch.float64) if totals is None else totals.clone()
    step = first_step
    bar = progress(loader, len(loader), "train", show_progress and runtime.is_main)
    for images, labels, _ in bar:
        if max_steps is not None and step >= max_steps:
            break
        images = images.to(runtime.device, non_blocking=True)
        labels = labels.to(runtime.device, non_blocking=True)
        loss, logits, features = (wsol or WSOLTraining()).step(model, images, labels, runtime)
        if bank is not None:
            with torch.no_grad():
                detached = features.detach().float()
                cam = class_activation_map(detached, net.cam_weight().detach().float(), labels)
                bank.update(detached, cam, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        batch = labels.shape[0]
        totals += torch.tensor([float(loss.detach()) * batch,
                                float((logits.argmax(1) == labels).sum()), float(batch)],
                               dtype=torch.float64)
        step += 1
        if after_step is not None:
            after_step(step, totals)
    return totals


def summarize_training(totals: Tensor, runtime: Runtime) -> dict[str, float]:
    """Global mean loss and top-1 accuracy (percent) of an epoch."""
    loss_sum, correct, count = all_reduce_sum(totals, runtime).tolist()
    count = max(count, 1.0)
    return {"loss": loss_sum / count, "top1": 100.0 * correct / count, "images": int(count)}


def _save_scoremaps(folder: Path, image_ids: list[str], maps: np.ndarray) -> None:
    """``<folder>/<image_id>.npy`` per map, the reference layout (written atomically)."""
    from camkit.data.wsol_metadata import safe_join

    for image_id, scoremap in zip(image_ids, maps, strict=True):
        path = safe_join(folder, image_id + ".npy", "image id")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "wb") as handle:
            np.save(handle, scoremap.astype(np.float32))
        temporary.replace(path)


@torch.no_grad()
def evaluate(net: WSOLNet, bank: ContextEmbeddingBank | None, split: EvalSplit,
             loader: torch.utils.data.DataLoader, runtime: Runtime, options: EvalOptions, *,
             scoremap_dir: Path | None = None, model: nn.Module | None = None,
             show_progress: bool = False) -> dict:
    """Classification and localization figures of ``split`` (all processes together).

    ``model`` is what is called on the images (default ``net``; e.g. ``net`` compiled). Under
    DDP pass the plain or compiled ``net``, not the DDP wrapper: processes may evaluate
    different numbers of batches.

    Boxes: MaxBoxAccV2 (and MaxBoxAcc at IoU 0.5 for each threshold), GT-known, top-1 and
    top-5 localization. Masks: PxAP. Always: top-1 / top-5 classification.
    """
    net.eval()
    grid = threshold_grid(options.curve_interval)
    boxes = BoxAccuracy(thresholds=grid) if split.boxes is not None else None
    located = LocalizationAccuracy(rule=options.loc_rule, theta=options.loc_theta) \
        if split.boxes is not None else None
    pixels = PixelAP(thresholds=grid) if split.masks is not None else None
    if bank is not None and options.method == "cream":
        unseen = bank.unseen_classes()
        if unseen.numel() and runtime.is_main:
            warnings.warn(f"{unseen.numel()} classes have CREAM embeddings never updated in "
                          "training; their maps start from random embeddings", stacklevel=2)
    counts = torch.zeros(3, dtype=torch.float64)  # top-1, top-5, images
    bar = progress(loader, len(loader), f"eval {split.name}", show_progress and runtime.is_main)
    for images, labels, indices in bar:
        images = images.to(runtime.device, non_blocking=True)
        labels = labels.to(runtime.device, non_blocking=True)
        with autocast(runtime):
            logits, features = (net if model is None else model)(images)
        logits = logits.float()
        scoremaps = localization_maps(net, features, labels, method=options.method, bank=bank,
                                      size=options.size, scale=options.cream_scale,
                                      iterations=options.cream_iterations,
                                      normalization=options.normalization)
        host = scoremaps.cpu().numpy()
        index_list = indices.tolist()
        if boxes is not None and located is not None and split.boxes is not None:
            targets = [split.boxes[i] for i in index_list]
            boxes.update(host, targets)
            located.update(host, targets, logits.cpu(), labels.cpu())
        if pixels is not None:
            assert options.mask_root is not None
            pixels.update(host, load_masks(options.mask_root, split, index_list, options.size))
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        counts += torch.tensor([float((top5[:, 0] == labels).sum()),
                                float((top5 == labels[:, None]).any(1).sum()),
                                float(labels.shape[0])], dtype=torch.float64)
        if scoremap_dir is not None:
            _save_scoremaps(scoremap_dir, [split.image_ids[i] for i in index_list], host)
    top1, top5, total = all_reduce_sum(counts, runtime).tolist()
    result: dict = {"images": int(total), "top1_cls": 100.0 * top1 / max(total, 1.0),
                    "top5_cls": 100.0 * top5 / max(total, 1.0)}
    if boxes is not None and located is not None:
        box_result = boxes.sync().compute()
        result["max_box_acc_v2"] = box_result.max_box_acc_v2
        result["max_box_acc"] = {str(k): v for k, v in box_result.max_box_acc.items()}
        result["best_threshold"] = {str(k): v for k, v in box_result.best_threshold.items()}
        result.update(located.sync().compute().to_dict())
        result.pop("num_images", None)
        result["top1_loc"] = result.pop("top1")
        result["top5_loc"] = result.pop("top5")
    if pixels is not None:
        result["pxap"] = pixels.sync().compute().pxap
    return result
