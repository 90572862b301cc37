"""CREAM EM re-activation: batched path against a slow per-image, per-pixel float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_close
from hypothesis import assume, given
from hypothesis import strategies as st
from test_cam import (
    _EXTREMES,
    FLOAT_TYPES,
    _fill,
    all_finite,
    fitting_or_hostile,
    hostile_numbers,
    is_finite,
)

import camkit
from camkit.cream import CreamDetails, EMReActivation, calibrate, cream_map
from camkit.cream.em import _prepare_pixels


# ---------------------------------------------------------------------------------------------
# Slow reference: one image at a time, one pixel at a time, Python floats / float64.
# ---------------------------------------------------------------------------------------------
def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a @ b) / (na * nb)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _minmax(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    if not all(math.isfinite(v) for v in values) or high == low:
        return [0.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def reference_cream(features, fg, bg, cam=None, *, scale=8.0, iterations=2, delta=0.2,
                    mixing_init=0.5, centroid_features="raw", refresh_responsibilities=False,
                    add_cam=True):
    batch, channels, height, width = features.shape
    maps, resps, cents, mixes, gaps = [], [], [], [], []
    for b in range(batch):
        pixels = [features[b, :, i, j].double() for i in range(height) for j in range(width)]
        mu = [fg[b].double().clone(), bg[b].double().clone()]
        pi = [mixing_init, 1.0 - mixing_init]

        def e_step(mu=mu, pi=pi, pixels=pixels):
            # Both softmax entries are evaluated (z_bg = 1 - z_fg, without the cancellation
            # of computing 1 - z_fg when z_fg rounds to 1).
            z = []
            for f in pixels:
                logits = [scale * _cos(f, mu[k]) + _log(pi[k]) for k in range(2)]
                top = max(logits)
                e = [math.exp(v - top) for v in logits]
                z.append((e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])))
            return z

        def m_step(z, mu=mu, pi=pi, pixels=pixels):
            for k in range(2):
                zk = [zj[k] for zj in z]
                total = sum(zk)
                if total > 0:
                    acc = torch.zeros(channels, dtype=torch.float64)
                    for zj, f in zip(zk, pixels, strict=True):
                        unit = f / f.norm() if float(f.norm()) > 0 else f * 0
                        acc += zj * (unit if centroid_features == "normalized" else f)
                    mu[k] = acc / total
                pi[k] = total / len(pixels)

        for _ in range(iterations):
            z = e_step()
            m_step(z)
        if refresh_responsibilities:
            z = e_step()
        z, z_bg = [v[0] for v in z], [v[1] for v in z]
        if cam is None:
            out = z
        else:
            cam_n = _minmax([float(cam[b, i, j]) for i in range(height) for j in range(width)])
            region = [j for j, v in enumerate(cam_n) if v > delta]
            p_fg = sum(z[j] for j in region) / len(region) if region else 0.0
            p_bg = sum(z_bg[j] for j in region) / len(region) if region else 0.0
            gaps.append(abs(p_fg - p_bg))
            out = z if p_fg >= p_bg else z_bg
            if add_cam:
                out = [o + c for o, c in zip(out, cam_n, strict=True)]
        maps.append(torch.tensor(out, dtype=torch.float64).reshape(height, width))
        resps.append(torch.tensor([z, z_bg], dtype=torch.float64).reshape(2, height, width))
        cents.append(torch.stack(mu))
        mixes.append(torch.tensor(pi, dtype=torch.float64))
    return (torch.stack(maps), torch.stack(resps), torch.stack(cents), torch.stack(mixes),
            min(gaps, default=1.0))


def _random_inputs(seed: int, batch: int, channels: int, height: int, width: int,
                   dtype: torch.dtype = torch.float64, zero_pixels: bool = True,
                   zero_centroid: bool = False):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, height, width, generator=gen).relu()
    if zero_pixels:
        keep = torch.rand(batch, 1, height, width, generator=gen) > 0.2
        features = features * keep
    fg = torch.randn(batch, channels, generator=gen)
    bg = torch.randn(batch, channels, generator=gen)
    if zero_centroid:
        bg[0] = 0.0
    cam = torch.randn(batch, height, width, generator=gen)
    return features.to(dtype), fg.to(dtype), bg.to(dtype), cam.to(dtype)


# ---------------------------------------------------------------------------------------------
# Value tests
# ---------------------------------------------------------------------------------------------
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    height=st.integers(1, 4),
    width=st.integers(1, 4),
    scale=st.sampled_from([0.0, 1.0, 8.0, 20.0]),
    iterations=st.integers(1, 3),
    mixing_init=st.sampled_from([0.5, 0.2, 0.9]),
    centroid_features=st.sampled_from(["raw", "normalized"]),
    refresh=st.booleans(),
    add_cam=st.booleans(),
    with_cam=st.booleans(),
    zero_centroid=st.booleans(),
)
def test_matches_slow_reference(seed, batch, channels, height, width, scale, iterations,
                                mixing_init, centroid_features, refresh, add_cam, with_cam,
                                zero_centroid):
    features, fg, bg, cam = _random_inputs(seed, batch, channels, height, width,
                                           zero_centroid=zero_centroid)
    cam = cam if with_cam else None
    options = dict(scale=scale, iterations=iterations, mixing_init=mixing_init,
                   centroid_features=centroid_features, refresh_responsibilities=refresh,
                   add_cam=add_cam)
    ref_map, ref_resp, ref_cent, ref_mix, gap = reference_cream(features, fg, bg, cam, **options)
    assume(gap > 1e-9)  # the calibration decision must not sit on a tie
    got = cream_map(features, fg, bg, cam=cam, return_details=True, **options)
    assert isinstance(got, CreamDetails)
    tol = {"rtol": 1e-9, "atol": 1e-10}
    torch.testing.assert_close(got.map, ref_map, **tol)
    torch.testing.assert_close(got.responsibilities, ref_resp, **tol)
    torch.testing.assert_close(got.centroids, ref_cent, **tol)
    torch.testing.assert_close(got.mixing, ref_mix, **tol)
    plain = cream_map(features, fg, bg, cam=cam, **options)
    torch.testing.assert_close(plain, ref_map, **tol)


def test_float32_matches_float64_reference():
    features, fg, bg, cam = _random_inputs(3, 4, 16, 6, 5)
    ref_map, ref_resp, *_ = reference_cream(features, fg, bg, cam)
    got = cream_map(features.float(), fg.float(), bg.float(), cam=cam.float(),
                    return_details=True)
    assert got.map.dtype == torch.float32
    assert_close(got.map, ref_map, rtol=1e-4, atol=1e-5)
    assert_close(got.responsibilities, ref_resp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32_and_return_input_dtype(half):
    features, fg, bg, cam = _random_inputs(5, 3, 8, 4, 4, dtype=torch.float32)
    features, fg, bg, cam = (t.to(half) for t in (features, fg, bg, cam))
    got = cream_map(features, fg, bg, cam=cam, return_details=True)
    expected = cream_map(features.float(), fg.float(), bg.float(), cam=cam.float(),
                         return_details=True)
    for got_t, exp_t in zip(got, expected, strict=True):
        assert got_t.dtype == half
        assert torch.isfinite(got_t).all()
        assert_close(got_t, exp_t.to(half).float(), dtype=half)


def test_zero_features_and_zero_centroids_are_finite():
    features = torch.zeros(2, 4, 3, 3)
    fg = torch.zeros(2, 4)
    bg = torch.randn(2, 4)
    got = cream_map(features, fg, bg, cam=torch.zeros(2, 3, 3), return_details=True,
                    mixing_init=0.3)
    # Every cosine is 0, so the responsibilities stay at the mixing weights.
    torch.testing.assert_close(got.responsibilities[:, 0], torch.full((2, 3, 3), 0.3))
    torch.testing.assert_close(got.mixing, torch.tensor([[0.3, 0.7]] * 2))
    # A constant CAM has an empty foreground: no flip, and minmax(CAM) = 0.
    torch.testing.assert_close(got.map, torch.full((2, 3, 3), 0.3))
    # Empty clusters (zero features) keep their previous centroid.
    torch.testing.assert_close(got.centroids, torch.zeros(2, 2, 4))


def test_empty_cluster_keeps_centroid_and_never_nans():
    # Two pixels equal to fg's direction, the bg centroid far; an extreme prior empties bg.
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0]]).T.reshape(1, 2, 1, 2)
    fg = torch.tensor([1.0, 0.0])
    bg = torch.tensor([-1.0, 0.0])
    got = cream_map(features, fg, bg, scale=200.0, iterations=3, return_details=True,
                    cam=torch.tensor([[[0.0, 1.0]]]))
    for tensor in got:
        assert torch.isfinite(tensor).all()
    assert got.mixing[0, 1] == 0.0
    torch.testing.assert_close(got.centroids[0, 1], bg)
    torch.testing.assert_close(got.centroids[0, 0], torch.tensor([1.5, 0.0]))


def test_calibration_flips_when_clusters_swap():
    features, fg, bg, cam = _random_inputs(11, 4, 6, 5, 5, dtype=torch.float32)
    straight = cream_map(features, fg, bg, cam=cam, return_details=True)
    swapped = cream_map(features, bg, fg, cam=cam, return_details=True)
    # With equal priors the clusters simply trade places ...
    torch.testing.assert_close(swapped.responsibilities, straight.responsibilities.flip(1))
    # ... and the calibration picks the same foreground either way.
    torch.testing.assert_close(swapped.map, straight.map)
    region = camkit.normalize_map(cam).flatten(1) > 0.2
    for details in (straight, swapped):
        chosen = details.map - camkit.normalize_map(cam)
        z_fg = details.responsibilities[:, 0]
        p_fg = (z_fg.flatten(1) * region).sum(1) / region.sum(1)
        keeps = p_fg >= 0.5
        expected = torch.where(keeps[:, None, None], z_fg, details.responsibilities[:, 1])
        torch.testing.assert_close(chosen, expected)
    # Both orientations occur between the two calls for every image.
    assert not torch.equal(straight.responsibilities[:, 0], swapped.responsibilities[:, 0])


def test_calibrate_direct_values():
    z_fg = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.9, 0.8], [0.3, 0.3, 0.3]])
    cam_n = torch.tensor([[1.0, 0.0, 0.1], [1.0, 0.0, 0.1], [0.0, 0.0, 0.0]])
    out = calibrate(z_fg, 1 - z_fg, cam_n, 0.2)
    torch.testing.assert_close(out[0], z_fg[0])  # P_fg 0.9 >= P_bg 0.1
    torch.testing.assert_close(out[1], 1 - z_fg[1])  # P_fg 0.1 < P_bg 0.9: flip
    torch.testing.assert_close(out[2], z_fg[2])  # empty region: keep
    # Ties keep z_fg (P_fg >= P_bg).
    tie = calibrate(torch.tensor([[0.5, 0.2]]), torch.tensor([[0.5, 0.8]]),
                    torch.tensor([[1.0, 0.0]]), 0.2)
    torch.testing.assert_close(tie, torch.tensor([[0.5, 0.2]]))


def test_without_cam_returns_fg_cluster_responsibilities():
    features, fg, bg, _ = _random_inputs(2, 3, 5, 4, 3, dtype=torch.float32)
    details = cream_map(features, fg, bg, return_details=True)
    torch.testing.assert_close(details.map, details.responsibilities[:, 0])
    torch.testing.assert_close(details.responsibilities.sum(1), torch.ones(3, 4, 3))
    # Mixing weights after the last M-step are the mean responsibilities of the last E-step.
    torch.testing.assert_close(details.mixing, details.responsibilities.mean((2, 3)))


def test_shared_centroids_broadcast_and_images_are_independent():
    features, fg, bg, cam = _random_inputs(8, 3, 6, 4, 4, dtype=torch.float32)
    shared = cream_map(features, fg[0], bg[0], cam=cam)
    expanded = cream_map(features, fg[:1].expand(3, -1), bg[:1].expand(3, -1), cam=cam)
    torch.testing.assert_close(shared, expanded)
    one_by_one = torch.cat([cream_map(features[i:i + 1], fg[0], bg[0], cam=cam[i:i + 1])
                            for i in range(3)])
    torch.testing.assert_close(shared, one_by_one)


def test_module_matches_functional_and_has_no_grad():
    features, fg, bg, cam = _random_inputs(4, 2, 5, 3, 3, dtype=torch.float32)
    features.requires_grad_(True)
    module = EMReActivation(scale=4.0, iterations=3, delta=0.3, mixing_init=0.4)
    out = module(features, fg, bg, cam)
    assert not out.requires_grad
    expected = cream_map(features, fg, bg, cam=cam, scale=4.0, iterations=3, delta=0.3,
                         mixing_init=0.4)
    torch.testing.assert_close(out, expected)
    assert "iterations=3" in repr(module)
    details = module(features, fg, bg, cam, return_details=True)
    torch.testing.assert_close(details.map, expected)


def test_added_map_replaces_the_added_cam():
    """``added_map=X``: ``calibrated + normalize_map(X)``, the calibration still by ``cam``."""
    features, fg, bg, cam = _random_inputs(14, 3, 6, 4, 5, dtype=torch.float32)
    other = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(15))
    default = cream_map(features, fg, bg, cam=cam)
    assert torch.equal(cream_map(features, fg, bg, cam=cam, added_map=cam), default)
    calibrated = cream_map(features, fg, bg, cam=cam, add_cam=False, return_details=True)
    resp = calibrated.responsibilities  # the calibration picks one cluster per image
    assert all(torch.equal(calibrated.map[b], resp[b, 0]) or torch.equal(calibrated.map[b],
                                                                          resp[b, 1])
               for b in range(3))
    got = cream_map(features, fg, bg, cam=cam, added_map=other, return_details=True)
    torch.testing.assert_close(got.map, calibrated.map + camkit.normalize_map(other))
    torch.testing.assert_close(got.responsibilities, resp)
    assert not torch.allclose(got.map, default)
    torch.testing.assert_close(EMReActivation()(features, fg, bg, cam, other), got.map)
    # The reverse composition, and a float64 added map promotes the arithmetic to float64.
    reverse = cream_map(features, fg, bg, cam=other, added_map=cam, add_cam=True)
    torch.testing.assert_close(reverse, cream_map(features, fg, bg, cam=other, add_cam=False)
                               + camkit.normalize_map(cam))
    wide = cream_map(features, fg, bg, cam=cam, added_map=other.double())
    assert wide.dtype == torch.float32
    torch.testing.assert_close(wide, cream_map(features.double(), fg.double(), bg.double(),
                                               cam=cam.double(), added_map=other.double()
                                               ).float())


def test_empty_batch():
    out = cream_map(torch.zeros(0, 4, 3, 3), torch.zeros(4), torch.ones(4),
                    cam=torch.zeros(0, 3, 3), return_details=True)
    assert out.map.shape == (0, 3, 3)
    assert out.centroids.shape == (0, 2, 4)


def test_device(device):
    features, fg, bg, cam = _random_inputs(6, 2, 5, 3, 3, dtype=torch.float32)
    out = cream_map(features.to(device), fg.to(device), bg.to(device), cam=cam.to(device))
    assert out.device.type == device.type
    torch.testing.assert_close(out.cpu(), cream_map(features, fg, bg, cam=cam))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_errors():
    features = torch.rand(2, 4, 3, 3)
    fg, bg = torch.rand(2, 4), torch.rand(2, 4)
    with pytest.raises(ValueError, match="features must be"):
        cream_map(torch.rand(4, 3, 3), fg, bg)
    with pytest.raises(ValueError, match=r"fg must have shape \(B, C\)"):
        cream_map(features, torch.rand(2, 5), bg)
    with pytest.raises(ValueError, match=r"bg must have shape"):
        cream_map(features, fg, torch.rand(3, 4))
    with pytest.raises(TypeError, match="fg must have dtype"):
        cream_map(features, fg.long(), bg)
    with pytest.raises(ValueError, match=r"cam must have shape \(B, h, w\)"):
        cream_map(features, fg, bg, cam=torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="iterations must be > 0"):
        cream_map(features, fg, bg, iterations=0)
    with pytest.raises(ValueError, match="scale must be"):
        cream_map(features, fg, bg, scale=-1.0)
    with pytest.raises(ValueError, match="delta must be"):
        cream_map(features, fg, bg, delta=1.5)
    with pytest.raises(ValueError, match="mixing_init must be"):
        cream_map(features, fg, bg, mixing_init=1.0)
    with pytest.raises(ValueError, match="centroid_features must be"):
        cream_map(features, fg, bg, centroid_features="unit")
    with pytest.raises(TypeError, match="use_compile must be True or False"):
        cream_map(features, fg, bg, use_compile="yes")
    with pytest.raises(TypeError, match="use_compile must be True or False"):
        EMReActivation(use_compile="auto")
    with pytest.raises(ValueError, match="non-empty spatial"):
        cream_map(torch.rand(2, 4, 0, 3), fg, bg)


def test_added_map_errors():
    features, fg, bg, cam = torch.rand(2, 4, 3, 3), torch.rand(2, 4), torch.rand(2, 4), \
        torch.rand(2, 3, 3)
    with pytest.raises(ValueError, match=r"added_map= is added in place of cam=; it needs cam= "
                                         r"and add_cam=True, got cam=None"):
        cream_map(features, fg, bg, added_map=cam)
    with pytest.raises(ValueError, match=r"added_map= .* needs cam= and add_cam=True, got "
                                         r"add_cam=False"):
        cream_map(features, fg, bg, cam=cam, added_map=cam, add_cam=False)
    with pytest.raises(ValueError, match=r"added_map= .* got add_cam=False"):
        EMReActivation(add_cam=False)(features, fg, bg, cam, cam)
    with pytest.raises(ValueError, match=r"added_map must have shape \(B, h, w\) = \(2, 3, 3\) "
                                         r"to match features, got \(2, 3, 4\)"):
        cream_map(features, fg, bg, cam=cam, added_map=torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match=r"added_map must be \(B, h, w\), got a 2-D"):
        cream_map(features, fg, bg, cam=cam, added_map=torch.rand(3, 3))
    with pytest.raises(TypeError, match="added_map must have dtype in"):
        cream_map(features, fg, bg, cam=cam, added_map=cam.long())
    with pytest.raises(ValueError, match="added_map must be on the same device as features"):
        cream_map(features, fg, bg, cam=cam, added_map=cam.to("meta"))


def test_calibrate_errors():
    z = torch.rand(2, 5)
    with pytest.raises(ValueError, match=r"cam_normalized must have the shape of z_fg \(2, 5\), "
                                         r"got \(2, 4\)"):
        calibrate(z, 1 - z, torch.rand(2, 4), 0.2)
    with pytest.raises(ValueError, match=r"z_bg must be \(B, N\), got a 1-D"):
        calibrate(z, torch.rand(5), z, 0.2)
    with pytest.raises(TypeError, match="z_fg must have dtype in"):
        calibrate(z.long(), z, z, 0.2)
    with pytest.raises(ValueError, match=r"delta must be in \[0.0, 1.0\], got 1.5"):
        calibrate(z, 1 - z, z, 1.5)
    with pytest.raises(ValueError, match="z_bg must be on the same device as z_fg"):
        calibrate(z, z.to("meta"), z, 0.2)


# ---------------------------------------------------------------------------------------------
# Extreme and hostile input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOAT_TYPES)
@pytest.mark.parametrize("special", _EXTREMES)
def test_extreme_finite_inputs_give_finite_maps(dtype, special):
    gen = torch.Generator().manual_seed(9)
    features, fg, bg, cam = (_fill(torch.randn(shape, generator=gen, dtype=torch.float64), dtype,
                                   special).to(dtype)
                             for shape in ((3, 5, 4, 4), (3, 5), (5,), (3, 4, 4)))
    for options in ({}, {"centroid_features": "normalized", "refresh_responsibilities": True},
                    {"scale": 1e300, "iterations": 3}):
        details = cream_map(features, fg, bg, cam=cam, return_details=True, **options)
        for tensor in details:
            assert tensor.dtype == dtype and is_finite(tensor)
        assert is_finite(EMReActivation(**options)(features, fg, bg, cam))


@pytest.mark.parametrize("factor", [2.0**70, 2.0**-80, 1e19])
def test_rescaled_pixels_give_the_plain_result(factor):
    """Features whose squared norms leave float32's range take the scaled path: cosines, the
    responsibilities and the map do not change; centroids scale with the features."""
    features, fg, bg, cam = _random_inputs(21, 3, 6, 4, 5, dtype=torch.float32)
    assert _prepare_pixels(features.flatten(2))[2] is None  # the plain path
    assert _prepare_pixels((features * factor).flatten(2))[2] is not None
    for centroid_features in ("raw", "normalized"):
        plain = cream_map(features, fg, bg, cam=cam, return_details=True,
                          centroid_features=centroid_features)
        scaled = cream_map(features * factor, fg * factor, bg, cam=cam * factor,
                           return_details=True, centroid_features=centroid_features)
        torch.testing.assert_close(scaled.map, plain.map, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(scaled.responsibilities, plain.responsibilities, rtol=1e-5,
                                   atol=1e-5)
        torch.testing.assert_close(scaled.mixing, plain.mixing, rtol=1e-5, atol=1e-5)
        if centroid_features == "raw":
            occupied = plain.mixing > 0
            torch.testing.assert_close((scaled.centroids / factor)[occupied],
                                       plain.centroids[occupied], rtol=1e-4, atol=1e-6)


def test_a_tiny_pixel_is_not_a_zero_pixel():
    """Cosines ignore a pixel's length: one scaled to 1e-30 (whose square underflows) gets the
    responsibilities of its direction, a zero pixel those of the mixing prior."""
    features, fg, bg, _ = _random_inputs(22, 2, 4, 3, 3, dtype=torch.float32,
                                         zero_pixels=False)
    expected = cream_map(features, fg, bg, iterations=1)
    tiny = features.clone()
    tiny[0, :, 1, 1] *= 1e-30
    torch.testing.assert_close(cream_map(tiny, fg, bg, iterations=1), expected)
    zero = features.clone()
    zero[0, :, 1, 1] = 0.0
    assert float(cream_map(zero, fg, bg, iterations=1, mixing_init=0.3)[0, 1, 1]) == (
        pytest.approx(0.3))


def test_scale_past_the_dtype_acts_as_its_largest_value():
    features, fg, bg, cam = _random_inputs(23, 2, 5, 3, 3, dtype=torch.float32)
    largest = torch.finfo(torch.float32).max
    huge = cream_map(features, fg, bg, cam=cam, scale=1e300, iterations=4, return_details=True)
    torch.testing.assert_close(huge.map, cream_map(features, fg, bg, cam=cam, scale=largest,
                                                   iterations=4))
    for tensor in huge:
        assert is_finite(tensor)


def test_nan_features_propagate_to_their_image_only():
    features, fg, bg, cam = _random_inputs(24, 2, 5, 3, 3, dtype=torch.float32)
    features[0, 2, 1, 1] = math.nan
    got = cream_map(features, fg, bg, cam=cam)
    assert bool(torch.isnan(got[0]).any())
    torch.testing.assert_close(got[1], cream_map(features[1:], fg[1:], bg[1:], cam=cam[1:])[0])


@given(dims=st.tuples(*[st.integers(0, 3)] * 4), data=st.data(),
       options=st.fixed_dictionaries({}, optional={
           "scale": hostile_numbers, "iterations": st.sampled_from([-1, 0, 1, 3, 2.0, "2"]),
           "delta": hostile_numbers, "mixing_init": hostile_numbers,
           "centroid_features": st.sampled_from(["raw", "normalized", "unit", None]),
           "refresh_responsibilities": st.booleans(), "add_cam": st.booleans()}),
       with_cam=st.booleans(), details=st.booleans())
def test_cream_module_refuses_or_stays_finite(dims, data, options, with_cam, details):
    """Hostile input to camkit.cream's EM: only ValueError/TypeError escape, and finite input
    gives finite output."""
    batch, channels, height, width = dims
    features = data.draw(fitting_or_hostile((batch, channels, height, width)))
    fg = data.draw(st.one_of(fitting_or_hostile((batch, channels)),
                             fitting_or_hostile((channels,))))
    bg = data.draw(fitting_or_hostile((channels,)))
    cam = data.draw(fitting_or_hostile((batch, height, width))) if with_cam else None
    try:
        out = cream_map(features, fg, bg, cam=cam, return_details=details, **options)
    except (ValueError, TypeError):
        out = None
    if out is not None and all_finite(features, fg, bg, cam):
        for tensor in (out if details else (out,)):
            assert is_finite(tensor)
    try:
        module = EMReActivation(**options)
    except (ValueError, TypeError):
        return
    try:
        out = module(features, fg, bg, cam)
    except (ValueError, TypeError):
        return
    if all_finite(features, fg, bg, cam):
        assert is_finite(out)


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------
def test_module_compile_is_nn_module_compile():
    """``use_compile`` does not shadow ``nn.Module.compile``, which compiles the forward."""
    features, fg, bg, cam = _random_inputs(12, 3, 6, 4, 4, dtype=torch.float32)
    module = EMReActivation(iterations=3)
    expected = module(features, fg, bg, cam)
    module.compile(backend="eager")
    torch.testing.assert_close(module(features, fg, bg, cam), expected)
    assert module.use_compile is False and "use_compile=False" in repr(module)


@pytest.mark.slow
def test_use_compile_matches_eager():
    """``use_compile=True`` (inductor) gives the eager map, details, and a new batch size."""
    features, fg, bg, cam = _random_inputs(13, 4, 32, 7, 7, dtype=torch.float32)
    for options in ({}, {"centroid_features": "normalized", "refresh_responsibilities": True},
                    {"added_map": cam.flip(1)}):
        expected = cream_map(features, fg, bg, cam=cam, return_details=True, **options)
        got = cream_map(features, fg, bg, cam=cam, return_details=True, use_compile=True,
                        **options)
        for got_t, exp_t in zip(got, expected, strict=True):
            torch.testing.assert_close(got_t, exp_t, rtol=1e-4, atol=1e-5)
    module = EMReActivation(use_compile=True)
    torch.testing.assert_close(module(features[:3], fg[:3], bg[:3]),
                               cream_map(features[:3], fg[:3], bg[:3]), rtol=1e-4, atol=1e-5)
