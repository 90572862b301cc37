"""Percentile thresholding (PaS) and the max rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_cam import FLOAT_TYPES, all_finite, fitting_or_hostile, hostile_numbers, is_finite

from camkit import PercentileThreshold, percentile_threshold


@given(st.integers(0, 2**31 - 1), st.floats(0, 100), st.floats(0, 2))
def test_matches_numpy_percentile(seed, q, theta):
    maps = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = percentile_threshold(maps, q, theta)
    expected = [theta * np.percentile(m.numpy(), q) for m in maps]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_max_rule_and_hand_values():
    maps = torch.arange(10.0).view(1, 2, 5)
    torch.testing.assert_close(percentile_threshold(maps, 100, 0.2), torch.tensor([1.8]))
    torch.testing.assert_close(percentile_threshold(maps, 50, 1.0), torch.tensor([4.5]))
    torch.testing.assert_close(percentile_threshold(maps, 0, 1.0), torch.tensor([0.0]))
    single = percentile_threshold(maps[0], 90, 0.35)
    assert single.dim() == 0
    assert float(single) == pytest.approx(0.35 * 8.1)


def test_default_is_pas_and_module():
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(PercentileThreshold()(maps), percentile_threshold(maps, 90, 0.35))
    torch.testing.assert_close(
        PercentileThreshold(q=100, theta=0.2)(maps), 0.2 * maps.flatten(1).amax(1)
    )
    assert repr(PercentileThreshold()) == "PercentileThreshold(q=90.0, theta=0.35)"


def test_dtype_contract(dtype):
    maps = torch.rand(2, 6, 6).to(dtype)
    got = percentile_threshold(maps)
    assert got.dtype == dtype and got.shape == (2,)
    assert percentile_threshold(torch.rand(0, 4, 4)).shape == (0,)


@given(st.integers(0, 2**31 - 1), st.floats(0, 100), st.floats(0, 100))
def test_monotone_in_q(seed, q1, q2):
    maps = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    low, high = sorted((q1, q2))
    assert bool((percentile_threshold(maps, low, 1.0) <= percentile_threshold(maps, high, 1.0)
                 + 1e-12).all())


def test_errors():
    maps = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match=r"q must be in \[0.0, 100.0\], got 101.0"):
        percentile_threshold(maps, 101)
    with pytest.raises(ValueError, match=r"q must be in \[0.0, 100.0\], got -1.0"):
        PercentileThreshold(q=-1)
    with pytest.raises(ValueError, match="theta must be in"):
        percentile_threshold(maps, 90, -0.1)
    with pytest.raises(ValueError, match="maps must be finite"):
        percentile_threshold(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"maps must be \(B, H, W\) or \(H, W\)"):
        percentile_threshold(torch.rand(4))
    with pytest.raises(TypeError, match="q must be a real number"):
        percentile_threshold(maps, None)


# ---------------------------------------------------------------------------------------------
# Degenerate and hostile input
# ---------------------------------------------------------------------------------------------
def test_interpolation_between_values_of_opposite_extreme_sign():
    maps = torch.tensor([[-3e38, 3e38]])
    assert float(percentile_threshold(maps, 50, 1.0)) == 0.0
    torch.testing.assert_close(percentile_threshold(maps, 90, 1.0), torch.tensor(2.4e38))
    expected = np.percentile(np.array([-3e38, 3e38, 1.0]), 75)
    got = percentile_threshold(torch.tensor([[-3e38, 3e38, 1.0]], dtype=torch.float64), 75, 1.0)
    assert float(got) == pytest.approx(expected)


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_threshold_beyond_the_dtype_saturates(dtype):
    largest = torch.finfo(dtype).max
    maps = torch.full((2, 3, 3), largest, dtype=dtype)
    maps[1] = 0.0
    for theta in (2.0, 1e300):
        got = percentile_threshold(maps, 90, theta)
        assert got.dtype == dtype and is_finite(got)
        assert float(got[0]) == largest and float(got[1]) == 0.0  # 1e300 * 0 is 0, not NaN
    tiny = torch.full((1, 2, 2), torch.finfo(dtype).tiny / 4, dtype=dtype)
    assert is_finite(percentile_threshold(tiny, 50, 1e300))


@given(dims=st.tuples(*[st.integers(0, 4)] * 3), data=st.data(), q=hostile_numbers,
       theta=hostile_numbers)
def test_threshold_module_refuses_or_stays_finite(dims, data, q, theta):
    """Hostile input to camkit.threshold: only ValueError/TypeError escape (NaN or infinite
    maps are refused), and finite input gives finite output."""
    maps = data.draw(st.one_of(fitting_or_hostile(dims), fitting_or_hostile(dims[1:])))
    for call in (lambda: percentile_threshold(maps, q, theta),
                 lambda: PercentileThreshold(q, theta)(maps),
                 lambda: percentile_threshold(maps)):
        try:
            out = call()
        except (ValueError, TypeError):
            continue
        assert out.shape == maps.shape[:-2] and out.dtype == maps.dtype
        assert all_finite(maps) and is_finite(out)
