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


# --------------------------------------------------------------------------- hostile input
#: Every dtype a caller might pass, the refused ones included.
ALL_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
              torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64)
INDEX_TYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
#: Finite extremes per dtype: the largest value, the issue's ±3e38 / 1e19 / 65504, denormals.
_EXTREMES = ("largest", "3e38", "1e19", "denormal", "mixed")
_NON_FINITE = ("nan", "inf", "-inf")


def _fill(values: torch.Tensor, dtype: torch.dtype, special: str) -> torch.Tensor:
    """``values`` (float64) with ``special`` written into about half of the entries."""
    if special == "none" or values.numel() == 0 or not (dtype.is_floating_point
                                                          or dtype.is_complex):
        return values
    info = torch.finfo(dtype if dtype.is_floating_point else torch.float32)
    magnitude = {"largest": info.max, "3e38": min(3e38, info.max), "1e19": min(1e19, info.max),
                 "denormal": info.tiny / 4, "nan": math.nan, "inf": math.inf,
                 "-inf": -math.inf}
    spots = torch.rand(values.shape, generator=torch.Generator().manual_seed(values.numel()),
                       dtype=torch.float64)
    if special == "mixed":  # both ends of the range in one tensor
        big = torch.where(spots < 0.25, values.new_tensor(info.max),
                          torch.where(spots < 0.5, values.new_tensor(info.tiny / 4), values))
        return torch.where(spots < 0.5, values.sign() * big, values)
    if special in _NON_FINITE:
        return torch.where(spots < 0.3, values.new_tensor(magnitude[special]), values)
    return torch.where(spots < 0.5, values.sign() * magnitude[special], values)


FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@st.composite
def hostile_tensors(draw, ndim=None, dtypes=ALL_DTYPES, max_side: int = 4,
                    specials=("none", *_EXTREMES, *_NON_FINITE), shape=None):
    """A tensor of any rank (or ``ndim``, or ``shape``), dtype, layout and content: zero-size
    dims, non-contiguous and channels-last storage, NaN, ±inf, the dtype's extremes,
    denormals."""
    if shape is None:
        rank = draw(st.integers(0, 5) if ndim is None else st.sampled_from(ndim))
        shape = draw(st.lists(st.integers(0, max_side), min_size=rank, max_size=rank))
    rank = len(shape)
    dtype = draw(st.sampled_from(dtypes))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    values = torch.randn(shape, generator=generator, dtype=torch.float64)
    values = _fill(values * draw(st.sampled_from((1.0, 1e-3, 50.0))), dtype,
                   draw(st.sampled_from(specials)))
    if dtype == torch.bool:
        tensor = values > 0
    elif not (dtype.is_floating_point or dtype.is_complex):
        info = torch.iinfo(dtype)
        tensor = values.round().clamp(info.min, info.max).to(dtype)
    else:
        tensor = values.to(dtype)
    layout = draw(st.sampled_from(("contiguous", "transposed", "strided", "channels_last")))
    if layout == "transposed" and rank >= 2:
        tensor = tensor.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "strided" and rank >= 1:
        tensor = torch.repeat_interleave(tensor, 2, dim=-1)[..., ::2]
    elif layout == "channels_last" and rank == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


#: Numbers as callers pass them by mistake: NaN, ±inf, huge, negative, strings, tensors.
hostile_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
    st.sampled_from(["0.1", None, True, torch.tensor(0.5), torch.tensor([0.1, 0.2]), 1e300]))


def all_finite(*tensors: object) -> bool:
    """Whether every tensor among ``tensors`` is floating-point and finite."""
    return all(not isinstance(t, torch.Tensor) or (t.is_floating_point()
                                                   and bool(torch.isfinite(t).all()))
               for t in tensors)


def is_finite(tensor: torch.Tensor) -> bool:
    return bool(torch.isfinite(tensor.double()).all())


def fitting_or_hostile(shape, dtypes=FLOAT_TYPES):
    """Mostly a tensor of ``shape`` and one of ``dtypes`` (so that the call gets past the
    checks), sometimes anything at all."""
    return st.one_of(hostile_tensors(shape=shape, dtypes=dtypes),
                     hostile_tensors(shape=shape, dtypes=dtypes), hostile_tensors())


def indices(size: int, count: int):
    """Class indices for ``size`` images among ``count`` classes: in range, out of range
    (negative, ``count``, past int64), of the wrong length or dtype, or a plain int."""
    valid = st.lists(st.integers(0, max(count - 1, 0)), min_size=size, max_size=size)
    return st.one_of(
        valid.map(lambda v: torch.tensor(v, dtype=torch.long)),
        valid.map(lambda v: torch.tensor(v, dtype=torch.uint8)),
        st.lists(st.integers(-3, count + 2), min_size=size, max_size=size).map(torch.tensor),
        st.integers(-2, count + 1), st.sampled_from([2**70, -2**70, True, 1.0]),
        hostile_tensors(ndim=(0, 1, 2), dtypes=(*INDEX_TYPES, torch.bool, torch.float32)))


dims = st.tuples(*[st.integers(0, 4)] * 5)
sizes = st.one_of(st.integers(-1, 6), st.tuples(st.integers(0, 5), st.integers(1, 5)),
                  st.sampled_from([2.5, "8", (1, 2, 3)]))


@given(dims=dims, data=st.data(), size=sizes, clamp_negative=st.booleans())
def test_cam_module_refuses_or_stays_finite(dims, data, size, clamp_negative):
    """Hostile input to camkit.cam: only ValueError/TypeError escape, and finite input gives
    finite output."""
    batch, channels, height, width, count = dims
    features = data.draw(fitting_or_hostile((batch, channels, height, width)))
    weight = data.draw(st.one_of(fitting_or_hostile((count, channels)),
                                 fitting_or_hostile((count, channels, 1, 1))))
    classes = data.draw(indices(batch, count))
    try:
        maps = class_activation_map(features, weight, classes, clamp_negative=clamp_negative)
    except (ValueError, TypeError):
        maps = None
    if maps is not None and all_finite(features, weight):
        assert is_finite(maps)
    for candidate in (features, maps):
        try:
            upsampled = upsample_map(candidate, size)
        except (ValueError, TypeError):
            upsampled = None
        if upsampled is not None and all_finite(candidate):
            assert is_finite(upsampled) and upsampled.dtype == candidate.dtype
        try:
            normalized = normalize_map(candidate)
        except (ValueError, TypeError):
            continue
        assert is_finite(normalized) and normalized.dtype == candidate.dtype
        if normalized.numel():
            assert float(normalized.double().amin()) >= 0
            assert float(normalized.double().amax()) <= 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("special", _EXTREMES)
def test_extreme_finite_inputs_give_finite_maps(dtype, special):
    gen = torch.Generator().manual_seed(5)
    features = _fill(torch.randn(3, 6, 4, 5, generator=gen, dtype=torch.float64), dtype,
                     special).to(dtype)
    weight = _fill(torch.randn(4, 6, generator=gen, dtype=torch.float64), dtype,
                   special).to(dtype)
    assert is_finite(features) and is_finite(weight)
    for clamp in (False, True):
        maps = class_activation_map(features, weight, torch.tensor([0, 3, 1]),
                                    clamp_negative=clamp)
        assert maps.dtype == dtype and is_finite(maps)
        for mode in ("bicubic", "bilinear", "nearest"):
            up = upsample_map(maps, (9, 7), mode=mode)
            assert up.dtype == dtype and is_finite(up)
            assert is_finite(normalize_map(up))
        scoremaps = ClassActivationMap(clamp_negative=clamp, size=12)(features, weight, 2)
        assert is_finite(scoremaps) and float(scoremaps.double().amax()) <= 1


def test_cam_saturates_instead_of_overflowing():
    features = torch.full((1, 4, 2, 2), 3e38)
    largest = torch.finfo(torch.float32).max
    assert bool((class_activation_map(features, torch.ones(1, 4), 0) == largest).all())
    # +3e38 - 3e38 + ...: partial sums would overflow, the exact result is 0.
    weight = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    assert bool((class_activation_map(features, weight, 0) == 0).all())
    half = class_activation_map(torch.full((1, 3, 2, 2), 60000.0).half(), torch.ones(1, 3), 0)
    assert bool((half == 65504).all())


def test_cam_rescaled_product_equals_the_plain_one():
    """The overflow-safe product (always taken off the CPU) scales by powers of two: exact."""
    from camkit.cam import _scaled_cam

    gen = torch.Generator().manual_seed(6)
    for dtype in (torch.float32, torch.float64):
        selected = torch.randn(3, 7, generator=gen, dtype=dtype) * 0.05
        features = torch.rand(3, 7, 4, 5, generator=gen, dtype=dtype)
        plain = torch.einsum("bc,bchw->bhw", selected, features)
        torch.testing.assert_close(_scaled_cam(selected, features), plain, rtol=0, atol=0)
        zero = torch.zeros_like(selected)
        assert bool((_scaled_cam(zero, features) == 0).all())


def test_cam_int_class_out_of_range_is_refused_before_use():
    features, weight = torch.rand(2, 4, 3, 3), torch.rand(5, 4)
    for value, shown in ((2**70, 2**70), (-1, -1), (5, 5)):
        with pytest.raises(ValueError, match=rf"classes must lie in \[0, 4\] \(K=5 classes\), "
                                             rf"got values in \[{shown}, {shown}\]"):
            class_activation_map(features, weight, value)


def test_normalize_map_range_wider_than_the_dtype():
    got = normalize_map(torch.tensor([[-3e38, 0.0, 3e38]]))
    torch.testing.assert_close(got, torch.tensor([[0.0, 0.5, 1.0]]))
    largest = torch.finfo(torch.float32).max
    got = normalize_map(torch.tensor([[[-largest, largest, 0.0]], [[1e-45, 0.0, 0.0]]]))
    torch.testing.assert_close(got, torch.tensor([[[0.0, 1.0, 0.5]], [[1.0, 0.0, 0.0]]]))
    half = normalize_map(torch.tensor([[-65504.0, 65504.0]]).half())
    torch.testing.assert_close(half, torch.tensor([[0.0, 1.0]]).half())


def test_upsample_saturates_bicubic_overshoot():
    largest = torch.finfo(torch.float16).max
    maps = torch.tensor([[largest, -largest] * 3] * 6).half()
    got = upsample_map(maps, 17)
    assert is_finite(got) and float(got.abs().amax()) == largest
    maps32 = torch.tensor([[3e38, -3e38] * 3] * 6)
    got32 = upsample_map(maps32, 17)
    assert is_finite(got32)
    # Above a quarter of the largest float the scaled path runs: powers of two are exact, so
    # it gives the plain path's values scaled.
    maps32 = torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(7)) * 2.0**127
    torch.testing.assert_close(upsample_map(maps32, 17),
                               upsample_map(maps32 * 2.0**-100, 17) * 2.0**100, rtol=0, atol=0)


def test_nan_and_inf_propagate_through_cam_and_upsample():
    features = torch.rand(2, 3, 4, 4)
    features[0, 1, 2, 2] = math.nan
    maps = class_activation_map(features, torch.ones(2, 3), 0)
    assert math.isnan(float(maps[0, 2, 2])) and is_finite(maps[1])
    up = upsample_map(maps, 8)
    assert bool(torch.isnan(up[0]).any()) and is_finite(up[1])
    assert is_finite(normalize_map(up)) and bool((normalize_map(up)[0] == 0).all())


# ------------------------------------------------------------------------------ IVR normalization
def reference_ivr(maps, percentile):
    """IVR per map with Python loops in float64: sort, take the order statistic, clip, scale."""
    out = torch.zeros(maps.shape, dtype=torch.float64)
    flat_maps = maps.reshape(-1, maps.shape[-2], maps.shape[-1])
    flat_out = out.view(-1, maps.shape[-2], maps.shape[-1])
    for n in range(flat_maps.shape[0]):
        values = sorted(float(v) for v in flat_maps[n].flatten())
        floor, peak = values[int(len(values) * percentile)], values[-1]
        if peak <= floor:
            continue  # all zeros
        for i in range(maps.shape[-2]):
            for j in range(maps.shape[-1]):
                flat_out[n, i, j] = max(float(flat_maps[n, i, j]) - floor, 0.0) / (peak - floor)
    return out


@pytest.mark.parametrize("percentile", [0.0, 0.1, 0.45, 0.6, 0.9, 0.99])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ivr_equals_loop_reference(percentile, dtype):
    gen = torch.Generator().manual_seed(3)
    maps = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64).to(dtype)
    out = normalize_map(maps, method="ivr", ivr_percentile=percentile)
    assert out.dtype == dtype and out.shape == maps.shape
    assert_close(out.double(), reference_ivr(maps, percentile), atol=1e-6, rtol=1e-6)


def test_ivr_default_percentile_and_worked_example():
    maps = torch.arange(10.0).view(2, 5)  # sorted values 0..9: floor(10 * 0.45) = 4 -> m = 4
    expected = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [0.2, 0.4, 0.6, 0.8, 1.0]])
    assert_close(normalize_map(maps, method="ivr"), expected)
    assert_close(normalize_map(maps, method="ivr", ivr_percentile=0.45), expected)


@given(st.integers(1, 6), st.integers(1, 6), st.floats(0.0, 0.999), st.integers(0, 2**31 - 1))
def test_ivr_properties(height, width, percentile, seed):
    maps = torch.randn(3, height, width, generator=torch.Generator().manual_seed(seed))
    out = normalize_map(maps, method="ivr", ivr_percentile=percentile)
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1 + 1e-6).all()
    # Where a map is normalized at all, its maximum is 1 and IVR never exceeds min-max.
    minmax = normalize_map(maps)
    assert (out <= minmax + 1e-6).all()
    peak = out.flatten(1).amax(dim=1)
    assert ((peak == 0) | torch.isclose(peak, torch.ones(()))).all()
    # Invariant to a positive affine change of the values.
    assert_close(normalize_map(maps * 3.0 + 2.0, method="ivr", ivr_percentile=percentile), out,
                 atol=1e-5, rtol=1e-5)


def test_ivr_with_percentile_zero_is_minmax():
    maps = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(0))
    assert_close(normalize_map(maps, method="ivr", ivr_percentile=0.0), normalize_map(maps))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_ivr_degenerate_maps_give_zeros(dtype):
    constant = torch.full((2, 4, 4), 3.0, dtype=dtype)
    assert (normalize_map(constant, method="ivr") == 0).all()
    # The order statistic equals the maximum: half the values tie at the peak.
    ties = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=dtype)
    assert (normalize_map(ties, method="ivr", ivr_percentile=0.5) == 0).all()
    for special in (math.nan, math.inf, -math.inf):
        holed = torch.randn(3, 3).to(dtype)
        holed[0, 0] = special
        out = normalize_map(holed, method="ivr", ivr_percentile=0.5)
        assert (out == 0).all() and out.dtype == dtype
    assert normalize_map(torch.zeros(0, 3, 3), method="ivr").shape == (0, 3, 3)
    single = normalize_map(torch.tensor([[5.0]]), method="ivr", ivr_percentile=0.9)
    assert (single == 0).all()


def test_ivr_range_wider_than_the_dtype():
    big = torch.finfo(torch.float32).max
    maps = torch.tensor([[-big, -big, 0.0, big]])
    out = normalize_map(maps, method="ivr", ivr_percentile=0.5)  # m = 0: [0, 0, 0, 1]
    assert_close(out, torch.tensor([[0.0, 0.0, 0.0, 1.0]]))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "max"}, ValueError, r"method must be one of \('minmax', 'ivr'\), got 'max'"),
    ({"method": None}, ValueError, r"method must be one of"),
    ({"ivr_percentile": 0.5}, ValueError, r"ivr_percentile applies to method='ivr' only"),
    ({"method": "ivr", "ivr_percentile": 1.0}, ValueError,
     r"ivr_percentile must be a fraction in \[0, 1\), got 1.0"),
    ({"method": "ivr", "ivr_percentile": 45}, ValueError,
     r"ivr_percentile must be a fraction in \[0, 1\), got 45"),
    ({"method": "ivr", "ivr_percentile": -0.1}, ValueError, r"ivr_percentile must be a fraction"),
    ({"method": "ivr", "ivr_percentile": math.nan}, ValueError,
     r"ivr_percentile must be a fraction"),
    ({"method": "ivr", "ivr_percentile": True}, TypeError,
     r"ivr_percentile must be a number in \[0, 1\), got bool"),
    ({"method": "ivr", "ivr_percentile": "0.5"}, TypeError,
     r"ivr_percentile must be a number in \[0, 1\), got str"),
])
def test_normalize_map_refuses_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        normalize_map(torch.zeros(2, 2), **kwargs)
