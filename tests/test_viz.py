"""Drawing helpers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from xml.etree import ElementTree

import numpy as np
import pytest
import torch

from camkit import viz
from camkit.metrics import box_accuracy, pixel_ap


def test_to_rgb_uint8_conversions():
    chw = torch.zeros(3, 4, 5)
    chw[0] = 1.0
    out = viz.to_rgb_uint8(chw)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()
    gray = viz.to_rgb_uint8(np.full((2, 2), 0.5))
    assert (gray == 128).all()
    with pytest.raises(TypeError, match="image must be a torch.Tensor or numpy.ndarray"):
        viz.to_rgb_uint8([1, 2])


def test_overlay_heatmap_extremes():
    image = np.zeros((8, 8, 3), np.uint8)
    scores = np.zeros((4, 4), np.float32)
    scores[:, 2:] = 1.0
    out = viz.overlay_heatmap(image, scores, alpha=1.0)
    # jet colormap: 0 -> dark blue, 1 -> dark red (RGB)
    assert out[0, 0, 2] > 100 and out[0, 0, 0] == 0
    assert out[0, 7, 0] > 100 and out[0, 7, 2] == 0
    untouched = viz.overlay_heatmap(image + 7, scores, alpha=0.0)
    assert (untouched == 7).all()
    with pytest.raises(ValueError, match="alpha must be in"):
        viz.overlay_heatmap(image, scores, alpha=2.0)
    with pytest.raises(ValueError, match="scoremap must be 2-D"):
        viz.overlay_heatmap(image, np.zeros((1, 4, 4)))


def test_draw_boxes_marks_the_outline():
    out = viz.draw_boxes(np.zeros((10, 10, 3), np.uint8), [[2, 3, 6, 7]], color=(255, 0, 0),
                         thickness=1)
    assert out[3, 2, 0] == 255 and out[7, 6, 0] == 255 and out[5, 4, 0] == 0
    assert (viz.draw_boxes(np.zeros((3, 3, 3), np.uint8), np.zeros((0, 4))) == 0).all()
    with pytest.raises(ValueError, match=r"boxes must be \(n, 4\)"):
        viz.draw_boxes(np.zeros((3, 3, 3), np.uint8), np.zeros((2, 3)))


def test_image_grid_layout():
    tile = np.full((6, 5, 3), 10, np.uint8)
    grid = viz.image_grid([[tile, tile], [tile]], column_titles=["a", "b"], pad=2, title_height=9)
    assert grid.shape == (9 + 2 * (6 + 2) + 2, 2 * (5 + 2) + 2, 3)
    assert (grid[9 + 2:9 + 8, 2:7] == 10).all()
    with pytest.raises(ValueError, match="all images must be 6x5"):
        viz.image_grid([[tile, np.zeros((3, 3, 3), np.uint8)]])


def test_plot_curves_draws_each_curve_colour():
    plot = viz.plot_curves({"a": ([0, 1], [0, 1]), "b": ([0, 1], [1, 0])}, title="t",
                           size=(200, 150))
    assert plot.shape == (150, 200, 3)
    for color in viz._PALETTE[:2]:
        assert np.all(plot == np.array(color, np.uint8), axis=2).any()
    with pytest.raises(ValueError, match="curves must hold at least one named curve"):
        viz.plot_curves({})


def test_save_png_round_trip(tmp_path):
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = viz.save_png(tmp_path / "sub" / "x.png", image)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_plot_ticks_are_round_values():
    assert viz._ticks(0.0, 0.99) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert str(viz._ticks(-1e-12, 0.5)[0]) == "0.0"
    assert viz._ticks(0.0, 100.0) == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert viz._ticks(3.0, 4.0) == [3.0, 3.2, 3.4, 3.6, 3.8, 4.0]


# ---------------------------------------------------------------------------------------------
# Figures: matplotlib when installed, OpenCV otherwise
# ---------------------------------------------------------------------------------------------
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CURVES = {"CAM": ([0.0, 0.5, 1.0], [10.0, 80.0, 30.0]),
          "CREAM": (np.array([0.0, 0.5, 1.0]), torch.tensor([20.0, 90.0, 40.0]))}


@pytest.fixture
def no_matplotlib(monkeypatch):
    """matplotlib "not installed": every import of it raises ImportError."""
    loaded = [name for name in sys.modules if name.split(".")[0] == "matplotlib"]
    for name in {*loaded, "matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"}:
        monkeypatch.setitem(sys.modules, name, None)


def _svg_texts(path) -> list[str]:
    root = ElementTree.parse(path).getroot()  # raises on malformed XML
    return ["".join(node.itertext()) for node in root.iter("{http://www.w3.org/2000/svg}text")]


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _pxap_result():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[:, 4:12, 4:12] = 1
    maps = np.clip(masks * 0.6 + rng.random(masks.shape) * 0.5, 0, 1)
    return pixel_ap(maps, masks), pixel_ap(rng.random(masks.shape), masks)


def test_matplotlib_writes_png_svg_and_pdf(tmp_path):
    pytest.importorskip("matplotlib")
    kwargs = dict(title="Box accuracy", xlabel="threshold", ylabel="accuracy",
                  y_range=(0, 100), y_percent=100.0)
    png = viz.save_curves(tmp_path / "c.png", CURVES, size=(800, 500), dpi=125, **kwargs)
    assert _png_size(png) == (800, 500)
    pdf = viz.save_curves(tmp_path / "c.PDF", CURVES, **kwargs)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]
    assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType fonts, as publishers ask
    texts = _svg_texts(viz.save_curves(tmp_path / "c.svg", CURVES, **kwargs))
    for text in ("CAM", "CREAM", "Box accuracy", "threshold", "accuracy", "100%", "40%"):
        assert text in texts, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.PDF", "c.png", "c.svg"]
    again = viz.save_curves(tmp_path / "again.svg", CURVES, **kwargs)
    assert again.read_bytes() == (tmp_path / "c.svg").read_bytes()  # no date, fixed ids


def test_matplotlib_leaves_the_users_settings_alone(tmp_path):
    """No pyplot (so no backend chosen, no figure registered) and rcParams as they were."""
    pytest.importorskip("matplotlib")
    code = f"""
import sys
import matplotlib
import numpy as np
from camkit import viz
matplotlib.rcParams["svg.fonttype"] = "path"
raw = lambda: dict(dict.items(matplotlib.rcParams))  # reading "backend" would pick one
before = raw()
viz.save_curves({str(tmp_path / "c.svg")!r}, {{"a": ([0, 1], [0, 1])}})
viz.plot_overlay(np.zeros((8, 8, 3)), np.eye(8))
print(raw() == before, "matplotlib.pyplot" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "False"]
    assert "a" in _svg_texts(tmp_path / "c.svg")  # text kept as text for this file only


def test_plot_curves_with_matplotlib_keeps_size_and_colours():
    pytest.importorskip("matplotlib")
    plot = viz.plot_curves({"a": ([0, 1], [0, 1]), "b": ([0, 1], [1, 0])}, title="t",
                           backend="matplotlib")
    assert plot.shape == (420, 640, 3) and plot.dtype == np.uint8
    for color in viz._PALETTE[:2]:
        assert np.all(plot == np.array(color, np.uint8), axis=2).any()
    figure = viz.curves_figure(CURVES, x_percent=1.0)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["CAM", "CREAM"]
    with pytest.raises(TypeError, match="figure must be a matplotlib.figure.Figure, got "
                                        "ndarray"):
        viz.save_figure("unused.png", plot)  # type: ignore[arg-type]


def test_opencv_fallback_without_matplotlib(tmp_path, no_matplotlib):
    with pytest.raises(ImportError):
        import matplotlib.figure  # noqa: F401
    plot = viz.plot_curves(CURVES, title="t", y_percent=100.0)
    np.testing.assert_array_equal(plot, viz.plot_curves(CURVES, title="t", y_percent=100.0,
                                                        backend="opencv"))
    assert plot.shape == (420, 640, 3)
    for color in viz._PALETTE[:2]:
        assert np.all(plot == np.array(color, np.uint8), axis=2).any()
    assert _png_size(viz.save_curves(tmp_path / "c.png", CURVES)) == (1280, 840)
    overlay = viz.plot_overlay(np.zeros((8, 8, 3)), np.eye(8), gt_boxes=[1, 1, 5, 5])
    assert overlay.shape == (440, 440, 3)
    assert _png_size(viz.save_overlay(tmp_path / "o.png", np.zeros((8, 8)), np.eye(8))) \
        == (880, 880)
    with pytest.raises(ImportError, match=r"writing a \.svg file needs matplotlib.*"
                                          r"camkit\[plots\].*or write a \.png"):
        viz.save_curves(tmp_path / "c.svg", CURVES)
    with pytest.raises(ImportError, match=r"writing a \.pdf file needs matplotlib"):
        viz.save_overlay(tmp_path / "o.pdf", np.zeros((8, 8)), np.eye(8))
    with pytest.raises(ImportError, match="backend='matplotlib' needs matplotlib"):
        viz.plot_curves(CURVES, backend="matplotlib")
    with pytest.raises(ImportError, match="backend='matplotlib' needs matplotlib"):
        viz.curves_figure(CURVES)
    with pytest.raises(ImportError, match="save_figure needs matplotlib"):
        viz.save_figure(tmp_path / "f.png", object())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "o.png"]


def test_unnormalize_matches_manual_computation():
    rng = np.random.default_rng(1)
    pixels = rng.random((3, 5, 6)).astype(np.float32)
    mean = torch.tensor(viz.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(viz.IMAGENET_STD)[:, None, None]
    normalized = (torch.from_numpy(pixels) - mean) / std
    manual = np.round(np.clip(normalized.permute(1, 2, 0).double().numpy()
                              * np.array(viz.IMAGENET_STD) + np.array(viz.IMAGENET_MEAN),
                              0, 1) * 255).astype(np.uint8)
    out = viz.to_rgb_uint8(normalized, mean=viz.IMAGENET_MEAN, std=viz.IMAGENET_STD)
    np.testing.assert_array_equal(out, manual)
    assert np.abs(out.astype(int) - np.round(pixels.transpose(1, 2, 0) * 255)).max() <= 1
    clipped = viz.to_rgb_uint8(normalized)  # without mean/std: clipped, not un-normalized
    assert np.abs(clipped.astype(int) - manual.astype(int)).max() > 50
    hwc = normalized.permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(viz.to_rgb_uint8(hwc, mean=torch.tensor(viz.IMAGENET_MEAN),
                                                   std=np.array(viz.IMAGENET_STD)), manual)
    gray = np.full((2, 2), -1.0)  # one value for a one-channel image; std left out (1)
    assert (viz.to_rgb_uint8(gray, mean=1.25) == 64).all()
    same = viz.overlay_heatmap(normalized, np.zeros((2, 2)), alpha=0.0,
                               mean=viz.IMAGENET_MEAN, std=viz.IMAGENET_STD)
    np.testing.assert_array_equal(same, manual)
    boxed = viz.draw_boxes(normalized, np.zeros((0, 4)), mean=viz.IMAGENET_MEAN,
                           std=viz.IMAGENET_STD)
    np.testing.assert_array_equal(boxed, manual)


def test_unnormalize_refusals():
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"mean must hold 1 or 3 values \(one per channel of "
                                         r"the image\), got 2"):
        viz.to_rgb_uint8(image, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="std must hold 1 or 1 values"):
        viz.to_rgb_uint8(np.zeros((4, 4)), std=viz.IMAGENET_STD)
    with pytest.raises(ValueError, match="std must be positive, got"):
        viz.to_rgb_uint8(image, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="mean must hold finite values"):
        viz.to_rgb_uint8(image, mean=float("nan"))
    with pytest.raises(TypeError, match="mean must be a number or one number per channel"):
        viz.to_rgb_uint8(image, mean="imagenet")
    with pytest.raises(TypeError, match="mean and std un-normalize float images, got an image "
                                        "of dtype uint8"):
        viz.overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.eye(4), mean=viz.IMAGENET_MEAN)


def test_overlay_svg_holds_class_name_legend_and_colour_bar(tmp_path):
    pytest.importorskip("matplotlib")
    image = torch.rand(3, 20, 30)
    scores = torch.rand(5, 7)
    path = viz.save_overlay(tmp_path / "o.svg", image, scores, label=torch.tensor([1]),
                            class_names=["cat", "golden retriever"], title="CREAM",
                            gt_boxes=torch.tensor([[2, 3, 10, 12]]), pred_boxes=[4, 4, 20, 15])
    texts = _svg_texts(path)
    for text in ("CREAM: golden retriever", "ground truth", "prediction", "score", "1.0"):
        assert text in texts, text
    texts = _svg_texts(viz.save_overlay(tmp_path / "d.svg", image, scores, label=7,
                                        class_names={7: "tabby cat"}, colorbar=False))
    assert "tabby cat" in texts and "score" not in texts and "ground truth" not in texts
    assert "class 3" in _svg_texts(viz.save_overlay(tmp_path / "n.svg", image, scores, label=3))
    figure = viz.overlay_figure(image, scores, label="dog")
    assert figure.axes[0].get_title() == "dog" and len(figure.axes[0].child_axes) == 1  # bar
    data = viz.save_figure(tmp_path / "f.pdf", figure).read_bytes()
    assert data.startswith(b"%PDF-")
    array = viz.plot_overlay(image, scores, label=1, class_names=["a", "b"], size=(300, 200))
    assert array.shape == (200, 300, 3)
    default = viz.plot_overlay(image, scores)
    assert default.shape[0] == 440 and default.shape[1] > 440  # wide image, wide figure


def test_overlay_opencv_draws_boxes_colour_bar_and_legend():
    image = np.full((10, 10, 3), 128, np.uint8)
    out = viz.plot_overlay(image, np.zeros((10, 10)), alpha=0.0, gt_boxes=[[0, 0, 4, 4]],
                           pred_boxes=np.array([[5, 5, 9, 9]]), gt_color=(0, 255, 0),
                           pred_color=(255, 0, 255), title="t", size=(400, 300),
                           backend="opencv")
    assert out.shape == (300, 400, 3)
    for color in ((0, 255, 0), (255, 0, 255), (128, 128, 128)):
        assert np.all(out == np.array(color, np.uint8), axis=2).any(), color
    jet = viz.overlay_heatmap(np.zeros((1, 2, 3)), np.array([[0.0, 1.0]]), alpha=1.0)[0]
    for color in jet:  # both ends of the colour bar
        assert np.all(out == color, axis=2).any()
    bare = viz.plot_overlay(image, np.zeros((10, 10)), alpha=0.0, colorbar=False,
                            size=(100, 100), backend="opencv")
    assert not np.all(bare == jet[1], axis=2).any()


def test_overlay_refusals():
    image, scores = np.zeros((4, 4)), np.zeros((4, 4))
    with pytest.raises(ValueError, match="label 5 is out of range for class_names of length 2"):
        viz.plot_overlay(image, scores, label=5, class_names=["a", "b"], backend="opencv")
    with pytest.raises(ValueError, match="label 2 is not a key of class_names"):
        viz.plot_overlay(image, scores, label=2, class_names={1: "a"}, backend="opencv")
    with pytest.raises(TypeError, match="class_names must be a sequence or a mapping of class "
                                        "names, got str"):
        viz.plot_overlay(image, scores, label=0, class_names="cat", backend="opencv")
    with pytest.raises(ValueError, match="class_names needs label="):
        viz.plot_overlay(image, scores, class_names=["a"], backend="opencv")
    with pytest.raises(TypeError, match="label must be an int class index or a str, got float"):
        viz.plot_overlay(image, scores, label=1.0, backend="opencv")
    with pytest.raises(TypeError, match="label must be an int class index or a str, got Tensor"):
        viz.plot_overlay(image, scores, label=torch.tensor([1, 2]), backend="opencv")
    with pytest.raises(ValueError, match=r"gt_boxes must be \(n, 4\) x0, y0, x1, y1"):
        viz.plot_overlay(image, scores, gt_boxes=[[1, 2, 3]], backend="opencv")
    with pytest.raises(ValueError, match=r"pred_color must be an RGB triple of ints in "
                                         r"\[0, 255\]"):
        viz.plot_overlay(image, scores, pred_boxes=[1, 1, 2, 2], pred_color=(1.0, 0.0, 0.0),
                         backend="opencv")
    with pytest.raises(TypeError, match="colorbar must be True or False, got 'no'"):
        viz.plot_overlay(image, scores, colorbar="no", backend="opencv")
    with pytest.raises(TypeError, match="colorbar_label must be a str, got NoneType"):
        viz.plot_overlay(image, scores, colorbar_label=None, backend="opencv")


def test_pr_curve_area_is_the_pxap(tmp_path):
    good, bad = _pxap_result()
    curves = viz.pr_curves({"good": good, "bad": bad})
    assert list(curves) == [f"good (PxAP {good.pxap:.1f})", f"bad (PxAP {bad.pxap:.1f})"]
    for (recall, precision), result in zip(curves.values(), (good, bad), strict=True):
        assert recall[0] == 0.0 and np.all(np.diff(recall) >= 0)
        assert not np.isnan(precision).any()
        assert np.trapezoid(precision, recall) * 100 == pytest.approx(result.pxap, abs=1e-9)
    assert list(viz.pr_curves(good)) == [f"PxAP {good.pxap:.1f}"]
    assert viz.plot_pr_curve(good, backend="opencv").shape == (420, 640, 3)
    if importlib.util.find_spec("matplotlib") is not None:
        texts = _svg_texts(viz.save_pr_curve(tmp_path / "pr.svg", {"CAM": good, "CREAM": bad}))
        for text in ("recall", "precision", "100%", "40%", "Pixel precision-recall",
                     f"CAM (PxAP {good.pxap:.1f})"):
            assert text in texts, text
    with pytest.raises(TypeError, match="results must be a PixelAPResult or a non-empty "
                                        "mapping name -> PixelAPResult, got dict"):
        viz.pr_curves({})
    with pytest.raises(TypeError, match="got dict"):
        viz.plot_pr_curve(good.to_dict())


def test_threshold_curves_of_box_accuracy(tmp_path):
    maps = np.zeros((2, 16, 16))
    maps[:, 4:12, 4:12] = np.linspace(0.2, 1.0, 8)[None, :, None]
    boxes = [np.array([[4, 4, 12, 12]])] * 2
    result = box_accuracy(maps, boxes)
    single = viz.threshold_curves(result)
    assert list(single) == [f"IoU ≥ {iou:g} (MaxBoxAcc {result.max_box_acc[iou]:.1f})"
                            for iou in result.curves]
    xs, ys = next(iter(single.values()))
    np.testing.assert_array_equal(xs, result.thresholds)
    np.testing.assert_array_equal(ys, result.curves[0.3])
    several = viz.threshold_curves({"CAM": result, "RCAM": result})
    assert list(several) == [f"{name} (MaxBoxAcc {result.max_box_acc[0.5]:.1f})"
                             for name in ("CAM", "RCAM")]
    assert len(viz.threshold_curves(result, iou_threshold=0.7)) == 1
    plot = viz.plot_threshold_curves({"CAM": result}, backend="opencv")
    assert plot.shape == (420, 640, 3)
    png = viz.save_threshold_curves(tmp_path / "t.png", result, size=(320, 200), dpi=50)
    assert _png_size(png) == (320, 200)
    with pytest.raises(ValueError, match=r"iou_threshold must be one of \[0\.3, 0\.5, 0\.7\] "
                                         r"\(the IoU thresholds of results\), got 0\.9"):
        viz.threshold_curves(result, iou_threshold=0.9)
    with pytest.raises(ValueError, match=r"thresholds of results\['CAM'\]\), got 0\.9"):
        viz.threshold_curves({"CAM": result}, iou_threshold=0.9)


def test_curve_refusals(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in \.png, \.svg or \.pdf, got '.*c\.jpg'"):
        viz.save_curves(tmp_path / "c.jpg", CURVES)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        viz.save_curves(3, CURVES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be 'auto', 'matplotlib' or 'opencv', "
                                         "got 'cairo'"):
        viz.plot_curves(CURVES, backend="cairo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"backend='opencv' draws PNG only, got a \.svg path"):
        viz.save_curves(tmp_path / "c.svg", CURVES, backend="opencv")
    with pytest.raises(TypeError, match="curves must be a mapping name -> \\(xs, ys\\), got list"):
        viz.plot_curves([([0, 1], [0, 1])])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"curves\['a'\] must be a pair \(xs, ys\), got ndarray"):
        viz.plot_curves({"a": np.zeros(3)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"curves\['a'\] has 2 x values and 3 y values; they "
                                         r"must match"):
        viz.plot_curves({"a": ([0, 1], [0, 1, 2])})
    with pytest.raises(TypeError, match=r"curves\['a'\] must hold numbers, got list"):
        viz.plot_curves({"a": (["x"], [1])})
    with pytest.raises(ValueError, match="curves must hold at least one point"):
        viz.plot_curves({"a": ([float("nan")], [1.0]), "b": ([], [])})
    with pytest.raises(ValueError, match=r"size must hold positive ints \(width, height\)"):
        viz.plot_curves(CURVES, size=(0, 10))
    with pytest.raises(TypeError, match=r"size must be a pair \(width, height\) of ints"):
        viz.plot_curves(CURVES, size=640)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dpi must be a positive number, got -1"):
        viz.plot_curves(CURVES, dpi=-1)
    with pytest.raises(ValueError, match=r"y_range must be a pair \(low, high\) of finite "
                                         r"numbers with low < high, got \(1, 0\)"):
        viz.plot_curves(CURVES, y_range=(1, 0))
    with pytest.raises(ValueError, match="x_percent must be None or the positive data value "
                                         "shown as 100%, got 0"):
        viz.plot_curves(CURVES, x_percent=0)
    with pytest.raises(TypeError, match="title must be a str, got int"):
        viz.plot_curves(CURVES, title=1)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_opencv_curves_break_at_nan_and_scale_with_dpi():
    curves = {"a": ([0, 1, 2, 3], [0, 1, float("nan"), 1])}
    small = viz.plot_curves(curves, backend="opencv", size=(320, 210), dpi=50)
    large = viz.plot_curves(curves, backend="opencv", size=(1280, 840), dpi=200)
    assert small.shape == (210, 320, 3) and large.shape == (840, 1280, 3)
    blue = np.array(viz._PALETTE[0], np.uint8)
    assert np.all(large == blue, axis=2).sum() > 4 * np.all(small == blue, axis=2).sum()


def test_viz_import_stays_light():
    code = ("import sys, camkit.viz; "
            "print([m for m in ('torch', 'matplotlib', 'cv2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
