"""camkit.boxes: box IoU, boxes from score maps (against cv2.findContours), resizing.

Tests taking ``box_path`` run on the compiled kernel and on the per-set contour searches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from wsol_reference import oracle_boxes, oracle_iou

from camkit.boxes import (
    ThresholdBoxes,
    _engine,
    box_iou,
    boxes_from_scoremap,
    resize_boxes,
    threshold_boxes,
    threshold_grid,
)

GRID = threshold_grid(0.01)


def sorted_boxes(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes.T[::-1])]


def assert_same_boxes(scoremap: np.ndarray, thresholds, multi_contour: bool) -> None:
    got = boxes_from_scoremap(scoremap, thresholds, multi_contour=multi_contour)
    expected = oracle_boxes(np.asarray(scoremap, dtype=np.float64), thresholds, multi_contour)
    assert len(got) == len(expected)
    for t, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, sorted_boxes(b), err_msg=f"threshold {thresholds[t]}")


# ---------------------------------------------------------------------------------------------
# box_iou
# ---------------------------------------------------------------------------------------------
def test_box_iou_values_match_loop_reference():
    a = np.array([[0, 0, 0, 0], [0, 0, 9, 9], [5, 5, 14, 14], [20, 20, 21, 30]])
    b = np.array([[0, 0, 0, 0], [0, 0, 9, 9], [10, 10, 12, 12]])
    iou = box_iou(a, b)
    assert iou.shape == (4, 3) and iou.dtype == np.float64
    for i in range(4):
        for j in range(3):
            assert iou[i, j] == oracle_iou(a[i].tolist(), b[j].tolist())
    assert iou[0, 0] == 1.0  # two (0, 0, 0, 0) boxes
    assert iou[1, 2] == 0.0  # disjoint
    assert iou[2, 1] == 25 / 175  # inclusive +1 areas


def test_box_iou_torch_in_torch_out():
    iou = box_iou(torch.tensor([[0, 0, 3, 3]]), torch.tensor([[0, 0, 1, 1], [0, 0, 3, 3]]))
    assert isinstance(iou, torch.Tensor) and iou.dtype == torch.float64
    assert iou.tolist() == [[4 / 16, 1.0]]


@pytest.mark.parametrize("bad", [[[3, 0, 2, 5]], [[0, 4, 2, 3]]])
def test_box_iou_rejects_inverted_boxes(bad):
    with pytest.raises(ValueError, match="x0 <= x1 and y0 <= y1"):
        box_iou(np.array(bad), np.array([[0, 0, 1, 1]]))


def test_box_iou_rejects_bad_shapes_and_fractions():
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        box_iou(np.zeros((2, 3), dtype=int), np.zeros((1, 4), dtype=int))
    with pytest.raises(ValueError, match="integral"):
        box_iou(np.array([[0.5, 0, 1, 1]]), np.zeros((1, 4), dtype=int))


# ---------------------------------------------------------------------------------------------
# boxes_from_scoremap: hand-made maps
# ---------------------------------------------------------------------------------------------
def gaussian(h: int, w: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def test_unimodal_map_gives_one_shrinking_box(box_path):
    scoremap = gaussian(40, 50, 20, 25, 8)
    boxes = boxes_from_scoremap(scoremap, GRID)
    assert all(b.shape == (1, 4) for b in boxes)
    widths = [b[0, 2] - b[0, 0] for b in boxes]
    assert widths == sorted(widths, reverse=True)
    assert_same_boxes(scoremap, GRID, True)


def test_multimodal_map_matches_oracle_in_both_modes(box_path):
    scoremap = gaussian(60, 60, 15, 15, 5) + 0.7 * gaussian(60, 60, 40, 45, 9)
    scoremap /= scoremap.max()
    assert max(len(b) for b in boxes_from_scoremap(scoremap, GRID)) == 2
    for multi in (True, False):
        assert_same_boxes(scoremap, threshold_grid(0.001), multi)


def test_ring_gives_outer_and_hole_boxes(box_path):
    scoremap = np.zeros((12, 12))
    scoremap[2:9, 3:10] = 1.0
    scoremap[4:7, 5:8] = 0.0  # a 3x3 hole inside a 7x7 square
    boxes = boxes_from_scoremap(scoremap, [0.5])[0]
    # outer: pixels x 3..9, y 2..8 -> (x, y, x + w, y + h) = (3, 2, 10, 9); hole: pixels
    # x 5..7, y 4..6 grown by one pixel on each side -> x 4..8, y 3..7 -> (4, 3, 9, 8)
    assert sorted(boxes.tolist()) == [[3, 2, 10, 9], [4, 3, 9, 8]]
    assert boxes_from_scoremap(scoremap, [0.5], multi_contour=False)[0].tolist() == [[3, 2, 10, 9]]
    assert_same_boxes(scoremap, [0.0, 0.5], True)


def test_one_pixel_lines_and_border_clamp(box_path):
    scoremap = np.zeros((10, 16))
    scoremap[0, :] = 1.0  # top row, full width: x1 clamped to W - 1
    scoremap[5, 7] = 0.8  # a single pixel
    scoremap[3:10, 15] = 0.6  # right column touching the border
    boxes = boxes_from_scoremap(scoremap, [0.0])[0]
    assert sorted(boxes.tolist()) == [[0, 0, 15, 1], [7, 5, 8, 6], [15, 3, 15, 9]]
    for multi in (True, False):
        assert_same_boxes(scoremap, GRID, multi)


def test_nothing_kept_gives_zero_box_and_full_map_gives_clamped_box(box_path):
    zero = boxes_from_scoremap(np.zeros((8, 9)), [0.0, 0.5])
    assert [b.tolist() for b in zero] == [[[0, 0, 0, 0]], [[0, 0, 0, 0]]]
    full = boxes_from_scoremap(np.ones((8, 9)), [0.0, 0.99])
    assert [b.tolist() for b in full] == [[[0, 0, 8, 7]], [[0, 0, 8, 7]]]
    # a threshold of 1 keeps nothing: q > int(1 * max) is empty
    assert boxes_from_scoremap(np.ones((8, 9)), [1.0])[0].tolist() == [[0, 0, 0, 0]]


def test_strictly_greater_than_quantized_level(box_path):
    scoremap = np.zeros((6, 6))
    scoremap[1, 1] = 1.0
    scoremap[4, 4] = 128 / 255  # q = 128 = int(0.502 * 255): not kept at t = 0.502
    for_t = boxes_from_scoremap(scoremap, [0.5, 0.502])
    assert sorted(for_t[0].tolist()) == [[1, 1, 2, 2], [4, 4, 5, 5]]
    assert for_t[1].tolist() == [[1, 1, 2, 2]]
    assert_same_boxes(scoremap, [0.5, 0.502], True)


def test_equal_area_tie_in_single_mode_matches_oracle():
    scoremap = np.zeros((20, 30))
    scoremap[2:6, 3:7] = 1.0
    scoremap[10:14, 20:24] = 1.0
    assert_same_boxes(scoremap, [0.5], False)
    scoremap[10:14, 20:24] = 0.9  # now two equal squares at different heights
    assert_same_boxes(scoremap, GRID, False)


def test_single_mode_ties_among_many_components_rings_and_islands_match_oracle(box_path):
    """Single mode searches outer contours only: ties between equal components, a thin ring
    whose hole contour has its outer contour's area, and an island in a hole pick the box the
    full contour tree picks."""
    scoremap = np.zeros((24, 30))
    for y in range(1, 22, 4):  # a grid of equal 2x2 squares
        for x in range(1, 12, 4):
            scoremap[y:y + 2, x:x + 2] = 1.0
    scoremap[2:5, 16:19] = 1.0  # a 3x3 ring: hole and outer contours trace the same pixels
    scoremap[3, 17] = 0.0
    scoremap[8:17, 16:25] = 0.8  # a thick ring with an island in its hole
    scoremap[10:15, 18:23] = 0.0
    scoremap[12, 20] = 1.0
    assert_same_boxes(scoremap, GRID, False)
    rng = np.random.default_rng(11)
    for _ in range(20):  # random binary clutter: many equal-area components
        assert_same_boxes((rng.random((16, 16)) > 0.6).astype(np.float64), [0.5], False)


def test_float32_float16_and_torch_match_the_float64_oracle(box_path):
    rng = np.random.default_rng(3)
    scoremap = rng.random((16, 20))
    for variant in (scoremap.astype(np.float32), scoremap.astype(np.float16)):
        assert_same_boxes(variant, GRID, True)
    assert_same_boxes(torch.from_numpy(scoremap.astype(np.float32)), GRID, True)


def test_batched_form_equals_per_map_calls(box_path):
    rng = np.random.default_rng(4)
    maps = rng.random((3, 10, 12))
    batched = boxes_from_scoremap(maps, GRID, multi_contour=False)
    assert len(batched) == 3
    for scoremap, per_map in zip(maps, batched, strict=True):
        single = boxes_from_scoremap(scoremap, GRID, multi_contour=False)
        assert all(np.array_equal(a, b) for a, b in zip(per_map, single, strict=True))


@pytest.mark.parametrize(
    ("scoremap", "error", "match"),
    [
        (np.full((4, 4), np.nan), ValueError, "finite"),
        (np.full((4, 4), 1.5), ValueError, r"\[0, 1\]"),
        (np.full((4, 4), -0.1), ValueError, r"\[0, 1\]"),
        (np.zeros((4, 4), dtype=np.int64), TypeError, "dtype"),
        (np.zeros(4), ValueError, "shape"),
        (np.zeros((0, 4)), ValueError, "non-empty"),
        ([[0.0, 1.0]], TypeError, "numpy.ndarray or torch.Tensor"),
    ],
)
def test_invalid_scoremaps_are_rejected(scoremap, error, match):
    with pytest.raises(error, match=match):
        boxes_from_scoremap(scoremap, GRID)


@pytest.mark.parametrize("thresholds", [[0.5, 0.2], [1.5], [], [[0.1]]])
def test_invalid_thresholds_are_rejected(thresholds):
    with pytest.raises(ValueError, match="thresholds"):
        boxes_from_scoremap(np.zeros((3, 3)), thresholds)


def test_scalar_threshold_is_refused_and_grid_checks_interval():
    with pytest.raises(TypeError, match="threshold_grid"):
        boxes_from_scoremap(np.zeros((3, 3)), 0.5)
    assert threshold_grid(0.25).tolist() == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match="interval"):
        threshold_grid(0.0)


# ---------------------------------------------------------------------------------------------
# Property tests against cv2.findContours
# ---------------------------------------------------------------------------------------------
@st.composite
def random_maps(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["uniform", "levels", "binary", "rings", "lines", "smooth"]))
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((height, width))
    if kind == "levels":
        return rng.integers(0, draw(st.integers(2, 5)), (height, width)) / 4.0
    if kind == "binary":
        return (rng.random((height, width)) < draw(st.floats(0.1, 0.9))).astype(np.float64)
    if kind == "rings":  # concentric rings: a hole inside every level, islands in the holes
        yy, xx = np.mgrid[0:height, 0:width]
        radius = np.hypot(yy - rng.uniform(0, height), xx - rng.uniform(0, width))
        return 0.5 + 0.5 * np.cos(radius * rng.uniform(0.5, 2.0))
    if kind == "lines":  # one-pixel lines, rows and columns touching the border, ties
        score = np.zeros((height, width))
        for _ in range(draw(st.integers(1, 6))):
            value = rng.integers(1, 4) / 3.0
            if rng.random() < 0.5:
                score[rng.integers(0, height), rng.integers(0, width):] = value
            else:
                score[rng.integers(0, height):, rng.integers(0, width)] = value
        return score
    score = sum(rng.uniform(0.2, 1) * gaussian(height, width, *rng.uniform(0, 24, 2),
                                               rng.uniform(1, 6)) for _ in range(3))
    return score / score.max()


@given(scoremap=random_maps(), multi=st.booleans(),
       interval=st.sampled_from([0.05, 0.01, 0.001, 0.0001, 0.037]))
def test_property_boxes_equal_find_contours(box_path, scoremap, multi, interval):
    assert_same_boxes(scoremap, threshold_grid(interval), multi)


@given(scoremap=random_maps())
def test_property_float32_maps_equal_oracle_of_upcast(box_path, scoremap):
    assert_same_boxes(scoremap.astype(np.float32), GRID, True)


def bicubic_map(seed: int, size: int, grid: int) -> np.ndarray:
    """A CAM-like map: bicubic upsampling of a random ``grid x grid`` map, min-max normalized
    (smooth for small grids, cluttered for large ones, pixel noise at ``grid == size``)."""
    import cv2

    coarse = np.random.default_rng(seed).random((grid, grid)).astype(np.float32)
    upsampled = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    return (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())


@pytest.mark.parametrize(("size", "grid", "interval"),
                         [(224, 14, 0.01), (224, 28, 0.001), (96, 96, 0.01), (112, 14, 0.0001)])
def test_full_size_maps_equal_find_contours(box_path, size, grid, interval):
    for seed in range(2):
        assert_same_boxes(bicubic_map(seed, size, grid), threshold_grid(interval), True)


# ---------------------------------------------------------------------------------------------
# ThresholdBoxes: each box once, with its range of thresholds
# ---------------------------------------------------------------------------------------------
def test_threshold_boxes_store_each_box_once_with_its_range(box_path):
    scoremap = np.zeros((10, 12))
    scoremap[2:8, 2:9] = 0.5  # a plateau ...
    scoremap[4:6, 4:6] = 1.0  # ... with a peak
    result = threshold_boxes(scoremap, [0.0, 0.2, 0.6, 0.9, 1.0])
    assert isinstance(result, ThresholdBoxes) and result.num_thresholds == 5
    ranges = {tuple(box): (first, last) for box, first, last in zip(
        result.boxes.tolist(), result.first.tolist(), result.last.tolist(), strict=True)}
    # q = 127 on the plateau, 255 on the peak: thresholds 0 and 0.2 keep the plateau, 0.6 and
    # 0.9 the peak, 1.0 nothing.
    assert ranges == {(2, 2, 9, 8): (0, 1), (4, 4, 6, 6): (2, 3), (0, 0, 0, 0): (4, 4)}
    assert result.at(1).tolist() == [[2, 2, 9, 8]]
    assert [boxes.tolist() for boxes in result.per_threshold()] == [
        [[2, 2, 9, 8]], [[2, 2, 9, 8]], [[4, 4, 6, 6]], [[4, 4, 6, 6]], [[0, 0, 0, 0]]]
    with pytest.raises(IndexError, match="index"):
        result.at(5)


@given(scoremap=random_maps(), multi=st.booleans())
def test_property_at_and_per_threshold_agree(box_path, scoremap, multi):
    result = threshold_boxes(scoremap, threshold_grid(0.05), multi_contour=multi)
    assert isinstance(result, ThresholdBoxes)
    per_threshold = result.per_threshold()
    assert len(per_threshold) == 20
    for index, boxes in enumerate(per_threshold):
        np.testing.assert_array_equal(boxes, result.at(index))
        assert len(boxes) >= 1 and (len(boxes) == 1 or multi)
    assert (result.first <= result.last).all()


def test_batched_threshold_boxes_and_validation():
    maps = np.stack([bicubic_map(0, 20, 4), np.zeros((20, 20))])
    batched = threshold_boxes(torch.from_numpy(maps).float(), GRID)
    assert isinstance(batched, list) and len(batched) == 2
    assert batched[1].boxes.tolist() == [[0, 0, 0, 0]]
    assert (batched[1].first.tolist(), batched[1].last.tolist()) == ([0], [99])
    with pytest.raises(ValueError, match=r"scoremap must lie in \[0, 1\]"):
        threshold_boxes(maps + 1, GRID)


# ---------------------------------------------------------------------------------------------
# The compiled kernel and the rule between the paths
# ---------------------------------------------------------------------------------------------
def test_path_rule_searches_few_sets_and_runs_the_kernel_for_many(monkeypatch):
    if _engine.KERNEL is None:
        pytest.skip("the compiled box kernel is not built")
    calls = []
    kernel = _engine.KERNEL

    class Spy:
        @staticmethod
        def level_boxes(q, wanted, holes):
            calls.append(int(np.count_nonzero(wanted)))
            return kernel.level_boxes(q, wanted, holes)

    monkeypatch.setattr(_engine, "KERNEL", Spy)
    scoremap = bicubic_map(0, 64, 8)
    threshold_boxes(scoremap, [0.5])  # one set: one search scans at most the map once
    threshold_boxes(scoremap, GRID, multi_contour=False)  # single mode: polygon areas
    assert calls == []
    threshold_boxes(scoremap, GRID)
    assert len(calls) == 1 and calls[0] > 50


def test_kernel_refuses_malformed_input():
    kernel = _engine.KERNEL
    if kernel is None:
        pytest.skip("the compiled box kernel is not built")
    wanted = np.zeros(256, dtype=np.uint8)
    wanted[3] = 1
    with pytest.raises(ValueError, match="2-D uint8"):
        kernel.level_boxes(np.zeros((4, 4), dtype=np.int32), wanted, True)
    with pytest.raises(ValueError, match="256 bytes"):
        kernel.level_boxes(np.zeros((4, 4), dtype=np.uint8), wanted[:10], True)
    with pytest.raises(ValueError, match="not present"):
        kernel.level_boxes(np.zeros((4, 4), dtype=np.uint8), wanted, True)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernel.level_boxes(np.zeros((4, 8), dtype=np.uint8)[:, ::2], wanted, True)
    assert kernel.level_boxes(np.zeros((4, 4), dtype=np.uint8), np.zeros(256, np.uint8),
                              True) == b""
    ones = np.zeros(256, dtype=np.uint8)
    ones[1] = 1
    with pytest.raises(ValueError, match="at most 65533 pixels a side"):
        kernel.level_boxes(np.ones((1, 65534), dtype=np.uint8), ones, True)


def test_sides_past_the_kernels_limit_are_searched(monkeypatch):
    """The kernel packs coordinates in 16 bits: a longer side goes to the searches, whatever
    the number of sets."""
    monkeypatch.setattr(_engine, "_SEARCHES_PER_SIDE", -1)
    scoremap = np.zeros((2, 65540))
    scoremap[0, ::7] = 1.0
    scoremap[1, 65535:] = 0.5
    assert_same_boxes(scoremap, [0.0, 0.6], True)


# ---------------------------------------------------------------------------------------------
# resize_boxes
# ---------------------------------------------------------------------------------------------
def test_resize_boxes_truncates_like_the_protocol():
    boxes = np.array([[60, 27, 385, 331], [0, 0, 499, 334], [13, 7, 13, 7]])
    height, width = 335, 500
    expected = [[int(b[0] * 224.0 / width), int(b[1] * 224.0 / height),
                 int(b[2] * 224.0 / width), int(b[3] * 224.0 / height)] for b in boxes.tolist()]
    assert resize_boxes(boxes, (height, width), (224, 224)).tolist() == expected
    assert resize_boxes(torch.tensor(boxes), (height, width), (224, 224)).tolist() == expected


def test_resize_boxes_rejects_bad_sizes():
    with pytest.raises(ValueError, match="from_size"):
        resize_boxes(np.array([[0, 0, 1, 1]]), (0, 5), (224, 224))


# ---------------------------------------------------------------------------------------------
# Hostile and degenerate input: clear refusals, valid edge inputs still work
# ---------------------------------------------------------------------------------------------
def test_threshold_grid_refuses_intervals_past_a_million_thresholds():
    for interval in (1e-9, 9.99e-7, 5e-324):
        with pytest.raises(ValueError, match=r"interval must give at most 1000000 thresholds"):
            threshold_grid(interval)
    assert threshold_grid(1e-6).size == 1_000_000
    with pytest.raises(TypeError, match="interval must be a float, got str"):
        threshold_grid("0.01")
    with pytest.raises(ValueError, match=r"interval must be in \(0, 1\], got nan"):
        threshold_grid(float("nan"))


@pytest.mark.parametrize("interval", [np.float32(0.25), np.float16(0.25), np.array(0.25),
                                      torch.tensor(0.25), np.float64(0.25), 0.25])
def test_threshold_grid_accepts_numpy_and_tensor_scalars(interval):
    assert threshold_grid(interval).tolist() == [0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize(
    ("boxes", "error", "match"),
    [
        ([[0, 0, 2**62, 1]], ValueError, r"boxes_a must hold coordinates within \+-2\*\*30"),
        ([[0, 0, 2**70, 1]], ValueError, r"within \+-2\*\*30, got values in \[0.0, 1.18"),
        (np.array([[0, 0, 2**63 + 5, 1]], dtype=np.uint64), ValueError, r"within \+-2\*\*30"),
        ([[-(2**31), 0, 1, 1]], ValueError, r"within \+-2\*\*30"),
        ([[0, 0, 1e30, 1]], ValueError, r"within \+-2\*\*30"),
        ([[0, 0, np.inf, 1]], ValueError, "integral coordinates"),
        ([[0, 0, 1], [0, 0, 1, 1]], TypeError, r"must be an \(N, 4\) array of integer coord"),
        ([["0", "0", "1", "1"]], TypeError, "integer coordinates, got dtype <U1"),
        (np.zeros((1, 4), dtype=np.complex64), TypeError, "integer coordinates, got dtype"),
        (torch.zeros(1, 4, dtype=torch.bool), TypeError, "integer coordinates, got dtype bool"),
    ],
)
def test_box_iou_refuses_huge_and_unreadable_coordinates(boxes, error, match):
    with pytest.raises(error, match=match):
        box_iou(boxes, np.array([[0, 0, 1, 1]]))


def test_box_iou_at_the_coordinate_limit_does_not_wrap():
    limit = 2**30
    huge = np.array([[-limit, -limit, limit, limit]])
    iou = box_iou(huge, huge)
    assert iou.tolist() == [[1.0]]
    part = box_iou(huge, np.array([[0, 0, limit, limit]]))
    assert 0.24 < part[0, 0] < 0.26
    assert box_iou(torch.tensor([[0, 0, 3, 3]], dtype=torch.bfloat16),
                   [[0, 0, 3, 3]]).tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("boxes", "from_size", "to_size", "match"),
    [
        ([[0, 0, 2**62, 2**62]], (2**63, 2**63), (224, 224), r"boxes must hold coordinates"),
        ([[0, 0, 10, 10]], (1, 1), (2**63, 2**63),
         r"boxes resized from \(1, 1\) to \(9223372036854775808, 9223372036854775808\) must "
         r"stay within \+-2\*\*30"),
        ([[0, 0, 2**29, 1]], (1, 1), (8, 8), r"must stay within \+-2\*\*30, got values up to"),
    ],
)
def test_resize_boxes_refuses_results_past_the_coordinate_limit(boxes, from_size, to_size,
                                                                 match):
    with pytest.raises(ValueError, match=match):
        resize_boxes(boxes, from_size, to_size)


def test_resize_boxes_accepts_numpy_integer_sizes_and_edges_at_the_border():
    size = (np.int64(375), np.int64(500))
    assert resize_boxes([[111, 108, 500, 375]], size, (224, 224)).tolist() == [[49, 64, 224, 224]]


@pytest.mark.parametrize("multi_contour", ["no", 1, None, 0.0])
def test_multi_contour_must_be_a_bool(multi_contour):
    with pytest.raises(TypeError, match="multi_contour must be True or False, got"):
        threshold_boxes(np.zeros((3, 3)), GRID, multi_contour=multi_contour)
    with pytest.raises(TypeError, match="multi_contour must be True or False, got"):
        boxes_from_scoremap(np.zeros((3, 3)), GRID, multi_contour=multi_contour)
    single = boxes_from_scoremap(np.eye(3), [0.5], multi_contour=np.False_)
    assert single[0].tolist() == [[0, 0, 2, 2]]


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [
        ([True, False], "thresholds must be a sequence of floats, got list"),
        (np.array([0.5 + 0j]), "thresholds must be a sequence of floats, got ndarray"),
        (["0.1", "0.5"], "thresholds must be a sequence of floats, got list"),
        (torch.tensor([True]), "thresholds must be a sequence of floats, got ndarray"),
        ([[0.1], [0.2, 0.3]], "thresholds must be a sequence of floats, got list"),
        (np.float32(0.5), "got the scalar"),
        (np.array(0.5), "got the scalar"),
    ],
)
def test_threshold_grids_of_other_kinds_are_refused(thresholds, match):
    with pytest.raises(TypeError, match=match):
        threshold_boxes(np.zeros((3, 3)), thresholds)


def test_threshold_grids_of_numpy_scalars_tensors_and_bfloat16_are_accepted():
    scoremap = np.eye(4)
    expected = boxes_from_scoremap(scoremap, [0.25, 0.5])
    for grid in ([np.float32(0.25), np.float16(0.5)], [torch.tensor(0.25), np.array(0.5)],
                 torch.tensor([0.25, 0.5], dtype=torch.bfloat16), np.array([0.25, 0.5])):
        got = boxes_from_scoremap(scoremap, grid)
        assert [a.tolist() for a in got] == [a.tolist() for a in expected]


@pytest.mark.parametrize(
    "scoremap",
    [np.zeros((1, 1)), np.ones((1, 1)), np.full((6, 5), 0.5), np.zeros((4, 4)),
     np.linspace(0, 1, 9)[None], np.linspace(0, 1, 9)[:, None], np.ones((3, 7))],
    ids=["pixel-0", "pixel-1", "constant", "zeros", "1xN", "Nx1", "ones"],
)
def test_degenerate_maps_give_the_protocols_boxes(box_path, scoremap):
    assert_same_boxes(scoremap, GRID, True)
    assert_same_boxes(scoremap, GRID, False)
    assert_same_boxes(scoremap, [0.5], True)  # one threshold
    assert_same_boxes(scoremap.astype(np.float16), [0.0, 1.0], True)


_DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32,
           np.float64, np.complex64, object]
_SPECIAL_VALUES = [0.0, 1.0, 0.5, -1.0, 2.0, 255.0, np.nan, np.inf, -np.inf, 3e38, -3e38,
                   1e-310, 5e-324, 2.0**62, -(2.0**62)]


@st.composite
def malformed_arrays(draw, max_dims: int = 4):
    """Arrays and tensors of every dtype (bool, integers, floats, complex, object), rank 0 to
    ``max_dims``, zero-size dims, non-contiguous layouts, and NaN, ±Inf, ±3e38, denormals and
    huge values among ordinary ones."""
    ndim = draw(st.integers(0, max_dims))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    values = draw(st.lists(st.sampled_from(_SPECIAL_VALUES) | st.floats(0, 1), min_size=1,
                           max_size=6))
    dtype = draw(st.sampled_from(_DTYPES))
    strided = ndim > 0 and draw(st.booleans())  # every other column of a wider array
    full = (*shape[:-1], shape[-1] * 2) if strided else shape
    base = np.resize(np.array(values, dtype=np.float64), full)
    with np.errstate(all="ignore"):
        array = base.astype(dtype) if dtype is not object else base.astype(object)
    if strided:
        array = array[..., ::2]
    if dtype is not object and draw(st.booleans()):
        try:
            return torch.from_numpy(np.ascontiguousarray(array) if draw(st.booleans()) else array)
        except (TypeError, ValueError, RuntimeError):  # a dtype torch cannot hold
            return array
    return array


def hostile(strategy):
    """Anything a careless or hostile caller might pass where ``strategy`` is expected."""
    others = st.sampled_from([None, "0.5", "no", b"x", 1, True, 0.5, float("nan"), 2**70,
                              [], [[]], {"a": 1}, object()])
    return st.one_of(strategy, malformed_arrays(), others,
                     st.lists(malformed_arrays(max_dims=2), max_size=3))


@st.composite
def arguments(draw, **valid):
    """Keyword arguments drawn from ``valid`` (name → strategy), one or two of them (or, at
    times, all) replaced by ``hostile`` values: the others stay valid, so each refusal is
    reached on its own."""
    names = sorted(valid)
    bad = set(names) if draw(st.integers(0, 9)) == 0 else draw(
        st.sets(st.sampled_from(names), min_size=1, max_size=2))
    return {name: draw(hostile(strategy) if name in bad else strategy)
            for name, strategy in valid.items()}


def call_cleanly(function, *args, **kwargs):
    """``function``'s result, ``None`` when it refused with ``ValueError``/``TypeError``; any
    other exception (and any RuntimeWarning, such as an overflow in a cast) fails the test."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError):
            return None


@st.composite
def valid_boxes(draw, height: int = 12, width: int = 12):
    count = draw(st.integers(1, 3))
    rows = []
    for _ in range(count):
        x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        rows.append([x0, y0, draw(st.integers(x0, width)), draw(st.integers(y0, height))])
    return np.array(rows)


@settings(max_examples=300)
@given(case=arguments(scoremap=random_maps(), thresholds=st.just(GRID), multi=st.booleans(),
                      boxes_a=valid_boxes(), boxes_b=valid_boxes(),
                      interval=st.floats(1e-6, 1.0),
                      sizes=st.tuples(st.integers(1, 500), st.integers(1, 500))))
def test_property_boxes_refuse_malformed_input_with_value_or_type_errors(case):
    """camkit.boxes lets only ValueError and TypeError escape on any input, and what it
    returns is well-formed: boxes of int64 inside the map, IoU in [0, 1]."""
    scoremap, thresholds, multi = case["scoremap"], case["thresholds"], case["multi"]
    result = call_cleanly(threshold_boxes, scoremap, thresholds, multi_contour=multi)
    if result is not None:
        for single in result if isinstance(result, list) else [result]:
            assert single.boxes.dtype == np.int64 and (single.boxes >= 0).all()
    call_cleanly(boxes_from_scoremap, scoremap, thresholds, multi_contour=multi)
    iou = call_cleanly(box_iou, case["boxes_a"], case["boxes_b"])
    if iou is not None:
        values = np.asarray(iou)
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    grid = call_cleanly(threshold_grid, case["interval"])
    if grid is not None:
        assert 0 < grid.size <= 1_000_000 and np.isfinite(grid).all()
    resized = call_cleanly(resize_boxes, case["boxes_a"], case["sizes"], (224, 224))
    if resized is not None:
        assert np.abs(np.asarray(resized)).max(initial=0) <= 2**30


@given(scoremap=random_maps(), data=st.data(),
       interval=st.sampled_from([1.0, 0.5, 0.01, 0.001]), multi=st.booleans())
def test_property_valid_finite_input_gives_finite_output(scoremap, data, interval, multi):
    grid = threshold_grid(interval)
    per_threshold = boxes_from_scoremap(scoremap.astype(np.float32), grid, multi_contour=multi)
    assert len(per_threshold) == grid.size
    height, width = scoremap.shape
    boxes = data.draw(valid_boxes(height, width))
    for found in per_threshold:
        assert found.shape[0] >= 1
        assert (found[:, 2] <= width - 1).all() and (found[:, 3] <= height - 1).all()
        iou = box_iou(found, boxes)
        assert np.isfinite(iou).all() and ((iou >= 0) & (iou <= 1)).all()
    assert resize_boxes(boxes, (height, width), (224, 224)).max() <= 224
