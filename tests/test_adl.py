"""camkit.adl: ADL masks against loop references, properties, gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import gradcheck

from camkit import AttentionDropout, attention_dropout


def loop_drop_mask(features: torch.Tensor, threshold: float) -> torch.Tensor:
    batch, channels, height, width = features.shape
    mask = torch.zeros(batch, 1, height, width, dtype=features.dtype)
    for b in range(batch):
        attention = [[sum(float(features[b, c, y, x]) for c in range(channels)) / channels
                      for x in range(width)] for y in range(height)]
        peak = max(max(row) for row in attention)
        for y in range(height):
            for x in range(width):
                mask[b, 0, y, x] = 1.0 if attention[y][x] < threshold * peak else 0.0
    return mask


def test_drop_mask_equals_loop_reference():
    features = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    got = attention_dropout(features, drop_rate=1.0, drop_threshold=0.8)
    torch.testing.assert_close(got, features * loop_drop_mask(features, 0.8))
    assert (got == 0).any()  # the most attended position of each image is dropped


def test_importance_map_is_the_sigmoid_of_the_channel_mean():
    features = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    got = attention_dropout(features, drop_rate=0.0)
    expected = features * torch.sigmoid(features.mean(dim=1, keepdim=True))
    torch.testing.assert_close(got, expected)


def test_drop_rate_chooses_the_drop_mask_that_often():
    features = torch.rand(1, 2, 4, 4) + 0.1
    generator = torch.Generator().manual_seed(0)
    dropped = sum(bool((attention_dropout(features, 0.3, generator=generator) == 0).any())
                  for _ in range(400))
    assert abs(dropped / 400 - 0.3) < 0.07


def test_eval_mode_is_the_identity_and_float16_keeps_its_dtype():
    layer = AttentionDropout(drop_rate=1.0)
    features = torch.rand(2, 3, 4, 4, dtype=torch.float16)
    out = layer(features)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    layer.eval()
    assert layer(features) is features
    assert "drop_rate=1.0" in repr(layer)


@pytest.mark.parametrize("drop_rate", [0.0, 1.0])
def test_gradcheck_both_branches(drop_rate):
    features = torch.rand(1, 2, 3, 3, dtype=torch.float64) + 0.5

    def layer(x: torch.Tensor) -> torch.Tensor:
        return attention_dropout(x, drop_rate=drop_rate, drop_threshold=0.9)

    assert gradcheck(layer, features)


def test_extreme_finite_features_stay_finite():
    features = torch.full((1, 2, 2, 2), 3e38)
    features[0, 0, 0, 0] = -3e38
    for rate in (0.0, 1.0):
        assert torch.isfinite(attention_dropout(features, drop_rate=rate)).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"features": torch.zeros(2, 3, 4)}, ValueError, r"features must be \(B, C, h, w\)"),
        ({"drop_rate": -0.1}, ValueError, "drop_rate"),
        ({"drop_threshold": 2.0}, ValueError, "drop_threshold"),
        ({"drop_rate": float("nan")}, ValueError, "drop_rate"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, error, match):
    arguments = {"features": torch.zeros(1, 3, 4, 4), **kwargs}
    features = arguments.pop("features")
    with pytest.raises(error, match=match):
        attention_dropout(features, **arguments)
