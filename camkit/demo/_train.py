"""Training loop of the demo: image labels only, CREAM's embeddings learned on the way."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit._progress import ProgressBar
from camkit.cam import class_activation_map
from camkit.cream import ContextEmbeddingBank
from camkit.localizer import Localizer

__all__ = ["BatchOf", "TrainingLog", "capture_outputs", "flipped_batches", "random_flip",
           "render_split", "train"]

#: ``batch_of(index, generator)``: the model input of the training items ``index`` (with
#: their random augmentation drawn from ``generator``).
BatchOf = Callable[[Tensor, torch.Generator], Tensor]


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """``x (Tensor[B, C, h, w])`` with each item flipped horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def flipped_batches(inputs: Tensor) -> BatchOf:
    """Batches of ``inputs (Tensor[N, ...])`` with a random half flipped horizontally."""
    return lambda index, generator: random_flip(inputs[index].float(), generator)


@contextmanager
def capture_outputs(module: nn.Module | None) -> Iterator[list[Tensor]]:
    """Collect ``module``'s (detached) outputs while the block runs; the hook is removed on
    exit, also after an exception. ``None`` collects nothing."""
    outputs: list[Tensor] = []
    handle = None if module is None else module.register_forward_hook(
        lambda _m, _i, out: outputs.append(out.detach()))
    try:
        yield outputs
    finally:
        if handle is not None:
            handle.remove()


class ItemDataset(Protocol):
    """Random access to dict items: a list of them or a map-style ``torch.utils.data.Dataset``
    with ``__len__``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Tensor]: ...


@dataclass
class TrainingLog:
    """Per-epoch mean loss and training accuracy (percent), and the wall time in seconds."""

    loss: list[float]
    accuracy: list[float]
    seconds: float


def render_split(dataset: ItemDataset, description: str, progress: bool | None,
                 workers: int = 0) -> dict[str, Tensor]:
    """Render every item once: ``uint8 (N, 3, S, S)`` images, labels, boxes and masks of the
    whole object and of its class-specific part.

    ``workers`` > 0 renders in that many processes (``torch.utils.data.DataLoader``); every
    item is drawn from its own seed, so the bytes do not depend on the count.
    """
    keys = ("label", "box", "mask", "part_box", "part_mask")
    count = len(dataset)
    batch = 32
    loader: torch.utils.data.DataLoader[dict[str, Tensor]] = torch.utils.data.DataLoader(
        dataset, batch_size=batch, num_workers=workers)  # type: ignore[arg-type]
    bar = ProgressBar(-(-count // batch), description, enabled=progress)
    parts: dict[str, list[Tensor]] = {"images": [], **{key: [] for key in keys}}
    with bar:
        for items in loader:
            parts["images"].append((items["image"] * 255).round().to(torch.uint8))
            for key in keys:
                parts[key].append(items[key])
            bar.update()
    return {"images": torch.cat(parts["images"]), "labels": torch.cat(parts["label"]),
            "boxes": torch.cat(parts["box"]), "masks": torch.cat(parts["mask"]),
            "part_boxes": torch.cat(parts["part_box"]),
            "part_masks": torch.cat(parts["part_mask"])}


def train(
    loc: Localizer,
    model: nn.Module,
    batch_of: BatchOf,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    extra_banks: dict[str, ContextEmbeddingBank] | None = None,
    progress: bool | None = None,
    feature_module: nn.Module | None = None,
    classifier_weight: Callable[[], Tensor] | None = None,
) -> TrainingLog:
    """Train ``model`` on the items of ``labels (Tensor[N])`` through its camkit handle
    ``loc`` (which updates CREAM's bank); ``batch_of`` gives each batch's input.

    ``extra_banks`` (name → bank) learn from the same features and label-class CAMs as
    the handle's own bank; they feed the momentum sensitivity study. They need
    ``feature_module`` (the layer whose output the CAM is formed from) and
    ``classifier_weight`` (returns the live classifier weight).
    """
    generator = torch.Generator().manual_seed(seed)
    count = labels.shape[0]
    steps_per_epoch = math.ceil(count / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    if extra_banks and (feature_module is None or classifier_weight is None):
        raise ValueError("extra_banks need feature_module and classifier_weight")
    log = TrainingLog([], [], 0.0)
    start = time.perf_counter()
    bar = ProgressBar(epochs * steps_per_epoch, "train", enabled=progress)
    with capture_outputs(feature_module if extra_banks else None) as captured, bar:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(count, generator=generator)
            total_loss, correct = 0.0, 0
            for step in range(steps_per_epoch):
                index = order[step * batch_size:(step + 1) * batch_size]
                x = batch_of(index, generator)
                y = labels[index]
                captured.clear()
                logits = loc(x, labels=y)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if extra_banks and captured:
                    assert classifier_weight is not None  # extra_banks come with it
                    with torch.no_grad():
                        cam = class_activation_map(captured[-1], classifier_weight(), y)
                        for bank in extra_banks.values():
                            bank.update(captured[-1], cam, y)
                total_loss += loss.item() * x.shape[0]
                correct += int((logits.argmax(1) == y).sum())
                bar.update()
                bar.set_postfix(f"loss {loss.item():.3f}")
            log.loss.append(total_loss / count)
            log.accuracy.append(100.0 * correct / count)
    model.eval()
    log.seconds = time.perf_counter() - start
    return log
