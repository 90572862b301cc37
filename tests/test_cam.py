"""CAM, NWC head, normalization and upsampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_close
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import camkit
from camkit import (
    ClassActivationMap,
    NegativeWeightClamp,
    class_activation_map,
    normalize_map,
    upsample_map,
)


# --------------------------------------------------------------------------- slow references
def reference_cam(features, weight, classes, clamp_negative=False):
    """Per-pixel loop in float64."""
    b_size, channels, height, width = features.shape
    out = torch.zeros(b_size, height, width, dtype=torch.float64)
    for b in range(b_size):
        k = int(classes[b])
        for i in range(height):
            for j in range(width):
                total = 0.0
                for c in range(channels):
                    w = float(weight[k, c])
                    if clamp_negative:
                        w = max(w, 0.0)
                    total += w * float(features[b, c, i, j])
                out[b, i, j] = total
    return out


def reference_normalize(single):
    values = [float(v) for v in single.flatten()]
    if any(math.isnan(v) or math.isinf(v) for v in values):
        return torch.zeros_like(single, dtype=torch.float64)
    low, high = min(values), max(values)
    if low == high:
        return torch.zeros_like(single, dtype=torch.float64)
    return torch.tensor([(v - low) / (high - low) for v in values],
                        dtype=torch.float64).view(single.shape)


# --------------------------------------------------------------------------- CAM values
@pytest.mark.parametrize("clamp_negative", [False, True])
def test_cam_matches_loop_reference_with_mixed_classes(clamp_negative):
    gen = torch.Generator().manual_seed(0)
    features = torch.rand(3, 5, 4, 6, generator=gen, dtype=torch.float64)
    weight = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    classes = torch.tensor([6, 0, 6])
    got = class_activation_map(features, weight, classes, clamp_negative=clamp_negative)
    expected = reference_cam(features, weight, classes, clamp_negative)
    assert got.shape == (3, 4, 6)
    torch.testing.assert_close(got, expected)


def test_cam_hand_computed_value():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # (1, 2, 1, 2)
    weight = torch.tensor([[0.5, -2.0], [1.0, 1.0]])
    got = class_activation_map(features, weight, torch.tensor([0]))
    torch.testing.assert_close(got, torch.tensor([[[0.5 - 6.0, 1.0 + 2.0]]]))
    clamped = class_activation_map(features, weight, torch.tensor([0]), clamp_negative=True)
    torch.testing.assert_close(clamped, torch.tensor([[[0.5, 1.0]]]))


def test_cam_accepts_int_class_and_conv_weight():
    gen = torch.Generator().manual_seed(1)
    features = torch.rand(2, 4, 3, 3, generator=gen)
    weight = torch.randn(3, 4, generator=gen)
    expected = class_activation_map(features, weight, torch.tensor([2, 2]))
    torch.testing.assert_close(class_activation_map(features, weight, 2), expected)
    torch.testing.assert_close(class_activation_map(features, weight, torch.tensor(2)), expected)
    conv_weight = weight[:, :, None, None].clone()
    torch.testing.assert_close(class_activation_map(features, conv_weight, 2), expected)


def test_cam_dtype_contract(dtype, device):
    gen = torch.Generator().manual_seed(2)
    features64 = torch.rand(2, 8, 5, 5, generator=gen, dtype=torch.float64)
    weight64 = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    classes = torch.tensor([1, 3])
    got = class_activation_map(
        features64.to(device, dtype), weight64.to(device, dtype), classes.to(device)
    )
    assert got.dtype == dtype and got.device.type == device.type
    expected = reference_cam(features64.to(dtype).double(), weight64.to(dtype).double(), classes)
    assert_close(got, expected, dtype)


def test_cam_empty_batch():
    out = class_activation_map(torch.rand(0, 3, 4, 4), torch.rand(5, 3), torch.zeros(0).long())
    assert out.shape == (0, 4, 4)


@given(st.integers(0, 2**31 - 1))
def test_clamp_never_increases_map_for_nonnegative_features(seed):
    gen = torch.Generator().manual_seed(seed)
    features = torch.rand(2, 6, 3, 4, generator=gen, dtype=torch.float64)
    weight = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    classes = torch.randint(0, 5, (2,), generator=gen)
    plain = class_activation_map(features, weight, classes)
    clamped = class_activation_map(features, weight, classes, clamp_negative=True)
    assert bool((plain <= clamped + 1e-12).all())
    assert bool((clamped >= 0).all())


@given(st.integers(0, 2**31 - 1), st.floats(-3, 3))
def test_cam_is_linear_in_weight(seed, alpha):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    w1 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    w2 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    classes = torch.randint(0, 4, (2,), generator=gen)
    combined = class_activation_map(features, w1 + alpha * w2, classes)
    separate = class_activation_map(features, w1, classes) + alpha * class_activation_map(
        features, w2, classes
    )
    torch.testing.assert_close(combined, separate)


# --------------------------------------------------------------------------- CAM errors
def test_cam_errors():
    features = torch.rand(2, 4, 3, 3)
    weight = torch.rand(5, 4)
    with pytest.raises(TypeError, match="features must be a torch.Tensor, got ndarray"):
        class_activation_map(np.zeros((2, 4, 3, 3)), weight, 0)
    with pytest.raises(ValueError, match=r"features must be \(B, C, h, w\), got a 3-D"):
        class_activation_map(features[0], weight, 0)
    with pytest.raises(TypeError, match="features must have dtype in"):
        class_activation_map(features.long(), weight, 0)
    with pytest.raises(ValueError, match="weight must have C=4 columns"):
        class_activation_map(features, torch.rand(5, 3), 0)
    with pytest.raises(ValueError, match=r"weight must be a linear \(K, C\) or 1x1 conv"):
        class_activation_map(features, torch.rand(5, 4, 3, 3), 0)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 4\].*got values in \[0, 5\]"):
        class_activation_map(features, weight, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="classes must hold one class per image"):
        class_activation_map(features, weight, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="classes must have dtype in"):
        class_activation_map(features, weight, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="weight must be on the same device as features"):
        class_activation_map(features, weight.to("meta"), 0)


# --------------------------------------------------------------------------- normalize_map
def test_normalize_matches_reference_and_range():
    gen = torch.Generator().manual_seed(3)
    maps = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64) * 7 + 2
    got = normalize_map(maps)
    for b in range(4):
        torch.testing.assert_close(got[b], reference_normalize(maps[b]))
    assert float(got.amin()) == 0.0 and float(got.amax()) == 1.0


def test_normalize_degenerate_maps_become_zero():
    maps = torch.stack([
        torch.full((3, 3), 4.0),
        torch.tensor([[0.0, 1.0, float("nan")]] * 3),
        torch.tensor([[0.0, 1.0, float("inf")]] * 3),
        torch.tensor([[0.0, 2.0, 4.0]] * 3),
    ])
    got = normalize_map(maps)
    assert bool(torch.isfinite(got).all())
    assert bool((got[:3] == 0).all())
    torch.testing.assert_close(got[3], torch.tensor([[0.0, 0.5, 1.0]] * 3))


def test_normalize_keeps_dtype_and_leading_dims(dtype):
    maps = torch.rand(2, 3, 4, 5).to(dtype)
    got = normalize_map(maps)
    assert got.dtype == dtype and got.shape == maps.shape
    assert float(got.float().amax()) == pytest.approx(1.0)
    assert normalize_map(torch.rand(0, 4, 4)).shape == (0, 4, 4)


@given(st.integers(0, 2**31 - 1), st.floats(0.01, 100), st.floats(-50, 50))
def test_normalize_is_invariant_to_positive_affine_maps(seed, scale, shift):
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(normalize_map(maps * scale + shift), normalize_map(maps))


def test_normalize_errors():
    with pytest.raises(ValueError, match=r"maps must be at least 2-D \(\.\.\., H, W\)"):
        normalize_map(torch.rand(5))
    with pytest.raises(TypeError, match="maps must be a torch.Tensor"):
        normalize_map([[0.0, 1.0]])


# --------------------------------------------------------------------------- upsample_map
def test_upsample_matches_opencv_inter_cubic():
    cv2 = pytest.importorskip("cv2")
    gen = torch.Generator().manual_seed(4)
    maps = torch.rand(2, 7, 7, generator=gen, dtype=torch.float32)
    got = upsample_map(maps, 224)
    assert got.shape == (2, 224, 224) and got.dtype == torch.float32
    for b in range(2):
        expected = cv2.resize(maps[b].numpy(), (224, 224), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(got[b].numpy(), expected, atol=2e-5)


def test_upsample_non_square_and_single_map():
    maps = torch.rand(5, 3)
    got = upsample_map(maps, (20, 12))
    assert got.shape == (20, 12)
    constant = upsample_map(torch.full((1, 4, 4), 0.25), (9, 9))
    torch.testing.assert_close(constant, torch.full((1, 9, 9), 0.25))
    assert upsample_map(torch.rand(0, 4, 4), 8).shape == (0, 8, 8)


def test_upsample_half_precision(dtype):
    maps = torch.rand(1, 6, 6)
    got = upsample_map(maps.to(dtype), 12)
    assert got.dtype == dtype
    assert_close(got, upsample_map(maps.double(), 12), dtype, atol=5e-2)


def test_upsample_errors():
    with pytest.raises(ValueError, match="mode must be"):
        upsample_map(torch.rand(4, 4), 8, mode="area")
    with pytest.raises(ValueError, match="size must hold positive ints"):
        upsample_map(torch.rand(4, 4), (0, 8))
    with pytest.raises(TypeError, match="size must be an int or a pair"):
        upsample_map(torch.rand(4, 4), "224")
    with pytest.raises(ValueError, match=r"maps must be \(B, h, w\) or \(h, w\)"):
        upsample_map(torch.rand(1, 1, 4, 4), 8)


# --------------------------------------------------------------------------- NWC head
def test_negative_weight_clamp_reads_live_weight():
    fc = nn.Linear(4, 3)
    head = NegativeWeightClamp(fc)
    features = torch.rand(2, 4, 3, 3)
    classes = torch.tensor([0, 2])
    torch.testing.assert_close(
        head(features, classes), class_activation_map(features, fc.weight, classes,
                                                      clamp_negative=True)
    )
    torch.testing.assert_close(head.weight, fc.weight.detach().clamp_min(0), check_dtype=False)
    with torch.no_grad():
        fc.weight.fill_(-1.0)
        fc.weight[2, 1] = 2.0
    out = head(features, classes)
    assert bool((out[0] == 0).all())
    torch.testing.assert_close(out[1], 2.0 * features[1, 1])
    fc.double()
    assert head(features.double(), classes).dtype == torch.float64


def test_negative_weight_clamp_sees_training_updates():
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.5, -0.5, 0.1], [0.2, -0.3, 0.4]]))
    head = NegativeWeightClamp(fc)
    optimizer = torch.optim.SGD(fc.parameters(), lr=10.0)
    features = torch.rand(1, 3, 2, 2)
    before = head(features, 1).clone()
    fc(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    after = head(features, 1)
    expected = class_activation_map(features, fc.weight.detach(), 1, clamp_negative=True)
    torch.testing.assert_close(after, expected)
    assert not torch.equal(before, after)


def test_negative_weight_clamp_conv_classifier_and_errors():
    conv = nn.Conv2d(4, 3, 1)
    head = NegativeWeightClamp(conv)
    assert head.weight.shape == (3, 4)
    with pytest.raises(TypeError, match="classifier must be an nn.Module with a weight tensor"):
        NegativeWeightClamp(nn.ReLU())
    with pytest.raises(ValueError, match="classifier.weight must be a linear"):
        NegativeWeightClamp(nn.Conv2d(4, 3, 3))


def test_class_activation_map_module():
    module = ClassActivationMap(clamp_negative=True, size=16)
    features = torch.rand(2, 4, 4, 4)
    weight = torch.randn(3, 4)
    got = module(features, weight, torch.tensor([0, 1]))
    expected = normalize_map(upsample_map(
        class_activation_map(features, weight, torch.tensor([0, 1]), clamp_negative=True), 16))
    torch.testing.assert_close(got, expected)
    assert "clamp_negative=True" in repr(module)
    raw = ClassActivationMap()(features, weight, 1)
    assert raw.shape == (2, 4, 4)


def test_public_exports():
    for name in ("class_activation_map", "normalize_map", "upsample_map", "NegativeWeightClamp"):
        assert hasattr(camkit, name)
