"""Datasets in the WSOL reference metadata layout, the protocol's transforms, and samplers.

Layout: ``<metadata_root>/<split>/{image_ids,class_labels,image_sizes,localization}.txt`` with
image paths relative to ``<data_root>``. Transforms: training resizes to ``resize x resize``,
crops ``crop x crop`` at random and flips at random; evaluation resizes to ``crop x crop``.

Random augmentation draws from a generator seeded by ``(seed, epoch, index)`` only, so a
sample is augmented identically whatever the number of processes, workers, or restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

from camkit.data.wsol_metadata import (
    MaskAnnotation,
    MetadataError,
    load_mask,
    load_wsol_metadata,
    read_class_labels,
    read_image_ids,
    resized_gt_boxes,
    safe_join,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalSplit",
    "ResumableDistributedSampler",
    "ShardSampler",
    "WSOLImages",
    "load_eval_split",
    "load_train_split",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * 0x9E3779B1 + epoch * 0x85EBCA77 + index * 0xC2B2AE3D + 1) % (2**63 - 1)


@dataclass(frozen=True)
class EvalSplit:
    """An evaluation split: ids, labels and GT at the evaluation size."""

    name: str
    folder: Path
    image_ids: list[str]
    labels: list[int]
    boxes: list[np.ndarray] | None  # (n_i, 4) int64 boxes at crop x crop
    masks: list[MaskAnnotation] | None


def _check_images(data_root: Path, image_ids: list[str], source: Path) -> None:
    for image_id in image_ids:
        path = safe_join(data_root, image_id, "image id")
        if not path.is_file():
            raise FileNotFoundError(
                f"image {str(path)!r} (image id {image_id!r} listed in {str(source)!r}) "
                "does not exist; check --data-root"
            )


def load_train_split(metadata_root: Path, data_root: Path, *, check_images: bool = True
                     ) -> tuple[list[str], list[int]]:
    """Image ids and class labels of ``<metadata_root>/train`` (localization is not needed)."""
    folder = Path(metadata_root) / "train"
    for name in ("image_ids.txt", "class_labels.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"training metadata {str(folder / name)!r} does not exist; "
                                    "check --metadata-root")
    ids = read_image_ids(folder / "image_ids.txt")
    table = read_class_labels(folder / "class_labels.txt")
    missing = [i for i in ids if i not in table]
    if missing:
        raise MetadataError(f"{folder / 'class_labels.txt'}: no class label for image id "
                            f"{missing[0]!r} ({len(missing)} ids missing)")
    if check_images:
        _check_images(Path(data_root), ids, folder / "image_ids.txt")
    return ids, [table[i] for i in ids]


def load_eval_split(metadata_root: Path, data_root: Path, split: str, size: int, *,
                    check_images: bool = True) -> EvalSplit:
    """Read ``<metadata_root>/<split>`` with GT boxes scaled to ``size x size`` (or masks)."""
    meta = load_wsol_metadata(Path(metadata_root) / split)
    if check_images:
        _check_images(Path(data_root), meta.image_ids, meta.folder / "image_ids.txt")
    labels = [meta.class_labels[i] for i in meta.image_ids]
    if meta.boxes is not None:
        table = resized_gt_boxes(meta, (size, size))
        return EvalSplit(split, meta.folder, meta.image_ids, labels,
                         [table[i] for i in meta.image_ids], None)
    assert meta.masks is not None
    return EvalSplit(split, meta.folder, meta.image_ids, labels, None,
                     [meta.masks[i] for i in meta.image_ids])


def load_masks(mask_root: Path, split: EvalSplit, indices: list[int], size: int) -> np.ndarray:
    """``(B, size, size)`` uint8 masks (0 background, 1 foreground, 255 ignore)."""
    assert split.masks is not None
    return np.stack([load_mask(mask_root, split.masks[i], (size, size)) for i in indices])


class WSOLImages(Dataset):
    """Images of one split with the protocol's transforms.

    Items are ``(image Tensor[3, S, S], label, index)``, or with ``boxes`` (normalized
    ``Tensor[N, 4]`` targets of the regressor) ``(image, label, box Tensor[4], index)``.

    Args:
        data_root: folder the image ids are relative to.
        image_ids, labels: the split's ids and class indices.
        train: random crop and flip (``resize`` then ``crop``) instead of resizing to ``crop``.
        resize, crop: the protocol's 256 and 224.
        seed: augmentation seed; call ``set_epoch`` before each epoch.
        boxes: normalized ``x0, y0, x1, y1`` per image; with ``train`` they are flipped along
            with the image (no random crop then: the image is resized to ``crop``).
    """

    def __init__(self, data_root: Path, image_ids: list[str], labels: list[int], *,
                 train: bool, resize: int = 256, crop: int = 224, seed: int = 0,
                 boxes: Tensor | None = None) -> None:
        self.data_root = Path(data_root)
        self.image_ids = list(image_ids)
        self.labels = list(labels)
        self.train = train
        self.resize = resize
        self.crop = crop
        self.seed = seed
        self.boxes = boxes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.image_ids)

    def _load(self, index: int) -> Image.Image:
        path = safe_join(self.data_root, self.image_ids[index], "image id")
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise FileNotFoundError(f"cannot read image {str(path)!r} (image id "
                                    f"{self.image_ids[index]!r}): {error}") from error

    def __getitem__(self, index: int) -> tuple:
        image = self._load(index)
        box = None if self.boxes is None else self.boxes[index].clone()
        flip = False
        if self.train:
            generator = torch.Generator().manual_seed(_sample_seed(self.seed, self.epoch, index))
            if box is None:
                image = TF.resize(image, [self.resize, self.resize])
                span = self.resize - self.crop + 1
                top, left = torch.randint(0, span, (2,), generator=generator).tolist()
                image = TF.crop(image, top, left, self.crop, self.crop)
            else:
                image = TF.resize(image, [self.crop, self.crop])
            flip = bool(torch.rand((), generator=generator) < 0.5)
        else:
            image = TF.resize(image, [self.crop, self.crop])
        tensor = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
        if flip:
            tensor = tensor.flip(-1)
            if box is not None:
                box = torch.stack((1 - box[2], box[1], 1 - box[0], box[3]))
        if box is None:
            return tensor, self.labels[index], index
        return tensor, self.labels[index], box, index


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` in order: no padding, so no image counts twice."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can skip the first ``skip`` samples of this rank's epoch.

    With one process (``num_replicas=1``) it is a seeded shuffle; with ``W`` processes each
    global batch of ``W * B`` samples is the same set as the single-process batch of that size.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool,
                 seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.skip = 0

    def set_skip(self, skip: int) -> None:
        self.skip = max(0, int(skip))

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)

