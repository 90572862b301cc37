"""camkit.augment: Hide-and-Seek cells against a loop reference; CutMix's box against lam, its
labels and loss; properties, modules, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from camkit import HideAndSeek, cutmix, cutmix_loss, hide_patches


def loop_reference(images: torch.Tensor, grid: int, hidden: torch.Tensor,
                   fill: torch.Tensor) -> torch.Tensor:
    """Pixel by pixel: a pixel is hidden when its cell (y // grid, x // grid) is."""
    out = images.clone()
    batch, channels, height, width = images.shape
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                if hidden[b, 0, y // grid, x // grid]:
                    for c in range(channels):
                        out[b, c, y, x] = fill[c]
    return out


@pytest.mark.parametrize(("height", "width", "grid"), [(8, 8, 4), (10, 7, 3), (5, 5, 8)])
def test_cells_equal_loop_reference(device, height, width, grid):
    images = torch.randn(3, 2, height, width, device=device)
    fill = torch.tensor([0.5, -1.0], device=device)
    generator = torch.Generator().manual_seed(4)
    got = hide_patches(images, grid, 0.5, fill=fill, generator=generator)
    # the same draw, made again from the same seed
    cells = (3, 1, math.ceil(height / grid), math.ceil(width / grid))
    hidden = torch.rand(cells, generator=torch.Generator().manual_seed(4)) < 0.5
    torch.testing.assert_close(got, loop_reference(images, grid, hidden, fill), rtol=0, atol=0)


@given(seed=st.integers(0, 2**31 - 1), grid=st.integers(1, 9))
def test_property_probabilities_zero_and_one(seed, grid):
    images = torch.randn(2, 3, 11, 13)
    generator = torch.Generator().manual_seed(seed)
    assert torch.equal(hide_patches(images, grid, 0.0, generator=generator), images)
    hidden = hide_patches(images, grid, 1.0, fill=2.5, generator=generator)
    assert torch.equal(hidden, torch.full_like(images, 2.5))


def test_fraction_hidden_follows_the_probability():
    images = torch.ones(64, 1, 64, 64)
    out = hide_patches(images, 8, 0.3, fill=0.0, generator=torch.Generator().manual_seed(0))
    fraction = float((out == 0).float().mean())
    assert abs(fraction - 0.3) < 0.03  # 4096 cells: the standard deviation is 0.007


def test_same_generator_state_gives_the_same_cells_and_input_is_untouched():
    images = torch.randn(4, 3, 16, 16)
    before = images.clone()
    a = hide_patches(images, 4, generator=torch.Generator().manual_seed(1))
    b = hide_patches(images, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(images, before)


def test_gradient_flows_to_visible_pixels_only():
    images = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    out = hide_patches(images, 2, 0.5, generator=torch.Generator().manual_seed(3))
    out.sum().backward()
    assert images.grad is not None
    torch.testing.assert_close(images.grad, (out != 0).to(torch.float64))


def test_module_hides_while_training_only():
    layer = HideAndSeek(4, 1.0, fill=0.0)
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(layer(images), torch.zeros_like(images))
    layer.eval()
    assert layer(images) is images
    assert "grid_size=4" in repr(layer)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": torch.zeros(2, 3, 4)}, ValueError, r"images must be \(B, C, H, W\)"),
        ({"images": torch.zeros(1, 1, 4, 4, dtype=torch.int64)}, TypeError, "images must have"),
        ({"grid_size": 0}, ValueError, "grid_size"),
        ({"hide_prob": 1.5}, ValueError, "hide_prob"),
        ({"fill": torch.zeros(2)}, ValueError, r"fill must be a number or a \(3,\) tensor"),
        ({"fill": torch.tensor([0.0, float("nan"), 0.0])}, ValueError, "fill must be finite"),
        ({"fill": float("inf")}, ValueError, "fill"),
    ],
)
def test_hide_patches_refuses_invalid_arguments(kwargs, error, match):
    arguments = {"images": torch.zeros(1, 3, 4, 4), **kwargs}
    images = arguments.pop("images")
    with pytest.raises(error, match=match):
        hide_patches(images, **arguments)


@given(seed=st.integers(0, 2**31 - 1), alpha=st.sampled_from([0.2, 1.0, 5.0]),
       height=st.integers(1, 20), width=st.integers(1, 20))
def test_property_box_area_matches_lam_and_pixels_come_from_the_partner(seed, alpha, height,
                                                                        width):
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, height, width)
    labels = torch.tensor([0, 1, 2, 3])
    mixed = cutmix(images, labels, alpha, generator=torch.Generator().manual_seed(seed))
    x0, y0, x1, y1 = mixed.box
    assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
    assert mixed.lam == 1.0 - (x1 - x0) * (y1 - y0) / (width * height)
    for b in range(4):  # each image holds its own value outside the box, its partner's inside
        partner = int(mixed.partner_labels[b])
        inside = torch.zeros(height, width, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert (mixed.images[b][:, inside] == partner).all()
        assert (mixed.images[b][:, ~inside] == b).all()
    assert torch.equal(mixed.labels, labels)
    assert sorted(mixed.partner_labels.tolist()) == [0, 1, 2, 3]
    # the own-label weights of the batch's pixels sum to lam over the image
    own = float((mixed.images == torch.arange(4).view(4, 1, 1, 1)).float().mean())
    assert abs(own - (mixed.lam + (1 - mixed.lam) * float(
        (mixed.partner_labels == labels).float().mean()))) < 1e-6


def test_prob_zero_leaves_the_batch_and_the_inputs_unchanged():
    images, labels = torch.randn(3, 3, 8, 8), torch.tensor([2, 0, 1])
    before = images.clone()
    out = cutmix(images, labels, prob=0.0)
    assert torch.equal(out.images, images) and out.lam == 1.0 and out.box == (0, 0, 0, 0)
    assert torch.equal(out.partner_labels, labels)
    cutmix(images, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, before)


def test_same_generator_state_gives_the_same_batch():
    images, labels = torch.randn(5, 3, 16, 16), torch.arange(5)
    a = cutmix(images, labels, generator=torch.Generator().manual_seed(7))
    b = cutmix(images, labels, generator=torch.Generator().manual_seed(7))
    assert a.box == b.box and a.lam == b.lam and torch.equal(a.images, b.images)


def test_loss_mixes_the_two_cross_entropies():
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    labels, partner = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 2, 1, 0])
    loss = cutmix_loss(logits, labels, partner, 0.25)
    expected = 0.25 * F.cross_entropy(logits, labels) + 0.75 * F.cross_entropy(logits, partner)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": torch.tensor([0.5, 1.0])}, TypeError, "labels must have dtype"),
        ({"labels": torch.tensor([0, 1, 2])}, ValueError, "one label per image"),
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"prob": 1.1}, ValueError, "prob"),
        ({"images": torch.zeros(2, 4, 4)}, ValueError, r"images must be \(B, C, H, W\)"),
    ],
)
def test_cutmix_refuses_invalid_arguments(kwargs, error, match):
    arguments = {"images": torch.zeros(2, 3, 4, 4), "labels": torch.tensor([0, 1]), **kwargs}
    images, labels = arguments.pop("images"), arguments.pop("labels")
    with pytest.raises(error, match=match):
        cutmix(images, labels, **arguments)
    with pytest.raises(ValueError, match="lam"):
        cutmix_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([1, 0]), 1.5)
