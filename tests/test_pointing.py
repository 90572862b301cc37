"""camkit.metrics: PointingGame and EnergyPointingGame against slow loop references."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from camkit.metrics import (
    IGNORE,
    EnergyPointingGame,
    PointingGame,
    energy_pointing_game,
    pointing_game,
)
from camkit.metrics._energy import ENERGY_UNIT
from camkit.metrics._pointing import acceptance_region


# ---------------------------------------------------------------------------------------------
# Loop references
# ---------------------------------------------------------------------------------------------
def box_pixels(boxes: np.ndarray, height: int, width: int) -> set[tuple[int, int]]:
    """Every pixel ``(y, x)`` of the boxes, both ends included, on an ``H x W`` map."""
    pixels = set()
    for y in range(height):
        for x in range(width):
            for x0, y0, x1, y1 in boxes:
                if x0 <= x <= x1 and y0 <= y <= y1:
                    pixels.add((y, x))
    return pixels


def mask_pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(y, x) for y in range(mask.shape[0]) for x in range(mask.shape[1])
            if mask[y, x] == 1}


def reference_hit(scoremap: np.ndarray, pixels: set[tuple[int, int]], tolerance: float,
                  ties: str) -> bool:
    """The rule as stated: a maximal pixel hits when some object pixel lies at a distance
    ``< tolerance`` (or it lies on the object); ties pick the first maximum in row-major
    order, any of them, or all of them."""
    top = max(float(value) for value in scoremap.ravel())
    maxima = [(y, x) for y in range(scoremap.shape[0]) for x in range(scoremap.shape[1])
              if float(scoremap[y, x]) == top]
    if ties == "first":
        maxima = maxima[:1]

    def hits(point: tuple[int, int]) -> bool:
        return any(point == pixel or
                   (pixel[0] - point[0]) ** 2 + (pixel[1] - point[1]) ** 2 < tolerance ** 2
                   for pixel in pixels)

    found = [hits(point) for point in maxima]
    return all(found) if ties == "all" else any(found)


def reference_energy(scoremap: np.ndarray, pixels: set[tuple[int, int]],
                     mask: np.ndarray | None = None) -> float:
    inside = total = 0.0
    for y in range(scoremap.shape[0]):
        for x in range(scoremap.shape[1]):
            if mask is not None and mask[y, x] == IGNORE:
                continue
            total += float(scoremap[y, x])
            if (y, x) in pixels:
                inside += float(scoremap[y, x])
    return inside / total if total > 0 else 0.0


def random_case(seed: int, count: int, height: int = 24, width: int = 20
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Maps quantized to a few levels (so that ties happen) and one to three boxes each."""
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, 6, (count, height, width)).astype(np.float64) / 5.0
    boxes = []
    for _ in range(count):
        n = int(rng.integers(1, 4))
        x0, y0 = rng.integers(0, width, n), rng.integers(0, height, n)
        x1 = np.minimum(x0 + rng.integers(0, 6, n), width)
        y1 = np.minimum(y0 + rng.integers(0, 6, n), height)
        boxes.append(np.stack([x0, y0, x1, y1], axis=1))
    return maps, boxes


# ---------------------------------------------------------------------------------------------
# Pointing game: values
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", ["first", "any", "all"])
@pytest.mark.parametrize("tolerance", [0.0, 1.0, 2.5, 4.0, 15.0])
def test_pointing_game_equals_loop_reference_on_boxes(ties, tolerance):
    maps, boxes = random_case(0, 12)
    maps[3] = 0.5  # flat: every pixel is a maximum
    maps[4] = 0.0
    maps[4, 23, 19] = 1.0  # maximum in the far corner
    metric = PointingGame(tolerance=tolerance, ties=ties)
    metric.update(maps[:5], boxes[:5])
    metric.update(torch.from_numpy(maps[5:]).float(), boxes[5:])  # float32 tensors too
    expected = [reference_hit(scoremap, box_pixels(b, 24, 20), tolerance, ties)
                for scoremap, b in zip(maps, boxes, strict=True)]
    result = metric.compute()
    assert (result.hits, result.misses, result.skipped) == (sum(expected),
                                                            12 - sum(expected), 0)
    assert result.accuracy == sum(expected) * 100.0 / 12
    assert result.class_accuracy is None and result.num_images == 12
    assert json.loads(json.dumps(result.to_dict()))["hits"] == sum(expected)


@pytest.mark.parametrize("ties", ["first", "any", "all"])
def test_pointing_game_equals_loop_reference_on_masks(ties):
    rng = np.random.default_rng(1)
    maps, _ = random_case(2, 8)
    masks = (rng.random(maps.shape) < 0.05).astype(np.uint8)
    masks[rng.random(maps.shape) < 0.05] = IGNORE
    masks[:, 0, 0] = 1  # an object everywhere
    result = pointing_game(maps, masks=masks, tolerance=3, ties=ties)
    expected = [reference_hit(scoremap, mask_pixels(mask), 3, ties)
                for scoremap, mask in zip(maps, masks, strict=True)]
    assert result.hits == sum(expected) and result.misses == 8 - sum(expected)
    bools = pointing_game(maps, masks=masks == 1, tolerance=3, ties=ties)
    assert bools == result


@given(seed=st.integers(0, 2**32 - 1), tolerance=st.sampled_from([0.0, 1.0, 1.5, 3.0, 7.2]),
       ties=st.sampled_from(["first", "any", "all"]), batch=st.integers(1, 3),
       height=st.integers(1, 12), width=st.integers(1, 12))
def test_property_pointing_game_equals_loop_reference(seed, tolerance, ties, batch, height,
                                                      width):
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, 3, (batch, height, width)).astype(np.float32) / 2
    masks = (rng.random((batch, height, width)) < 0.15).astype(np.uint8)
    masks[:, rng.integers(height), rng.integers(width)] = 1
    result = pointing_game(maps, masks=masks, tolerance=tolerance, ties=ties)
    expected = [reference_hit(m, mask_pixels(k), tolerance, ties)
                for m, k in zip(maps, masks, strict=True)]
    assert result.hits == sum(expected)


@given(seed=st.integers(0, 2**32 - 1), tolerance=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.3, 6.0,
                                                                   40.0]),
       height=st.integers(1, 14), width=st.integers(1, 14))
def test_property_acceptance_region_equals_brute_force(seed, tolerance, height, width):
    """The region that many tied maxima look up: every pixel within ``tolerance`` of an
    object pixel, by exact integer distances."""
    objects = np.random.default_rng(seed).random((height, width)) < 0.1
    region = acceptance_region(objects, tolerance)
    pixels = mask_pixels(objects.astype(np.uint8))
    expected = np.array([[any((y, x) == p or (p[0] - y) ** 2 + (p[1] - x) ** 2 < tolerance ** 2
                               for p in pixels) for x in range(width)] for y in range(height)])
    np.testing.assert_array_equal(region, expected.reshape(height, width))


@pytest.mark.parametrize(("offset", "tolerance", "hit"), [
    ((0, 14), 15, True), ((0, 15), 15, False), ((0, 16), 15, False),
    ((15, 0), 15, False), ((9, 12), 15, False),  # 9**2 + 12**2 == 15**2: on the circle
    ((10, 10), 15, True), ((14, 5), 15, True),  # 221 < 225
    ((0, 15), 15.01, True), ((9, 12), 15.01, True), ((0, 16), 16.0, False),
    ((0, 16), 16.5, True), ((0, 0), 0, True), ((0, 1), 0, False), ((0, 1), 1, False),
    ((0, 1), 1.01, True),
])
def test_fifteen_pixel_rule_counts_distances_strictly_below_the_tolerance(offset, tolerance,
                                                                          hit):
    """TorchRay's rule: a hit when ``dy**2 + dx**2 < tolerance**2``; exactly 15 px misses."""
    scoremap = np.zeros((64, 64))
    scoremap[10 + offset[0], 10 + offset[1]] = 1.0
    box = np.array([[0, 0, 10, 10]])  # the nearest object pixel is (10, 10)
    result = pointing_game(scoremap, box, tolerance=tolerance)
    assert result.hits == int(hit)
    assert pointing_game(scoremap, box, tolerance=tolerance, ties="any").hits == int(hit)


def test_default_tolerance_is_fifteen_pixels_and_ties_first():
    scoremap = np.zeros((40, 60))
    scoremap[5, 5] = scoremap[5, 50] = 1.0  # tied: the first (row-major) is (5, 5)
    near_second = np.array([[55, 0, 59, 10]])  # 5 px from (5, 50), 50 px from (5, 5)
    assert pointing_game(scoremap, near_second).accuracy == 0.0
    assert pointing_game(scoremap, near_second, ties="any").accuracy == 100.0
    assert pointing_game(scoremap, near_second, ties="all").accuracy == 0.0
    assert pointing_game(scoremap, np.array([[0, 0, 59, 10]]), ties="all").accuracy == 100.0
    assert PointingGame().config() == {"tolerance": 15.0, "ties": "first", "num_classes": None,
                                       "target": "boxes"}


def test_target_chooses_the_argument_and_the_other_is_not_looked_at():
    maps, boxes = random_case(14, 3)
    masks = np.zeros(maps.shape, dtype=np.uint8)
    masks[:, :4, :4] = 1
    by_boxes, by_masks = PointingGame(ties="any"), PointingGame(ties="any", target="masks")
    by_boxes.update(maps, boxes, masks="not looked at")
    by_masks.update(maps, "not looked at", masks=masks)
    assert by_boxes.compute() == pointing_game(maps, boxes, ties="any")
    assert by_masks.compute() == pointing_game(maps, masks=masks, ties="any")
    assert pointing_game(maps, boxes, masks=masks, target="masks", ties="any") == \
        by_masks.compute()
    energy = EnergyPointingGame(target="masks")
    energy.update(maps, None, masks=masks)
    assert energy.compute() == energy_pointing_game(maps, masks=masks)


def test_flat_map_points_at_its_first_pixel_or_anywhere():
    flat = np.full((30, 30), 0.25)
    far = np.array([[25, 25, 29, 29]])
    assert pointing_game(flat, far, ties="first").hits == 0  # argmax: (0, 0)
    assert pointing_game(flat, far, ties="any").hits == 1
    assert pointing_game(flat, far, ties="all").hits == 0
    assert pointing_game(flat, np.array([[0, 0, 29, 29]]), ties="all").hits == 1


@pytest.mark.parametrize("corner", [(0, 0), (0, 31), (23, 0), (23, 31)])
def test_maps_and_boxes_on_the_border(corner):
    """A maximum in a corner, boxes touching the edge or ending at the map's size (clipped)."""
    scoremap = np.zeros((24, 32))
    scoremap[corner] = 1.0
    y, x = corner
    edge_box = np.array([[x, y, min(x + 1, 32), min(y + 1, 24)]])  # may end at W or H
    assert pointing_game(scoremap, edge_box, tolerance=0).hits == 1
    whole = np.array([[0, 0, 32, 24]])
    assert pointing_game(scoremap, whole, tolerance=0).hits == 1
    assert energy_pointing_game(scoremap, whole).energy == 100.0
    opposite = np.array([[31 - x, 23 - y, 31 - x, 23 - y]])  # one pixel, far corner
    assert pointing_game(scoremap, opposite).hits == 0
    assert pointing_game(scoremap, opposite, tolerance=40).hits == 1  # 23**2 + 31**2 < 1600


@given(seed=st.integers(0, 2**32 - 1), dy=st.integers(0, 20), dx=st.integers(0, 20),
       tolerance=st.sampled_from([0.0, 2.0, 5.0, 15.0]),
       ties=st.sampled_from(["first", "any", "all"]))
def test_property_translating_map_and_boxes_together_changes_nothing(seed, dy, dx, tolerance,
                                                                      ties):
    """Shift a map and its boxes on a larger zero canvas (maps are positive, so the maximum
    stays in the shifted content): hits and energy fractions are unchanged."""
    rng = np.random.default_rng(seed)
    maps = (rng.integers(1, 5, (2, 10, 12)) / 4.0).astype(np.float64)
    boxes = [np.array([[1, 2, 6, 7]]), np.array([[0, 0, 3, 3], [8, 5, 11, 9]])]
    canvas = np.zeros((2, 10 + 20, 12 + 20))
    canvas[:, dy:dy + 10, dx:dx + 12] = maps
    shifted = [b + np.array([dx, dy, dx, dy]) for b in boxes]
    moved = pointing_game(canvas, shifted, tolerance=tolerance, ties=ties)
    expected = [reference_hit(canvas[i], box_pixels(shifted[i], 30, 32), tolerance, ties)
                for i in range(2)]
    assert moved.hits == sum(expected)
    # The maxima (in row-major order) and the objects move together; the canvas around holds
    # no object, so discs clipped by the original map's border find nothing more there.
    assert moved == pointing_game(maps, boxes, tolerance=tolerance, ties=ties)
    assert energy_pointing_game(canvas, shifted).energy == pytest.approx(
        energy_pointing_game(maps, boxes).energy, abs=1e-8)


def test_translation_with_tolerance_keeps_hits_when_the_disc_stays_on_the_map():
    scoremap = np.zeros((40, 40))
    scoremap[20, 12] = 1.0
    box = np.array([[20, 18, 24, 22]])  # 8 px to the right of the maximum
    for shift in range(-8, 9, 4):
        moved = np.roll(scoremap, shift, axis=1)
        assert pointing_game(moved, box + np.array([shift, 0, shift, 0]), tolerance=9).hits == 1
        assert pointing_game(moved, box + np.array([shift, 0, shift, 0]), tolerance=8).hits == 0


def test_scale_and_offset_of_the_map_do_not_change_hits():
    maps, boxes = random_case(4, 6)
    base = pointing_game(maps, boxes, ties="any")
    assert pointing_game(maps * 7.5 - 3.0, boxes, ties="any") == base  # any finite range


def test_per_class_accuracy_is_the_mean_over_seen_classes():
    maps, boxes = random_case(5, 10)
    labels = np.array([0, 0, 1, 1, 1, 3, 3, 0, 1, 3])
    ignore = np.zeros(10, dtype=bool)
    ignore[5] = True  # a difficult map: skipped
    metric = PointingGame(tolerance=2, num_classes=5)
    metric.update(maps, boxes, labels=torch.from_numpy(labels), ignore=ignore)
    hits = [reference_hit(m, box_pixels(b, 24, 20), 2, "first")
            for m, b in zip(maps, boxes, strict=True)]
    result = metric.compute()
    per_class = []
    for label in range(5):
        rows = [i for i in range(10) if labels[i] == label and not ignore[i]]
        per_class.append(100.0 * sum(hits[i] for i in rows) / len(rows) if rows else np.nan)
    np.testing.assert_array_equal(result.class_accuracy, np.array(per_class))
    assert result.accuracy == pytest.approx(np.nanmean(per_class), abs=1e-12)
    assert result.skipped == 1 and result.hits + result.misses == 9
    assert result.to_dict()["class_accuracy"][2] is None  # class 2 has no map
    overall = pointing_game(maps, boxes, labels=labels, ignore=ignore, tolerance=2)
    assert overall.class_accuracy is None  # labels are checked but pool without num_classes
    assert overall.accuracy == 100.0 * sum(h for h, i in zip(hits, ignore, strict=True)
                                           if not i) / 9


def test_ignored_maps_are_skipped_and_may_have_no_object():
    maps, boxes = random_case(6, 3)
    boxes[1] = np.zeros((0, 4), dtype=np.int64)
    result = pointing_game(maps, boxes, ignore=[False, True, False])
    assert (result.skipped, result.hits + result.misses, result.num_images) == (1, 2, 3)
    metric = PointingGame()
    metric.update(maps[1], [], ignore=True)  # one map, one flag
    assert (metric.num_images, metric.state_dict()["state"]["skipped"]) == (1, [1])
    with pytest.raises(ValueError, match="needs at least one map that is not ignored"):
        pointing_game(maps[:1], [[]], ignore=[True])
    masks = np.zeros(maps.shape, dtype=np.uint8)
    masks[0, 3, 3] = masks[2, 5, 5] = 1
    assert pointing_game(maps, masks=masks, ignore=np.array([False, True, False])).skipped == 1


def test_update_is_all_or_nothing():
    maps, boxes = random_case(7, 3)
    metric = PointingGame()
    metric.update(maps, boxes)
    before = metric.state_dict()
    with pytest.raises(ValueError, match=r"gt_boxes\[1\] must mark an object"):
        metric.update(maps, [boxes[0], np.zeros((0, 4)), boxes[2]])
    assert metric.state_dict() == before


# ---------------------------------------------------------------------------------------------
# Energy-based pointing game
# ---------------------------------------------------------------------------------------------
def test_energy_equals_loop_reference_on_boxes_and_masks():
    rng = np.random.default_rng(8)
    maps, boxes = random_case(9, 6)
    maps[2] = 0.0  # no energy: scores 0
    metric = EnergyPointingGame()
    metric.update(maps[:3], boxes[:3])
    metric.update(torch.from_numpy(maps[3:]), boxes[3:])
    expected = [reference_energy(m, box_pixels(b, 24, 20))
                for m, b in zip(maps, boxes, strict=True)]
    result = metric.compute()
    assert result.energy == pytest.approx(100.0 * np.mean(expected), abs=1e-8)
    assert (result.scored, result.skipped, result.num_images) == (6, 0, 6)
    assert result.to_dict()["energy"] == result.energy

    masks = (rng.random(maps.shape) < 0.3).astype(np.uint8)
    masks[rng.random(maps.shape) < 0.2] = IGNORE  # neither inside nor in the total
    masks[:, 0, 0] = 1
    expected = [reference_energy(m, mask_pixels(k), k) for m, k in zip(maps, masks, strict=True)]
    assert energy_pointing_game(maps, masks=masks).energy == pytest.approx(
        100.0 * np.mean(expected), abs=1e-8)


def test_energy_is_stored_in_fixed_point_and_sums_in_any_order():
    maps, boxes = random_case(10, 9)
    parts = []
    for start in range(0, 9, 3):
        part = EnergyPointingGame()
        part.update(maps[start:start + 3], boxes[start:start + 3])
        parts.append(part)
    forward, backward = EnergyPointingGame(), EnergyPointingGame()
    for part in parts:
        forward.merge(part)
    for part in parts[::-1]:
        backward.merge(part)
    single = EnergyPointingGame()
    single.update(maps, boxes)
    assert forward.state_dict() == backward.state_dict() == single.state_dict()
    fractions = [reference_energy(m, box_pixels(b, 24, 20)) for m, b in zip(maps, boxes,
                                                                             strict=True)]
    assert single.state_dict()["state"]["energy"] == [
        sum(round(f * ENERGY_UNIT) for f in fractions)]


@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 3), height=st.integers(1, 10),
       width=st.integers(1, 10))
def test_property_energy_lies_in_0_100_and_equals_reference(seed, batch, height, width):
    rng = np.random.default_rng(seed)
    maps = rng.random((batch, height, width)) * (rng.random((batch, height, width)) < 0.5)
    x0, y0 = rng.integers(0, width), rng.integers(0, height)
    boxes = [np.array([[x0, y0, rng.integers(x0, width + 1), rng.integers(y0, height + 1)]])
             for _ in range(batch)]
    result = energy_pointing_game(maps, boxes)
    expected = [reference_energy(m, box_pixels(b, height, width))
                for m, b in zip(maps, boxes, strict=True)]
    assert 0.0 <= result.energy <= 100.0
    assert result.energy == pytest.approx(100.0 * np.mean(expected), abs=1e-7)


def test_energy_of_a_map_inside_its_box_is_100_and_outside_0():
    scoremap = np.zeros((20, 20))
    scoremap[5:8, 5:8] = np.arange(9).reshape(3, 3) / 8
    assert energy_pointing_game(scoremap, np.array([[5, 5, 7, 7]])).energy == 100.0
    assert energy_pointing_game(scoremap, np.array([[10, 10, 19, 19]])).energy == 0.0
    half = energy_pointing_game(np.ones((10, 10)), np.array([[0, 0, 4, 9]]))
    assert half.energy == 50.0  # 50 of 100 pixels, boxes inclusive of both ends


# ---------------------------------------------------------------------------------------------
# State: merge, snapshots
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [
    lambda: PointingGame(tolerance=3, ties="any", num_classes=4), EnergyPointingGame])
def test_merge_equals_single_pass_and_json_round_trip(factory):
    maps, boxes = random_case(11, 8)
    labels = np.arange(8) % 4
    kwargs = {"labels": labels} if isinstance(factory(), PointingGame) else {}

    def part(rows: slice):
        metric = factory()
        extra = {key: value[rows] for key, value in kwargs.items()}
        metric.update(maps[rows], boxes[rows], **extra)
        return metric

    merged = part(slice(0, 3)).merge(part(slice(3, 8)))
    single = part(slice(0, 8))
    assert merged.state_dict() == single.state_dict()
    loaded = type(single).from_json(single.to_json())
    assert loaded.state_dict() == single.state_dict()
    assert loaded.compute().to_dict() == single.compute().to_dict()
    single.reset()
    assert single.num_images == 0


def test_merge_refuses_another_configuration():
    with pytest.raises(ValueError, match="same configuration"):
        PointingGame(tolerance=15).merge(PointingGame(tolerance=5))
    with pytest.raises(TypeError, match="other must be a PointingGame"):
        PointingGame().merge(EnergyPointingGame())


@pytest.mark.parametrize(("metric", "state", "match"), [
    (PointingGame(), {"hits": [2], "misses": [1], "skipped": [0], "num_images": [4]},
     r"hits \+ misses \+ skipped == num_images"),
    (PointingGame(num_classes=2), {"hits": [2, 1], "misses": [0, 0], "skipped": [2],
                                   "num_images": [4]}, "hits=3, misses=0, skipped=2"),
    (EnergyPointingGame(), {"energy": [3 * ENERGY_UNIT], "skipped": [0], "num_images": [2]},
     r"energy <= \(num_images - skipped\) \* 2\*\*32"),
    (EnergyPointingGame(), {"energy": [0], "skipped": [3], "num_images": [2]},
     "skipped <= num_images"),
])
def test_snapshot_counts_must_agree(metric, state, match):
    snapshot = metric.state_dict()
    snapshot["state"] = state
    with pytest.raises(ValueError, match=match):
        type(metric).from_state_dict(snapshot)


def test_snapshot_config_is_checked_as_the_constructor_checks_it():
    snapshot = PointingGame().state_dict()
    snapshot["config"]["ties"] = "middle"
    with pytest.raises(ValueError, match="ties must be one of"):
        PointingGame.from_state_dict(snapshot)


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"tolerance": -1}, ValueError, r"tolerance must be in \[0.0, None\]"),
    ({"tolerance": math.inf}, ValueError, "tolerance must be finite"),
    ({"tolerance": "15"}, TypeError, "tolerance must be a real number"),
    ({"ties": "last"}, ValueError, r"ties must be one of \('first', 'any', 'all'\)"),
    ({"ties": ["first"]}, ValueError, "ties must be one of"),
    ({"num_classes": 0}, ValueError, "num_classes must be > 0"),
    ({"num_classes": 2.0}, TypeError, "num_classes must be an int"),
    ({"target": "mask"}, ValueError, r"target must be one of \('boxes', 'masks'\)"),
])
def test_pointing_game_refuses_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        PointingGame(**kwargs)


MAPS = np.random.default_rng(12).random((2, 8, 8))
BOXES = [np.array([[1, 1, 4, 4]]), np.array([[2, 2, 6, 6]])]


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: pointing_game(MAPS), ValueError,
     "gt_boxes must be given with target='boxes', got None"),
    (lambda: PointingGame(target="masks").update(MAPS, BOXES), ValueError,
     "masks must be given with target='masks', got None"),
    (lambda: pointing_game(MAPS, BOXES, masks=MAPS > 0.5), ValueError,
     "target must be 'boxes' or 'masks' when both gt_boxes and masks are given"),
    (lambda: energy_pointing_game(MAPS, target="masks"), ValueError,
     "masks must be given with target='masks'"),
    (lambda: EnergyPointingGame(target="box"), ValueError,
     r"target must be one of \('boxes', 'masks'\), got 'box'"),
    (lambda: pointing_game(MAPS.astype(int), BOXES), TypeError,
     "scoremaps must have dtype float16, float32 or float64"),
    (lambda: pointing_game(torch.ones(2, 8, 8, dtype=torch.int64), BOXES), TypeError,
     "scoremaps must have a floating dtype"),
    (lambda: pointing_game(MAPS.tolist(), BOXES), TypeError,
     "scoremaps must be a numpy.ndarray or torch.Tensor, got list"),
    (lambda: pointing_game(MAPS[None], BOXES), ValueError,
     r"scoremaps must have shape \(H, W\) or \(B, H, W\)"),
    (lambda: pointing_game(np.zeros((2, 0, 8)), BOXES), ValueError,
     "scoremaps must have non-empty spatial dims"),
    (lambda: pointing_game(np.where(MAPS > 0.5, np.nan, MAPS), BOXES), ValueError,
     "scoremaps must be finite"),
    (lambda: energy_pointing_game(MAPS - 0.5, BOXES), ValueError,
     "scoremaps must be non-negative for the energy pointing game"),
    (lambda: pointing_game(MAPS, [BOXES[0]]), ValueError,
     "gt_boxes must have one entry per score map"),
    (lambda: pointing_game(MAPS, [BOXES[0], np.array([[2, 2, 9, 6]])]), ValueError,
     r"gt_boxes\[1\] must lie on the 8x8 score map"),
    (lambda: pointing_game(MAPS, [BOXES[0], np.zeros((0, 4))]), ValueError,
     r"gt_boxes\[1\] must mark an object .* pass ignore= to leave the map out"),
    (lambda: energy_pointing_game(MAPS, masks=np.zeros((2, 8, 8), np.uint8)), ValueError,
     r"masks\[0\] must mark an object"),
    (lambda: pointing_game(MAPS, masks=np.zeros((2, 8, 8))), TypeError,
     "masks must have an integer or bool dtype"),
    (lambda: pointing_game(MAPS, masks=np.full((2, 8, 8), 2, np.uint8)), ValueError,
     "masks must hold only 0, 1 and 255"),
    (lambda: pointing_game(MAPS, BOXES, ignore=[0, 1]), ValueError,
     r"ignore must be a \(B,\) bool array with B = 2, got int64 of shape \(2,\)"),
    (lambda: pointing_game(MAPS, BOXES, ignore=np.zeros(3, bool)), ValueError,
     r"ignore must be a \(B,\) bool array with B = 2, got bool of shape \(3,\)"),
    (lambda: pointing_game(MAPS, BOXES, num_classes=3), ValueError,
     "labels must be given with num_classes=3"),
    (lambda: pointing_game(MAPS, BOXES, labels=[0, 3], num_classes=3), ValueError,
     r"labels must lie in \[0, 3\), got \[0, 3\]"),
    (lambda: pointing_game(MAPS, BOXES, labels=[0, -1]), ValueError,
     r"labels must lie in \[0, inf\)"),
    (lambda: pointing_game(MAPS, BOXES, labels=np.array([True, False]), num_classes=2),
     ValueError, r"labels must be \(B,\) integers with B = 2, got bool"),
    (lambda: pointing_game(MAPS, BOXES, labels=[0], num_classes=2), ValueError,
     r"labels must be \(B,\) integers with B = 2, got int64 of shape \(1,\)"),
    (lambda: PointingGame().compute(), ValueError,
     "PointingGame.compute.. needs at least one map that is not ignored, got none in 0 maps"),
    (lambda: EnergyPointingGame().compute(), ValueError,
     "EnergyPointingGame.compute.. needs at least one map that is not ignored"),
])
def test_refusals_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_tensor_input_on_any_float_dtype_equals_numpy():
    maps, boxes = random_case(13, 4)
    expected = pointing_game(maps, boxes, ties="any")
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = torch.from_numpy(maps).to(dtype)  # levels k/5 are not exact in every dtype,
        assert pointing_game(tensor, [torch.from_numpy(b) for b in boxes],  # ties are kept
                             ties="any") == expected
    masks = np.zeros(maps.shape, dtype=np.uint8)
    masks[:, 2:9, 3:7] = 1
    assert pointing_game(torch.from_numpy(maps), masks=torch.from_numpy(masks)) == \
        pointing_game(maps, masks=masks)
    assert energy_pointing_game(torch.from_numpy(maps).float(), masks=torch.from_numpy(masks)) \
        == energy_pointing_game(maps.astype(np.float32), masks=masks)


def test_pointing_game_on_numpy_runs_without_torch():
    code = """
import sys
import numpy as np
from camkit.metrics import EnergyPointingGame, PointingGame, pointing_game
scoremap = np.zeros((2, 32, 32))
scoremap[:, 10, 10] = 1.0
metric = PointingGame(num_classes=2)
metric.update(scoremap, [np.array([[20, 20, 25, 25]])] * 2, labels=np.array([0, 1]))
assert metric.compute().accuracy == 100.0  # 10 px in x and y: 200 < 225
energy = EnergyPointingGame(target="masks")
energy.update(scoremap, masks=np.ones((2, 32, 32), dtype=bool))
assert energy.compute().energy == 100.0
print("torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
