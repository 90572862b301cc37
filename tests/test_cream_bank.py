"""ContextEmbeddingBank: vectorized update against the sequential per-sample loop."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_cam import (
    _EXTREMES,
    FLOAT_TYPES,
    _fill,
    all_finite,
    fitting_or_hostile,
    indices,
    is_finite,
)
from torch import nn

from camkit.cream import ContextEmbeddingBank


def _minmax64(cam: torch.Tensor) -> torch.Tensor:
    low, high = cam.min(), cam.max()
    if not torch.isfinite(cam).all() or high == low:
        return torch.zeros_like(cam)
    return (cam - low) / (high - low)


def reference_update(fg, bg, features, cam, labels, momentum, delta, repeats="sequential"):
    """The paper's per-sample loop in float64 (``repeats="mean"``: one step per class)."""
    fg, bg = fg.double().clone(), bg.double().clone()
    seen = torch.zeros(fg.shape[0], 2, dtype=torch.long)
    pending: dict[tuple[int, int], list[torch.Tensor]] = {}
    for n in range(features.shape[0]):
        c = int(labels[n])
        region = _minmax64(cam[n].double()) > delta
        for k, mask in enumerate((region, ~region)):
            if int(mask.sum()) == 0:
                continue
            v = features[n].double()[:, mask].mean(dim=1)
            if repeats == "sequential":
                target = fg if k == 0 else bg
                target[c] = momentum * target[c] + (1 - momentum) * v
            else:
                pending.setdefault((c, k), []).append(v)
            seen[c, k] += 1
    for (c, k), values in pending.items():
        target = fg if k == 0 else bg
        target[c] = momentum * target[c] + (1 - momentum) * torch.stack(values).mean(0)
    return fg, bg, seen


def _batch(seed, batch, num_classes, channels=5, size=(3, 4), constant_every=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, *size, generator=gen).relu()
    cam = torch.randn(batch, *size, generator=gen)
    if constant_every:
        cam[::constant_every] = 1.5  # constant CAM: empty foreground mask
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    return features, cam, labels


@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(0, 12),
    num_classes=st.integers(1, 4),
    momentum=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
    delta=st.sampled_from([0.0, 0.2, 0.7]),
    constant_every=st.integers(0, 3),
    repeats=st.sampled_from(["sequential", "mean"]),
)
def test_vectorized_equals_sequential_loop(seed, batch, num_classes, momentum, delta,
                                           constant_every, repeats):
    features, cam, labels = _batch(seed, batch, num_classes, constant_every=constant_every)
    bank = ContextEmbeddingBank(num_classes, 5, momentum, delta, repeats=repeats,
                                generator=torch.Generator().manual_seed(seed))
    fg, bg, seen = reference_update(bank.fg, bank.bg, features, cam, labels, momentum, delta,
                                    repeats)
    bank.update(features, cam, labels)
    torch.testing.assert_close(bank.fg.double(), fg, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bank.bg.double(), bg, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bank.seen, seen[:, 0])
    torch.testing.assert_close(bank.seen_bg, seen[:, 1])


def test_repeated_class_applies_updates_in_order():
    # One class three times: fg = lam^3 fg0 + (1-lam)(lam^2 v1 + lam v2 + v3).
    features = torch.stack([torch.full((2, 1, 2), float(i)) for i in (1, 2, 4)])
    features[:, :, 0, 0] = 0.0  # background pixel
    cam = torch.tensor([[[0.0, 1.0]]]).expand(3, 1, 2)
    bank = ContextEmbeddingBank(2, 2, momentum=0.5, init="zeros")
    bank.update(features, cam, torch.tensor([1, 1, 1]))
    expected = 0.5 * (0.25 * 1 + 0.5 * 2 + 4)
    torch.testing.assert_close(bank.fg[1], torch.full((2,), expected))
    torch.testing.assert_close(bank.bg[1], torch.zeros(2))
    torch.testing.assert_close(bank.fg[0], torch.zeros(2))
    assert bank.seen.tolist() == [0, 3]
    assert bank.unseen_classes().tolist() == [0]


def test_empty_mask_skips_and_never_writes_nan():
    bank = ContextEmbeddingBank(3, 4, generator=torch.Generator().manual_seed(0))
    before_fg = bank.fg.clone()
    features = torch.rand(2, 4, 3, 3)
    cam = torch.full((2, 3, 3), 7.0)  # constant: no foreground
    bank.update(features, cam, torch.tensor([2, 2]))
    torch.testing.assert_close(bank.fg, before_fg)
    assert torch.isfinite(bank.bg).all()
    assert bank.seen.tolist() == [0, 0, 0] and bank.seen_bg.tolist() == [0, 0, 2]
    assert bank.unseen_classes().tolist() == [0, 1, 2]
    # Non-finite statistics are skipped as well.
    features[0, 0, 0, 0] = float("nan")
    bank.update(features[:1], torch.rand(1, 3, 3), torch.tensor([1]))
    assert torch.isfinite(bank.fg).all() and torch.isfinite(bank.bg).all()


def test_momentum_extremes():
    features, cam, labels = _batch(1, 6, 2)
    frozen = ContextEmbeddingBank(2, 5, momentum=1.0)
    init = frozen.fg.clone()
    frozen.update(features, cam, labels)
    torch.testing.assert_close(frozen.fg, init)
    replace = ContextEmbeddingBank(2, 5, momentum=0.0, init="zeros")
    replace.update(features, cam, torch.zeros(6, dtype=torch.long))
    region = torch.stack([_minmax64(c.double()) > 0.2 for c in cam])
    last = features[-1][:, region[-1]].mean(1)
    torch.testing.assert_close(replace.fg[0], last)


def test_state_dict_round_trip_and_to():
    bank = ContextEmbeddingBank(4, 5)
    bank.update(*_batch(2, 6, 4))
    buffer = io.BytesIO()
    torch.save(bank.state_dict(), buffer)
    buffer.seek(0)
    other = ContextEmbeddingBank(4, 5, generator=torch.Generator().manual_seed(99))
    other.load_state_dict(torch.load(buffer))
    for name in ("fg", "bg", "seen", "seen_bg"):
        assert torch.equal(getattr(other, name), getattr(bank, name))
    assert set(bank.state_dict()) == {"fg", "bg", "seen", "seen_bg"}
    double = other.to(torch.float64)
    assert double.fg.dtype == torch.float64 and double.seen.dtype == torch.long
    features, cam, labels = _batch(3, 5, 4)
    bank.update(features, cam, labels)
    double.update(features.double(), cam.double(), labels)
    torch.testing.assert_close(double.fg, bank.fg.double(), rtol=1e-5, atol=1e-6)


def test_follows_device(device):
    bank = ContextEmbeddingBank(3, 5).to(device)
    features, cam, labels = _batch(4, 4, 3)
    reference = ContextEmbeddingBank(3, 5)
    reference.load_state_dict(bank.state_dict())
    bank.update(features.to(device), cam.to(device), labels.to(device))
    reference.update(features, cam, labels)
    assert bank.fg.device.type == device.type
    torch.testing.assert_close(bank.fg.cpu(), reference.fg, rtol=1e-5, atol=1e-6)


def test_autocast_accumulates_in_float32():
    features, cam, labels = _batch(5, 8, 3, channels=16)
    features = features.bfloat16()
    plain = ContextEmbeddingBank(3, 16, generator=torch.Generator().manual_seed(1))
    autocast = ContextEmbeddingBank(3, 16, generator=torch.Generator().manual_seed(1))
    plain.update(features.float(), cam, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast.update(features, cam.bfloat16().float(), labels)
    assert autocast.fg.dtype == torch.float32
    torch.testing.assert_close(autocast.fg, plain.fg, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(autocast.bg, plain.bg, rtol=1e-6, atol=1e-6)


def test_lookup_and_repr():
    bank = ContextEmbeddingBank(3, 2)
    fg, bg = bank.lookup(torch.tensor([2, 0]))
    torch.testing.assert_close(fg, bank.fg[[2, 0]])
    torch.testing.assert_close(bg, bank.bg[[2, 0]])
    assert "num_classes=3" in repr(bank) and "momentum=0.8" in repr(bank)
    zeros = ContextEmbeddingBank(3, 2, init="zeros")
    assert torch.count_nonzero(zeros.fg) == 0
    a = ContextEmbeddingBank(3, 2, generator=torch.Generator().manual_seed(7))
    b = ContextEmbeddingBank(3, 2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.fg, b.fg) and not torch.equal(a.fg, a.bg)


def test_errors():
    with pytest.raises(ValueError, match="num_classes must be > 0"):
        ContextEmbeddingBank(0, 4)
    with pytest.raises(ValueError, match="momentum must be in"):
        ContextEmbeddingBank(2, 4, momentum=1.5)
    with pytest.raises(ValueError, match="repeats must be"):
        ContextEmbeddingBank(2, 4, repeats="last")
    with pytest.raises(ValueError, match="init must be"):
        ContextEmbeddingBank(2, 4, init="uniform")
    bank = ContextEmbeddingBank(2, 4)
    features, cam, labels = torch.rand(3, 4, 2, 2), torch.rand(3, 2, 2), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match="features must have C=4"):
        bank.update(torch.rand(3, 5, 2, 2), cam, labels)
    with pytest.raises(ValueError, match=r"cam must have shape \(B, h, w\)"):
        bank.update(features, torch.rand(3, 2, 3), labels)
    with pytest.raises(ValueError, match="labels must hold B=3"):
        bank.update(features, cam, labels[:2])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        bank.update(features, cam, torch.tensor([0, 2, 1]))
    with pytest.raises(TypeError, match="labels must have dtype"):
        bank.update(features, cam, labels.float())


# ---------------------------------------------------------------------------------------------
# Refusals, extreme and hostile input
# ---------------------------------------------------------------------------------------------
def test_lookup_refuses_classes_outside_the_bank():
    bank = ContextEmbeddingBank(3, 2)
    for classes, low, high in ((torch.tensor([-1]), -1, -1), (torch.tensor([0, 3]), 0, 3),
                               (torch.tensor([255], dtype=torch.uint8), 255, 255)):
        with pytest.raises(ValueError, match=rf"classes must lie in \[0, 2\], got values in "
                                             rf"\[{low}, {high}\]"):
            bank.lookup(classes)
    with pytest.raises(TypeError, match="classes must have dtype in"):
        bank.lookup(torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"classes must be \(B,\), got a 0-D"):
        bank.lookup(torch.tensor(1))
    with pytest.raises(ValueError, match="classes must be on the same device as the bank"):
        bank.lookup(torch.tensor([0], device="meta"))
    fg, bg = bank.lookup(torch.tensor([], dtype=torch.long))
    assert fg.shape == bg.shape == (0, 2)


@pytest.mark.parametrize(("key", "value", "error", "match"), [
    ("fg", torch.full((3, 2), math.nan), ValueError,
     "fg must hold finite embeddings, got NaN or infinite values"),
    ("bg", torch.tensor([[0.0, math.inf]] * 3), ValueError, "bg must hold finite embeddings"),
    ("seen", torch.tensor([0, -4, 1]), ValueError, "seen must hold counts >= 0, got -4"),
    ("seen_bg", torch.tensor([0.5, 1.0, 2.0]), TypeError,
     "seen_bg must hold integer counts, got dtype torch.float32"),
    ("fg", torch.ones(3, 2, dtype=torch.long), TypeError,
     "fg must hold floating-point embeddings, got dtype torch.int64"),
])
def test_load_state_dict_refuses_poisoned_state(key, value, error, match):
    bank = ContextEmbeddingBank(3, 2)
    before = {name: tensor.clone() for name, tensor in bank.state_dict().items()}
    state = dict(before, **{key: value})
    with pytest.raises(error, match=match):
        bank.load_state_dict(state)
    for name, tensor in bank.state_dict().items():  # nothing was copied
        assert torch.equal(tensor, before[name])
    holder = nn.ModuleDict({"bank": ContextEmbeddingBank(3, 2)})  # the key names the entry
    with pytest.raises(error, match=f"bank.{match}"):
        holder.load_state_dict({f"bank.{name}": t for name, t in state.items()})


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
@pytest.mark.parametrize("special", _EXTREMES)
@pytest.mark.parametrize("repeats", ["sequential", "mean"])
def test_extreme_finite_features_keep_the_bank_finite(dtype, special, repeats):
    gen = torch.Generator().manual_seed(8)
    features = _fill(torch.randn(6, 4, 3, 3, generator=gen, dtype=torch.float64), dtype,
                     special).to(dtype)
    cam = _fill(torch.randn(6, 3, 3, generator=gen, dtype=torch.float64), dtype,
                special).to(dtype)
    for momentum in (0.0, 0.8, 1.0):
        bank = ContextEmbeddingBank(3, 4, momentum=momentum, repeats=repeats)
        bank.update(features, cam, torch.tensor([0, 0, 1, 0, 2, 2]))
        assert is_finite(bank.fg) and is_finite(bank.bg)
        fg, bg = bank.lookup(torch.tensor([2, 0]))
        assert is_finite(fg) and is_finite(bg)
    half = ContextEmbeddingBank(3, 4, repeats=repeats).half()
    half.update(features, cam, torch.tensor([0, 0, 1, 0, 2, 2]))
    assert half.fg.dtype == torch.float16 and is_finite(half.fg) and is_finite(half.bg)


def test_means_beyond_the_bank_dtype_saturate():
    bank = ContextEmbeddingBank(2, 3, momentum=0.0, init="zeros")
    features = torch.full((2, 3, 2, 2), 1e300, dtype=torch.float64)
    bank.update(features, torch.rand(2, 2, 2, dtype=torch.float64), torch.tensor([0, 1]))
    largest = torch.finfo(torch.float32).max
    assert bool((bank.fg == largest).all()) and bool((bank.bg == largest).all())


def test_nan_features_never_enter_the_bank():
    bank = ContextEmbeddingBank(2, 3)
    before = bank.fg.clone()
    features = torch.rand(2, 3, 2, 2)
    features[0] = math.nan
    bank.update(features, torch.rand(2, 2, 2), torch.tensor([0, 1]))
    assert torch.equal(bank.fg[0], before[0]) and is_finite(bank.fg) and is_finite(bank.bg)
    assert bank.seen.tolist() == [0, 1]


@given(dims=st.tuples(st.integers(0, 3), st.sampled_from([1, 3]), st.integers(0, 3),
                      st.integers(0, 3)),
       data=st.data(), repeats=st.sampled_from(["sequential", "mean"]),
       momentum=st.sampled_from([0.0, 0.5, 1.0]))
def test_bank_refuses_or_stays_finite(dims, data, repeats, momentum):
    """Hostile input to camkit.cream's bank: only ValueError/TypeError escape, and finite
    features keep the embeddings finite."""
    batch, channels, height, width = dims
    bank = ContextEmbeddingBank(4, 3, momentum=momentum, repeats=repeats)
    features = data.draw(fitting_or_hostile((batch, channels, height, width)))
    cam = data.draw(fitting_or_hostile((batch, height, width)))
    labels = data.draw(indices(batch, 4))
    try:
        bank.update(features, cam, labels)
    except (ValueError, TypeError):
        pass
    assert is_finite(bank.fg) and is_finite(bank.bg)  # NaN features are never taken in
    assert int(bank.seen.min()) >= 0 and int(bank.seen_bg.min()) >= 0
    try:
        fg, bg = bank.lookup(labels)
    except (ValueError, TypeError):
        return
    assert fg.shape == bg.shape == (labels.shape[0], 3) and all_finite(fg, bg)
