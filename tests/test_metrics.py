"""camkit.metrics: BoxAccuracy, PixelAP, LocalizationAccuracy against loop references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_boxes import arguments, call_cleanly
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


# ---------------------------------------------------------------------------------------------
# Hostile and degenerate input: snapshots, counts and arguments are refused clearly
# ---------------------------------------------------------------------------------------------
def box_snapshot() -> dict:
    metric = BoxAccuracy(thresholds=[0.0, 0.5], iou_thresholds=(0.5,))
    metric.update(blob_maps(11, 3, size=8), [np.array([[0, 0, 4, 4]])] * 3)
    return metric.state_dict()


def edited(snapshot: dict, edit) -> dict:
    copy = json.loads(json.dumps(snapshot))
    edit(copy)
    return copy


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda s: s["state"].update(correct=[[-250, 0]]), ValueError,
         r"snapshot state 'correct' must hold counts in \[0, 2\*\*63\), got -250"),
        (lambda s: s["state"].update(correct=[[2500, 0]]), ValueError,
         "must satisfy correct <= num_images, got correct=2500, num_images=3"),
        (lambda s: s.update(format_version=2), ValueError,
         "snapshot format_version must be 1, got 2"),
        (lambda s: s.pop("format_version"), ValueError,
         "snapshot format_version must be 1, got None"),
        (lambda s: s.update(format_version=True), ValueError, "format_version must be 1"),
        (lambda s: s.pop("config"), ValueError,
         r"snapshot config must be a dict with keys \['iou_thresholds', 'multi_contour', "
         r"'thresholds'\], got no config"),
        (lambda s: s.update(config=[0.5]), ValueError, "config must be a dict .* got list"),
        (lambda s: s["config"].update(extra=1), ValueError, r"got \['extra', 'iou_thre"),
        (lambda s: s["config"].pop("thresholds"), ValueError, "config must be a dict with"),
        (lambda s: s["config"].update(multi_contour="no"), TypeError,
         "multi_contour must be True or False, got 'no'"),
        (lambda s: s["config"].update(iou_thresholds=0.5), ValueError,
         "snapshot config must be the configuration it builds"),
        (lambda s: s["state"].update(num_images=[2**70]), ValueError,
         r"'num_images' must hold counts in \[0, 2\*\*63\), got 1180591620717411303424"),
        (lambda s: s["state"].update(num_images=[2**63]), ValueError,
         r"'num_images' must hold counts in \[0, 2\*\*63\)"),
        (lambda s: s["state"].update(num_images=[1.5]), TypeError,
         "'num_images' must hold integer counts, got dtype float64"),
        (lambda s: s["state"].update(num_images=[True]), TypeError, "got dtype bool"),
        (lambda s: s["state"].update(num_images=["3"]), TypeError, "integer counts"),
        (lambda s: s["state"].update(num_images=None), ValueError,
         r"'num_images' must have shape \(1,\), got \(\)"),
        (lambda s: s["state"].update(correct=[[1], [1, 2]]), ValueError,
         r"'correct' must have shape \(1, 2\), got list"),
        (lambda s: s.update(state=["num_images", "correct"]), ValueError,
         "snapshot state must have keys .* got list"),
        (lambda s: s.pop("state"), ValueError, "snapshot state must have keys .* got NoneType"),
    ],
)
def test_box_snapshot_is_checked_completely(edit, error, match):
    with pytest.raises(error, match=match):
        BoxAccuracy.from_state_dict(edited(box_snapshot(), edit))


def test_snapshot_counts_past_int64_in_json_are_a_value_error():
    text = json.dumps(edited(box_snapshot(), lambda s: s["state"].update(num_images=[2**70])))
    with pytest.raises(ValueError, match="'num_images' must hold counts in"):
        BoxAccuracy.from_json(text)
    assert BoxAccuracy.from_json(json.dumps(box_snapshot())).num_images == 3


@pytest.mark.parametrize(
    ("counts", "accepted"),
    [((5, 3, 2, 3), True), ((5, 3, 3, 3), True), ((5, 5, 0, 0), True), ((5, 3, 4, 3), False),
     ((5, 6, 0, 0), False), ((5, 3, 3, 2), False), ((0, 0, 0, 0), True)],
)
def test_localization_snapshot_counts_must_be_ordered(counts, accepted):
    num_images, gt_known, top1, top5 = counts
    snapshot = edited(LocalizationAccuracy().state_dict(), lambda s: s["state"].update(
        num_images=[num_images], gt_known=[gt_known], top1=[top1], top5=[top5]))
    if accepted:
        assert LocalizationAccuracy.from_state_dict(snapshot).num_images == num_images
    else:
        with pytest.raises(ValueError, match=r"must satisfy top1 <= top5 <= gt_known <= "
                                             r"num_images, got top1=\d+, top5=\d+"):
            LocalizationAccuracy.from_state_dict(snapshot)


def test_pixel_snapshot_counts_must_not_be_negative():
    snapshot = edited(PixelAP([0.5]).state_dict(),
                      lambda s: s["state"].update(foreground=[1, -1, 0]))
    with pytest.raises(ValueError, match="'foreground' must hold counts in"):
        PixelAP.from_state_dict(snapshot)


def test_merge_and_update_refuse_to_wrap_around_int64():
    near_max = edited(box_snapshot(), lambda s: s["state"].update(
        num_images=[2**63 - 1], correct=[[2**63 - 1, 0]]))
    full = BoxAccuracy.from_state_dict(near_max)
    with pytest.raises(ValueError, match=r"merge would overflow the int64 count "
                                         r"'num_images': 9223372036854775807 \+ 3 > 2\*\*63 - 1"):
        full.merge(BoxAccuracy.from_state_dict(box_snapshot()))
    assert full.state_dict() == near_max  # nothing added
    with pytest.raises(ValueError, match="BoxAccuracy.update would overflow the int64 count"):
        full.update(np.zeros((8, 8)), np.array([[0, 0, 1, 1]]))
    assert full.state_dict() == near_max
    pixels = PixelAP.from_state_dict(edited(PixelAP([0.5]).state_dict(), lambda s: s[
        "state"].update(num_images=[1], background=[2**63 - 10, 0, 0])))
    with pytest.raises(ValueError, match=r"PixelAP.update would overflow the int64 count "
                                         r"'background': 9223372036854775798 \+ 64"):
        pixels.update(np.zeros((8, 8)), np.zeros((8, 8), dtype=np.uint8))
    localization = LocalizationAccuracy.from_state_dict(edited(
        LocalizationAccuracy().state_dict(), lambda s: s["state"].update(num_images=[2**63 - 1])))
    with pytest.raises(ValueError, match="LocalizationAccuracy.update would overflow"):
        localization.update(np.zeros((1, 4, 4)), [[0, 0, 1, 1]], torch.zeros(1, 2),
                            torch.tensor([0]))


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.zeros(2, 3), torch.tensor([True, False]),
         r"labels must be \(B,\) integers with B = 2, got bool"),
        (torch.zeros(2, 3), torch.tensor([0, 1], dtype=torch.complex64), "got complex64"),
        (torch.zeros(2, 3), np.array([0.0, 1.0]), "got float64"),
        (torch.tensor([[0.0, float("nan"), 1.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]),
         "logits must be finite, got NaN or infinite values"),
        (np.array([[0.0, np.inf, 1.0], [0.0, 1.0, 2.0]]), [0, 1], "logits must be finite"),
        (np.array([[0.0, -np.inf, 1.0], [0.0, 1.0, 2.0]]), [0, 1], "logits must be finite"),
        (torch.zeros(2, 0), torch.tensor([0, 1]), r"got float32 of shape \(2, 0\)"),
        (torch.zeros(2, 3, dtype=torch.complex64), torch.tensor([0, 1]),
         "logits must be a float .* got complex64"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]), "got int64"),
        (torch.zeros(3, 3), torch.tensor([0, 1]), r"with B = 2, got float32 of shape \(3, 3\)"),
    ],
)
def test_localization_refuses_bool_labels_and_non_finite_logits(logits, labels, match):
    metric = LocalizationAccuracy()
    with pytest.raises(ValueError, match=match):
        metric.update(np.zeros((2, 4, 4)), [np.array([[0, 0, 1, 1]])] * 2, logits, labels)
    with pytest.raises(TypeError, match="logits must be a numpy.ndarray or torch.Tensor"):
        metric.update(np.zeros((2, 4, 4)), [np.array([[0, 0, 1, 1]])] * 2,
                      [[0.1, 0.2], [0.3]], [0, 1])
    assert metric.num_images == 0


def test_localization_accepts_half_precision_logits_and_unsigned_labels():
    maps, gt = blob_maps(12, 3), random_gt(13, 3)
    logits = torch.randn(3, 7, generator=torch.Generator().manual_seed(0))
    expected = LocalizationAccuracy()
    expected.update(maps, gt, logits, torch.tensor([1, 2, 3]))
    for scores in (logits.to(torch.bfloat16).float(), logits.numpy()):
        metric = LocalizationAccuracy()
        metric.update(maps, gt, scores, np.array([1, 2, 3], dtype=np.uint64))
        assert metric.state_dict() == expected.state_dict()
    half = LocalizationAccuracy()
    half.update(maps, gt, logits.half(), [1, 2, 3])
    assert half.num_images == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(iou_thresholds=(0.5, 0.5)), ValueError,
         r"iou_thresholds must be distinct, got \[0.5, 0.5\]"),
        (dict(iou_thresholds=[0.5, np.float32(0.5)]), ValueError, "must be distinct"),
        (dict(iou_thresholds="0.5"), TypeError,
         "iou_thresholds must be a number or a sequence of numbers, got str"),
        (dict(iou_thresholds={0.5: 1}), TypeError, "got dict"),
        (dict(iou_thresholds=np.zeros((2, 2))), TypeError, "got ndarray"),
        (dict(iou_thresholds=(True,)), TypeError, "iou_thresholds must be a real number"),
        (dict(iou_thresholds=(float("nan"),)), ValueError, "iou_thresholds must be finite"),
        (dict(iou_thresholds=()), ValueError, "non-empty sequence"),
        (dict(multi_contour="no"), TypeError, "multi_contour must be True or False, got 'no'"),
        (dict(multi_contour=1), TypeError, "multi_contour must be True or False, got 1"),
    ],
)
def test_box_accuracy_refuses_repeated_iou_thresholds_and_non_bool_flags(kwargs, error, match):
    with pytest.raises(error, match=match):
        BoxAccuracy(**kwargs)
    with pytest.raises(error, match=match):
        box_accuracy(np.zeros((1, 4, 4)), [np.array([[0, 0, 1, 1]])], **kwargs)


def test_localization_refuses_non_bool_multi_contour_and_a_rule_that_is_not_a_str():
    with pytest.raises(TypeError, match="multi_contour must be True or False, got 'no'"):
        LocalizationAccuracy(multi_contour="no")
    with pytest.raises(ValueError, match=r"rule must be one of \('max', 'pas'\), got array"):
        LocalizationAccuracy(rule=np.array(["max"]))


@pytest.mark.parametrize(
    ("box", "shown"),
    [
        ([0, 0, 9, 4], r"\[0, 0, 9, 4\]"),  # x1 two past the map's last column
        ([-1, 0, 3, 3], r"\[-1, 0, 3, 3\]"),
        ([8, 0, 8, 3], r"\[8, 0, 8, 3\]"),  # starts past the map
        ([0, 0, 2**62, 3], r"\[0, 0, 4611686018427387904, 3\]"),
        ([0, 0, 1e300, 3], r"\[0.0, 0.0, 1e\+300, 3.0\]"),
        ([0, -(2**62), 3, 3], r"\[0, -4611686018427387904, 3, 3\]"),
    ],
)
def test_gt_boxes_off_the_map_are_refused_with_the_image_index(box, shown):
    maps = np.zeros((4, 6, 7))  # H = 6, W = 7
    gt = [np.array([[0, 0, 7, 6]])] * 3 + [np.array([[0, 0, 1, 1], box])]
    match = (r"gt_boxes\[3\] must lie on the 6x7 score map \(0 <= x0 < W, 0 <= y0 < H, "
             rf"x1 <= W, y1 <= H\), got {shown} at row 1")
    for metric in (BoxAccuracy(), LocalizationAccuracy()):
        with pytest.raises(ValueError, match=match):
            if isinstance(metric, BoxAccuracy):
                metric.update(maps, gt)
            else:
                metric.update(maps, gt, torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
        assert metric.num_images == 0


def test_gt_box_ending_at_the_maps_size_or_covering_it_is_accepted():
    """A far edge stored as ``x0 + width`` is resized to exactly W (ImageNet's first
    validation box ends at its image's height): accepted and scored as the protocol does."""
    scoremap = np.ones((6, 7))  # the map's box at every threshold: (0, 0, 6, 5)
    for gt in ([0, 0, 6, 5], [0, 0, 7, 6]):  # IoU 1, and 42 / 56 = 0.75
        result = box_accuracy(scoremap, np.array([gt]), iou_thresholds=(0.5,))
        assert result.max_box_acc[0.5] == 100.0
    assert box_accuracy(scoremap, np.array([[0, 0, 7, 6]]),
                        iou_thresholds=(0.8,)).max_box_acc[0.8] == 0.0


@pytest.mark.parametrize("number", [np.float32(0.5), np.float16(0.5), np.array(0.5),
                                    torch.tensor(0.5), np.array([0.5]), np.float64(0.5)])
def test_numpy_and_tensor_scalars_are_accepted_like_floats(number):
    metric = LocalizationAccuracy(rule="pas", theta=number, q=number * 100,
                                  iou_threshold=number)
    assert (metric.theta, metric.q, metric.iou_threshold) == (0.5, 50.0, 0.5)
    assert BoxAccuracy(iou_thresholds=number).iou_thresholds == (0.5,)
    assert BoxAccuracy(iou_thresholds=[number, 0.7]).iou_thresholds == (0.5, 0.7)
    assert BoxAccuracy.from_json(BoxAccuracy(iou_thresholds=number).to_json()).config() == \
        BoxAccuracy(iou_thresholds=0.5).config()


@pytest.mark.parametrize(
    "scoremap",
    [np.zeros((1, 1)), np.ones((1, 1)), np.full((6, 5), 0.5), np.zeros((4, 4)),
     np.linspace(0, 1, 9)[None], np.linspace(0, 1, 9)[:, None]],
    ids=["pixel-0", "pixel-1", "constant", "zeros", "1xN", "Nx1"],
)
def test_degenerate_maps_are_scored(scoremap):
    height, width = scoremap.shape
    whole = np.array([[0, 0, width - 1, height - 1]])  # the GT box covers the whole map
    for thresholds in (None, [0.5], [0.0]):
        result = box_accuracy(scoremap, whole, thresholds=thresholds)
        assert all(np.isfinite(v) for v in result.max_box_acc.values())
    masks = np.zeros(scoremap.shape, dtype=np.uint8)
    masks.flat[0] = 1
    for thresholds in (None, [0.0], [0.0, 0.5]):  # (scores below the first edge are dropped)
        assert np.isfinite(pixel_ap(scoremap, masks, thresholds=thresholds).pxap)
    metric = LocalizationAccuracy(rule="pas")
    metric.update(scoremap[None], [whole], torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))
    assert metric.compute().num_images == 1


def test_float_mask_tensors_of_every_dtype_are_refused_by_name():
    for dtype in (torch.bfloat16, torch.float16, torch.complex64):
        with pytest.raises(TypeError, match=rf"masks must have an integer or bool dtype, got "
                                            rf"{dtype}"):
            PixelAP().update(np.zeros((2, 2)), torch.zeros(2, 2, dtype=dtype))


def test_sync_without_process_group_twice_changes_nothing():
    metric = BoxAccuracy()
    metric.update(blob_maps(14, 2), random_gt(15, 2))
    before = metric.state_dict()
    assert metric.sync().sync().state_dict() == before


def snapshot_values():
    return st.sampled_from([None, -1, 0, 1, 2**62, 2**63, 2**70, 1.5, True, "3", [], [[1]],
                            [-5], [2**70], [[2500, 0]], [[0, 0]], {"a": 1}])


@st.composite
def hostile_snapshots(draw):
    """A genuine snapshot of one of the metrics with one to three fields replaced."""
    metric = draw(st.sampled_from([BoxAccuracy(thresholds=[0.0, 0.5], iou_thresholds=(0.5,)),
                                   PixelAP([0.5]), LocalizationAccuracy()]))
    snapshot = metric.state_dict()
    for _ in range(draw(st.integers(1, 3))):
        part = draw(st.sampled_from(["top", "config", "state"]))
        target = snapshot if part == "top" else snapshot.get(part)
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from([*sorted(target), "extra"]))
        if draw(st.booleans()):
            target[key] = draw(snapshot_values())
        else:
            target.pop(key, None)
    return type(metric), snapshot


@settings(max_examples=300)
@given(case=arguments(
    scoremaps=st.just(blob_maps(16, 2, size=8)),
    gt_boxes=st.just([np.array([[0, 0, 4, 4]]), np.array([[1, 1, 8, 8]])]),
    thresholds=st.just([0.0, 0.5]), iou=st.just((0.3, 0.5)), multi=st.booleans(),
    logits=st.just(torch.zeros(2, 3)), labels=st.just(torch.tensor([0, 2])),
    masks=st.just(np.eye(8, dtype=np.uint8)[None].repeat(2, 0)), number=st.floats(0, 1)),
    snapshot=hostile_snapshots())
def test_property_metrics_refuse_malformed_input_with_value_or_type_errors(case, snapshot):
    """camkit.metrics lets only ValueError and TypeError escape on any input, and what it
    computes from the input it accepts is finite."""
    scoremaps, gt_boxes, thresholds = case["scoremaps"], case["gt_boxes"], case["thresholds"]
    iou, multi, logits, labels = case["iou"], case["multi"], case["logits"], case["labels"]
    masks, number = case["masks"], case["number"]
    boxes = call_cleanly(box_accuracy, scoremaps, gt_boxes, thresholds, iou, multi)
    if boxes is not None:
        assert np.isfinite(boxes.max_box_acc_v2)
        assert all(np.isfinite(curve).all() for curve in boxes.curves.values())
    pixels = call_cleanly(pixel_ap, scoremaps, masks, thresholds)
    if pixels is not None:
        assert np.isfinite(pixels.pxap) and np.isfinite(pixels.recall).all()
    localization = call_cleanly(LocalizationAccuracy, "pas", number, number, number, multi)
    metric = localization or LocalizationAccuracy()
    if call_cleanly(metric.update, scoremaps, gt_boxes, logits, labels) is not None:
        raise AssertionError("update returns None")
    if metric.num_images:
        result = metric.compute()
        assert 0 <= result.top1 <= result.top5 <= result.gt_known <= 100
    cls, state = snapshot
    loaded = call_cleanly(cls.from_state_dict, state)
    if loaded is not None:
        call_cleanly(loaded.merge, loaded)
        if loaded.num_images:
            call_cleanly(loaded.compute)  # PixelAP without a foreground pixel refuses


@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(0, 3),
       height=st.integers(1, 12), width=st.integers(1, 12),
       kind=st.sampled_from(["random", "constant", "zeros", "ones"]),
       thresholds=st.sampled_from([None, [0.5], [0.0], [0.0, 1.0], threshold_grid(0.001)]))
def test_property_valid_finite_input_gives_finite_metrics(seed, batch, height, width, kind,
                                                         thresholds):
    rng = np.random.default_rng(seed)
    maps = {"random": rng.random((batch, height, width)),
            "constant": np.full((batch, height, width), rng.random()),
            "zeros": np.zeros((batch, height, width)),
            "ones": np.ones((batch, height, width))}[kind].astype(np.float32)
    gt = []
    for _ in range(batch):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        gt.append(np.array([[x0, y0, rng.integers(x0, width + 1), rng.integers(y0, height + 1)]]))
    masks = rng.choice(np.array([0, 1, 255], dtype=np.uint8), maps.shape)
    boxes, pixels = BoxAccuracy(thresholds), PixelAP(thresholds)
    localization = LocalizationAccuracy(rule="pas")
    boxes.update(maps, gt)
    pixels.update(maps, masks)
    localization.update(maps, gt, rng.standard_normal((batch, 4)), rng.integers(0, 4, batch))
    if batch:
        result = boxes.compute()
        assert np.isfinite(result.max_box_acc_v2) and 0 <= result.max_box_acc_v2 <= 100
        assert 0 <= localization.compute().top1 <= 100
    first = 0.0 if thresholds is None else thresholds[0]
    if ((masks == 1) & (maps >= first)).any():  # scores below the first edge are dropped
        assert 0 <= pixels.compute().pxap <= 100
    for metric in (boxes, pixels, localization):
        assert type(metric).from_json(metric.to_json()).state_dict() == metric.state_dict()
