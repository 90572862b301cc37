"""camkit.metrics: BoxAccuracy, PixelAP, LocalizationAccuracy against loop references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from wsol_reference import oracle_correct, oracle_iou, oracle_pxap

from camkit.boxes import ThresholdBoxes, boxes_from_scoremap, threshold_grid
from camkit.metrics import (
    BoxAccuracy,
    LocalizationAccuracy,
    PixelAP,
    box_accuracy,
    pixel_ap,
)
from camkit.metrics._box import add_runs, reached_runs
from camkit.threshold import percentile_threshold


def blob_maps(seed: int, count: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    maps = []
    for _ in range(count):
        score = 0.1 * rng.random((size, size))
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, size, 2)
            score += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                                 / (2 * rng.uniform(2, 8) ** 2))
        maps.append((score - score.min()) / (score.max() - score.min()))
    return np.stack(maps)


def random_gt(seed: int, count: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(count):
        n = rng.integers(1, 3)
        x0, y0 = rng.integers(0, size // 2, (2, n))
        boxes.append(np.stack([x0, y0, x0 + rng.integers(2, size // 2, n),
                               y0 + rng.integers(2, size // 2, n)], axis=1))
    return boxes


# ---------------------------------------------------------------------------------------------
# BoxAccuracy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("multi_contour", [True, False])
def test_box_accuracy_counts_equal_loop_reference(multi_contour):
    maps, gt = blob_maps(0, 6), random_gt(1, 6)
    grid = threshold_grid(0.01)
    metric = BoxAccuracy(grid, multi_contour=multi_contour)
    metric.update(maps[:4], gt[:4])
    metric.update(torch.from_numpy(maps[4:]).float(), gt[4:])  # float32 tensors as well
    expected = oracle_correct(maps.astype(np.float32), gt, grid, (0.3, 0.5, 0.7), multi_contour)
    np.testing.assert_array_equal(metric.state_dict()["state"]["correct"], expected)
    result = metric.compute()
    curve = expected.astype(np.float64) * 100.0 / 6.0
    assert result.max_box_acc == {0.3: curve[0].max(), 0.5: curve[1].max(), 0.7: curve[2].max()}
    assert result.best_threshold[0.5] == grid[int(curve[1].argmax())]
    assert result.max_box_acc_v2 == float(np.average([curve[0].max(), curve[1].max(),
                                                      curve[2].max()]))
    np.testing.assert_array_equal(result.curves[0.7], curve[2])
    assert result.num_images == 6
    assert json.loads(json.dumps(result.to_dict()))["max_box_acc"]["0.5"] == curve[1].max()


def test_reached_runs_join_overlapping_ranges_row_by_row():
    """Boxes reaching an IoU threshold over overlapping, nested and adjacent threshold ranges
    count once per threshold; rows (IoU thresholds) stay apart."""
    gt = np.array([[0, 0, 9, 9]])
    boxes = ThresholdBoxes(
        boxes=np.array([[0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 4, 9], [50, 50, 60, 60]]),
        first=np.array([0, 2, 3, 6, 0]), last=np.array([3, 4, 3, 7, 9]), num_thresholds=10)
    starts, ends = reached_runs(boxes, gt, np.array([0.3, 0.9]))
    correct = np.zeros((2, 10), dtype=np.int64)
    add_runs(correct, starts, ends)
    add_runs(correct, starts, ends)  # a second map with the same runs
    # IoU 1 boxes over 0..3, 2..4, 3..3 -> 0..4; the half box (IoU 0.5) over 6..7 counts at 0.3
    assert correct.tolist() == [[2, 2, 2, 2, 2, 0, 2, 2, 0, 0], [2, 2, 2, 2, 2, 0, 0, 0, 0, 0]]
    empty = reached_runs(boxes, np.array([[80, 80, 90, 90]]), np.array([0.5]))
    assert empty[0].size == 0 and empty[1].size == 0


@given(seed=st.integers(0, 10_000), multi=st.booleans())
def test_property_box_accuracy_equals_reference(seed, multi):
    maps, gt = blob_maps(seed, 2, size=20), random_gt(seed + 1, 2, size=20)
    grid = threshold_grid(0.001)
    metric = BoxAccuracy(grid, iou_thresholds=(0.5,), multi_contour=multi)
    metric.update(maps, gt)
    np.testing.assert_array_equal(metric.state_dict()["state"]["correct"],
                                  oracle_correct(maps, gt, grid, (0.5,), multi))


def test_perfect_box_map_scores_100_and_v1_configuration():
    scoremap = np.zeros((30, 40))
    scoremap[5:15, 10:30] = 1.0
    gt = [np.array([[10, 5, 30, 15]])]  # (x, y, x + w, y + h) of the kept square
    result = box_accuracy(scoremap[None], gt, iou_thresholds=(0.5,), multi_contour=False)
    assert result.max_box_acc == {0.5: 100.0}
    assert result.max_box_acc_v2 == 100.0
    assert result.best_threshold[0.5] == 0.0


def test_merge_equals_single_pass_and_json_round_trip():
    maps, gt = blob_maps(2, 4), random_gt(3, 4)
    whole, first, second = BoxAccuracy(), BoxAccuracy(), BoxAccuracy()
    whole.update(maps, gt)
    first.update(maps[:1], gt[:1])
    second.update(maps[1:], gt[1:])
    merged = BoxAccuracy.from_json(first.to_json()).merge(second)
    assert merged.state_dict() == whole.state_dict()
    assert merged.compute().curves[0.3].tolist() == whole.compute().curves[0.3].tolist()
    merged.reset()
    assert merged.num_images == 0


def test_merge_refuses_other_configuration_or_class():
    with pytest.raises(ValueError, match="same configuration"):
        BoxAccuracy().merge(BoxAccuracy(multi_contour=False))
    with pytest.raises(TypeError, match="BoxAccuracy"):
        BoxAccuracy().merge(PixelAP())
    with pytest.raises(ValueError, match="BoxAccuracy"):
        BoxAccuracy.from_state_dict(PixelAP().state_dict())


def test_box_accuracy_input_errors():
    metric = BoxAccuracy()
    with pytest.raises(ValueError, match="at least one update"):
        metric.compute()
    with pytest.raises(ValueError, match="one entry per score map"):
        metric.update(np.zeros((2, 8, 8)), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match="at least one box"):
        metric.update(np.zeros((1, 8, 8)), [np.zeros((0, 4), dtype=int)])
    with pytest.raises(ValueError, match="finite"):
        metric.update(np.full((1, 8, 8), np.nan), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric.update(np.full((1, 8, 8), 2.0), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match="iou_thresholds"):
        BoxAccuracy(iou_thresholds=(1.5,))
    assert metric.num_images == 0


# ---------------------------------------------------------------------------------------------
# PixelAP
# ---------------------------------------------------------------------------------------------
def masks_for(maps: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = (maps + 0.3 * rng.random(maps.shape) > 0.6).astype(np.uint8)
    masks[rng.random(maps.shape) < 0.1] = 255
    return masks


@pytest.mark.parametrize("interval", [0.01, 0.001])
def test_pixel_ap_equals_histogram_reference(interval):
    maps = blob_maps(5, 5)
    masks = masks_for(maps, 6)
    grid = threshold_grid(interval)
    metric = PixelAP(grid)
    metric.update(maps[:2], masks[:2])
    metric.update(torch.from_numpy(maps[2:]), torch.from_numpy(masks[2:]))
    result = metric.compute()
    assert result.pxap == oracle_pxap(maps, masks, grid)
    assert result.precision.shape == result.recall.shape == result.edges.shape == (grid.size + 2,)
    assert result.edges[:3].tolist() == [2.0, 1.0, grid[-1]]
    assert json.loads(json.dumps(result.to_dict()))["pxap"] == result.pxap


@given(seed=st.integers(0, 10_000))
def test_property_pixel_ap_equals_reference(seed):
    maps = blob_maps(seed, 2, size=16).astype(np.float32)
    masks = masks_for(maps, seed + 1)
    if not (masks == 1).any():
        masks[0, 0, 0] = 1
    assert pixel_ap(maps, masks).pxap == oracle_pxap(maps, masks, threshold_grid(0.01))


def test_pixel_ap_perfect_and_constant_maps():
    mask = np.zeros((1, 10, 10), dtype=np.uint8)
    mask[0, 2:6, 3:8] = 1
    assert pixel_ap(mask.astype(np.float64), mask).pxap == 100.0
    constant = pixel_ap(np.full((1, 10, 10), 0.5), mask).pxap
    assert constant == pytest.approx(100 * 20 / 100)  # the foreground fraction


def test_pixel_ap_ignores_ignored_pixels():
    scoremap = np.zeros((1, 4, 4))
    scoremap[0, 0, :] = 1.0
    mask = np.zeros((1, 4, 4), dtype=np.uint8)
    mask[0, 0, :2] = 1
    with_noise = mask.copy()
    with_noise[0, 0, 2:] = 255  # high-scoring background, ignored
    assert pixel_ap(scoremap, with_noise).pxap == 100.0
    assert pixel_ap(scoremap, mask).pxap < 100.0


def test_pixel_ap_mask_dtypes():
    """Wider integer masks and bool masks count as uint8 ones; a value out of uint8's range is
    named as it is, not as it would wrap."""
    maps = blob_maps(11, 2, size=12)
    masks = masks_for(maps, 12)
    expected = pixel_ap(maps, masks).pxap
    assert pixel_ap(maps, masks.astype(np.int64)).pxap == expected
    assert pixel_ap(torch.from_numpy(maps), torch.from_numpy(masks.astype(np.int32))).pxap == (
        expected)
    assert pixel_ap(maps, masks == 1).pxap == oracle_pxap(maps, (masks == 1).astype(np.uint8),
                                                          threshold_grid(0.01))
    wide = masks.astype(np.int64)
    wide[1, 5, 5] = -1
    with pytest.raises(ValueError, match=r"0, 1 and 255, got -1$"):
        pixel_ap(maps, wide)
    wide[1, 5, 5] = 256
    with pytest.raises(ValueError, match=r"0, 1 and 255, got 256$"):
        pixel_ap(maps, wide)


def test_pixel_ap_errors():
    with pytest.raises(ValueError, match="foreground pixel"):
        pixel_ap(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="0, 1 and 255"):
        pixel_ap(np.zeros((1, 4, 4)), np.full((1, 4, 4), 2, dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        pixel_ap(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="integer or bool"):
        pixel_ap(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))


def test_pixel_ap_refuses_other_mask_values_before_counting():
    """A mask value other than 0, 1 and 255 anywhere in the batch, here in the last map, is an
    error that names it, and nothing of the batch is counted."""
    metric = PixelAP([0.0, 0.07, 0.5])
    maps = np.full((3, 4, 4), 0.07)
    masks = np.ones((3, 4, 4), dtype=np.uint8)
    masks[2, 3, 3] = 7
    with pytest.raises(ValueError, match=r"0, 1 and 255, got 7$"):
        metric.update(maps, masks)
    assert metric.num_images == 0
    assert not metric._state["foreground"].any() and not metric._state["background"].any()
    masks[2, 3, 3] = 255
    metric.update(maps, masks)
    assert metric._state["foreground"].sum() == 47 and metric.num_images == 3


# ---------------------------------------------------------------------------------------------
# LocalizationAccuracy
# ---------------------------------------------------------------------------------------------
def test_localization_gt_known_top1_top5():
    maps = blob_maps(7, 4)
    gt = [boxes_from_scoremap(m, [0.2], multi_contour=False)[0] for m in maps]
    gt[3] = np.array([[0, 0, 1, 1]])  # a wrong box for the last image
    logits = torch.zeros(4, 10)
    logits[0, 3] = 5  # label 3 is top-1
    logits[1, 1], logits[1, 4] = 5, 4  # label 4 is second: top-5 only
    logits[2, :6] = torch.arange(6.0) + 1  # label 0 is sixth: not top-5
    labels = torch.tensor([3, 4, 0, 2])
    metric = LocalizationAccuracy()
    metric.update(maps, gt, logits, labels)
    result = metric.compute()
    assert (result.gt_known, result.top1, result.top5) == (75.0, 25.0, 50.0)


def test_localization_pas_rule_uses_theta_times_percentile():
    maps = blob_maps(8, 3)
    metric = LocalizationAccuracy(rule="pas")
    t = percentile_threshold(torch.from_numpy(maps), 90, 0.35).numpy()
    np.testing.assert_array_equal(metric.box_thresholds(maps), t)
    gt = [np.array([[2, 2, 20, 20]])] * 3
    metric.update(maps, gt, torch.eye(3), torch.arange(3))
    expected = sum(
        max(oracle_iou(b, gt[0][0].tolist())
            for b in boxes_from_scoremap(m, [ti], multi_contour=False)[0].tolist()) >= 0.5
        for m, ti in zip(maps, t, strict=True)
    )
    assert metric.compute().gt_known == expected * 100.0 / 3


def test_localization_errors():
    metric = LocalizationAccuracy()
    with pytest.raises(ValueError, match="rule"):
        LocalizationAccuracy(rule="mean")
    with pytest.raises(ValueError, match="labels must lie"):
        metric.update(np.zeros((1, 4, 4)), [np.array([[0, 0, 1, 1]])], torch.zeros(1, 3),
                      torch.tensor([3]))
    with pytest.raises(ValueError, match="logits"):
        metric.update(np.zeros((1, 4, 4)), [np.array([[0, 0, 1, 1]])], torch.zeros(3),
                      torch.tensor([0]))
    with pytest.raises(ValueError, match="at least one update"):
        metric.compute()


def assert_pixel_ap_counts_equal_numpy_histogram(thresholds, scores, masks):
    """PixelAP's pooled histograms equal numpy.histogram's of the foreground and background
    scores on the edges ``thresholds ++ [1, 2, 3]`` (the reference's two calls)."""
    metric = PixelAP(thresholds=thresholds)
    metric.update(scores, masks)
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    state = metric.state_dict()["state"]
    assert state["foreground"] == np.histogram(scores[masks == 1], bins=edges)[0].tolist()
    assert state["background"] == np.histogram(scores[masks == 0], bins=edges)[0].tolist()


def test_pixel_ap_bins_scores_on_edges_and_negative_zero_like_numpy_histogram():
    grid = threshold_grid(0.01)
    scores = np.concatenate([grid, np.nextafter(grid[1:], 0), [1.0, -0.0, 0.0]])
    side = int(np.ceil(np.sqrt(scores.size)))
    scoremap = np.zeros(side * side)
    scoremap[:scores.size] = scores
    scoremap = scoremap.reshape(1, side, side)
    masks = (np.arange(side * side) % 3 == 0).astype(np.uint8).reshape(1, side, side)
    assert_pixel_ap_counts_equal_numpy_histogram(grid, scoremap, masks)


@given(st.integers(0, 2**31 - 1), st.sampled_from([0.01, 0.001, 0.05]), st.floats(0.0, 0.5))
def test_pixel_ap_bins_equal_numpy_histogram_on_any_grid(seed, interval, start):
    """The table binning gives numpy.histogram's counts on even and uneven grids, also for
    scores exactly on an edge or below the first one."""
    rng = np.random.default_rng(seed)
    even = np.arange(start, 1.0, interval)
    uneven = np.unique(np.round(rng.random(12), 3))
    for thresholds in (even, uneven):
        scores = rng.random((3, 20, 20))
        flat = scores.reshape(-1)
        flat[: min(flat.size, thresholds.size)] = thresholds[: flat.size]  # scores on edges
        flat[-5:] = [0.0, 1.0, -0.0, thresholds[-1], np.nextafter(thresholds[0], 0)]
        flat.clip(0, 1, out=flat)
        masks = rng.integers(0, 2, scores.shape).astype(np.uint8)
        masks[0, 0, :5] = 255
        assert_pixel_ap_counts_equal_numpy_histogram(thresholds, scores, masks)


def check_scores_near_edges(thresholds: np.ndarray, extra: list[float], size: int,
                            seed: int) -> None:
    """Random scores, the first of them on, one ulp below and one ulp above each edge (and the
    ``extra`` values): the counts must equal numpy.histogram's."""
    near = np.concatenate([thresholds, np.nextafter(thresholds, 0), np.nextafter(thresholds, 1),
                           extra]).clip(0, 1)
    rng = np.random.default_rng(seed)
    scores = rng.random(size * size)
    scores[: near.size] = near
    scores = scores.reshape(1, size, size)
    masks = rng.integers(0, 2, scores.shape).astype(np.uint8)
    assert_pixel_ap_counts_equal_numpy_histogram(thresholds, scores, masks)


def test_pixel_ap_edges_sharing_a_cell_or_on_cell_bounds_equal_numpy_histogram():
    """Edges closer than a binning cell (2**-16), edges exactly on cell bounds (dyadic values),
    and scores one ulp either side of each: every pixel lands where numpy.histogram puts it."""
    cell = 2.0**-16
    thresholds = np.array([0.0, 0.25, 0.3, 0.3 + cell / 4, 0.3 + cell / 2, 0.5, 0.5 + cell,
                           0.7 + 1e-12, 0.75, 1.0 - cell / 3])
    check_scores_near_edges(thresholds, [1.0, np.nextafter(1.0, 0)], size=32, seed=7)


def test_pixel_ap_edges_packed_in_one_cell_equal_numpy_histogram():
    """Many edges inside one binning cell (more than a binary search would compare): every
    score on, just below or just above an edge lands where numpy.histogram puts it."""
    thresholds = np.concatenate([[0.0, 0.25], 0.5 + 2.0**-20 * np.arange(40), [0.75]])
    check_scores_near_edges(thresholds, [1.0], size=24, seed=5)


def test_pixel_ap_grid_that_stops_short_of_one_equals_numpy_histogram():
    """An evenly spaced grid that ends well below 1 has a wide bin up to the 1.0 edge."""
    rng = np.random.default_rng(3)
    thresholds = np.arange(0.0, 0.5, 0.01)
    scores = rng.random((2, 16, 16))
    masks = rng.integers(0, 2, scores.shape).astype(np.uint8)
    assert_pixel_ap_counts_equal_numpy_histogram(thresholds, scores, masks)


_TINY_STEP = 2.0**-18  # finer than PixelAP's binning cells (2**-16): several edges share a cell


@st.composite
def pixel_counting_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random thresholds (even, uneven, clustered closer than a binning cell, dyadic, with and
    without 0 and 1), maps whose scores sit on, just below and just above the edges, and masks
    of 0, 1 and 255."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["even", "uneven", "clustered", "dyadic"]))
    if kind == "even":
        thresholds = np.arange(draw(st.floats(0.0, 0.5)), 1.0, draw(st.sampled_from(
            [0.05, 0.01, 0.001, 0.0001])))
    elif kind == "uneven":
        thresholds = np.unique(rng.random(draw(st.integers(1, 40))))
    elif kind == "clustered":
        base = rng.random(draw(st.integers(1, 6)))
        offsets = _TINY_STEP * np.arange(draw(st.integers(2, 5)))
        thresholds = np.unique(np.clip(base[:, None] + offsets, 0.0, 1.0))
    else:
        thresholds = np.unique(rng.integers(0, 2**8 + 1, draw(st.integers(1, 20))) / 2**8)
    if draw(st.booleans()):
        thresholds = np.unique(np.append(thresholds, [0.0, 1.0]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    scores = rng.random(shape)
    flat = scores.reshape(-1)
    near = np.concatenate([thresholds, np.nextafter(thresholds, 0), np.nextafter(thresholds, 1),
                           [0.0, 1.0]]).clip(0.0, 1.0)
    on_edges = rng.random(flat.size) < draw(st.floats(0.0, 1.0))
    flat[on_edges] = rng.choice(near, int(on_edges.sum()))
    masks = rng.choice(np.array([0, 1, 255], dtype=np.uint8), shape)
    return thresholds, scores, masks


@given(pixel_counting_cases())
def test_property_pixel_ap_counts_equal_reference(case):
    """PixelAP's counts are the reference's (two numpy.histogram calls per map on the edges
    ``thresholds ++ [1, 2, 3]``) bit for bit, and so is PxAP, on any grid, scores on edges
    included, float32 maps too (the reference casts them to float64)."""
    thresholds, scores, masks = case
    assert_pixel_ap_counts_equal_numpy_histogram(thresholds, scores, masks)
    scores32 = scores.astype(np.float32)
    assert_pixel_ap_counts_equal_numpy_histogram(thresholds, scores32.astype(np.float64), masks)
    metric32 = PixelAP(thresholds)
    metric32.update(scores32, masks)
    metric64 = PixelAP(thresholds)
    metric64.update(scores32.astype(np.float64), masks)
    assert metric32.state_dict() == metric64.state_dict()
    metric = PixelAP(thresholds)
    metric.update(scores, masks)
    if metric.state_dict()["state"]["foreground"] != [0] * (thresholds.size + 2):
        assert metric.compute().pxap == oracle_pxap(scores, masks, thresholds)
