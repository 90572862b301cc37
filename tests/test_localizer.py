"""camkit.attach on real torchvision architectures (random weights, no downloads).

For each architecture the CAM from the handle must equal a manual computation from the
model's own modules and weights, and CREAM maps must be finite and in range.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close
from torch import nn

import camkit
from camkit import normalize_map, upsample_map

NUM_CLASSES = 5


def _vgg16_gap(models):
    """VGG16 with the GAP head used in WSOL: conv5 features (no last max-pool) + conv6."""
    return nn.Sequential(models.vgg16().features[:-1], nn.Conv2d(512, 1024, 3, padding=1),
                         nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(1024, NUM_CLASSES))


def _plain_cnn(_models):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, NUM_CLASSES))


def _inception_features(net, x):
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
             "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
             "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    for name in names:
        x = getattr(net, name)(x)
    return x


def _resnet_features(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def _per_pixel(features, fn):
    """Apply ``fn`` to every pixel's channel vector: (B, C, h, w) -> (B, C', h, w)."""
    return fn(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _mobilenet_v3_embed(net, x):
    hidden = net.classifier[0]
    return _per_pixel(net.features(x), lambda v: F.hardswish(hidden(v)))


def _convnext_embed(net, x):
    norm = net.classifier[0]
    return _per_pixel(net.features(x), lambda v: F.layer_norm(v, norm.normalized_shape,
                                                              norm.weight, norm.bias, norm.eps))


# name: (builder, input size, features after any per-pixel head, classifier weight)
ARCHITECTURES = {
    "vgg16_gap": (_vgg16_gap, 32, lambda n, x: n[2](n[1](n[0](x))), lambda n: n[5].weight),
    "resnet18": (lambda m: m.resnet18(num_classes=NUM_CLASSES), 64, _resnet_features,
                 lambda n: n.fc.weight),
    "resnet50": (lambda m: m.resnet50(num_classes=NUM_CLASSES), 64, _resnet_features,
                 lambda n: n.fc.weight),
    "inception_v3": (lambda m: m.inception_v3(num_classes=NUM_CLASSES, init_weights=False,
                                              aux_logits=False),
                     107, _inception_features, lambda n: n.fc.weight),
    "mobilenet_v2": (lambda m: m.mobilenet_v2(num_classes=NUM_CLASSES), 64,
                     lambda n, x: n.features(x), lambda n: n.classifier[-1].weight),
    "mobilenet_v3_small": (lambda m: m.mobilenet_v3_small(num_classes=NUM_CLASSES), 64,
                           _mobilenet_v3_embed, lambda n: n.classifier[-1].weight),
    "mobilenet_v3_large": (lambda m: m.mobilenet_v3_large(num_classes=NUM_CLASSES), 64,
                           _mobilenet_v3_embed, lambda n: n.classifier[-1].weight),
    "efficientnet_b0": (lambda m: m.efficientnet_b0(num_classes=NUM_CLASSES), 64,
                        lambda n, x: n.features(x), lambda n: n.classifier[-1].weight),
    "convnext_tiny": (lambda m: m.convnext_tiny(num_classes=NUM_CLASSES), 64, _convnext_embed,
                      lambda n: n.classifier[-1].weight),
    "sequential": (_plain_cnn, 32, lambda n, x: n[5](n[4](n[3](n[2](n[1](n[0](x)))))),
                   lambda n: n[8].weight),
}
SLOW = {"resnet50", "inception_v3", "mobilenet_v3_large", "convnext_tiny", "efficientnet_b0"}
#: (feature layer, classifier, pooling module) that discovery must report.
NAMES = {
    "vgg16_gap": ("2", "5", "3"),
    "resnet18": ("layer4", "fc", "avgpool"),
    "resnet50": ("layer4", "fc", "avgpool"),
    "inception_v3": ("Mixed_7c", "fc", "avgpool"),
    "mobilenet_v2": ("features", "classifier.1", None),  # pools with a function
    "mobilenet_v3_small": ("features", "classifier.3", "avgpool"),
    "mobilenet_v3_large": ("features", "classifier.3", "avgpool"),
    "efficientnet_b0": ("features", "classifier.1", "avgpool"),
    "convnext_tiny": ("features", "classifier.2", "avgpool"),
    "sequential": ("5", "8", "6"),
}


def _manual_cam(features, weight, classes):
    """CAM by an explicit loop over images and channels."""
    maps = torch.zeros(features.shape[0], *features.shape[2:], dtype=torch.float64)
    for b, k in enumerate(classes.tolist()):
        for c in range(features.shape[1]):
            maps[b] += weight[k, c].double() * features[b, c].double()
    return maps


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in ARCHITECTURES])
def test_architecture_cam_matches_manual_and_cream_in_range(name, torchvision_models):
    build, size, embed, weight_of = ARCHITECTURES[name]
    torch.manual_seed(0)
    net = build(torchvision_models)
    x = torch.randn(2, 3, size, size)
    loc = camkit.attach(net, example_input=x)
    assert loc.num_classes == NUM_CLASSES
    assert (loc.feature_name, loc.classifier_name, loc.pool_name) == NAMES[name]
    assert loc.pooling == "avg"

    net.train()
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        loc(x, labels=labels)  # training forward: updates the context embeddings
    assert loc.bank.seen[labels].tolist() == [1, 1]
    assert net.training  # untouched by localize below either

    result = loc.localize(x, method="cam")
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    with torch.no_grad():
        logits = net(x)
        expected = _manual_cam(embed(net, x), weight_of(net), logits.argmax(1))
    assert_close(result.logits, logits)
    assert torch.equal(result.classes, logits.argmax(1))
    assert_close(result.maps, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert_close(result.scoremaps, normalize_map(upsample_map(expected.float(), size)),
                 atol=1e-3, rtol=1e-3)

    cream = loc.localize(x, labels=labels)
    assert torch.equal(cream.classes, labels)
    assert cream.maps.shape == expected.shape and cream.scoremaps.shape == (2, size, size)
    assert torch.isfinite(cream.maps).all() and torch.isfinite(cream.scoremaps).all()
    assert cream.maps.min() >= 0 and cream.maps.max() <= 2 + 1e-5  # calibrated + minmax(CAM)
    assert cream.scoremaps.min() >= 0 and cream.scoremaps.max() <= 1
    assert all(box.shape == (4,) and box[2] < size and box[3] < size for box in cream.boxes)
    loc.detach()


@pytest.mark.slow
def test_inception_training_output_is_a_tuple(torchvision_models):
    torch.manual_seed(0)
    net = torchvision_models.inception_v3(num_classes=NUM_CLASSES, init_weights=False)
    x = torch.randn(2, 3, 299, 299)  # the auxiliary head needs the full size
    with camkit.attach(net, example_input=x[:1]) as loc:
        net.train()
        with torch.no_grad():
            out = loc(x, labels=torch.tensor([0, 4]))
        assert isinstance(out, tuple) and out.logits.shape == (2, NUM_CLASSES)
        assert out.aux_logits.shape == (2, NUM_CLASSES)
        assert loc.bank.seen.tolist() == [1, 0, 0, 0, 1]
        assert loc.feature_name == "Mixed_7c" and loc.classifier_name == "fc"


def test_explicit_modules_and_names_match_discovery(torchvision_models):
    torch.manual_seed(0)
    net = torchvision_models.resnet18(num_classes=NUM_CLASSES)
    x = torch.randn(1, 3, 64, 64)
    auto = camkit.attach(net, method="cam", example_input=x)
    by_name = camkit.attach(net, method="cam", feature_layer="layer4", classifier="fc",
                            num_classes=NUM_CLASSES, example_input=x)
    by_module = camkit.attach(net, method="cam", feature_layer=net.layer4, classifier=net.fc,
                              example_input=x)
    maps = [handle.localize(x, classes=2).maps for handle in (auto, by_name, by_module)]
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[0], maps[2])
    for handle in (auto, by_name, by_module):
        handle.detach()


def test_default_example_input_is_224(torchvision_models):
    net = torchvision_models.mobilenet_v3_small(num_classes=NUM_CLASSES)
    with camkit.attach(net, method="cam") as loc:
        assert loc.feature_name == "features"
        assert loc.localize(torch.randn(1, 3, 32, 32)).maps.shape == (1, 1, 1)


# ----------------------------------------------------------------------------- token models
@pytest.fixture(scope="module")
def timm_module():
    """``timm`` (random weights only, no downloads); skipped when it is not installed."""
    from conftest import import_torchvision

    import_torchvision()  # timm imports torchvision: the CPU-only workaround first
    return pytest.importorskip("timm")


def _manual_token_cam(tokens, prefix, grid, post_norm, weight, classes):
    """CAM from a token model's own tokens ``(B, N, C)``, post-pool norm and head weights."""
    patches = tokens[:, prefix:]
    if post_norm is not None:
        patches = post_norm(patches)
    maps = torch.einsum("bnc,bc->bn", patches.double(), weight[classes].double())
    return maps.reshape(tokens.shape[0], *grid)


@pytest.mark.parametrize(("name", "kwargs", "size"), [
    ("vit_tiny_patch16_224", {"img_size": (48, 80)}, (48, 80)),  # non-square, fc_norm
    ("vit_tiny_patch16_224", {"img_size": 64, "reg_tokens": 4, "fc_norm": False}, (64, 64)),
    ("deit_tiny_patch16_224", {"img_size": 64}, (64, 64)),
])
def test_timm_average_pooled_vit_cam_matches_manual(timm_module, name, kwargs, size):
    torch.manual_seed(0)
    net = timm_module.create_model(name, pretrained=False, num_classes=NUM_CLASSES,
                                   global_pool="avg", **kwargs).eval()
    x = torch.randn(2, 3, *size)
    grid = (size[0] // 16, size[1] // 16)
    with camkit.attach(net, example_input=x[:1]) as loc:
        assert loc.token_prefix == net.num_prefix_tokens and loc.grid_name == "patch_embed.proj"
        assert loc.classifier_name == "head" and loc.pooling == "avg"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = loc.localize(x)
        rcam = loc.localize(x, method="rcam", classes=result.classes)
        with torch.no_grad():
            logits = net(x)
            tokens = net.forward_features(x)
            post_norm = None if isinstance(net.fc_norm, nn.Identity) else net.fc_norm
            expected = _manual_token_cam(tokens, net.num_prefix_tokens, grid, post_norm,
                                         net.head.weight, logits.argmax(1))
            clamped = _manual_token_cam(tokens, net.num_prefix_tokens, grid, post_norm,
                                        net.head.weight.clamp_min(0), logits.argmax(1))
        assert_close(result.logits, logits)
        assert result.maps.shape == (2, *grid) and result.scoremaps.shape == (2, *size)
        assert_close(result.maps, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
        if post_norm is None:  # the map averages to the logit exactly (minus the bias)
            chosen = logits.gather(1, logits.argmax(1, keepdim=True))[:, 0]
            bias = net.head.bias[logits.argmax(1)]
            assert_close(result.maps.flatten(1).mean(1).double(), (chosen - bias).double(),
                         rtol=1e-4, atol=1e-4)
        assert_close(rcam.maps, clamped, rtol=1e-4, atol=1e-4 * float(clamped.abs().max()))
        net.train()
        with torch.no_grad():
            loc(x, labels=torch.tensor([1, 2]))
        cream = loc.localize(x, labels=torch.tensor([1, 2]))
        assert cream.maps.shape == (2, *grid) and torch.isfinite(cream.maps).all()
        assert cream.maps.min() >= 0 and cream.maps.max() <= 2 + 1e-5


def test_timm_vit_dynamic_size_follows_the_input_grid(timm_module):
    torch.manual_seed(0)
    net = timm_module.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64,
                                   num_classes=NUM_CLASSES, global_pool="avg",
                                   dynamic_img_size=True).eval()
    with camkit.attach(net, method="cam", example_input=torch.randn(1, 3, 64, 64)) as loc:
        x = torch.randn(1, 3, 48, 96)
        result = loc.localize(x)
        with torch.no_grad():
            expected = _manual_token_cam(net.forward_features(x), 1, (3, 6), net.fc_norm,
                                         net.head.weight, result.classes)
    assert result.maps.shape == (1, 3, 6)
    assert_close(result.maps, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_timm_reshape_transform_matches_automatic_tokens(timm_module):
    torch.manual_seed(0)
    net = timm_module.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64,
                                   num_classes=NUM_CLASSES, global_pool="avg").eval()
    x = torch.randn(2, 3, 64, 64)

    def to_map(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, 4, 4)

    with camkit.attach(net, method="cam", example_input=x[:1]) as auto, \
            camkit.attach(net, method="cam", example_input=x[:1], feature_layer="norm",
                          reshape_transform=to_map) as manual:
        assert torch.equal(auto.localize(x, classes=3).maps, manual.localize(x, classes=3).maps)
    with pytest.raises(TypeError, match="reshape_transform must be a callable"):
        camkit.attach(net, example_input=x[:1], reshape_transform="norm")
    with pytest.raises(ValueError, match=r"reshape_transform must map the output of 'norm'"):
        camkit.attach(net, example_input=x[:1], reshape_transform=lambda t: t[:, 0])


def test_class_token_models_are_refused_with_the_reason(timm_module, torchvision_models):
    torch.manual_seed(0)
    timm_vit = timm_module.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64,
                                        num_classes=NUM_CLASSES)  # global_pool="token"
    with pytest.raises(ValueError, match=r"(?s)token 0 of 'norm' alone \(a class token\).*"
                                         r"CAM is undefined.*global_pool='avg'.*"
                                         r"classifier 'head'"):
        camkit.attach(timm_vit, example_input=torch.randn(1, 3, 64, 64))
    from torchvision.models.vision_transformer import VisionTransformer

    tv_vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                               hidden_dim=16, mlp_dim=32, num_classes=NUM_CLASSES)
    nn.init.normal_(tv_vit.heads.head.weight)  # zero-initialized: every pooling would match
    with pytest.raises(ValueError, match=r"(?s)token 0 of 'encoder' alone \(a class token\)"
                                         r".*patch grid 'conv_proj'.*classifier 'heads.head'"):
        camkit.attach(tv_vit, example_input=torch.randn(1, 3, 32, 32))


def test_non_average_token_pooling_is_refused(timm_module):
    net = timm_module.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64,
                                   num_classes=NUM_CLASSES, global_pool="avgmax")
    with pytest.raises(ValueError, match=r"average of the patch tokens of 'norm' .*does not "
                                         r"reproduce.*global_pool='avgmax'"):
        camkit.attach(net, example_input=torch.randn(1, 3, 64, 64))


def test_timm_avgmax_cnn_pooling_gets_its_own_message(timm_module):
    net = timm_module.create_model("resnet18", pretrained=False, num_classes=NUM_CLASSES,
                                   global_pool="avgmax")
    with pytest.raises(ValueError, match=r"'global_pool.pool' \(AdaptiveAvgMaxPool2d\) pools "
                                         r"the feature map 'layer4' .*cannot express") as info:
        camkit.attach(net, example_input=torch.randn(1, 3, 64, 64))
    assert "VGG" not in str(info.value)


def test_flattening_fc_head_error_says_how_to_get_a_cam_model(torchvision_models):
    net = torchvision_models.vgg11(num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=r"(?s)'classifier.0' \(Linear.*flattened feature map "
                                         r"'avgpool' \(512 channels x 49 positions\).*no "
                                         r"feature_layer=.*nn.AdaptiveAvgPool2d\(1\).*"
                                         r"nn.Linear\(512, num_classes\).*fine-tune"):
        camkit.attach(net, example_input=torch.randn(1, 3, 32, 32))
