"""camkit.attach: hook hygiene, memory, output types, wrappers, training, boxes and errors."""

from __future__ import annotations

import gc
import itertools
import weakref
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import assert_close
from torch import nn

import camkit
from camkit import ThresholdedAvgPool, class_activation_map, percentile_threshold


def _cnn(num_classes: int = 3, width: int = 8) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._forward_hooks_with_kwargs) + len(m._backward_pre_hooks)
               for m in model.modules())


class _TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _cnn()

    def forward(self, x):
        return self.net(x), x.mean()


class _DictModel(nn.Module):
    def __init__(self, key: str = "logits", mapping: type = dict) -> None:
        super().__init__()
        self.net, self.key, self.mapping = _cnn(), key, mapping

    def forward(self, x):
        return self.mapping([(self.key, self.net(x)), ("aux", x.flatten(1)[:, :3])])


class _ModelOutput(OrderedDict):
    """Mapping with attribute access, like the ``ModelOutput`` of model hubs."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# ----------------------------------------------------------------------------- hooks, memory
def test_detach_removes_every_hook_and_restores_pooling():
    model = _cnn()
    pool = model[5]
    loc = camkit.attach(model, method="rcam", tap=0.1, example_input=torch.randn(1, 3, 8, 8))
    assert _hook_count(model) == 1
    assert isinstance(model[5], ThresholdedAvgPool) and model[5].theta == 0.1
    assert loc.detach() is model
    assert _hook_count(model) == 0 and model[5] is pool and not loc.attached
    loc.detach()  # idempotent
    with pytest.raises(RuntimeError, match="detached"):
        loc.localize(torch.randn(1, 3, 8, 8))


def _layout(model: nn.Module) -> tuple[list[str], list[tuple[str, type]]]:
    """State-dict keys and module types: what a detach must restore exactly."""
    return list(model.state_dict()), [(n, type(m)) for n, m in model.named_modules()]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_stacked_tap_handles_restore_the_model_in_any_detach_order(order):
    model = _cnn()
    pool, layout = model[5], _layout(model)
    x = torch.randn(1, 3, 8, 8)
    handles = [camkit.attach(model, method="rcam", tap=0.1, example_input=x),
               camkit.attach(model, method="cam", example_input=x),
               camkit.attach(model, method="cream", tap=0.2, example_input=x)]
    assert isinstance(model[5], ThresholdedAvgPool) and model[5].theta == 0.2
    attached = set(range(3))
    for index in order:
        handles[index].detach()
        attached.discard(index)
        # The pooling of the latest tap handle still attached is in effect.
        taps = [i for i in (2, 0) if i in attached]
        if taps:
            assert isinstance(model[5], ThresholdedAvgPool)
            assert model[5].theta == (0.2 if taps[0] == 2 else 0.1)
        assert _hook_count(model) == len(attached)
    assert model[5] is pool and _hook_count(model) == 0 and _layout(model) == layout
    for handle in handles:
        handle.detach()  # a second detach does nothing
    assert model[5] is pool and _layout(model) == layout


@pytest.mark.parametrize("first", [0, 1])
def test_two_tap_handles_detached_in_either_order(first):
    """The issue's case: attach(tap=0.1), attach(tap=0.2), detach in attach order."""
    model = _cnn()
    pool, layout = model[5], _layout(model)
    x = torch.randn(1, 3, 8, 8)
    handles = [camkit.attach(model, tap=0.1, example_input=x),
               camkit.attach(model, tap=0.2, example_input=x)]
    handles[first].detach()
    assert model[5].theta == (0.2 if first == 0 else 0.1)
    handles[1 - first].detach()
    assert model[5] is pool and _hook_count(model) == 0 and _layout(model) == layout
    assert not any(isinstance(m, ThresholdedAvgPool) for m in model.modules())


def test_a_module_the_user_put_in_place_is_left_alone():
    model = _cnn()
    x = torch.randn(1, 3, 8, 8)
    first = camkit.attach(model, tap=0.1, example_input=x)
    mine = nn.AdaptiveAvgPool2d(1)
    model[5] = mine
    second = camkit.attach(model, tap=0.3, example_input=x)
    first.detach()  # its module is gone: nothing to undo
    assert model[5].theta == 0.3
    second.detach()
    assert model[5] is mine
    third = camkit.attach(model, tap=0.2, example_input=x)
    replacement = nn.AdaptiveAvgPool2d(1)
    model[5] = replacement
    third.detach()
    assert model[5] is replacement and _hook_count(model) == 0


def test_garbage_collected_stacked_handles_restore_the_model():
    model = _cnn()
    pool = model[5]
    x = torch.randn(1, 3, 8, 8)
    first = camkit.attach(model, tap=0.1, example_input=x)
    second = camkit.attach(model, tap=0.2, example_input=x)
    del first
    gc.collect()
    assert model[5].theta == 0.2
    del second
    gc.collect()
    assert model[5] is pool and _hook_count(model) == 0


def test_labels_out_of_range_are_refused_before_use():
    with camkit.attach(_cnn(), method="cam", example_input=torch.randn(1, 3, 8, 8)) as loc:
        for labels, shown in ((2**70, 2**70), (-1, -1), (torch.tensor([0, 3]), "0, 3")):
            with pytest.raises(ValueError, match=rf"labels must lie in \[0, 2\], got values in "
                                                 rf"\[{shown}"):
                loc.localize(torch.randn(2, 3, 8, 8), labels)


def test_context_exit_on_exception_removes_hooks():
    model = _cnn()
    pool = model[5]
    with pytest.raises(ValueError, match="boom"):
        with camkit.attach(model, tap=0.0, example_input=torch.randn(1, 3, 8, 8)):
            assert _hook_count(model) == 1
            raise ValueError("boom")
    assert _hook_count(model) == 0 and model[5] is pool


def test_failing_forward_and_failing_discovery_leave_no_state():
    model = _cnn()
    with camkit.attach(model, method="cam", example_input=torch.randn(1, 3, 8, 8)) as loc:
        with pytest.raises(RuntimeError):
            loc.localize(torch.randn(1, 5, 8, 8))  # wrong channel count inside the model
        assert not loc._capture.active and not loc._capture.store
        assert loc.localize(torch.randn(1, 3, 8, 8)).maps.shape == (1, 4, 4)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    with pytest.raises(ValueError, match="global pooling between them"):
        camkit.attach(plain, example_input=torch.randn(1, 3, 8, 8))
    assert _hook_count(plain) == 0


def test_garbage_collected_handle_removes_its_hook():
    model = _cnn()
    loc = camkit.attach(model, example_input=torch.randn(1, 3, 8, 8))
    ref = weakref.ref(loc)
    del loc
    gc.collect()
    assert ref() is None and _hook_count(model) == 0


@pytest.mark.slow
def test_hundred_attach_detach_cycles_do_not_grow_memory():
    model = _cnn(width=2)
    x, labels = torch.randn(3, 3, 4, 4), torch.tensor([0, 1, 2])

    def cycle() -> weakref.ref:
        loc = camkit.attach(model, tap=0.1, example_input=x)
        loc(x, labels=labels)
        loc.detach()
        return weakref.ref(loc)

    for _ in range(5):  # warm one-time caches before counting
        cycle()
    gc.collect()
    objects_before = len(gc.get_objects())
    refs = [cycle() for _ in range(100)]
    gc.collect()
    grown = len(gc.get_objects()) - objects_before - 2 * len(refs)  # the refs and their list
    assert all(ref() is None for ref in refs)
    assert _hook_count(model) == 0 and isinstance(model[5], nn.AdaptiveAvgPool2d)
    assert grown < 50, f"{grown} more live objects after 100 attach/detach cycles"


# ----------------------------------------------------------------------------- output types
@pytest.mark.parametrize("make", [
    _TupleModel,
    _DictModel,
    lambda: _DictModel(mapping=_ModelOutput),
], ids=["tuple", "dict", "model_output"])
def test_tuple_and_mapping_outputs(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(2, 3, 8, 8)
    with camkit.attach(model, method="cam", example_input=x) as loc:
        result = loc.localize(x)
        net = model.net.eval()
        logits = net(x)
        features = net[4](net[3](net[2](net[1](net[0](x)))))
    assert_close(result.logits, logits)
    assert_close(result.maps, class_activation_map(features, net[7].weight, logits.argmax(1)))


def test_mapping_without_logits_key_needs_a_selector():
    model = _DictModel(key="scores")
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"no 'logits' entry; pass logits="):
        camkit.attach(model, example_input=x)
    with camkit.attach(model, method="cam", logits="scores", example_input=x) as loc:
        assert loc.localize(x).logits.shape == (2, 3)
    with camkit.attach(model, method="cam", logits=lambda out: out["scores"],
                       example_input=x) as loc:
        assert loc.localize(x).logits.shape == (2, 3)


# ----------------------------------------------------------------------------- wrappers
def _compare_with_plain(wrapped: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    with camkit.attach(model, method="cam", example_input=x) as plain:
        expected = plain.localize(x, classes=1)
    with camkit.attach(wrapped, method="cam", example_input=x) as loc:
        assert loc.feature_name == "4" and loc.classifier_name == "7"
        result = loc.localize(x, classes=1)
    assert_close(result.maps, expected.maps)
    assert_close(result.logits, expected.logits)


def test_data_parallel():
    torch.manual_seed(0)
    model = _cnn()
    _compare_with_plain(nn.DataParallel(model), model, torch.randn(2, 3, 8, 8))


def test_distributed_data_parallel(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        torch.manual_seed(0)
        model = _cnn()
        _compare_with_plain(nn.parallel.DistributedDataParallel(model), model,
                            torch.randn(2, 3, 8, 8))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torch_compile():
    torch.manual_seed(0)
    model = _cnn()
    x = torch.randn(2, 3, 8, 8)
    _compare_with_plain(torch.compile(model, backend="eager"), model, x)
    compiled = torch.compile(model, backend="eager")
    with camkit.attach(compiled, tap=0.1, example_input=x) as loc:
        loc(x, labels=torch.tensor([0, 2]))
        assert loc.bank.seen.tolist() == [1, 0, 1]
    assert _hook_count(model) == 0 and isinstance(model[5], nn.AdaptiveAvgPool2d)


# ----------------------------------------------------------------------------- training
def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def test_training_forward_leaves_outputs_and_gradients_unchanged():
    torch.manual_seed(0)
    model = _cnn().train()
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 2, 2, 1])
    reference = _cnn()
    reference.load_state_dict(model.state_dict())
    expected = reference(x)
    nn.functional.cross_entropy(expected, labels).backward()
    with camkit.attach(model, example_input=x[:1]) as loc:
        assert model.training
        initial = loc.bank.fg.clone()
        out = loc(x, labels=labels)
        nn.functional.cross_entropy(out, labels).backward()
        assert torch.equal(out, expected)
        for got, want in zip(_grads(model), _grads(reference), strict=True):
            assert torch.equal(got, want)
        for key in ("1.running_mean", "1.running_var"):
            assert torch.equal(model.state_dict()[key], reference.state_dict()[key])
        assert loc.bank.seen.tolist() == [1, 1, 2]
        assert not torch.equal(loc.bank.fg, initial)
        assert not any(b.requires_grad for b in loc.bank.buffers())


def test_state_dict_restores_onto_a_fresh_model():
    torch.manual_seed(0)
    model = _cnn()
    x, labels = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2])
    with camkit.attach(model, example_input=x) as loc:
        for _ in range(3):
            loc(x, labels=labels)
        state = loc.state_dict()
        expected = loc.localize(x, labels=labels)
    assert {"bank.fg", "bank.bg", "bank.seen"} <= set(state)
    torch.manual_seed(1)
    fresh = _cnn()
    with camkit.attach(fresh, example_input=x) as restored:
        assert not torch.equal(restored.bank.fg, state["bank.fg"])
        restored.load_state_dict(state)
        result = restored.localize(x, labels=labels)
    assert torch.equal(result.maps, expected.maps)
    assert torch.equal(result.scoremaps, expected.scoremaps)


def test_localize_keeps_training_flags_and_takes_no_gradients():
    model = _cnn().train()
    model[1].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    running = model[1].running_mean.clone()
    with camkit.attach(model, method="cam", example_input=torch.randn(1, 3, 8, 8)) as loc:
        result = loc.localize(torch.randn(2, 3, 8, 8))
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(model[1].running_mean, running)
    assert not result.maps.requires_grad and not result.logits.requires_grad


def test_classes_default_top1_then_labels_then_explicit():
    torch.manual_seed(0)
    model = _cnn()
    x = torch.randn(3, 3, 8, 8)
    with camkit.attach(model, method="cam", example_input=x) as loc:
        top1 = loc.localize(x)
        assert torch.equal(top1.classes, top1.logits.argmax(1))
        assert loc.localize(x, labels=torch.tensor([2, 0, 1])).classes.tolist() == [2, 0, 1]
        assert loc.localize(x, classes=1).classes.tolist() == [1, 1, 1]
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
            loc.localize(x, labels=torch.tensor([0, 3, 1]))
        with pytest.raises(ValueError, match="needs the context embeddings"):
            loc.localize(x, method="cream")


def test_rcam_clamps_weights_and_uses_percentile_boxes():
    torch.manual_seed(0)
    model = _cnn()
    x = torch.randn(2, 3, 16, 16)
    with camkit.attach(model, method="rcam", example_input=x) as loc:
        assert loc.clamp_negative and loc.threshold == "pas"
        result = loc.localize(x, classes=torch.tensor([0, 2]))
    net = model.eval()
    features = net[4](net[3](net[2](net[1](net[0](x)))))
    expected = class_activation_map(features, net[7].weight.clamp_min(0), torch.tensor([0, 2]))
    assert_close(result.maps, expected)
    assert_close(result.thresholds, percentile_threshold(result.scoremaps, 90, 0.35))


def _expected_box(scoremap: np.ndarray, threshold: float) -> np.ndarray:
    """Largest contour's bounding box at ``threshold`` (reference protocol, single box)."""
    import cv2

    quantized = (scoremap * 255).astype(np.uint8)
    mask = (quantized > int(threshold * quantized.max())).astype(np.uint8)
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return np.zeros(4, dtype=np.int64)
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    height, width = scoremap.shape
    return np.array([x, y, min(x + w, width - 1), min(y + h, height - 1)])


@pytest.mark.parametrize("rule", ["max", "pas", 0.5])
def test_boxes_follow_the_threshold_rule(rule):
    torch.manual_seed(3)
    model = _cnn(width=4)
    x = torch.randn(3, 3, 24, 24)
    with camkit.attach(model, method="cam", example_input=x) as loc:
        result = loc.localize(x, threshold=rule)
        many = loc.localize(x, threshold=rule, multi_contour=True)
    expected_t = {"max": torch.full((3,), 0.2), 0.5: torch.full((3,), 0.5)}.get(
        rule, percentile_threshold(result.scoremaps, 90, 0.35))
    assert_close(result.thresholds, expected_t)
    for i, box in enumerate(result.boxes):
        expected = _expected_box(result.scoremaps[i].numpy(), float(result.thresholds[i]))
        np.testing.assert_array_equal(box, expected)
        assert many.boxes[i].ndim == 2 and many.boxes[i].shape[1] == 4
        assert any((row == box).all() for row in many.boxes[i])


# ----------------------------------------------------------------------------- errors
class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        pooled = self.body(x)
        return self.a(pooled) + self.b(pooled)


class _TwoBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        pooled = self.left(x).mean((2, 3)) + self.right(x).amax((2, 3))
        return self.fc(pooled)


@pytest.mark.parametrize(("model", "kwargs", "match"), [
    (_TwoHeads(), {}, r"ambiguous classifier: .*\['a', 'b'\].*classifier="),
    (_TwoBranches(), {}, r"does not reproduce the model's logits.*candidates.*'right \("),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), {},
     r"no nn.Linear or 1x1 nn.Conv2d produces the K=4 logits"),
    (_cnn(), {"feature_layer": "nope"}, r"feature_layer='nope' is not a submodule"),
    (_cnn(), {"classifier": "0"}, r"classifier='0' must be an nn.Linear or a 1x1"),
    (_cnn(), {"num_classes": 7}, r"num_classes=7 but the model produces 3 logits"),
    (_cnn(), {"method": "gradcam"}, r"method must be one of"),
    (_cnn(), {"tap": 1.5}, r"tap must be in \[0.0, 1.0\]"),
    (_cnn(), {"threshold": "median"}, r"threshold must be 'max', 'pas' or a number"),
    (_cnn(), {"feature_layer": "2", "classifier": "7"}, r"'3' \(input 8x8x8\).*pooled vector"),
])
def test_errors_name_the_problem(model, kwargs, match):
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=match):
        camkit.attach(model, example_input=x, **kwargs)
    assert _hook_count(model) == 0


def test_explicit_layers_that_do_not_explain_the_logits_warn():
    model = _TwoBranches()
    with pytest.warns(UserWarning, match="does not reproduce the model's logits"):
        loc = camkit.attach(model, feature_layer="left", classifier=model.fc,
                            example_input=torch.randn(1, 3, 8, 8))
    assert loc.feature_name == "left" and loc.pooling is None
    loc.detach()


def test_tap_needs_a_pooling_module():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(nn.functional.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))

    model = Functional()
    with pytest.raises(ValueError, match="pools with a function"):
        camkit.attach(model, tap=0.1, example_input=torch.randn(1, 3, 8, 8))
    assert _hook_count(model) == 0


def test_tiny_example_input_is_reported():
    with pytest.raises(ValueError, match="example input may be too small"):
        camkit.attach(_cnn(), example_input=torch.randn(1, 3, 1, 1))


def test_zero_em_iterations_rejected_at_attach():
    model = _cnn()
    with pytest.raises(ValueError, match="iterations must be > 0, got 0"):
        camkit.attach(model, iterations=0, example_input=torch.randn(1, 3, 8, 8))
    assert _hook_count(model) == 0


# ----------------------------------------------------------------------------- token models
class _Tokens(nn.Module):
    """``(B, C, h, w) -> (B, h * w, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class _MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def _token_model(num_classes: int = 3, width: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 4, stride=4), _Tokens(), nn.Linear(width, width),
                         nn.GELU(), nn.LayerNorm(width), _MeanTokens(),
                         nn.Linear(width, num_classes))


def test_sequential_token_model_gets_exact_cam():
    torch.manual_seed(0)
    model = _token_model().eval()
    x = torch.randn(2, 3, 8, 12)  # a 2 x 3 patch grid
    with camkit.attach(model, example_input=x[:1]) as loc:
        assert (loc.feature_name, loc.token_prefix, loc.grid_name) == ("4", 0, "0")
        result = loc.localize(x, classes=1)
    with torch.no_grad():
        tokens = model[:5](x)  # (B, 6, C) after the final norm
        expected = (tokens @ model[6].weight[1]).reshape(2, 2, 3)
        logits = model(x)
    assert_close(result.maps, expected, rtol=1e-5, atol=1e-5)
    assert_close(result.maps.flatten(1).mean(1) + model[6].bias[1], logits[:, 1],
                 rtol=1e-5, atol=1e-5)
    assert _hook_count(model) == 0


def test_token_model_without_prefix_match_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), _Tokens(), nn.LayerNorm(8),
                          _MaxTokens(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"average of the patch tokens of '2' .*does not "
                                         r"reproduce the model's logits"):
        camkit.attach(model, example_input=torch.randn(1, 3, 8, 8))


class _MaxTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=1) * 0.5 + x.mean(dim=1) * 0.5


# ----------------------------------------------------------------------------- default method
def test_default_method_gives_cam_without_warning_until_the_bank_is_trained(recwarn):
    torch.manual_seed(0)
    model = _cnn().eval()  # frozen BatchNorm statistics
    x = torch.randn(2, 3, 8, 8)
    with camkit.attach(model, example_input=x[:1]) as auto, \
            camkit.attach(model, method="cam", example_input=x[:1]) as cam:
        assert auto.method is None and auto.bank is not None
        first = auto.localize(x, classes=torch.tensor([0, 1]))
        assert torch.equal(first.maps, cam.localize(x, classes=torch.tensor([0, 1])).maps)
        assert not recwarn.list
        with torch.no_grad():
            auto(x, labels=torch.tensor([0, 0]))  # trains class 0 only
        mixed = auto.localize(x, classes=torch.tensor([0, 1]))
        cream = auto.localize(x, classes=torch.tensor([0, 0]), method="cream")
        assert not recwarn.list
        assert torch.equal(mixed.maps[0], cream.maps[0])  # trained class: CREAM
        assert torch.equal(mixed.maps[1], first.maps[1])  # untrained class: CAM
        with pytest.warns(UserWarning, match=r"classes \[1\] were never updated"):
            auto.localize(x, classes=torch.tensor([0, 1]), method="cream")


def test_explicit_cream_still_warns_for_untrained_classes():
    model = _cnn()
    x = torch.randn(1, 3, 8, 8)
    with camkit.attach(model, method="cream", example_input=x) as loc, \
            pytest.warns(UserWarning, match="never updated"):
        loc.localize(x, classes=2)
    with pytest.raises(ValueError, match=r"method must be one of .* or None"):
        camkit.attach(model, method="gradcam", example_input=x)


# ----------------------------------------------------------------------------- CREAM on RCAM
def _trained_cream_handle(x: torch.Tensor, labels: torch.Tensor, **kwargs):
    """A CREAM handle on a frozen ``_cnn`` whose bank saw ``labels``, and the features."""
    torch.manual_seed(0)
    model = _cnn().eval()  # frozen BatchNorm statistics: features are the same every call
    loc = camkit.attach(model, method="cream", example_input=x[:1], **kwargs)
    with torch.no_grad():
        loc(x, labels=labels)
        features = model[:5](x)
    return loc, features, model[7].weight.detach()


def test_calibration_and_added_maps_default_to_the_handles_cam():
    from camkit.cream import cream_map

    x, labels = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 1])
    loc, features, weight = _trained_cream_handle(x, labels)
    assert (loc.calibration_map, loc.added_map) == (None, "same")
    assert "calibration_map=None, added_map='same'" in repr(loc)
    default = loc.localize(x, labels=labels).maps
    cam = class_activation_map(features, weight, labels)
    assert_close(default, cream_map(features, loc.bank.fg[labels], loc.bank.bg[labels], cam=cam))
    loc.detach()
    for calibration, added in (("cam", "same"), ("cam", "cam"), (None, "cam")):
        same, _, _ = _trained_cream_handle(x, labels, calibration_map=calibration,
                                           added_map=added)
        with same:
            assert torch.equal(same.localize(x, labels=labels).maps, default)


@pytest.mark.parametrize(("calibration", "added", "clamp_negative"), [
    ("rcam", "none", None), ("rcam", "cam", None), ("cam", "rcam", None), (None, "rcam", True),
    (None, "none", None), ("cam", "cam", True),
])
def test_calibration_and_added_maps_match_cream_map_by_hand(calibration, added,
                                                            clamp_negative):
    from camkit.cream import cream_map

    x, labels = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 1])
    loc, features, weight = _trained_cream_handle(x, labels, calibration_map=calibration,
                                                  added_map=added,
                                                  clamp_negative=clamp_negative)
    cams = {"cam": class_activation_map(features, weight, labels),
            "rcam": class_activation_map(features, weight.clamp_min(0), labels)}
    own = "rcam" if clamp_negative else "cam"
    cam = cams[calibration or own]
    expected = cream_map(features, loc.bank.fg[labels], loc.bank.bg[labels], cam=cam,
                         added_map=None if added in ("same", "none") else cams[added],
                         add_cam=added != "none")
    with loc:
        result = loc.localize(x, labels=labels)
    assert_close(result.maps, expected)


def test_cream_on_rcam_bank_updates_keep_the_handles_cam():
    x, labels = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 1])
    plain, _, _ = _trained_cream_handle(x, labels)
    composed, _, _ = _trained_cream_handle(x, labels, calibration_map="rcam", added_map="none")
    assert torch.equal(plain.bank.fg, composed.bank.fg)
    assert torch.equal(plain.bank.bg, composed.bank.bg)
    # Per-call CAM and RCAM maps ignore the CREAM options.
    with plain, composed:
        for method in ("cam", "rcam"):
            assert torch.equal(plain.localize(x, method=method).maps,
                               composed.localize(x, method=method).maps)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"calibration_map": "nwc"}, r"calibration_map must be one of \('cam', 'rcam'\) or None, "
                                 r"got 'nwc'"),
    ({"calibration_map": "same"}, r"calibration_map must be one of"),
    ({"added_map": None}, r"added_map must be one of \('cam', 'rcam', 'same', 'none'\), got "
                          r"None"),
    ({"added_map": "minmax"}, r"added_map must be one of .*, got 'minmax'"),
    ({"method": "rcam", "calibration_map": "rcam"},
     r"calibration_map= and added_map= choose the maps of CREAM's re-activation; attach with "
     r"method='cream' or the default None, got method='rcam'"),
    ({"method": "rcam", "added_map": "none"}, r"choose the maps of CREAM's .*method='rcam'"),
    ({"method": "cam", "added_map": "cam"}, r"choose the maps of CREAM's .*method='cam'"),
])
def test_calibration_and_added_map_errors(kwargs, match):
    model = _cnn()
    with pytest.raises(ValueError, match=match):
        camkit.attach(model, example_input=torch.randn(1, 3, 8, 8), **kwargs)
    assert _hook_count(model) == 0
