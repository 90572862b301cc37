"""Level-set boxes without a per-level contour search, against cv2.findContours: the
component trees (camkit.boxes._trees) and the optional compiled union-find
(camkit.boxes._compiled, with numba)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsol_reference import oracle_binary_boxes, oracle_boxes, oracle_correct

from camkit.boxes import _compiled, _levels, _topology, _trees, threshold_grid
from camkit.boxes._levels import level_boxes, quantize, threshold_levels
from camkit.boxes._topology import euler_numbers
from camkit.metrics import BoxAccuracy


def assert_tree_equals_oracle(scoremap: np.ndarray, thresholds: np.ndarray, multi: bool) -> None:
    """Per threshold, the tree path's boxes are the oracle's, as multisets (the tree gives
    a set's boxes in no particular order; BoxAccuracy only takes their best IoU)."""
    q = quantize(scoremap)
    level = level_boxes(q, threshold_levels(thresholds, int(q.max())), multi_contour=multi,
                        scoremap=scoremap)
    expected = oracle_boxes(scoremap, thresholds, multi)
    for index, boxes in enumerate(expected):
        got = level.block(int(level.set_of_threshold[index]))
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, boxes.tolist())), (
            f"threshold {thresholds[index]}")


NUMBA = _compiled.available()
PATHS = ["trees", pytest.param("compiled", marks=pytest.mark.skipif(
    not NUMBA, reason="numba (camkit[fast]) is not installed"))]


@pytest.fixture
def tree_always(monkeypatch):
    """Use the trees for any number of sets (small test maps have few), not the compiled
    union-find."""
    monkeypatch.setattr(_levels, "_TREE_ABOVE", 0)
    monkeypatch.setattr(_levels, "_USE_COMPILED", False)


@pytest.fixture
def compiled_always(monkeypatch):
    if not NUMBA:
        pytest.skip("numba (camkit[fast]) is not installed")
    monkeypatch.setattr(_levels, "_COMPILED_ABOVE", 0)
    monkeypatch.setattr(_levels, "_TREE_ABOVE", 0)  # (every contour: the trees' rule applies)


@pytest.fixture(params=["hole tree", "hole tree after counting", "hole search"])
def hole_path(request, monkeypatch):
    """Every way of finding hole boxes: the complement's tree at once, the tree after the Euler
    numbers count the levels with holes, or a search per level with holes."""
    extrema, levels = {"hole tree": (-1, -1), "hole tree after counting": (10**6, -1),
                       "hole search": (10**6, 10**6)}[request.param]
    monkeypatch.setattr(_trees, "_HOLE_TREE_ABOVE_EXTREMA", extrema)
    monkeypatch.setattr(_trees, "_SEARCH_HOLE_LEVELS_UP_TO", levels)
    return request.param


def gaussian(h: int, w: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


# ---------------------------------------------------------------------------------------------
# Hand-made maps: every rule of the contour procedure
# ---------------------------------------------------------------------------------------------
def ring(size: int = 15) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - size // 2, xx - size // 2)
    return np.clip(1.0 - np.abs(radius - size / 4) / 4, 0, 1)


def nested_rings() -> np.ndarray:
    """A ring, inside it a hole, inside that an island with its own hole."""
    m = np.zeros((13, 13))
    m[1:12, 1:12] = 0.9
    m[3:10, 3:10] = 0.1
    m[5:8, 5:8] = 0.6
    m[6, 6] = 0.2
    return m


def lines_and_border() -> np.ndarray:
    m = np.zeros((9, 11))
    m[0, :] = 1.0  # a one-pixel line along the top border
    m[2:8, 5] = 0.7  # a vertical one-pixel line
    m[4, 0:3] = 0.4  # touching the left border
    m[8, 10] = 0.5  # a corner pixel
    m[6, 8], m[7, 9] = 0.6, 0.6  # a diagonal pair: one 8-connected component
    return m


def border_hole() -> np.ndarray:
    """Background that reaches the image edge is outside, never a hole."""
    m = np.full((7, 7), 0.8)
    m[2:5, 0:3] = 0.1  # open to the left edge
    m[2:4, 4:6] = 0.2  # closed: a hole
    return m


def checkerboard() -> np.ndarray:
    """Diagonal contacts everywhere: 8-connected foreground, 4-connected holes."""
    m = (np.indices((8, 9)).sum(axis=0) % 2).astype(np.float64)
    m[0, :] = 1.0
    return m


def plateaus() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.integers(0, 4, (12, 14)) / 3.0


HAND_MADE = {"ring": ring(), "nested rings": nested_rings(), "lines": lines_and_border(),
             "border hole": border_hole(), "checkerboard": checkerboard(),
             "plateaus": plateaus(), "constant": np.full((5, 6), 0.5),
             "zero": np.zeros((4, 4)), "one pixel": np.ones((1, 1)),
             "one row": np.linspace(0, 1, 17)[None, :]}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
@pytest.mark.parametrize("multi", [True, False])
def test_hand_made_maps_equal_find_contours(name, multi, tree_always, hole_path):
    for interval in (0.01, 0.001):
        assert_tree_equals_oracle(HAND_MADE[name], threshold_grid(interval), multi)


@pytest.mark.parametrize("name", sorted(HAND_MADE))
@pytest.mark.parametrize("multi", [True, False])
def test_hand_made_maps_equal_find_contours_compiled(name, multi, compiled_always):
    for interval in (0.01, 0.001):
        assert_tree_equals_oracle(HAND_MADE[name], threshold_grid(interval), multi)


@pytest.mark.parametrize("multi", [True, False])
def test_compiled_kernel_contract_in_both_modes(multi, compiled_always):
    """``compiled_level_boxes`` itself: in single-contour mode it settles the levels whose
    largest contour the area bounds prove and leaves the others to a search."""
    scoremap = camlike_maps(5, 1, size=40)[0]
    q = quantize(scoremap)
    kept = np.flatnonzero(np.bincount(q.ravel(), minlength=256))
    kept = kept[kept > 0]
    level, boxes, search = _compiled.compiled_level_boxes(q, kept, multi)
    for index, value in enumerate(kept.tolist()):
        got = sorted(map(tuple, boxes[level == index].tolist()))
        if index in search:
            assert not multi and not got
            continue
        expected = oracle_binary_boxes((q >= value).view(np.uint8), multi)
        assert got == sorted(map(tuple, expected.tolist()))


@pytest.mark.parametrize("path", PATHS)
def test_single_contour_bounds_settle_most_levels_of_a_dominant_blob(path):
    """One large blob and small clutter: the area bounds pick the blob without a search."""
    scoremap = gaussian(60, 60, 30, 30, 12) + 0.2 * camlike_maps(9, 1, size=60)[0]
    scoremap /= scoremap.max()
    q = quantize(scoremap)
    kept = np.flatnonzero(np.bincount(q.ravel(), minlength=256))
    kept = kept[kept > 0]
    if path == "trees":
        _, _, search = _trees.tree_level_boxes(scoremap, q, kept, multi_contour=False)
    else:
        _, _, search = _compiled.compiled_level_boxes(q, kept, multi_contour=False)
    assert search.size < kept.size // 4


@pytest.mark.parametrize("limit", [0, 4000])
@pytest.mark.parametrize("extrema", [-1, 10**6])
def test_maps_with_too_many_basins_fall_back_to_searches(limit, extrema, tree_always,
                                                         monkeypatch):
    """Past the table budget a tree is not built: all levels (outer tree too large) or the
    levels with holes (hole tree too large, whether or not they were counted before) are
    searched instead, with the same boxes."""
    monkeypatch.setattr(_trees, "_TABLE_ENTRIES_MAX", limit)
    monkeypatch.setattr(_trees, "_HOLE_TREE_ABOVE_EXTREMA", extrema)
    monkeypatch.setattr(_trees, "_SEARCH_HOLE_LEVELS_UP_TO", -1)
    for scoremap in (nested_rings(), camlike_maps(3, 1, size=48)[0]):
        assert_tree_equals_oracle(scoremap, threshold_grid(0.001), True)


def test_hole_box_is_the_hole_grown_by_one_pixel(tree_always, hole_path):
    m = np.full((10, 12), 0.9)
    m[3:6, 4:8] = 0.1  # hole pixels x 4..7, y 3..5
    q = quantize(m)
    level = level_boxes(q, np.array([100]), multi_contour=True, scoremap=m)
    boxes = sorted(map(tuple, level.block(0).tolist()))
    assert boxes == [(0, 0, 11, 9), (3, 2, 9, 7)]  # outer (clamped); hole grown, x1 + w


# ---------------------------------------------------------------------------------------------
# Euler numbers
# ---------------------------------------------------------------------------------------------
def contour_euler(q: np.ndarray, value: int) -> int:
    """Outer contours minus holes of ``{q >= value}``, from findContours' hierarchy depths."""
    contours, hierarchy = cv2.findContours((q >= value).view(np.uint8), cv2.RETR_TREE,
                                           cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0
    parents = hierarchy[0][:, 3]
    euler = 0
    for index in range(len(contours)):
        depth, parent = 0, parents[index]
        while parent >= 0:
            depth, parent = depth + 1, parents[parent]
        euler += 1 if depth % 2 == 0 else -1
    return euler


def test_euler_numbers_histogram_paths_agree(monkeypatch):
    """OpenCV's float32 histograms (small maps) and NumPy's bincount (huge maps) agree."""
    q = np.random.default_rng(0).integers(0, 256, (40, 50)).astype(np.uint8)
    kept = np.flatnonzero(np.bincount(q.ravel(), minlength=256))[1:]
    with_opencv = euler_numbers(q, kept)
    monkeypatch.setattr(_topology, "_HISTOGRAM_EXACT_BELOW", 0)
    np.testing.assert_array_equal(euler_numbers(q, kept), with_opencv)


@given(st.integers(0, 2**31 - 1), st.sampled_from(["levels", "uniform"]))
def test_euler_numbers_equal_contour_counts(seed, kind):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 16, 2))
    values = rng.integers(0, 5, shape) * 63 if kind == "levels" else rng.integers(0, 256, shape)
    q = values.astype(np.uint8)
    kept = np.flatnonzero(np.bincount(q.ravel(), minlength=256))
    kept = kept[kept > 0]
    if kept.size == 0:
        return
    expected = [contour_euler(q, int(v)) for v in kept]
    np.testing.assert_array_equal(euler_numbers(q, kept), expected)


# ---------------------------------------------------------------------------------------------
# Random maps, both hole paths and both modes
# ---------------------------------------------------------------------------------------------
@st.composite
def random_maps(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    height, width = draw(st.integers(2, 28)), draw(st.integers(2, 28))
    kind = draw(st.sampled_from(["uniform", "levels", "smooth", "noisy smooth"]))
    if kind == "uniform":
        return rng.random((height, width))
    if kind == "levels":
        return rng.integers(0, draw(st.integers(2, 6)), (height, width)) / 5.0
    score = sum(rng.uniform(0.2, 1) * gaussian(height, width, *rng.uniform(0, 28, 2),
                                               rng.uniform(1, 6)) for _ in range(4))
    if kind == "noisy smooth":
        score = score + 0.3 * rng.random((height, width))
    return score / score.max()


@settings(max_examples=60, deadline=None)
@given(scoremap=random_maps(), multi=st.booleans(), interval=st.sampled_from([0.01, 0.001]))
def test_property_tree_boxes_equal_find_contours(scoremap, multi, interval):
    # (Hypothesis runs many examples per call: patch by hand rather than with monkeypatch.)
    original = (_levels._TREE_ABOVE, _levels._COMPILED_ABOVE, _levels._USE_COMPILED,
                _trees._SEARCH_HOLE_LEVELS_UP_TO, _trees._HOLE_TREE_ABOVE_EXTREMA)
    _levels._TREE_ABOVE, _levels._COMPILED_ABOVE = 0, 0  # for any map,
    _levels._USE_COMPILED = False  # the trees first
    try:
        # The hole tree at once, after counting the levels with holes, then hole searches.
        for extrema, limit in ((-1, -1), (10**6, -1), (10**6, 10**6)):
            _trees._HOLE_TREE_ABOVE_EXTREMA, _trees._SEARCH_HOLE_LEVELS_UP_TO = extrema, limit
            assert_tree_equals_oracle(scoremap, threshold_grid(interval), multi)
            assert_tree_equals_oracle(scoremap.astype(np.float32).astype(np.float64),
                                      threshold_grid(interval), multi)
        if NUMBA:  # and the compiled union-find
            _levels._USE_COMPILED = True
            assert_tree_equals_oracle(scoremap, threshold_grid(interval), multi)
    finally:
        (_levels._TREE_ABOVE, _levels._COMPILED_ABOVE, _levels._USE_COMPILED,
         _trees._SEARCH_HOLE_LEVELS_UP_TO, _trees._HOLE_TREE_ABOVE_EXTREMA) = original


def camlike_maps(seed: int, count: int, size: int = 96) -> np.ndarray:
    """Upsampled blobs with clutter: enough distinct levels for the default tree rule."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(count):
        low = 0.3 * rng.random((12, 12))
        for _ in range(3):
            low += rng.uniform(0.3, 1) * gaussian(12, 12, *rng.uniform(0, 12, 2),
                                                  rng.uniform(0.6, 3))
        high = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        high -= high.min()
        maps.append(high / high.max())
    return np.stack(maps)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("multi", [True, False])
def test_box_accuracy_on_fine_grid_equals_reference(multi, path, monkeypatch):
    """BoxAccuracy's default choice on a fine grid: the compiled union-find when numba is
    installed, the component trees otherwise."""
    if path == "trees":
        monkeypatch.setattr(_levels, "_USE_COMPILED", False)
    maps = camlike_maps(7, 3)
    assert all(np.unique(quantize(m)).size > _levels._TREE_ABOVE for m in maps)
    rng = np.random.default_rng(8)
    gt = []
    for _ in range(3):
        xs, ys = np.sort(rng.integers(0, 96, (2, 2)), axis=1)
        gt.append(np.array([[xs[0], ys[0], xs[1], ys[1]], [0, 0, 95, 95]]))
    grid = threshold_grid(0.001)
    metric = BoxAccuracy(grid, multi_contour=multi)
    metric.update(maps.astype(np.float32), gt)
    expected = oracle_correct(maps.astype(np.float32), gt, grid, (0.3, 0.5, 0.7), multi)
    np.testing.assert_array_equal(metric.state_dict()["state"]["correct"], expected)


def test_compiled_path_can_be_disabled_and_numba_is_imported_lazily():
    """``CAMKIT_DISABLE_NUMBA=1`` turns the compiled path off; ``import camkit`` and the
    metrics' import do not import numba."""
    import subprocess
    import sys

    code = ("import sys, camkit, camkit.metrics; assert 'numba' not in sys.modules; "
            "from camkit.boxes import _compiled; print(_compiled.available())")
    env = {"CAMKIT_DISABLE_NUMBA": "1", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.strip() == "False"


def test_a_kernel_that_fails_warns_once_and_falls_back_to_the_trees(monkeypatch):
    """A numba that imports but cannot compile the kernel: one warning, same counts, and the
    compiled path is not tried again."""
    calls = []

    def broken_kernel(*args):
        calls.append(args)
        raise RuntimeError("cannot compile here\nsecond line")

    monkeypatch.setattr(_compiled, "_KERNEL", broken_kernel)
    maps = camlike_maps(4, 2)
    gt = [np.array([[10, 10, 60, 60]]), np.array([[0, 0, 95, 95]])]
    grid = threshold_grid(0.001)
    metric = BoxAccuracy(grid)
    with pytest.warns(RuntimeWarning, match=r"compiled box kernel .* failed \(RuntimeError: "
                                            r"cannot compile here\)"):
        metric.update(maps, gt)
    assert len(calls) == 1 and _compiled._KERNEL is False
    expected = oracle_correct(maps, gt, grid, (0.3, 0.5, 0.7), True)
    np.testing.assert_array_equal(metric.state_dict()["state"]["correct"], expected)


# ---------------------------------------------------------------------------------------------
# Basins and the buffers reused between maps
# ---------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(scoremap=random_maps(), connectivity=st.sampled_from([8, 4]))
def test_property_each_basin_is_connected_in_every_level_set(scoremap, connectivity):
    """The trees rest on this: a basin's part of any level set (upper sets for the outer
    tree, lower sets for the hole tree) is one 4-connected piece, or empty."""
    basin, count = _trees._basins(scoremap, connectivity)
    height, width = scoremap.shape
    assert basin.dtype == np.int32 and basin.shape == (height * width,)
    assert np.array_equal(np.unique(basin), np.arange(count))
    labels = basin.reshape(height, width)
    for value in np.unique(scoremap).tolist():
        present = scoremap >= value if connectivity == 8 else scoremap <= value
        for index in np.unique(labels[present]).tolist():
            part = (present & (labels == index)).view(np.uint8)
            pieces, _ = cv2.connectedComponents(part, connectivity=4)
            assert pieces == 2, f"basin {index} splits at {value}"


def test_interior_extrema_count_pixels_off_the_edge_with_no_better_neighbour():
    m = 0.3 + 0.01 * (np.arange(9)[None, :] + 10 * np.arange(7)[:, None])  # a strict ramp
    m[2, 3], m[4, 6] = 0.0, 0.05  # two minima off the edge; the ramp's own are on it
    assert _trees._interior_extrema(_trees._better_neighbours(m, 4)) == 2
    assert _trees._interior_extrema(_trees._better_neighbours(m, 8)) == 0
    m[3, 3] = 1.0  # a maximum, and a plateau: every pixel of it off the edge counts
    assert _trees._interior_extrema(_trees._better_neighbours(m, 8)) == 1
    assert _trees._interior_extrema(_trees._better_neighbours(np.full((4, 5), 0.5), 4)) == 6


def test_local_maxima_count_pixels_above_each_4_neighbour():
    m = np.zeros((6, 7))
    m[0, 0], m[2, 3], m[5, 6] = 1.0, 0.5, 0.2  # strict maxima, on the edge or not
    m[4, 1] = m[4, 2] = 0.7  # a flat top of two pixels: not counted
    assert _levels._local_maxima(m) == 3
    assert _levels._local_maxima(np.full((5, 5), 0.3)) == 0


def cluttered_map(seed: int, size: int = 96) -> np.ndarray:
    """Many small blobs (a fine feature grid upsampled): between one maximum per 500 pixels
    and one per 64, and about 100 distinct levels at the 0.01 grid."""
    low = np.random.default_rng(seed).random((14, 14))
    high = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    high -= high.min()
    return high / high.max()


def two_blobs(size: int = 96) -> np.ndarray:
    """A smooth map: two Gaussian blobs, few maxima, about 100 distinct levels at 0.01."""
    score = gaussian(size, size, 30, 40, 12) + 0.6 * gaussian(size, size, 70, 60, 9)
    return score / score.max()


@pytest.mark.parametrize("multi", [True, False])
def test_cluttered_maps_get_the_trees_on_a_coarse_grid(multi, monkeypatch):
    """Between _CLUTTERED_TREE_ABOVE and _TREE_ABOVE sets, the trees give the boxes of
    cluttered maps only; smooth maps keep the per-level searches, and so do noisy maps in
    single-contour mode. All equal the oracle."""
    monkeypatch.setattr(_levels, "_USE_COMPILED", False)
    calls = []
    tree_level_boxes = _trees.tree_level_boxes
    monkeypatch.setattr(_trees, "tree_level_boxes",
                        lambda *args: calls.append(1) or tree_level_boxes(*args))
    grid = threshold_grid(0.01)
    cluttered = cluttered_map(3)
    smooth = two_blobs()
    for scoremap in (cluttered, smooth):
        q = quantize(scoremap)
        sets = np.unique(q[q > 0]).size
        assert _levels._CLUTTERED_TREE_ABOVE < min(sets, grid.size) <= _levels._TREE_ABOVE
    assert _levels._local_maxima(cluttered) * _levels._PIXELS_PER_MAXIMUM_CLUTTERED > \
        cluttered.size > _levels._local_maxima(cluttered) * _levels._PIXELS_PER_MAXIMUM_NOISY
    assert _levels._local_maxima(smooth) * _levels._PIXELS_PER_MAXIMUM_CLUTTERED < smooth.size
    assert_tree_equals_oracle(cluttered, grid, multi)
    assert calls == [1]
    assert_tree_equals_oracle(smooth, grid, multi)
    assert calls == [1]
    # With fewer sets than _CLUTTERED_TREE_ABOVE, cluttered maps are searched as well.
    assert_tree_equals_oracle(cluttered, threshold_grid(0.02), multi)
    assert calls == [1]
    noisy = np.random.default_rng(4).random((96, 96))
    assert _levels._local_maxima(noisy) * _levels._PIXELS_PER_MAXIMUM_NOISY > noisy.size
    assert_tree_equals_oracle(noisy, grid, multi)
    assert calls == ([1, 1] if multi else [1])


@pytest.mark.skipif(not NUMBA, reason="numba (camkit[fast]) is not installed")
@pytest.mark.parametrize("multi", [True, False])
def test_compiled_path_follows_the_trees_rule_with_every_contour(multi, monkeypatch):
    """Past _COMPILED_ABOVE sets the union-find gives the boxes in single mode; with every
    contour only where the trees would (here: the cluttered map, not the smooth one)."""
    calls = []
    compiled_level_boxes = _compiled.compiled_level_boxes
    monkeypatch.setattr(_compiled, "compiled_level_boxes",
                        lambda *args: calls.append(1) or compiled_level_boxes(*args))
    for scoremap in (two_blobs(), cluttered_map(3)):
        assert_tree_equals_oracle(scoremap, threshold_grid(0.01), multi)
    assert calls == ([1] if multi else [1, 1])


def test_tree_boxes_are_the_same_in_concurrent_threads(tree_always, hole_path):
    """The link grid and the leaf tables are reused per thread: threads working at once on
    maps of several sizes get the boxes a single thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    maps = [m for size in (40, 64, 96) for m in camlike_maps(size, 4, size)]
    grid = threshold_grid(0.001)

    def boxes(scoremap: np.ndarray) -> list[list[tuple[int, ...]]]:
        q = quantize(scoremap)
        level = level_boxes(q, threshold_levels(grid, int(q.max())), multi_contour=True,
                            scoremap=scoremap)
        return [sorted(map(tuple, level.block(i).tolist())) for i in range(level.starts.size)]

    alone = [boxes(m) for m in maps]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(boxes, maps * 3))
    assert together == alone * 3


def test_leaf_tables_past_the_kept_size_are_fresh_arrays(tree_always, hole_path, monkeypatch):
    scoremap = camlike_maps(3, 1)[0]
    grid = threshold_grid(0.001)
    assert_tree_equals_oracle(scoremap, grid, True)
    monkeypatch.setattr(_trees, "_TABLE_KEPT_UP_TO", 0)
    kept = _trees._BUFFERS.table
    assert_tree_equals_oracle(scoremap, grid, True)
    assert _trees._BUFFERS.table is kept  # not replaced, not grown
