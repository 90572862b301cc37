"""``camkit demo``: an embedded WSOL benchmark that trains, localizes and reports on a CPU.

A classifier is trained with image labels only on a procedural dataset
(``camkit.data.synthetic``) in which each object's class is told by a small part, so CAM
fires on the part and misses the rest of the object. CAM, RCAM and CREAM are then scored with
the reference metrics on a held-out split.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch

from camkit._environment import cpu_model
from camkit._progress import ProgressBar
from camkit.demo._config import ABLATION_ITERATIONS, ABLATION_MOMENTA, DemoConfig
from camkit.demo._efficientnet import EfficientNetLite0, load_efficientnet_lite0

__all__ = ["DemoConfig", "EfficientNetLite0", "load_efficientnet_lite0", "run_demo"]


def _machine() -> str:
    model = cpu_model()
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def run_demo(config: DemoConfig, out: str | os.PathLike[str] | None = None, *,
             progress: bool | None = None, stream: TextIO | None = None) -> dict[str, Any]:
    """Train, localize and score; print the table; write the outputs to ``out`` if given.

    Returns the results as a JSON-able dict (the content of ``results.json``).
    """
    import camkit
    from camkit.cream import ContextEmbeddingBank
    from camkit.data.synthetic import SyntheticWSOL, SyntheticWSOLConfig
    from camkit.demo._evaluate import evaluate
    from camkit.demo._model import DemoNet
    from camkit.demo._report import format_table, write_outputs
    from camkit.demo._train import render_split, train

    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()

    def dataset(split: str, length: int) -> SyntheticWSOL:
        return SyntheticWSOL(SyntheticWSOLConfig(
            seed=config.seed, num_classes=config.num_classes, image_size=config.image_size,
            part_ratio=config.part_ratio, split=split, length=length))

    train_split = render_split(dataset("train", config.train_size), "render train", progress)
    test_split = render_split(dataset("test", config.test_size), "render test", progress)
    example = torch.zeros(1, 3, config.image_size, config.image_size)
    torch.manual_seed(config.seed)
    model = DemoNet(config.num_classes, head_channels=config.head_channels)
    # The trunk is frozen: its features are computed once and the head trains on them.
    train_inputs = model.trunk_features(train_split["images"])
    rendered = time.perf_counter()

    handles: dict[str, camkit.Localizer] = {}
    try:
        banks: dict[float, ContextEmbeddingBank] = {}
        channels = model.head.feature_channels
        if config.ablation:
            generator = torch.Generator().manual_seed(config.seed + 1)
            banks = {m: ContextEmbeddingBank(config.num_classes, channels, momentum=m,
                                             generator=generator) for m in ABLATION_MOMENTA}
        fit = partial(train, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                      weight_decay=config.weight_decay, seed=config.seed, progress=progress)
        with camkit.attach(model.head, method="cream", example_input=train_inputs[:1]) as loc:
            log = fit(loc, model.head, train_inputs, train_split["labels"], extra_banks=banks,
                      feature_module=model.head.features,
                      classifier_weight=lambda: model.head.fc.weight.detach())
            assert loc.bank is not None  # method="cream" holds one
            learned_bank = loc.bank.state_dict()
        logs = {"GAP": log}
        # Localize with the whole network (images in); the bank learned during training moves
        # over through its state_dict.
        full = camkit.attach(model, method="cream", example_input=example)
        assert full.bank is not None
        full.bank.load_state_dict(learned_bank)
        handles.update({"CAM": full, "RCAM": full, "CREAM": full})
        if config.tap is not None:
            torch.manual_seed(config.seed)
            tap_model = DemoNet(config.num_classes, head_channels=config.head_channels,
                               trunk=model.trunk)
            with camkit.attach(tap_model.head, method="rcam", tap=config.tap,
                               example_input=train_inputs[:1]) as tap_loc:
                logs["TAP"] = fit(tap_loc, tap_model.head, train_inputs, train_split["labels"])
            handles["RCAM+TAP"] = camkit.attach(tap_model, method="rcam", tap=config.tap,
                                                example_input=example)
        trained = time.perf_counter()
        evaluation = evaluate(
            handles, test_split, cam_curve_interval=config.cam_curve_interval,
            ablation_banks=banks,
            ablation_iterations=ABLATION_ITERATIONS if config.ablation else (),
            feature_module=model.head.features,
            classifier_weight=lambda: model.head.fc.weight.detach(), progress=progress)
        results: dict[str, Any] = {
            "config": config.to_dict(),
            "machine": _machine(),
            "top1": evaluation.top1,
            "methods": evaluation.methods,
            "ablation": evaluation.ablation,
            "thresholds": evaluation.thresholds,
            "training": {name: {"loss": lg.loss, "accuracy": lg.accuracy, "seconds": lg.seconds}
                         for name, lg in logs.items()},
        }
        results["seconds"] = {"data": rendered - start, "train": trained - rendered,
                              "evaluate": evaluation.seconds,
                              "total": time.perf_counter() - start}
        print(f"classification top-1: {evaluation.top1:.1f}%", file=stream)
        print(format_table(evaluation.methods), file=stream)
        if evaluation.ablation:
            print("sensitivity (MaxBoxAccV2): " + ", ".join(
                f"{k} {v['max_box_acc_v2']:.1f}" for k, v in evaluation.ablation.items()),
                file=stream)
        if out is not None:
            bar = ProgressBar(1, "write report", enabled=progress)
            paths = write_outputs(Path(out), results, handles, test_split, config.overlays)
            results["seconds"]["total"] = time.perf_counter() - start
            bar.update()
            bar.close()
            print(f"wrote {', '.join(str(p) for p in paths)}", file=stream)
        print(f"total time: {time.perf_counter() - start:.0f} s", file=stream)
        return results
    finally:
        for loc in {id(h): h for h in handles.values()}.values():
            loc.detach()
