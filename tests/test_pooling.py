"""Thresholded average pooling (TAP)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_close, gradcheck
from hypothesis import given
from hypothesis import strategies as st
from test_cam import FLOAT_TYPES, all_finite, fitting_or_hostile, hostile_numbers, is_finite
from torch import nn

from camkit import ThresholdedAvgPool, thresholded_avg_pool


def reference_tap(x, theta):
    """Per image and channel loop in float64."""
    b_size, channels = x.shape[:2]
    out = torch.zeros(b_size, channels, 1, 1, dtype=torch.float64)
    for b in range(b_size):
        for c in range(channels):
            values = [float(v) for v in x[b, c].flatten()]
            tau = theta * max(values)
            kept = [v for v in values if v > tau]
            out[b, c, 0, 0] = sum(kept) / len(kept) if kept else 0.0
    return out


def test_hand_computed_value():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    torch.testing.assert_close(thresholded_avg_pool(x, 0.5), torch.tensor([[[[2.5]]]]))
    torch.testing.assert_close(thresholded_avg_pool(x, 0.0), torch.tensor([[[[2.0]]]]))
    # theta = 1 keeps nothing (strictly greater than the max): pooled value 0.
    torch.testing.assert_close(thresholded_avg_pool(x, 1.0), torch.tensor([[[[0.0]]]]))


@pytest.mark.parametrize("theta", [0.0, 0.1, 0.5, 0.9])
def test_matches_loop_reference(theta):
    x = torch.relu(torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64))
    torch.testing.assert_close(thresholded_avg_pool(x, theta), reference_tap(x, theta))


def test_all_zero_channel_gives_zero_without_nan():
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    out = thresholded_avg_pool(x, 0.1)
    assert bool((out == 0).all())
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool((x.grad == 0).all())


def test_gradcheck_float64():
    # Distinct, well-separated values so that no element sits on the threshold.
    x = torch.randperm(2 * 3 * 4 * 4, generator=torch.Generator().manual_seed(1)).double()
    x = (x / 10.0).view(2, 3, 4, 4)
    assert gradcheck(lambda t: thresholded_avg_pool(t, 0.3), x)


def test_gradient_reaches_kept_elements_only():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], requires_grad=True)
    thresholded_avg_pool(x, 0.5).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[[[0.0, 0.0], [0.5, 0.5]]]]))


def test_dtype_and_device_contract(dtype, device):
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = thresholded_avg_pool(x.to(device, dtype), 0.1)
    assert got.dtype == dtype and got.device.type == device.type and got.shape == (2, 3, 1, 1)
    assert_close(got, reference_tap(x.to(dtype).double(), 0.1), dtype)


@given(st.integers(0, 2**31 - 1))
def test_theta_zero_is_the_mean_of_the_positive_part(seed):
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    positive = x.clamp_min(0)
    count = (x > 0).sum(dim=(2, 3), keepdim=True).clamp_min(1)
    expected = positive.sum(dim=(2, 3), keepdim=True) / count
    torch.testing.assert_close(thresholded_avg_pool(x, 0.0), expected)


@given(st.integers(0, 2**31 - 1))
def test_theta_zero_on_positive_features_is_global_average_pooling(seed):
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(seed),
                   dtype=torch.float64) + 0.01
    torch.testing.assert_close(thresholded_avg_pool(x, 0.0), nn.AdaptiveAvgPool2d(1)(x))


@given(st.integers(0, 2**31 - 1), st.floats(0, 1))
def test_pooled_value_lies_between_tau_and_max(seed, theta):
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = thresholded_avg_pool(x, theta)
    top = x.amax(dim=(2, 3), keepdim=True)
    assert bool((out <= top + 1e-12).all())
    assert bool(((out > theta * top) | (out == 0)).all())


def test_module_is_drop_in_for_adaptive_avgpool(torchvision_models):
    model = torchvision_models.resnet18(num_classes=5).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        model.avgpool = ThresholdedAvgPool(0.0)
        swapped = model(x)
    assert swapped.shape == plain.shape
    # ResNet features are post-ReLU; theta = 0 differs from GAP only where zeros are excluded.
    assert bool(torch.isfinite(swapped).all())
    assert repr(ThresholdedAvgPool(0.25)) == "ThresholdedAvgPool(theta=0.25)"


def test_errors():
    with pytest.raises(ValueError, match=r"theta must be in \[0.0, 1.0\], got 1.5"):
        thresholded_avg_pool(torch.rand(1, 1, 2, 2), 1.5)
    with pytest.raises(ValueError, match="theta must be finite"):
        ThresholdedAvgPool(float("nan"))
    with pytest.raises(TypeError, match="theta must be a real number, got str"):
        thresholded_avg_pool(torch.rand(1, 1, 2, 2), "0.1")
    with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\), got a 2-D"):
        thresholded_avg_pool(torch.rand(2, 2), 0.1)
    with pytest.raises(ValueError, match="x must have non-empty spatial dims"):
        thresholded_avg_pool(torch.rand(1, 1, 0, 2), 0.1)


# ---------------------------------------------------------------------------------------------
# Degenerate and hostile input
# ---------------------------------------------------------------------------------------------
def test_minus_inf_below_the_threshold_is_dropped():
    x = torch.ones(1, 2, 2, 2)
    x[0, 0, 0, 0] = -math.inf
    x.requires_grad_(True)
    out = thresholded_avg_pool(x, 0.1)
    torch.testing.assert_close(out.detach(), torch.ones(1, 2, 1, 1))
    out.sum().backward()
    expected = torch.tensor([[[[0.0, 1 / 3], [1 / 3, 1 / 3]], [[0.25, 0.25], [0.25, 0.25]]]])
    torch.testing.assert_close(x.grad, expected)


def test_redo_without_the_mask_product_matches_the_reference():
    """A non-finite pooled value sends the whole batch through torch.where: same values."""
    x = torch.relu(torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(3),
                               dtype=torch.float64))
    x[1, 2, 0, 0] = -math.inf
    got = thresholded_avg_pool(x, 0.3)
    finite = x.clone()
    finite[1, 2, 0, 0] = 0.0
    torch.testing.assert_close(got, reference_tap(finite, 0.3))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_and_inf_channels_pass_their_value_on(value):
    x = torch.rand(1, 2, 3, 3)
    x[0, 0, 1, 1] = value
    out = thresholded_avg_pool(x, 0.1)
    assert out[0, 0, 0, 0].item() == value or (math.isnan(value) and out[0, 0].isnan().all())
    assert is_finite(out[0, 1])


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
@pytest.mark.parametrize("theta", [0.0, 0.5])
def test_extreme_finite_features_give_finite_means(dtype, theta):
    largest = torch.finfo(dtype).max
    for value in (largest, -largest, min(3e38, largest), torch.finfo(dtype).tiny / 4):
        x = torch.full((2, 3, 5, 5), value, dtype=dtype)
        x[0, 1] = -x[0, 1]
        out = thresholded_avg_pool(x, theta)
        assert out.dtype == dtype and is_finite(out)
        if value > 0:
            assert float(out[0, 0].double()) == pytest.approx(float(value), rel=1e-2)


@given(dims=st.tuples(*[st.integers(0, 4)] * 4), data=st.data(), theta=hostile_numbers)
def test_pooling_module_refuses_or_stays_finite(dims, data, theta):
    """Hostile input to camkit.pooling: only ValueError/TypeError escape, and finite input
    gives finite output."""
    x = data.draw(fitting_or_hostile(dims))
    for call in (lambda: thresholded_avg_pool(x, theta), lambda: ThresholdedAvgPool(theta)(x),
                 lambda: thresholded_avg_pool(x, 0.1)):
        try:
            out = call()
        except (ValueError, TypeError):
            continue
        assert out.shape == (*x.shape[:2], 1, 1) and out.dtype == x.dtype
        if all_finite(x):
            assert is_finite(out)
