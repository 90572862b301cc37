"""The compiled EM path: parity with eager, dynamic batch size, fallback to eager."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo

from camkit.cream import _ahead, _compile, _scan, cream_map, reset_compile_cache


def _inputs(batch: int, channels: int = 8, size: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, size, size, generator=gen).relu()
    fg = torch.randn(batch, channels, generator=gen)
    bg = torch.randn(batch, channels, generator=gen)
    cam = torch.randn(batch, size, size, generator=gen)
    return features, fg, bg, cam


@pytest.fixture
def fresh_compile_state(monkeypatch, tmp_path):
    """Empty camkit's and dynamo's caches around the test (ahead-of-time packages go to a
    folder of the test's own); yield a backend setter."""
    torch._dynamo.reset()
    reset_compile_cache()
    monkeypatch.setattr(_ahead, "_CACHE_ROOT", tmp_path / "kernels")

    def use_backend(backend):
        monkeypatch.setattr(_compile, "_BACKEND", backend)

    yield use_backend
    torch._dynamo.reset()
    reset_compile_cache()


def _counting_backend(graphs):
    """A backend that records each graph it is given and runs it uncompiled."""

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    return backend


def _assert_details_close(got, expected, **tol):
    for got_t, exp_t in zip(got, expected, strict=True):
        torch.testing.assert_close(got_t, exp_t, **tol)


def test_dynamic_batch_size_does_not_recompile(fresh_compile_state):
    graphs = []
    fresh_compile_state(_counting_backend(graphs))
    for batch in (2, 3, 5, 7):
        features, fg, bg, cam = _inputs(batch, seed=batch)
        got = cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
        expected = cream_map(features, fg, bg, cam=cam, return_details=True)
        _assert_details_close(got, expected, rtol=1e-6, atol=1e-6)
    assert len(graphs) == 1
    # A new channel count is a new shape: compiled once more, then cached again.
    for batch in (2, 4):
        features, fg, bg, cam = _inputs(batch, channels=5)
        cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
    assert len(graphs) == 2


def test_calibration_runs_in_the_graph_without_recompiling_per_delta(fresh_compile_state):
    graphs = []
    fresh_compile_state(_counting_backend(graphs))
    features, fg, bg, cam = _inputs(4)
    for delta in (0.2, 0.5, 0.9):
        got = cream_map(features, fg, bg, cam=cam, delta=delta, compile=True)
        torch.testing.assert_close(got, cream_map(features, fg, bg, cam=cam, delta=delta))
    assert len(graphs) == 1
    # Without the CAM, or without adding it: one graph each, same results as eager.
    for options in ({"cam": None}, {"cam": cam, "add_cam": False}):
        got = cream_map(features, fg, bg, compile=True, **options)
        torch.testing.assert_close(got, cream_map(features, fg, bg, **options))
    assert len(graphs) == 3


def test_failing_compiler_falls_back_with_one_warning(fresh_compile_state):
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler found")

    fresh_compile_state(broken_backend)
    features, fg, bg, cam = _inputs(3)
    expected = cream_map(features, fg, bg, cam=cam)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable .*no C\\+\\+ compiler"):
        got = cream_map(features, fg, bg, cam=cam, compile=True)
    torch.testing.assert_close(got, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = cream_map(features, fg, bg, cam=cam, compile=True)
        other = cream_map(features, fg, bg, cam=cam, compile=True, iterations=3)
    torch.testing.assert_close(again, expected)
    torch.testing.assert_close(other, cream_map(features, fg, bg, cam=cam, iterations=3))


def test_auto_is_eager_on_cpu(fresh_compile_state):
    def broken_backend(graph_module, example_inputs):
        raise AssertionError("compile must not be used on CPU with compile='auto'")

    fresh_compile_state(broken_backend)
    features, fg, bg, cam = _inputs(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cream_map(features, fg, bg, cam=cam, compile="auto")
    torch.testing.assert_close(got, cream_map(features, fg, bg, cam=cam))
    assert not _compile._COMPILED


def _use_chunks_of(monkeypatch, images: int, channels: int = 8, size: int = 5) -> None:
    """Make the chunked path run ``images`` float32 images of ``_inputs``' shape per step."""
    monkeypatch.setattr(_scan, "_CHUNK_BYTES", images * channels * size * size * 4)


def _scan_graphs(graphs):
    return [g for g in graphs if any("scan" in str(node.target) for node in g.graph.nodes)]


def test_chunk_size_is_a_power_of_two_within_the_cache_budget(monkeypatch):
    monkeypatch.setattr(_scan, "_CHUNK_BYTES", 4 << 20)
    # 512 x 196 float32 = 392 KiB per image: 10 fit, chunks of 8 from 16 images on.
    assert _scan.scan_chunk(torch.empty(16, 512, 196)) == 8
    assert _scan.scan_chunk(torch.empty(15, 512, 196)) == 0  # fewer than two chunks
    assert _scan.scan_chunk(torch.empty(64, 1024, 196)) == 4
    assert _scan.scan_chunk(torch.empty(64, 2048, 784)) == 0  # one image passes the budget
    assert _scan.scan_chunk(torch.empty(64, 512, 196, dtype=torch.float64)) == 4


def test_chunked_path_matches_eager_without_recompiling(fresh_compile_state, monkeypatch):
    """Batches of two chunks or more run through one scan graph whatever their size; the
    images past the last whole chunk go through the whole-batch graph."""
    _use_chunks_of(monkeypatch, 2)
    graphs = []
    fresh_compile_state(_counting_backend(graphs))
    for batch in (4, 5, 6, 9, 8):
        features, fg, bg, cam = _inputs(batch, seed=batch)
        got = cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
        expected = cream_map(features, fg, bg, cam=cam, return_details=True)
        _assert_details_close(got, expected, rtol=1e-6, atol=1e-6)
    assert len(_scan_graphs(graphs)) == 1
    assert len(graphs) == 2  # and the whole-batch graph, for the one image left over
    # Other options: a scan graph each, same results as eager.
    features, fg, bg, cam = _inputs(5)
    variants = ({"cam": None}, {"cam": cam, "refresh_responsibilities": True},
                {"cam": cam, "centroid_features": "normalized", "add_cam": False})
    for options in variants:
        got = cream_map(features, fg, bg, compile=True, return_details=True, **options)
        _assert_details_close(got, cream_map(features, fg, bg, return_details=True, **options),
                              rtol=1e-6, atol=1e-6)
    assert len(_scan_graphs(graphs)) == 1 + len(variants)
    assert not _compile._FAILED


def test_chunked_path_that_fails_hands_over_to_the_whole_batch_graph(fresh_compile_state,
                                                                     monkeypatch):
    _use_chunks_of(monkeypatch, 2)
    graphs = []
    counting = _counting_backend(graphs)

    def no_scan_backend(graph_module, example_inputs):
        if _scan_graphs([graph_module]):
            raise RuntimeError("scan is not supported here")
        return counting(graph_module, example_inputs)

    fresh_compile_state(no_scan_backend)
    features, fg, bg, cam = _inputs(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole-batch graph works: nothing to warn about
        got = cream_map(features, fg, bg, cam=cam, compile=True)
        again = cream_map(features, fg, bg, cam=cam, compile=True)
    expected = cream_map(features, fg, bg, cam=cam)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(again, expected)
    assert len(graphs) == 1 and not _scan_graphs(graphs)


@pytest.mark.slow
def test_inductor_chunked_path_matches_eager(fresh_compile_state, monkeypatch):
    _use_chunks_of(monkeypatch, 2)
    for batch in (4, 7):
        features, fg, bg, cam = _inputs(batch, seed=batch)
        got = cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
        expected = cream_map(features, fg, bg, cam=cam, return_details=True)
        _assert_details_close(got, expected, rtol=1e-5, atol=1e-5)
    # Strided inputs (every other image, a transposed CAM) reach the same library.
    features, fg, bg, cam = _inputs(12, seed=3)
    features, fg, bg = features[::2], fg[::2], bg[::2]
    cam = cam[::2].transpose(1, 2).contiguous().transpose(1, 2)
    got = cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
    _assert_details_close(got, cream_map(features, fg, bg, cam=cam, return_details=True),
                          rtol=1e-5, atol=1e-5)
    assert any(key[0] == "ahead" for key in _compile._COMPILED)  # compiled ahead of time
    assert not _compile._FAILED


@pytest.mark.slow
def test_inductor_chunked_path_without_ahead_of_time_compilation(fresh_compile_state,
                                                                 monkeypatch):
    """When export or AOTInductor fails, the chunked kernel goes through torch.compile."""
    _use_chunks_of(monkeypatch, 2)

    def unavailable(kernel, args, key):
        raise RuntimeError("AOTInductor is not available")

    monkeypatch.setattr(_compile, "compile_ahead_of_time", unavailable)
    features, fg, bg, cam = _inputs(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
    _assert_details_close(got, cream_map(features, fg, bg, cam=cam, return_details=True),
                          rtol=1e-5, atol=1e-5)
    assert [key[0] for key in _compile._FAILED] == ["ahead"]
    assert any(key[0] == "scan" for key in _compile._COMPILED)


def test_kernel_cache_names_packages_by_host_source_and_key(monkeypatch, tmp_path):
    monkeypatch.setattr(_ahead, "_CACHE_ROOT", tmp_path)
    monkeypatch.delenv("CAMKIT_DISABLE_KERNEL_CACHE", raising=False)
    first = _ahead._package_path(("ahead", "cpu", torch.float32, ((2, 8, 25),)))
    assert first is not None and first.parent == tmp_path and first.suffix == ".pt2"
    assert first == _ahead._package_path(("ahead", "cpu", torch.float32, ((2, 8, 25),)))
    assert first != _ahead._package_path(("ahead", "cpu", torch.float64, ((2, 8, 25),)))
    assert first != _ahead._package_path(("ahead", "cpu", torch.float32, ((4, 8, 25),)))
    monkeypatch.setenv("CAMKIT_DISABLE_KERNEL_CACHE", "1")
    assert _ahead._package_path(("ahead", "cpu", torch.float32, ((2, 8, 25),))) is None


@pytest.mark.slow
def test_ahead_of_time_package_is_reused_from_disk_and_rebuilt_when_damaged(
        fresh_compile_state, monkeypatch):
    _use_chunks_of(monkeypatch, 2)
    monkeypatch.delenv("CAMKIT_DISABLE_KERNEL_CACHE", raising=False)
    features, fg, bg, cam = _inputs(4)
    expected = cream_map(features, fg, bg, cam=cam)
    torch.testing.assert_close(cream_map(features, fg, bg, cam=cam, compile=True), expected)
    (package,) = (_ahead._CACHE_ROOT).glob("*.pt2")
    # Another process (here: an emptied in-memory cache) loads it instead of compiling.
    reset_compile_cache()

    def no_export(*args, **kwargs):
        raise AssertionError("the cached package should have been loaded")

    with monkeypatch.context() as patched:
        patched.setattr(torch.export, "export", no_export)
        torch.testing.assert_close(cream_map(features, fg, bg, cam=cam, compile=True), expected)
    assert not _compile._FAILED
    # A damaged package is compiled again and replaced.
    package.write_bytes(b"not a package")
    reset_compile_cache()
    torch.testing.assert_close(cream_map(features, fg, bg, cam=cam, compile=True), expected)
    assert not _compile._FAILED and package.stat().st_size > 100


@pytest.mark.slow
def test_inductor_matches_eager(fresh_compile_state):
    stats = torch._dynamo.utils.counters["stats"]
    graphs_before = stats["unique_graphs"]
    for batch in (3, 6):
        features, fg, bg, cam = _inputs(batch, seed=batch)
        got = cream_map(features, fg, bg, cam=cam, compile=True, return_details=True)
        expected = cream_map(features, fg, bg, cam=cam, return_details=True)
        _assert_details_close(got, expected, rtol=1e-5, atol=1e-5)
    assert stats["unique_graphs"] - graphs_before == 1
    # float16 input runs the same float32 kernel after the cast.
    features, fg, bg, cam = _inputs(4)
    got = cream_map(features.half(), fg, bg, cam=cam.half(), compile=True)
    expected = cream_map(features.half(), fg, bg, cam=cam.half())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_auto_compiles_on_cuda_and_matches_eager(fresh_compile_state):
    features, fg, bg, cam = (t.cuda() for t in _inputs(4))
    got = cream_map(features, fg, bg, cam=cam, compile="auto", return_details=True)
    expected = cream_map(features, fg, bg, cam=cam, return_details=True)
    _assert_details_close(got, expected, rtol=1e-5, atol=1e-5)
    assert _compile._COMPILED
