"""Package-level contracts: cheap import, version, public surface."""

from __future__ import annotations

import subprocess
import sys

import camkit


def test_version_comes_from_metadata():
    from importlib.metadata import version

    assert camkit.__version__ == version("camkit")


def test_import_is_cheap():
    code = (
        "import sys, camkit; "
        "heavy = [m for m in ('torch', 'cv2', 'torchvision', 'matplotlib') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve():
    for name in camkit.__all__:
        assert getattr(camkit, name) is not None, name


def test_unknown_attribute_raises():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        camkit.nope  # noqa: B018


def test_public_names_load_on_first_use_and_stay():
    import camkit.localizer

    assert set(camkit._LAZY_ATTRIBUTES) == set(camkit.__all__) - {"__version__"}
    assert set(camkit.__all__) <= set(dir(camkit))
    assert {"boxes", "metrics", "cli"} <= set(dir(camkit))
    assert camkit.attach is camkit.localizer.attach
    assert vars(camkit)["attach"] is camkit.localizer.attach  # cached after the first lookup
    from camkit import cream_map

    assert cream_map.__module__ == "camkit.cream.em"
    code = ("import camkit; print(camkit.cream.cream_map is camkit.cream_map, "
            "camkit.threshold.percentile_threshold is camkit.percentile_threshold)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["True", "True"]  # submodules, as before the lazy import


def test_score_map_evaluation_runs_without_torch():
    """The metrics on NumPy input and ``camkit eval`` (its parser, its worker initializer and the
    score-map reader) never import PyTorch, so each ``--workers`` process starts quickly."""
    code = """
import sys
import numpy as np
from camkit.cli import _build_parser
from camkit._eval_cli import single_threaded_worker, load_scoremap
from camkit.boxes import box_iou, boxes_from_scoremap, resize_boxes
from camkit.metrics import BoxAccuracy, PixelAP
from camkit.data.wsol_metadata import load_wsol_metadata
_build_parser()
single_threaded_worker()
scoremap = np.zeros((1, 8, 8))
scoremap[0, 2:5, 3:6] = 1.0
box_metric = BoxAccuracy([0.0, 0.5])
box_metric.update(scoremap, [np.array([[3, 2, 6, 5]])])  # x1 = x + w, as the protocol
assert box_metric.compute().max_box_acc_v2 == 100.0
pixel_metric = PixelAP([0.0, 0.5])
pixel_metric.update(scoremap, (scoremap > 0).astype(np.uint8))
pixel_metric.compute()
box_iou(np.array([[0, 0, 1, 1]]), np.array([[0, 0, 1, 1]]))
resize_boxes(np.array([[0, 0, 9, 9]]), (10, 10), (20, 20))
boxes_from_scoremap(scoremap[0], [0.5])
print("torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "camkit", "--version"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == f"camkit {camkit.__version__}"
