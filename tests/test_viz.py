"""Drawing helpers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from camkit import viz


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
