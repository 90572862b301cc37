"""One seed of the demo: render the splits, train every model, score every row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from camkit.adl import AttentionDropout
from camkit.augment import hide_patches
from camkit.cam import class_activation_map
from camkit.cream import ContextEmbeddingBank, cream_map
from camkit.localizer import Localizer, attach

from ._config import ABLATION_ITERATIONS, ABLATION_MOMENTA, DemoConfig
from ._evaluate import MapFn, Row, evaluate
from ._machine import machine
from ._model import DemoNet, to_input
from ._train import BatchOf, TrainingLog, flipped_batches, random_flip, render_split, train

__all__ = ["MODEL_NAMES", "Trained", "run_seed", "study_group"]

#: Model key → the name shown for its classifier.
MODEL_NAMES = {"gap": "GAP", "tap": "TAP", "has": "HaS", "adl": "ADL"}
#: HaS cell side: the RCAM paper's HaS-32 at 224 pixels is 18 pixels at 128; 16 is the
#: nearest multiple of the trunk's stride (8), so a hidden cell covers whole feature cells.
HAS_GRID = 16
HAS_HIDE_PROB = 0.5  # the HaS paper's and the RCAM paper's value


@dataclass
class Trained:
    """What the pictures of a seed need: the attached handles, the rows and the scored
    split. ``close`` detaches every handle."""

    handles: dict[str, Localizer]
    rows: list[Row]
    split: dict[str, Tensor]

    def close(self) -> None:
        for loc in self.handles.values():
            loc.detach()


def _rows(config: DemoConfig) -> list[Row]:
    rows = [Row("CAM", "gap", "cam", "max"), Row("RCAM", "tap", "rcam", "pas"),
            Row("CREAM", "gap", "cream", "max"), Row("CREAM on RCAM", "tap", "cream", "pas")]
    for key in config.wsol_methods:
        name = MODEL_NAMES[key]
        rows += [Row(name, key, "cam", "max"), Row(f"{name} + CREAM", key, "cream", "max")]
    return rows


def _attach_options(config: DemoConfig, key: str) -> dict[str, Any]:
    """``attach`` keywords of a model: RCAM's model pools with TAP and forms NWC CAMs."""
    if key != "tap":
        return {"method": "cream"}
    return {"method": "cream", "tap": config.tap, "clamp_negative": True, "threshold": "pas",
            "calibration_map": config.calibration_map, "added_map": config.added_map}


def _hidden_batches(images: Tensor, net: DemoNet) -> BatchOf:
    """HaS: flip a random half, hide cells of the image, then run the frozen trunk."""
    fill = to_input(images[:256]).mean(dim=(0, 2, 3))

    def batch_of(index: Tensor, generator: torch.Generator) -> Tensor:
        x = random_flip(to_input(images[index]), generator)
        x = hide_patches(x, HAS_GRID, HAS_HIDE_PROB, fill=fill, generator=generator)
        with torch.no_grad():
            return net.trunk(x)
    return batch_of


_DRAW = "/bank="  # study key of a momentum bank: f"lambda={m:g}{_DRAW}{k}"


def study_group(key: str) -> str:
    """The variant a study key belongs to: a momentum bank's key without its draw number."""
    return key.split(_DRAW)[0]


def _momentum_banks(config: DemoConfig, channels: int) -> dict[str, ContextEmbeddingBank]:
    """The momentum study's banks: bank ``k`` of every momentum starts from the same draw."""
    banks = {}
    for momentum in ABLATION_MOMENTA:
        for k in range(config.ablation_banks):
            generator = torch.Generator().manual_seed(1_000 * config.seed + k)
            banks[f"lambda={momentum:g}{_DRAW}{k}"] = ContextEmbeddingBank(
                config.num_classes, channels, momentum=momentum, generator=generator)
    return banks


def _cam_fn(weight: Tensor, clamp: bool) -> MapFn:
    return lambda f, y: class_activation_map(f, weight, y, clamp_negative=clamp)


def _ablation_studies(loc: Localizer, weight: Tensor,
                      banks: dict[str, ContextEmbeddingBank]) -> dict[str, MapFn]:
    """EM iterations T (T = 0 is the CAM) with the handle's bank; momentum banks at T = 2."""
    cam = _cam_fn(weight, False)
    bank = loc.bank
    assert bank is not None  # attached with method="cream"

    def cream(source: ContextEmbeddingBank, iterations: int) -> MapFn:
        return lambda f, y: cream_map(f, source.fg[y], source.bg[y], cam=cam(f, y),
                                      scale=loc.scale, iterations=iterations)
    studies: dict[str, MapFn] = {f"T={t}": cream(bank, t) if t else cam
                                 for t in ABLATION_ITERATIONS}
    studies.update({name: cream(b, loc.iterations) for name, b in banks.items()})
    return studies


def _composition_studies(loc: Localizer, weight: Tensor) -> dict[str, MapFn]:
    """Every calibration map × added map of ``cream_map`` with the handle's bank."""
    bank = loc.bank
    assert bank is not None

    def variant(calibration: str, added: str) -> MapFn:
        def map_fn(f: Tensor, y: Tensor) -> Tensor:
            cam = _cam_fn(weight, calibration == "rcam")(f, y)
            extra = None if added in ("none", calibration) else \
                _cam_fn(weight, added == "rcam")(f, y)
            return cream_map(f, bank.fg[y], bank.bg[y], cam=cam, added_map=extra,
                             add_cam=added != "none", scale=loc.scale,
                             iterations=loc.iterations)
        return map_fn
    return {f"calibration={c}/added={a}": variant(c, a)
            for c in ("cam", "rcam") for a in ("cam", "rcam", "none")}


def run_seed(config: DemoConfig, *,
             progress: bool | None) -> tuple[dict[str, Any], Trained]:
    """Train and score one seed; the results dict and what its pictures need."""
    from camkit.data.synthetic import SyntheticWSOL, SyntheticWSOLConfig

    start = time.perf_counter()

    def dataset(split: str, length: int) -> SyntheticWSOL:
        return SyntheticWSOL(SyntheticWSOLConfig(
            seed=config.seed, num_classes=config.num_classes, image_size=config.image_size,
            part_ratio=config.part_ratio, split=split, length=length))

    # One rendering process per torch thread: the run's CPU share stays the configured one.
    train_split = render_split(dataset("train", config.train_size), "render train", progress,
                               config.threads)
    eval_split = render_split(dataset(config.eval_split, config.eval_size),
                              f"render {config.eval_split}", progress, config.threads)
    example = torch.zeros(1, 3, config.image_size, config.image_size)
    net_options: dict[str, Any] = {"head_channels": config.head_channels,
                                   "trunk_channels_in_cam": config.trunk_channels_in_cam}
    torch.manual_seed(config.seed)
    nets = {"gap": DemoNet(config.num_classes, **net_options)}
    trunk = nets["gap"].trunk
    # The trunk is frozen: its features are computed once and the heads train on them.
    train_inputs = nets["gap"].trunk_features(train_split["images"])
    rendered = time.perf_counter()
    fit = partial(train, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                  weight_decay=config.weight_decay, seed=config.seed, progress=progress)
    handles: dict[str, Localizer] = {}
    logs: dict[str, TrainingLog] = {}
    studies: dict[str, tuple[torch.nn.Module, dict[str, MapFn]]] = {}
    try:
        for key in ("gap", "tap", *config.wsol_methods):
            if key != "gap":
                torch.manual_seed(config.seed)  # every head starts from the same weights
                adl = AttentionDropout(generator=torch.Generator().manual_seed(config.seed)) \
                    if key == "adl" else None
                nets[key] = DemoNet(config.num_classes, trunk=trunk, adl=adl, **net_options)
            net, options = nets[key], _attach_options(config, key)
            banks = _momentum_banks(config, net.head.feature_channels) \
                if key == "gap" and config.ablation else {}
            batch_of = _hidden_batches(train_split["images"], net) \
                if key == "has" else flipped_batches(train_inputs)
            weight = net.head.fc.weight
            with attach(net.head, example_input=train_inputs[:1], **options) as loc:
                logs[key] = fit(loc, net.head, batch_of, train_split["labels"],
                                extra_banks=banks, feature_module=net.head.features,
                                classifier_weight=weight.detach)
                assert loc.bank is not None  # method="cream" holds one
                learned = loc.bank.state_dict()
            # Localize with the whole network (images in); the learned bank moves over.
            handles[key] = full = attach(net, example_input=example, **options)
            assert full.bank is not None
            full.bank.load_state_dict(learned)
            variants: dict[str, MapFn] = {}
            if key == "gap" and config.ablation:
                variants.update(_ablation_studies(full, weight.detach(), banks))
            if config.eval_split == "val" and key in ("gap", "tap"):
                variants.update(_composition_studies(full, weight.detach()))
            if variants:
                studies[key] = (net.head.features, variants)
        trained = time.perf_counter()
        rows = _rows(config)
        evaluation = evaluate(handles, rows, eval_split,
                              cam_curve_interval=config.cam_curve_interval, studies=studies,
                              progress=progress)
    except BaseException:
        Trained(handles, [], eval_split).close()
        raise
    results: dict[str, Any] = {
        "config": config.to_dict(),
        "machine": machine(config.threads),
        "top1": {MODEL_NAMES[k]: v for k, v in evaluation.top1.items()},
        "methods": evaluation.methods,
        "studies": evaluation.studies,
        "thresholds": evaluation.thresholds,
        "training": {MODEL_NAMES[k]: {"loss": lg.loss, "accuracy": lg.accuracy,
                                      "seconds": lg.seconds} for k, lg in logs.items()},
        "seconds": {"data": rendered - start, "train": trained - rendered,
                    "evaluate": evaluation.seconds},
    }
    return results, Trained(handles, rows, eval_split)
