"""CREAM's regressor variant: pseudo boxes from the trained model, a class-agnostic regressor.

1. ``pseudo_boxes``: for every training image (evaluation transform), the trained model's map
   of its label class (CREAM's map for ``--method cream``), the box of the largest contour at
   a threshold (by default the one that maximized MaxBoxAcc at IoU 0.5 on ``val``),
   normalized to [0, 1] by the image size.
2. ``BoxRegressor``: a fresh backbone of the same architecture, global average pooling and a
   linear layer to four sigmoid outputs ``x0, y0, x1, y1``; trained with the mean squared
   error on the normalized coordinates.
3. ``evaluate_regressor``: the classifier's classes with the regressor's box: GT-known
   (IoU >= 0.5 with a GT box), top-1 and top-5 localization.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit.boxes import box_iou, boxes_from_scoremap
from camkit.cream import ContextEmbeddingBank

from .backbones import WSOLNet, build_body, load_imagenet_weights
from .data import EvalSplit
from .distributed import Runtime, all_reduce_sum
from .engine import autocast, localization_maps, progress

__all__ = ["BoxRegressor", "evaluate_regressor", "pseudo_boxes", "train_regressor_epoch"]


class BoxRegressor(nn.Module):
    """``forward(x Tensor[B, 3, S, S]) -> Tensor[B, 4]`` normalized ``x0, y0, x1, y1``."""

    def __init__(self, backbone: str, *, large_feature_map: bool,
                 pretrained: str | None = None) -> None:
        super().__init__()
        body, channels, fresh, fast = build_body(backbone, large_feature_map=large_feature_map)
        if pretrained is not None:
            load_imagenet_weights(body, pretrained, fresh_prefixes=fresh)
        self.body = body
        self.head = nn.Linear(channels, 4)
        self.fast_prefixes = (*(f"body.{p}" for p in fast), "head.")

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
        return torch.sigmoid(self.head(pooled))

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        slow, fast = [], []
        for name, parameter in self.named_parameters():
            (fast if name.startswith(self.fast_prefixes) else slow).append(parameter)
        return slow, fast


@torch.no_grad()
def pseudo_boxes(net: WSOLNet, bank: ContextEmbeddingBank | None, loader: object, count: int,
                 runtime: Runtime, *, method: str, size: int, threshold: float,
                 show_progress: bool = False) -> Tensor:
    """``Tensor[count, 4]`` normalized pseudo boxes of the loader's images (all processes)."""
    net.eval()
    table = torch.zeros(count, 4, dtype=torch.float64)
    for images, labels, indices in progress(loader, len(loader), "pseudo boxes",
                                            show_progress and runtime.is_main):
        images = images.to(runtime.device)
        labels = labels.to(runtime.device)
        with autocast(runtime):
            _, features = net(images)
        maps = localization_maps(net, features, labels, method=method, bank=bank, size=size)
        found = boxes_from_scoremap(maps.cpu().numpy(), [threshold], multi_contour=False)
        for index, per_threshold in zip(indices.tolist(), found, strict=True):
            x0, y0, x1, y1 = np.asarray(per_threshold[0]).reshape(-1, 4)[0].tolist()
            table[index] = torch.tensor([x0, y0, x1 + 1, y1 + 1], dtype=torch.float64) / size
    return all_reduce_sum(table, runtime).float()  # each image is filled by one process


def train_regressor_epoch(model: nn.Module, loader: object, optimizer: torch.optim.Optimizer,
                          scaler: torch.amp.GradScaler, runtime: Runtime, *,
                          show_progress: bool = False) -> Tensor:
    """One epoch of MSE training; returns ``float64 [loss_sum, count]`` of this process."""
    model.train()
    totals = torch.zeros(2, dtype=torch.float64)
    for images, _, targets, _ in progress(loader, len(loader), "regressor",
                                          show_progress and runtime.is_main):
        images = images.to(runtime.device)
        targets = targets.to(runtime.device).float()
        with autocast(runtime):
            predicted = model(images)
        loss = F.mse_loss(predicted.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        totals += torch.tensor([float(loss.detach()) * targets.shape[0], targets.shape[0]],
                               dtype=torch.float64)
    return totals


def _to_pixels(normalized: Tensor, size: int) -> np.ndarray:
    """``(B, 4)`` normalized corners → inclusive int pixel boxes, coordinates ordered."""
    values = normalized.double().clamp(0.0, 1.0) * size
    x0 = torch.minimum(values[:, 0], values[:, 2])
    x1 = torch.maximum(values[:, 0], values[:, 2]) - 1
    y0 = torch.minimum(values[:, 1], values[:, 3])
    y1 = torch.maximum(values[:, 1], values[:, 3]) - 1
    boxes = torch.stack((x0, y0, torch.maximum(x0, x1), torch.maximum(y0, y1)), dim=1)
    return boxes.floor().clamp(0, size - 1).long().numpy()


@torch.no_grad()
def evaluate_regressor(net: WSOLNet, regressor: nn.Module, split: EvalSplit, loader: object,
                       runtime: Runtime, *, size: int, show_progress: bool = False
                       ) -> dict[str, float]:
    """GT-known, top-1 and top-5 localization (percent) of classifier + regressor."""
    if split.boxes is None:
        raise ValueError(f"the regressor is evaluated on boxes; split {split.name!r} has masks")
    net.eval()
    regressor.eval()
    counts = torch.zeros(4, dtype=torch.float64)  # gt-known, top-1, top-5, images
    for images, labels, indices in progress(loader, len(loader), f"regressor {split.name}",
                                            show_progress and runtime.is_main):
        images = images.to(runtime.device)
        with autocast(runtime):
            logits, _ = net(images)
            predicted = regressor(images)
        top5 = logits.float().topk(min(5, logits.shape[1]), dim=1).indices.cpu()
        boxes = _to_pixels(predicted.float().cpu(), size)
        for row, (index, label) in enumerate(zip(indices.tolist(), labels.tolist(), strict=True)):
            iou = float(np.max(box_iou(boxes[row:row + 1], split.boxes[index])))
            if iou >= 0.5:
                counts[0] += 1
                counts[1] += float(top5[row, 0] == label)
                counts[2] += float((top5[row] == label).any())
        counts[3] += labels.shape[0]
    known, top1, top5_count, total = all_reduce_sum(counts, runtime).tolist()
    scale = 100.0 / max(total, 1.0)
    return {"gt_known": known * scale, "top1_loc": top1 * scale, "top5_loc": top5_count * scale,
            "images": int(total)}
