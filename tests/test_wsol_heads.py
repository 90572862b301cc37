"""camkit.acol and camkit.spg: masks against loop references, heads against the reference
structure, properties, gradients, refusals, and attach on a small backbone carrying each head."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import gradcheck
from torch import nn

import camkit
from camkit import (
    ACoLHead,
    ACoLOutput,
    SPGHead,
    SPGOutput,
    acol_loss,
    erase_by_cam,
    spg_guidance_mask,
    spg_loss,
)


# ------------------------------------------------------------------------------ references
def loop_minmax(values: list[list[float]]) -> list[list[float]]:
    flat = [v for row in values for v in row]
    low, high = min(flat), max(flat)
    if high == low:
        return [[0.0 for _ in row] for row in values]
    return [[(v - low) / (high - low) for v in row] for row in values]


def loop_keep_mask(cam: torch.Tensor, threshold: float, inclusive: bool) -> torch.Tensor:
    """1 where the min-max normalized map stays, 0 where it is erased, pixel by pixel."""
    batch, height, width = cam.shape
    keep = torch.ones(batch, 1, height, width, dtype=torch.float64)
    for b in range(batch):
        scores = loop_minmax([[float(cam[b, y, x]) for x in range(width)]
                              for y in range(height)])
        for y in range(height):
            for x in range(width):
                hit = scores[y][x] >= threshold if inclusive else scores[y][x] > threshold
                keep[b, 0, y, x] = 0.0 if hit else 1.0
    return keep


def loop_guidance(scores: torch.Tensor, high: float, low: float, min_fg: int,
                  ratio: float) -> torch.Tensor:
    batch, _, height, width = scores.shape
    mask = torch.full((batch, 1, height, width), -1.0, dtype=scores.dtype)
    for b in range(batch):
        values = [[float(scores[b, 0, y, x]) for x in range(width)] for y in range(height)]
        cut = high
        if sum(v > high for row in values for v in row) < min_fg:
            cut = ratio * max(v for row in values for v in row)
        for y in range(height):
            for x in range(width):
                if values[y][x] > cut:
                    mask[b, 0, y, x] = 1.0
                if values[y][x] < low:  # background is applied last
                    mask[b, 0, y, x] = 0.0
    return mask


def reference_acol(head: ACoLHead, features: torch.Tensor, labels: torch.Tensor) -> dict:
    """The protocol's ``_acol_logits`` written out on the head's layers: maps first, then pooling;
    erasing by ``>=`` on the min-max normalized map of A."""
    maps_a = head.classifier_a(head.branch_a(features))
    attention = maps_a.detach()[torch.arange(len(labels)), labels]
    flat = attention.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    attention = (attention - low) / (high - low)
    mask = torch.ones_like(attention)
    mask[attention >= head.erase_threshold] = 0.0
    maps_b = head.classifier_b(head.branch_b(features * mask.unsqueeze(1)))
    return {"logits": maps_a.mean(dim=(2, 3)), "logit_b": maps_b.mean(dim=(2, 3)),
            "feat_map_a": maps_a, "feat_map_b": maps_b}


def reference_spg_loss(output: SPGOutput, labels: torch.Tensor, thresholds, size: int,
                       min_fg: int) -> torch.Tensor:
    """The protocol's ``get_loss`` written out: upsample everything, boolean-indexed BCE means."""
    def up(t):
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)

    all_maps = up(output.class_maps.detach())
    attention = all_maps[torch.arange(len(labels)), labels].unsqueeze(1)
    flat = attention.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    attention = (attention - low) / (high - low)
    prob_b1, prob_b2 = (torch.sigmoid(up(m.detach())) for m in (output.map_b1, output.map_b2))
    fused = (prob_b1 + prob_b2) / 2

    def term(logits, scores, pair):
        mask = loop_guidance(scores, *pair, min_fg, 0.7)
        keep = mask >= 0
        return F.binary_cross_entropy_with_logits(up(logits)[keep], mask[keep])

    return (F.cross_entropy(output.logits, labels)
            + term(output.map_b2, attention, thresholds[0])
            + term(output.map_b1, torch.sigmoid(up(output.map_b2)).detach(), thresholds[1])
            + term(output.map_c, fused, thresholds[2]))


def small_acol(**kwargs) -> ACoLHead:
    torch.manual_seed(0)
    return ACoLHead(3, 4, hidden_channels=5, **kwargs).double()


def small_spg() -> SPGHead:
    torch.manual_seed(0)
    return SPGHead(3, 4, (2, 5), hidden_channels=3, c_hidden_channels=2).double()


# ------------------------------------------------------------------------------------ ACoL
@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7, 1.0])
def test_erasing_mask_equals_loop_reference(threshold, inclusive):
    features = torch.rand(3, 4, 5, 6, dtype=torch.float64)
    cam = torch.randn(3, 5, 6, dtype=torch.float64)
    got = erase_by_cam(features, cam, threshold, inclusive=inclusive)
    torch.testing.assert_close(got, features * loop_keep_mask(cam, threshold, inclusive))


def test_threshold_one_erases_only_the_peak_when_inclusive_and_nothing_otherwise():
    features = torch.rand(2, 3, 4, 4) + 0.5
    cam = torch.randn(2, 4, 4)
    assert torch.equal(erase_by_cam(features, cam, 1.0, inclusive=False), features)
    erased = (erase_by_cam(features, cam, 1.0) == 0).all(dim=1)
    peaks = cam == cam.flatten(1).amax(dim=1).view(-1, 1, 1)
    assert torch.equal(erased, peaks)


def test_constant_cam_erases_nothing_above_zero_and_keeps_dtype():
    features = torch.rand(1, 2, 3, 3, dtype=torch.bfloat16)
    got = erase_by_cam(features, torch.full((1, 3, 3), 2.0, dtype=torch.bfloat16), 0.5)
    assert got.dtype == torch.bfloat16 and torch.equal(got, features)


def test_acol_training_output_matches_the_reference_structure():
    head = small_acol(erase_threshold=0.6)
    features = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1])
    out = head(features, labels)
    ref = reference_acol(head, features, labels)
    assert isinstance(out, ACoLOutput)
    torch.testing.assert_close(out.logits, ref["logits"])
    torch.testing.assert_close(out.logits_b, ref["logit_b"])
    torch.testing.assert_close(out.maps_a, ref["feat_map_a"])
    torch.testing.assert_close(out.maps_b, ref["feat_map_b"])
    assert torch.equal(out.classes, labels)
    expected = F.cross_entropy(ref["logits"], labels) + F.cross_entropy(ref["logit_b"], labels)
    torch.testing.assert_close(acol_loss(out, labels), expected)


def test_acol_without_labels_erases_by_the_top1_class():
    head = small_acol()
    features = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    out = head(features)
    assert torch.equal(out.classes, out.logits.argmax(dim=1))
    ref = reference_acol(head, features, out.classes)
    torch.testing.assert_close(out.logits_b, ref["logit_b"])


def test_acol_eval_gives_the_reference_logits_and_the_fused_map():
    head = small_acol().eval()
    features = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    classes = torch.tensor([2, 0])
    ref = reference_acol(head, features, classes)
    logits = head(features)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 4)
    torch.testing.assert_close(logits, ref["logits"])
    fused = head.localization_map(features, classes)
    rows = torch.arange(2)
    expected = torch.maximum(camkit.normalize_map(ref["feat_map_a"][rows, classes]),
                             camkit.normalize_map(ref["feat_map_b"][rows, classes]))
    assert fused.shape == (2, 4, 5)
    torch.testing.assert_close(fused, expected)
    assert "erase_threshold=0.7" in repr(head)


def test_acol_he_init_and_zero_biases():
    head = ACoLHead(2, 3, hidden_channels=4, init="he")
    assert all(not m.bias.detach().any() for m in head.modules() if isinstance(m, nn.Conv2d))


def test_gradcheck_erasing_and_acol_head():
    cam = torch.randn(1, 3, 3, dtype=torch.float64)
    assert gradcheck(lambda f: erase_by_cam(f, cam, 0.5), torch.rand(1, 2, 3, 3))
    head = small_acol()
    labels = torch.tensor([1, 2])

    def losses(features: torch.Tensor) -> torch.Tensor:
        return acol_loss(head(features, labels), labels)

    assert gradcheck(losses, torch.rand(2, 3, 3, 3))


# ------------------------------------------------------------------------------------- SPG
@pytest.mark.parametrize(("high", "low", "min_fg"), [(0.7, 0.01, 30), (0.5, 0.05, 3),
                                                      (0.9, 0.3, 0), (0.2, 0.4, 5)])
def test_guidance_mask_equals_loop_reference(high, low, min_fg):
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(4, 1, 6, 7, generator=generator, dtype=torch.float64)
    scores[1] *= 0.5  # few pixels above high: the fallback path
    got = spg_guidance_mask(scores, high, low, min_foreground=min_fg, fallback_ratio=0.7)
    torch.testing.assert_close(got, loop_guidance(scores, high, low, min_fg, 0.7))


def test_guidance_mask_nan_and_empty():
    scores = torch.tensor([[[[float("nan"), 0.9], [0.0, 0.5]]]])
    got = spg_guidance_mask(scores, 0.7, 0.1, min_foreground=0)
    assert got.tolist() == [[[[-1.0, 1.0], [0.0, -1.0]]]]
    assert spg_guidance_mask(torch.zeros(0, 1, 3, 3), 0.7, 0.1).shape == (0, 1, 3, 3)


def spg_inputs(head: SPGHead, batch: int = 3) -> tuple:
    generator = torch.Generator().manual_seed(2)
    features = torch.rand(batch, 3, 4, 4, generator=generator, dtype=torch.float64)
    stages = (torch.rand(batch, 2, 8, 8, generator=generator, dtype=torch.float64),
              torch.rand(batch, 5, 6, 6, generator=generator, dtype=torch.float64))
    return features, stages


def test_spg_training_output_and_loss_match_the_reference():
    head = small_spg()
    features, stages = spg_inputs(head)
    labels = torch.tensor([0, 2, 3])
    out = head(features, stages)
    assert isinstance(out, SPGOutput)
    maps = head.classifier(features)
    torch.testing.assert_close(out.class_maps, maps)
    torch.testing.assert_close(out.logits, maps.mean(dim=(2, 3)))
    torch.testing.assert_close(out.map_b1, head.shared_b(head.side_b1(stages[0])))
    torch.testing.assert_close(out.map_b2, head.shared_b(head.side_b2(stages[1])))
    assert out.map_b1.shape == (3, 1, 8, 8) and out.map_c.shape == (3, 1, 4, 4)
    thresholds = ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1))
    for size, min_fg in ((16, 30), (12, 2)):
        got = spg_loss(out, labels, size=size, min_foreground=min_fg)
        torch.testing.assert_close(got, reference_spg_loss(out, labels, thresholds, size, min_fg))


def test_spg_loss_with_nothing_labeled_is_the_classification_loss():
    head = small_spg()
    out = head(*spg_inputs(head))
    labels = torch.tensor([1, 1, 0])
    got = spg_loss(out, labels, thresholds=((1.0, 0.0),) * 3, min_foreground=0,
                   fallback_ratio=1.0, size=8)
    torch.testing.assert_close(got, F.cross_entropy(out.logits, labels))


def test_spg_eval_gives_the_reference_logits_and_the_class_map():
    head = small_spg().eval()
    features, _ = spg_inputs(head)
    classes = torch.tensor([3, 0, 1])
    logits = head(features)
    maps = head.classifier(features)
    torch.testing.assert_close(logits, maps.mean(dim=(2, 3)))
    torch.testing.assert_close(head.localization_map(features, classes),
                               maps[torch.arange(3), classes])


def test_gradcheck_spg_loss_and_head():
    head = small_spg()
    features, stages = spg_inputs(head, batch=2)
    labels = torch.tensor([1, 3])
    out = head(features, stages)

    def loss_of_maps(logits, b1, b2, c):
        return spg_loss(SPGOutput(logits, out.class_maps.detach(), b1, b2, c), labels, size=6,
                        min_foreground=2)

    generator = torch.Generator().manual_seed(3)
    maps = [torch.randn(t.shape, generator=generator, dtype=torch.float64)
            for t in (out.logits, out.map_b1, out.map_b2, out.map_c)]
    assert gradcheck(loss_of_maps, *maps)
    # A dead ReLU with a zero bias gives B maps of exactly 0, sigmoid 0.5: keep thresholds
    # off 0.5 so that the finite differences do not cross one.
    thresholds = ((0.7, 0.01), (0.6, 0.05), (0.7, 0.1))

    def loss_of_features(f, s1, s2):
        return spg_loss(head(f, (s1, s2)), labels, size=6, min_foreground=2,
                        thresholds=thresholds)

    assert gradcheck(loss_of_features, features[:, :, :3, :3], stages[0][:, :, :4, :4],
                     stages[1][:, :, :3, :3])


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: erase_by_cam(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5)), ValueError,
         r"cam must have the batch and spatial size of features \(B, h, w\) = \(2, 4, 4\)"),
        (lambda: erase_by_cam(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4), 1.5), ValueError,
         "threshold"),
        (lambda: erase_by_cam(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4)), ValueError,
         r"features must be \(B, C, h, w\)"),
        (lambda: ACoLHead(3, 4, init="kaiming"), ValueError, "init must be 'xavier' or 'he'"),
        (lambda: ACoLHead(3, 0), ValueError, "num_classes"),
        (lambda: ACoLHead(3, 4, inclusive="no"), TypeError, "inclusive must be True or False"),
        (lambda: ACoLHead(3, 4, erase_threshold=-0.1), ValueError, "erase_threshold"),
        (lambda: ACoLHead(3, 4, hidden_channels=2)(torch.zeros(2, 3, 4, 4),
                                                    torch.tensor([0, 4])),
         ValueError, r"labels must lie in \[0, 3\], got values in \[0, 4\]"),
        (lambda: ACoLHead(3, 4, hidden_channels=2)(torch.zeros(2, 3, 4, 4), torch.tensor([0])),
         ValueError, r"labels must hold one class per image \(B=2\), got 1"),
        (lambda: ACoLHead(3, 4, hidden_channels=2).localization_map(
            torch.zeros(2, 3, 4, 4), torch.tensor([0.0, 1.0])), TypeError,
         "classes must have dtype"),
        (lambda: acol_loss(torch.zeros(2, 4), torch.tensor([0, 1])), TypeError,
         "output must be an ACoLOutput"),
        (lambda: spg_loss(torch.zeros(2, 4), torch.tensor([0, 1])), TypeError,
         "output must be an SPGOutput"),
        (lambda: spg_guidance_mask(torch.zeros(1, 2, 3, 3), 0.7, 0.1), ValueError,
         r"scores must have one channel \(B, 1, H, W\)"),
        (lambda: spg_guidance_mask(torch.zeros(1, 1, 3, 3), 1.7, 0.1), ValueError, "high"),
        (lambda: spg_guidance_mask(torch.zeros(1, 1, 3, 3), 0.7, 0.1, min_foreground=-1),
         ValueError, "min_foreground"),
        (lambda: SPGHead(3, 4, 2), TypeError, r"stage_channels must be a pair \(C1, C2\)"),
        (lambda: SPGHead(3, 4, (2, 0)), ValueError, "stage_channels"),
        (lambda: SPGHead(3, 4, (2, 2))(torch.zeros(1, 3, 4, 4)), ValueError,
         "stage_features must be the two intermediate feature maps"),
    ],
)
def test_invalid_arguments_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(("thresholds", "error", "match"), [
    (((0.7, 0.1),), TypeError, r"thresholds must be three \(high, low\) pairs"),
    (((0.7, 0.1), (0.5, 0.05), (0.7, 2.0)), ValueError, r"thresholds\[2\]\[1\]"),
])
def test_spg_loss_refuses_bad_thresholds(thresholds, error, match):
    head = small_spg()
    out = head(*spg_inputs(head))
    with pytest.raises(error, match=match):
        spg_loss(out, torch.tensor([0, 1, 2]), thresholds=thresholds)


# --------------------------------------------------------------------------------- end to end
class TinyAcolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = ACoLHead(6, 3, hidden_channels=8)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        return self.head(self.body(x), labels)


class TinySpgNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.stage3 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.head = SPGHead(8, 3, (4, 6), hidden_channels=5, c_hidden_channels=4)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        first = self.stage1(x)
        second = self.stage2(first)
        return self.head(self.stage3(second), (first, second))


@pytest.mark.parametrize(("net_type", "loss_fn", "names"), [
    (TinyAcolNet, acol_loss, {"feature_layer": "head.branch_a", "classifier": "head.classifier_a"}),
    (TinySpgNet, lambda out, y: spg_loss(out, y, size=16, min_foreground=4),
     {"feature_layer": "stage3", "classifier": "head.classifier"}),
])
def test_training_then_cam_rcam_and_cream_through_attach(net_type, loss_fn, names):
    torch.manual_seed(0)
    net = net_type()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(2):
        loss = loss_fn(net(images, labels), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    example = torch.randn(1, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the numerical check of discovery must pass
        for explicit in (names, {}):  # named, then found by discovery
            with camkit.attach(net, method="cream", example_input=example, **explicit) as loc:
                assert (loc.feature_name, loc.classifier_name) == tuple(names.values())
                loc.train()
                loc(images, labels=labels)  # CREAM's bank learns from a training forward
                for method in ("cam", "rcam", "cream"):
                    result = loc.localize(images, labels=labels, method=method)
                    assert result.maps.shape == (4, 8, 8)
                    assert result.scoremaps.shape == (4, 16, 16)
                    assert torch.isfinite(result.maps).all()
                    assert torch.isfinite(result.scoremaps).all()
                    assert len(result.boxes) == 4
    net.eval()
    with torch.no_grad():
        features = net.body(images) if isinstance(net, TinyAcolNet) else None
        cam = camkit.attach(net, method="cam", example_input=example, **names).localize(
            images, labels=labels).maps
        if isinstance(net, TinyAcolNet):  # CAM of branch A is A's class map, up to min-max
            maps_a = net.head.classifier_a(net.head.branch_a(features))[torch.arange(4), labels]
            fused = net.head.localization_map(features, labels)
            assert fused.shape == (4, 8, 8) and torch.isfinite(fused).all()
        else:
            first = net.stage1(images)
            maps_a = net.head.localization_map(net.stage3(net.stage2(first)), labels)
        torch.testing.assert_close(camkit.normalize_map(cam), camkit.normalize_map(maps_a),
                                   atol=1e-5, rtol=1e-4)


def test_tap_applies_to_the_heads_pooling():
    net = TinyAcolNet().eval()
    loc = camkit.attach(net, method="rcam", tap=0.1, example_input=torch.randn(1, 3, 16, 16))
    assert isinstance(net.head.pool, camkit.ThresholdedAvgPool)
    loc.detach()
    assert isinstance(net.head.pool, nn.AdaptiveAvgPool2d)


# ------------------------------------------------------------ attach with a head's own map
def test_attach_with_acol_localization_map_gives_the_fused_map():
    torch.manual_seed(1)
    net = TinyAcolNet().eval()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    example = torch.randn(1, 3, 16, 16)
    with camkit.attach(net, method="cam", example_input=example,
                       localization_map=net.head.localization_map, map_layer="body") as loc:
        assert loc.map_layer_name == "body"
        result = loc.localize(images, labels=labels)
        predicted = loc.localize(images)
        pas = loc.localize(images, labels=labels, threshold="pas")
    assert not net.training
    with torch.no_grad():
        expected = net.head.localization_map(net.body(images), labels)
        top1 = net(images).argmax(dim=1)
        expected_top1 = net.head.localization_map(net.body(images), top1)
    torch.testing.assert_close(result.maps, expected, atol=0, rtol=0)
    torch.testing.assert_close(result.scoremaps, camkit.normalize_map(
        camkit.upsample_map(expected, (16, 16))), atol=0, rtol=0)
    torch.testing.assert_close(predicted.classes, top1)
    torch.testing.assert_close(predicted.maps, expected_top1, atol=0, rtol=0)
    torch.testing.assert_close(pas.maps, expected, atol=0, rtol=0)
    assert len(result.boxes) == 4 and all(box.shape == (4,) for box in result.boxes)


def test_attach_localization_map_without_map_layer_reads_the_feature_layer():
    net = TinyAcolNet().eval()
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([2, 0])
    seen = []

    def branch_a_map(features, classes):
        seen.append(features.shape)
        return net.head.classifier_a(features)[torch.arange(features.shape[0]), classes]

    loc = camkit.attach(net, method="cam", example_input=torch.randn(1, 3, 16, 16),
                        localization_map=branch_a_map)
    plain = camkit.attach(net, method="cam", example_input=torch.randn(1, 3, 16, 16))
    result, cam = loc.localize(images, labels=labels), plain.localize(images, labels=labels)
    assert seen == [torch.Size([2, 8, 8, 8])]  # head.branch_a's output, the classifier input
    torch.testing.assert_close(result.maps, cam.maps, atol=1e-5, rtol=1e-5)
    loc.detach()
    plain.detach()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"localization_map": 3}, TypeError,
     r"localization_map must be a callable \(features, classes\) -> Tensor\[B, h, w\] or None, "
     r"got int"),
    ({"localization_map": lambda f, c: f[:, 0], "method": "rcam"}, ValueError,
     r"localization_map= replaces the CAM of method='cam' only .* got method='rcam'"),
    ({"localization_map": lambda f, c: f[:, 0], "method": None}, ValueError,
     r"attach with method='cam', got method=None"),
    ({"map_layer": "body"}, ValueError, r"map_layer= names the input of localization_map=; "
     r"give both"),
    ({"localization_map": lambda f, c: f[:, 0], "method": "cam", "map_layer": "nope"},
     ValueError, r"map_layer='nope' is not a submodule of the model"),
    ({"localization_map": lambda f, c: f[:, 0], "method": "cam", "map_layer": 1.5},
     TypeError, r"map_layer must be an nn.Module or a dotted name, got float"),
])
def test_attach_refuses_bad_localization_map_options(kwargs, error, match):
    net = TinyAcolNet().eval()
    with pytest.raises(error, match=match):
        camkit.attach(net, example_input=torch.randn(1, 3, 16, 16), **kwargs)


@pytest.mark.parametrize(("fn", "match"), [
    (lambda f, c: f, r"localization_map must return a floating-point \(B=2, h, w\) tensor, "
     r"got torch.Size\(\[2, 6, 8, 8\]\)"),
    (lambda f, c: f[:1, 0], r"localization_map must return a floating-point \(B=2, h, w\)"),
    (lambda f, c: f[:, 0].long(), r"localization_map must return a floating-point"),
    (lambda f, c: None, r"localization_map must return .* got NoneType"),
])
def test_localize_refuses_a_bad_localization_map_result(fn, match):
    net = TinyAcolNet().eval()
    loc = camkit.attach(net, method="cam", example_input=torch.randn(1, 3, 16, 16),
                        localization_map=fn, map_layer=net.body)
    with pytest.raises(ValueError, match=match):
        loc.localize(torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("method", ["rcam", "cream"])
def test_localize_refuses_other_methods_with_a_localization_map(method):
    net = TinyAcolNet().eval()
    loc = camkit.attach(net, method="cam", example_input=torch.randn(1, 3, 16, 16),
                        localization_map=net.head.localization_map, map_layer="body")
    with pytest.raises(ValueError, match=rf"method='{method}' is not available on a handle "
                       r"attached with localization_map="):
        loc.localize(torch.randn(2, 3, 16, 16), method=method)


def test_localize_refuses_a_map_layer_that_did_not_run():
    net = TinyAcolNet().eval()  # branch B runs in training only
    loc = camkit.attach(net, method="cam", example_input=torch.randn(1, 3, 16, 16),
                        localization_map=net.head.localization_map, map_layer="head.branch_b")
    with pytest.raises(RuntimeError, match=r"the map layer 'head.branch_b' did not run during "
                       r"the forward pass"):
        loc.localize(torch.randn(2, 3, 16, 16))
