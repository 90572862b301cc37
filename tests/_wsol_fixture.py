"""A tiny WSOL benchmark in the reference metadata layout, for the example-script tests.

Each image is a noisy background with one coloured rectangle whose colour is its class.
Images of split ``s`` live in ``<root>/images/<s>/c<k>/<n>.png``; metadata in
``<root>/metadata/<s>/`` (image ids, class labels, image sizes, one box per image).
``masks=True`` writes OpenImages-style mask metadata (and mask PNGs) for val/test instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 200, 40))


def _image(rng: np.random.Generator, size: int, label: int) -> tuple[np.ndarray, list[int]]:
    image = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    w, h = (int(v) for v in rng.integers(size // 3, size * 2 // 3, size=2))
    x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
    image[y0:y0 + h, x0:x0 + w] = COLOURS[label % len(COLOURS)]
    return image, [x0, y0, x0 + w - 1, y0 + h - 1]


def write_tiny_benchmark(root: Path, *, size: int = 64, classes: int = 4,
                         per_split: tuple[int, int, int] = (8, 4, 4), masks: bool = False,
                         seed: int = 0) -> tuple[Path, Path]:
    """Write the benchmark; returns ``(data_root, metadata_root)``.

    Labels cycle ``0, 1, ..., classes-1`` in file order, so any ``classes`` consecutive
    images have distinct classes.
    """
    rng = np.random.default_rng(seed)
    data_root, metadata_root = root / "images", root / "metadata"
    for split, count in zip(("train", "val", "test"), per_split, strict=True):
        folder = metadata_root / split
        folder.mkdir(parents=True)
        ids, labels, sizes, localization = [], [], [], []
        for number in range(count):
            label = number % classes
            image_id = f"{split}/c{label}/{number}.png"
            image, box = _image(rng, size, label)
            path = data_root / image_id
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            ids.append(image_id)
            labels.append(f"{image_id},{label}")
            sizes.append(f"{image_id},{size},{size}")
            if masks and split != "train":
                mask = np.zeros((size, size), dtype=np.uint8)
                mask[box[1]:box[3] + 1, box[0]:box[2] + 1] = 255
                mask_id = image_id.replace(".png", "_mask.png")
                Image.fromarray(mask).save(data_root / mask_id)
                localization.append(f"{image_id},{mask_id},")
            else:
                localization.append(f"{image_id},{box[0]},{box[1]},{box[2]},{box[3]}")
        (folder / "image_ids.txt").write_text("\n".join(ids) + "\n")
        (folder / "class_labels.txt").write_text("\n".join(labels) + "\n")
        (folder / "image_sizes.txt").write_text(
            "" if masks and split != "train" else "\n".join(sizes) + "\n")
        (folder / "localization.txt").write_text("\n".join(localization) + "\n")
    return data_root, metadata_root
