"""``camkit.attach(model)``: CAM, RCAM and CREAM on an existing classifier (CNN or token model).

``attach`` finds the model's last feature map and its classifier (see ``camkit._discovery``),
registers one forward hook on the feature layer (see ``camkit._hooks``), and returns a
``Localizer``: call it like the model while training (with ``labels=`` it also updates CREAM's
context embeddings), and call ``localize`` for logits, maps and boxes in one batched pass.
``detach()`` (or leaving a ``with`` block, also on an exception) removes the hook and undoes any
pooling swap.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from camkit._attach_options import CALIBRATION_MAPS, METHODS, check_attach_options
from camkit._classifier_head import apply_head
from camkit._discovery import discover
from camkit._hooks import Capture, Swap, eval_mode, release, swap_pooling
from camkit._localization_result import (
    Localization,
    box_thresholds,
    boxes_from_scoremap,
    check_labels,
    check_rule,
)
from camkit._runner import feature_map, gather, run_captured
from camkit._trace import LogitsSelector, resolve_module, select_logits, unwrap_model
from camkit._validation import check_finite_number, check_positive_int, check_tensor
from camkit.cam import class_activation_map, normalize_map, upsample_map

if TYPE_CHECKING:
    from camkit.cream import ContextEmbeddingBank

__all__ = ["Localization", "Localizer", "attach"]



class Localizer(nn.Module):
    """CAM / RCAM / CREAM attached to a classifier by forward hooks. Built by ``attach``.

    The wrapped model is the child ``model``; CREAM's ``ContextEmbeddingBank`` is the child
    ``bank`` (``method="cream"`` and the default ``method=None``), so ``state_dict()`` holds
    both and loads onto a handle attached to a freshly built model of the same architecture.

    Call ``localizer(x, labels=y)`` in place of ``model(x)`` while training: it returns the
    model's own output untouched and, for CREAM, updates the bank from the captured features
    (no gradient, model outputs and gradients unchanged). ``localize(x)`` gives logits, maps
    and boxes.
    """

    # Set with object.__setattr__ (outside the module registry): typed here for the checker.
    _classifier: nn.Linear | nn.Conv2d
    _head: list[tuple[nn.Module, tuple[int, ...]]]

    def __init__(self, model: nn.Module, *, method: str | None,
                 feature_layer: nn.Module | str | None, classifier: nn.Module | str | None,
                 num_classes: int | None,
                 tap: float | None, clamp_negative: bool | None, logits: LogitsSelector,
                 example_input: Tensor | None, threshold: str | float | None, q: float,
                 theta: float | None, momentum: float, delta: float, scale: float,
                 iterations: int,
                 reshape_transform: Callable[[Tensor], Tensor] | None = None,
                 localization_map: Callable[[Tensor, Tensor], Tensor] | None = None,
                 map_layer: nn.Module | str | None = None, calibration_map: str | None = None,
                 added_map: str = "same") -> None:
        super().__init__()
        check_attach_options(model, method, reshape_transform, localization_map, map_layer,
                             calibration_map, added_map)
        self.model = model
        self.method = method
        self.clamp_negative = (method == "rcam") if clamp_negative is None else bool(
            clamp_negative)
        self.threshold = check_rule(("pas" if method == "rcam" else "max")
                                     if threshold is None else threshold)
        self.q = check_finite_number(q, "q", low=0.0, high=100.0)
        self.theta = None if theta is None else check_finite_number(theta, "theta", low=0.0)
        self.scale = check_finite_number(scale, "scale", low=0.0, low_inclusive=False)
        self.iterations = check_positive_int(iterations, "iterations")
        self.calibration_map, self.added_map = calibration_map, added_map
        self.logits_selector = logits
        self.reshape_transform = reshape_transform
        self.localization_map = localization_map
        core = unwrap_model(model)
        self.map_layer_name: str | None = None
        map_module: nn.Module | None = None
        if map_layer is not None:
            self.map_layer_name, map_module = resolve_module(core, map_layer, "map_layer")
        found = discover(core, feature_layer=feature_layer, classifier=classifier,
                         num_classes=num_classes, logits=logits, example_input=example_input,
                         reshape_transform=reshape_transform)
        self.feature_name, self.classifier_name = found.feature_name, found.classifier_name
        self.pool_name, self.pooling = found.pool_name, found.pooling
        self.num_classes, self.channels = found.num_classes, found.embed_channels
        self.token_prefix, self.grid_name = found.token_prefix, found.grid_name
        # Held outside the module registry: they belong to (and move with) ``model``.
        object.__setattr__(self, "_classifier", found.classifier)
        object.__setattr__(self, "_head", found.head)
        self.bank: ContextEmbeddingBank | None = None
        if method in (None, "cream"):
            from camkit.cream import ContextEmbeddingBank

            self.bank = ContextEmbeddingBank(found.num_classes, found.embed_channels,
                                             momentum=momentum, delta=delta)
            param = next(iter(core.parameters()), None)
            if param is not None:
                self.bank.to(param.device)
        self._capture = Capture()
        self._grid_capture = Capture()
        self._map_capture = Capture()
        handles: list[Any] = []
        swaps: list[Swap] = []
        self._finalizer = weakref.finalize(self, release, handles, swaps)
        if tap is not None:
            swap_pooling(core, self.pool_name, self.feature_name,
                         check_finite_number(tap, "tap", low=0.0, high=1.0), swaps)
        handles.append(found.feature_layer.register_forward_hook(self._capture.hook))
        if found.grid_layer is not None:
            handles.append(found.grid_layer.register_forward_hook(self._grid_capture.hook))
        if map_module is not None:
            handles.append(map_module.register_forward_hook(self._map_capture.hook))

    # ------------------------------------------------------------------ lifecycle
    @property
    def attached(self) -> bool:
        """Whether the hook is still installed (``detach`` not yet called)."""
        return self._finalizer.alive

    def detach(self) -> nn.Module:
        """Remove the hook, restore a swapped pooling module and return the model."""
        self._finalizer()
        self._capture.store.clear()
        self._grid_capture.store.clear()
        self._map_capture.store.clear()
        return self.model

    def __enter__(self) -> Localizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def _check_attached(self) -> None:
        if not self.attached:
            raise RuntimeError("this Localizer was detached; call camkit.attach(model) again")

    # ------------------------------------------------------------------ running
    def _run(self, x: Tensor) -> tuple[object, Tensor, Tensor | None]:
        """Call the model: its output, the captured ``(B, C, h, w)`` features, and the output
        of ``map_layer`` (``None`` without one).

        Token models: the captured ``(B, N, C)`` tokens lose their prefix tokens and are laid
        out on the patch grid captured in the same forward; ``reshape_transform`` (when given)
        maps the feature layer's output instead.
        """
        self._check_attached()
        output, (store, grids, mapped) = run_captured(
            self.model, x, (self._capture, self._grid_capture, self._map_capture))
        if not store:
            raise RuntimeError(f"the feature layer {self.feature_name!r} did not run during the "
                               "forward pass")
        if self.map_layer_name is not None and not mapped:
            raise RuntimeError(f"the map layer {self.map_layer_name!r} did not run during the "
                               "forward pass")
        map_features = gather(self.model, mapped) if mapped else None
        features = feature_map(gather(self.model, store), grids, self.reshape_transform,
                               self.token_prefix)
        return output, features, map_features

    def _embed(self, features: Tensor) -> Tensor:
        with eval_mode([m for m, _ in self._head]):
            return apply_head(features, self._head)

    def _cam(self, features: Tensor, classes: Tensor, clamp_negative: bool) -> Tensor:
        weight = self._classifier.weight.detach().to(features.device)
        return class_activation_map(features, weight, classes, clamp_negative=clamp_negative)

    def _bank_on(self, device: torch.device) -> ContextEmbeddingBank:
        assert self.bank is not None
        if self.bank.fg.device != device:
            self.bank.to(device)
        return self.bank

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Any:
        """Run the model; with ``labels (Tensor[B])`` and ``method="cream"``, update the bank.

        Returns the model's output unchanged (tensor, tuple or mapping).
        """
        output, features, _ = self._run(x)
        if labels is not None and self.bank is not None:
            with torch.no_grad():
                embedded = self._embed(features.detach())
                labels = check_labels(labels, embedded, self.num_classes)
                cam = self._cam(embedded, labels, self.clamp_negative)
                self._bank_on(embedded.device).update(embedded, cam, labels)
        return output

    def localize(self, x: Tensor, classes: Tensor | int | None = None, *,
                 labels: Tensor | None = None, method: str | None = None,
                 threshold: str | float | None = None, boxes: bool = True,
                 multi_contour: bool = False) -> Localization:
        """Logits, maps, score maps and boxes for a batch, in eval mode and without gradients.

        Args:
            x (Tensor[B, C_in, H, W]): input batch, on the model's device.
            classes (Tensor[B] or int, optional): classes to localize. Default: ``labels``
                when given (ground truth), else the top-1 predicted class.
            labels (Tensor[B], optional): ground-truth classes (GT-known localization).
            method: use another method than the handle's for this call: ``"cam"``,
                ``"rcam"`` (clamped weights, PaS boxes) or ``"cream"`` (needs a handle
                attached with ``method="cream"`` or the default ``method=None``, which own
                the bank). A handle attached with ``method=None`` gives, per image, the
                CREAM map when the class's context embeddings were trained (a training
                call ``loc(x, labels=y)`` saw the class), else the CAM map, without warning.
            threshold: box rule: ``"max"`` (``theta * max``, theta 0.2), ``"pas"``
                (``theta * percentile_q``, q 90, theta 0.35) or a fixed fraction in [0, 1].
                Default: ``"pas"`` for ``method="rcam"``, else ``"max"``.
            boxes: extract boxes (the only step that copies to the CPU: the score maps).
            multi_contour: one box per contour (``(n, 4)``) instead of the largest one.

        The model's and its submodules' ``training`` flags are restored afterwards.
        """
        check_tensor(x, "x", ndim=4, shape_doc="(B, C_in, H, W)")
        clamp, rule = self.clamp_negative, self.threshold
        if method is not None and method != self.method:
            if method not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {method!r}")
            if self.localization_map is not None:
                raise ValueError(f"method={method!r} is not available on a handle attached with "
                                 "localization_map= (its maps replace CAM); use method='cam', "
                                 "and threshold='pas' for percentile boxes")
            if method == "cream" and self.bank is None:
                raise ValueError("method='cream' needs the context embeddings of a handle "
                                 "attached with method='cream' (or the default method=None)")
            clamp, rule = method == "rcam", "pas" if method == "rcam" else "max"
        rule = rule if threshold is None else check_rule(threshold)
        chosen_method = method or self.method
        use_cream = chosen_method in (None, "cream")
        with torch.no_grad(), eval_mode(list(self.model.modules())):
            output, features, map_features = self._run(x)
            logits = select_logits(output, self.logits_selector)
            embedded = self._embed(features)
            chosen = classes if classes is not None else labels
            if chosen is None:
                chosen = logits.argmax(dim=1)
            chosen = check_labels(chosen, embedded, self.num_classes)
            if self.localization_map is not None:
                maps = self._given_map(features if map_features is None else map_features,
                                       chosen)
            else:
                cam = self._cam(embedded, chosen, clamp)
                maps = self._cream(embedded, cam, chosen, clamp, auto=chosen_method is None) \
                    if use_cream else cam
            scoremaps = normalize_map(upsample_map(maps, (x.shape[-2], x.shape[-1])))
            thresholds = self._thresholds(scoremaps, rule)
        found: list[np.ndarray | None] = [None] * x.shape[0]
        if boxes and x.shape[0]:
            host = scoremaps.float().cpu().numpy()
            found = [boxes_from_scoremap(host[i], float(t), multi_contour)
                     for i, t in enumerate(thresholds.tolist())]
        return Localization(logits, chosen, maps, scoremaps, found, thresholds)

    def _given_map(self, features: Tensor, classes: Tensor) -> Tensor:
        """``localization_map(features, classes)``, checked to be ``(B, h', w')``."""
        assert self.localization_map is not None
        maps = self.localization_map(features, classes)
        batch = classes.shape[0]
        if not isinstance(maps, Tensor) or maps.dim() != 3 or maps.shape[0] != batch \
                or not maps.is_floating_point():
            raise ValueError(f"localization_map must return a floating-point (B={batch}, h, w) "
                             f"tensor, got {getattr(maps, 'shape', type(maps).__name__)}")
        return maps

    def _cream(self, embedded: Tensor, cam: Tensor, classes: Tensor, clamp: bool, auto: bool
               ) -> Tensor:
        """CREAM maps ``(B, h, w)`` from ``embedded (B, C, h, w)`` and ``cam (B, h, w)`` (the
        CAM with weights clamped or not by ``clamp``), calibrated and added with the maps
        ``calibration_map`` and ``added_map`` name; ``auto``: ``cam`` for classes never
        trained."""
        from camkit.cream import cream_map

        bank = self._bank_on(embedded.device)
        trained = bank.seen[classes] > 0
        if auto:
            if not bool(trained.any()):
                return cam
        elif not bool(trained.all()):
            unseen = sorted(set(classes[~trained].tolist()))
            warnings.warn(f"CREAM context embeddings of classes {unseen} were never updated "
                          "(no training forward with those labels); their maps use random "
                          "initial embeddings", UserWarning, stacklevel=3)
        cams = {"rcam" if clamp else "cam": cam}  # "cam" / "rcam" -> map, each computed once
        for name in (self.calibration_map, self.added_map):
            if name in CALIBRATION_MAPS and name not in cams:
                cams[name] = self._cam(embedded, classes, name == "rcam")
        calibration = cam if self.calibration_map is None else cams[self.calibration_map]
        added = cams.get(self.added_map)
        maps = cream_map(embedded, bank.fg[classes], bank.bg[classes], cam=calibration,
                         added_map=None if added is calibration else added,
                         add_cam=self.added_map != "none", scale=self.scale,
                         iterations=self.iterations)
        return maps if not auto else torch.where(trained[:, None, None], maps, cam.to(maps.dtype))

    def _thresholds(self, scoremaps: Tensor, rule: str | float) -> Tensor:
        return box_thresholds(scoremaps, rule, self.q, self.theta)

    def extra_repr(self) -> str:
        state = "" if self.attached else ", detached"
        return (f"method={self.method!r}, feature_layer={self.feature_name!r}, "
                f"classifier={self.classifier_name!r}, num_classes={self.num_classes}, "
                f"clamp_negative={self.clamp_negative}, threshold={self.threshold!r}"
                + (f", calibration_map={self.calibration_map!r}, added_map={self.added_map!r}"
                   if self.bank is not None else "") + state)


def attach(model: nn.Module, *, method: str | None = None,
           feature_layer: nn.Module | str | None = None,
           classifier: nn.Module | str | None = None, num_classes: int | None = None,
           tap: float | None = None, clamp_negative: bool | None = None,
           logits: LogitsSelector = None, example_input: Tensor | None = None,
           threshold: str | float | None = None, q: float = 90.0, theta: float | None = None,
           momentum: float = 0.8, delta: float = 0.2, scale: float = 8.0,
           iterations: int = 2,
           reshape_transform: Callable[[Tensor], Tensor] | None = None,
           localization_map: Callable[[Tensor, Tensor], Tensor] | None = None,
           map_layer: nn.Module | str | None = None, calibration_map: str | None = None,
           added_map: str = "same") -> Localizer:
    """Attach CAM (``"cam"``), RCAM (``"rcam"``) or CREAM (``"cream"``) to a classifier.

    ``loc = camkit.attach(model)`` then ``loc.localize(images)``. CNNs whose head pools the
    last feature map, and token models (vision transformers) whose head averages the patch
    tokens (timm ``global_pool="avg"``), are found automatically; models whose logits come
    from a class token are refused (CAM is undefined there). Discovery runs one forward
    on ``example_input`` (default: a random ``1 x C_in x 224 x 224`` batch on the model's
    device) with temporary hooks, in eval mode, restoring every ``training`` flag.

    Args:
        model: the classifier, possibly wrapped in ``DataParallel``,
            ``DistributedDataParallel`` or ``torch.compile``; its forward may return a
            tensor, a tuple or a mapping.
        method: ``"cam"``; ``"rcam"`` (negative weight clamping + percentile boxes, with TAP
            when trained with ``tap=``); ``"cream"`` (context embeddings + EM re-activation;
            ``localize`` warns for classes whose embeddings were never trained). Default
            ``None``: CAM maps, switching to CREAM per class once its context embeddings are
            trained (call ``loc(x, labels=y)`` in place of ``model(x)`` while training).
        feature_layer, classifier: override discovery with a module or a dotted name.
        num_classes: expected number of logits (checked).
        tap: swap the global average pooling for ``ThresholdedAvgPool(tap)`` until
            ``detach()``. Several handles may be attached to one model: the pooling of the
            latest ``tap=`` handle still attached is in effect, and once every handle is
            detached, in any order, the model holds its original module again.
        clamp_negative: negative weight clamping for the maps (default: ``method == "rcam"``).
        logits: picks the logits from the output: a key/attribute name, an index or a callable.
        example_input (Tensor[1, C_in, H, W]): input used for discovery.
        threshold, q, theta: default box rule of ``localize`` (see there).
        momentum, delta: CREAM bank update (λ and the foreground threshold).
        scale, iterations: CREAM EM re-activation.
        calibration_map: the CAM that calibrates CREAM's responsibilities (``cream_map``'s
            ``cam``): ``"cam"`` (the classifier's weights as they are) or ``"rcam"`` (negative
            weights clamped to zero, NWC). Default ``None``: the handle's own CAM (``"rcam"``
            when ``clamp_negative``, else ``"cam"``; the CAM of ``localize(method=...)`` when
            that overrides the handle's). The bank updates always use the handle's own CAM.
        added_map: the CAM whose min-max normalization is added to the calibrated map
            (``cream_map``'s ``added_map``): ``"cam"``, ``"rcam"``, ``"same"`` (default: the
            calibration map, the paper's Eq. 12) or ``"none"`` (nothing added,
            ``add_cam=False``). With ``calibration_map="rcam"``, a TAP-trained handle
            (``tap=``) and ``threshold="pas"`` this is "CREAM on RCAM" (see
            docs/algorithms.md). Both act on CREAM maps only: a non-default value with
            ``method="cam"`` or ``"rcam"`` is refused.
        reshape_transform: a callable mapping the feature layer's output to a feature map
            ``Tensor[B, C, h, w]`` (e.g. tokens ``(B, N, C)`` of a custom layout); replaces
            the automatic token handling. The pooled map must still reproduce the logits
            (a warning instead of an error when ``feature_layer=`` and ``classifier=`` are
            both given).
        localization_map: a callable ``(features, classes (Tensor[B])) -> Tensor[B, h', w']``
            whose raw maps replace CAM in ``localize`` (e.g. ``ACoLHead.localization_map``,
            the protocol's fused map of both branches); ``features`` is the output of
            ``map_layer`` (default: the feature layer's captured ``Tensor[B, C, h, w]``).
            ``localize`` upsamples and min-max normalizes the maps as it does CAM, and runs
            the callable in eval mode without gradients. Needs ``method="cam"``: RCAM's weight
            clamping and CREAM's re-activation act on the classifier's CAM, so they are
            refused here and per call (give ``threshold="pas"`` for percentile boxes).
        map_layer: a module or dotted name whose output (a tensor) is passed to
            ``localization_map`` in place of the feature layer's, when the map needs another
            input (``ACoLHead.localization_map`` reads the head's input, e.g. the backbone).

    Returns:
        Localizer: an ``nn.Module`` and context manager; ``detach()`` removes its hook (and is
        safe to call again).
    """
    return Localizer(model, method=method, feature_layer=feature_layer, classifier=classifier,
                     num_classes=num_classes, tap=tap, clamp_negative=clamp_negative,
                     logits=logits, example_input=example_input, threshold=threshold, q=q,
                     theta=theta, momentum=momentum, delta=delta, scale=scale,
                     iterations=iterations, reshape_transform=reshape_transform,
                     localization_map=localization_map, map_layer=map_layer,
                     calibration_map=calibration_map, added_map=added_map)
