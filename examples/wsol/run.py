"""The training run: setup, epochs with checkpoints and a JSON log, final evaluation."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from camkit.cream import ContextEmbeddingBank

from .backbones import WSOLNet, build_model
from .checkpoint import load_checkpoint, restore_rng, restoring, rng_states, save_checkpoint
from .cli import parse_args
from .data import (
    EvalSplit,
    ResumableDistributedSampler,
    ShardSampler,
    WSOLImages,
    load_eval_split,
    load_train_split,
)
from .distributed import Runtime, barrier, setup_runtime, teardown
from .engine import EvalOptions, WSOLTraining, evaluate, summarize_training, train_epoch

__all__ = ["main"]

CHECKPOINT = "last.pt"


class SimulatedFailure(SystemExit):
    """Raised by the hidden ``--simulate-failure-after-step`` (tests of ``--resume``)."""


def write_json(path: Path, value: object) -> None:
    """Write JSON atomically (temporary file + rename)."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """What a checkpoint must match to be resumed by this run."""
    return {"backbone": args.backbone, "method": args.method, "wsol_method": args.wsol_method,
            "num_classes": args.num_classes,
            "large_feature_map": args.large_feature_map, "dataset": args.dataset}


@dataclass
class Setup:
    """Everything the loops need."""

    args: argparse.Namespace
    runtime: Runtime
    net: WSOLNet
    model: nn.Module  # what training calls: net, or its DDP / compiled wrapper
    eval_model: nn.Module  # what evaluation calls: net, or net compiled
    bank: ContextEmbeddingBank | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    scaler: torch.amp.GradScaler
    train_set: WSOLImages
    sampler: ResumableDistributedSampler
    splits: dict[str, EvalSplit]
    options: EvalOptions
    wsol: WSOLTraining


def _loader(dataset: WSOLImages, sampler: object, args: argparse.Namespace,
            batch_size: int) -> DataLoader:
    # A private generator: creating an iterator must not draw from the global RNG, whose
    # state the checkpoints restore.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=args.workers,
                      pin_memory=torch.cuda.is_available(), drop_last=False,
                      generator=torch.Generator().manual_seed(args.seed))


def eval_loader(split: EvalSplit, setup: Setup) -> DataLoader:
    args, runtime = setup.args, setup.runtime
    images = WSOLImages(args.data_root, split.image_ids, split.labels, train=False,
                        resize=args.resize_size, crop=args.crop_size)
    sampler = ShardSampler(len(images), runtime.rank, runtime.world_size)
    return _loader(images, sampler, args, args.batch_size)


def optimizer_for(parameters: tuple[list[nn.Parameter], list[nn.Parameter]], lr: float,
                  args: argparse.Namespace) -> torch.optim.SGD:
    """The protocol's SGD: Nesterov momentum, weight decay, ``ratio x lr`` on new layers."""
    slow, fast = parameters
    return torch.optim.SGD([{"params": slow, "lr": lr},
                            {"params": fast, "lr": lr * args.lr_classifier_ratio}],
                           momentum=args.momentum, weight_decay=args.weight_decay, nesterov=True)


def wrap(net: nn.Module, args: argparse.Namespace, runtime: Runtime) -> nn.Module:
    """DDP under torchrun, then ``torch.compile`` with ``--compile``."""
    model: nn.Module = net
    if runtime.distributed:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = DistributedDataParallel(net, device_ids=ids)
    if args.compile:
        model = torch.compile(model, backend=args.compile_backend)
    return model


def build(args: argparse.Namespace, runtime: Runtime) -> Setup:
    check = not args.skip_image_check
    ids, labels = load_train_split(args.metadata_root, args.data_root, check_images=check)
    splits = {name: load_eval_split(args.metadata_root, args.data_root, name, args.crop_size,
                                    check_images=check) for name in ("val", "test")}
    for name, values in (("train", labels), *((n, s.labels) for n, s in splits.items())):
        if values and not 0 <= min(values) <= max(values) < args.num_classes:
            raise ValueError(f"class labels of split {name!r} must lie in [0, "
                             f"{args.num_classes}), got [{min(values)}, {max(values)}]; "
                             "check --num-classes")
    if args.regressor and splits["val"].boxes is None:
        raise ValueError(f"--regressor needs a benchmark with boxes (CUB, ILSVRC); the val "
                         f"split of --dataset {args.dataset} has masks")
    torch.manual_seed(args.seed)
    net = build_model(args.backbone, args.num_classes, large_feature_map=args.large_feature_map,
                      tap_theta=args.tap_theta if args.method == "rcam" else None,
                      pretrained=args.pretrained, wsol_method=args.wsol_method,
                      adl_drop_rate=args.adl_drop_rate, adl_threshold=args.adl_threshold,
                      acol_threshold=args.acol_threshold).to(runtime.device)
    bank = None
    if args.method == "cream":
        generator = torch.Generator().manual_seed(args.seed)
        bank = ContextEmbeddingBank(args.num_classes, net.channels, momentum=args.cream_momentum,
                                    delta=args.cream_delta, generator=generator)
        bank = bank.to(runtime.device)
    optimizer = optimizer_for(net.parameter_groups(), args.lr, args)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, args.lr_decay_epochs, gamma=0.1)
    scaler = torch.amp.GradScaler(runtime.device.type,
                                  enabled=runtime.amp_dtype == torch.float16)
    train_set = WSOLImages(args.data_root, ids, labels, train=True, resize=args.resize_size,
                           crop=args.crop_size, seed=args.seed)
    sampler = ResumableDistributedSampler(train_set, num_replicas=runtime.world_size,
                                          rank=runtime.rank, shuffle=True, seed=args.seed)
    options = EvalOptions(method=args.method, size=args.crop_size,
                          curve_interval=args.curve_interval, loc_rule=args.loc_rule,
                          loc_theta=args.loc_theta, cream_scale=args.cream_scale,
                          cream_iterations=args.cream_iterations, mask_root=args.mask_root,
                          normalization=args.normalization)
    wsol = WSOLTraining(args.wsol_method, has_grid=args.has_grid, has_prob=args.has_prob,
                        cutmix_alpha=args.cutmix_alpha, cutmix_prob=args.cutmix_prob,
                        spg_size=args.crop_size)
    torch.manual_seed(args.seed + runtime.rank)  # per-process dropout streams
    model = wrap(net, args, runtime)
    eval_model = model if not runtime.distributed else net
    if runtime.distributed and args.compile:
        eval_model = torch.compile(net, backend=args.compile_backend)
    return Setup(args, runtime, net, model, eval_model, bank, optimizer, scheduler, scaler,
                 train_set, sampler, splits, options, wsol)


def _state(setup: Setup, epoch: int, step: int, totals: torch.Tensor, log: list) -> dict:
    return {"config": run_config(setup.args), "phase": "classifier", "epoch": epoch,
            "step_in_epoch": step, "model": setup.net.state_dict(),
            "optimizer": setup.optimizer.state_dict(), "scheduler": setup.scheduler.state_dict(),
            "scaler": setup.scaler.state_dict(),
            "bank": None if setup.bank is None else setup.bank.state_dict(),
            "rng": rng_states(setup.runtime), "train_totals": totals, "log": log}


def checkpoint(setup: Setup, epoch: int, step: int, totals: torch.Tensor, log: list) -> None:
    """Save on the first process (RNG states gathered from all), then wait for it."""
    from .distributed import all_reduce_sum

    state = _state(setup, epoch, step, all_reduce_sum(totals, setup.runtime), log)
    if setup.runtime.is_main:
        save_checkpoint(setup.args.output / CHECKPOINT, state)
    barrier(setup.runtime)


def resume(setup: Setup) -> tuple[int, int, torch.Tensor, list]:
    """Load ``--resume``'s checkpoint into the setup; returns where to continue."""
    args = setup.args
    path = args.output / CHECKPOINT if args.resume == "auto" else Path(args.resume)
    state = load_checkpoint(path, run_config(args))
    with restoring(path):
        setup.net.load_state_dict(state["model"])
        setup.optimizer.load_state_dict(state["optimizer"])
        setup.scheduler.load_state_dict(state["scheduler"])
        setup.scaler.load_state_dict(state["scaler"])
        if setup.bank is not None:
            setup.bank.load_state_dict(state["bank"])
        restore_rng(state["rng"], setup.runtime)
        totals = state["train_totals"] if setup.runtime.is_main else torch.zeros(
            3, dtype=torch.float64)
        where = int(state["epoch"]), int(state["step_in_epoch"]), totals, list(state["log"])
    return where


def train(setup: Setup) -> list[dict]:
    """The epochs: train, step the schedule, evaluate val, log, checkpoint."""
    args, runtime = setup.args, setup.runtime
    start_epoch, first_step, totals, log = 0, 0, torch.zeros(3, dtype=torch.float64), []
    if args.resume is not None:
        start_epoch, first_step, totals, log = resume(setup)
    elif (args.output / CHECKPOINT).exists():
        raise FileExistsError(f"{str(args.output / CHECKPOINT)!r} exists: pass --resume to "
                              "continue that run, or choose another --output")
    batch = args.batch_size
    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        setup.train_set.set_epoch(epoch)
        setup.sampler.set_epoch(epoch)
        setup.sampler.set_skip(first_step * batch)
        loader = _loader(setup.train_set, setup.sampler, args, batch)

        def after_step(step: int, running: torch.Tensor, epoch: int = epoch) -> None:
            every = args.checkpoint_every_steps
            if every > 0 and step % every == 0:
                checkpoint(setup, epoch, step, running, log)
            fail = args.simulate_failure_after_step
            if fail is not None and step == fail and epoch == start_epoch:
                raise SimulatedFailure(f"simulated failure after step {step} of epoch {epoch}")

        totals = train_epoch(setup.model, setup.net, setup.bank, loader, setup.optimizer,
                             setup.scaler, runtime, totals=totals, first_step=first_step,
                             max_steps=args.max_steps_per_epoch, after_step=after_step,
                             show_progress=not args.no_progress, wsol=setup.wsol)
        record: dict[str, Any] = {"epoch": epoch + 1,
                                  "lr": [g["lr"] for g in setup.optimizer.param_groups],
                                  "train": summarize_training(totals, runtime)}
        setup.scheduler.step()
        last = epoch + 1 == args.epochs
        if args.eval_every > 0 and ((epoch + 1) % args.eval_every == 0 or last):
            record["val"] = evaluate(setup.net, setup.bank, setup.splits["val"],
                                     eval_loader(setup.splits["val"], setup), runtime,
                                     setup.options, model=setup.eval_model,
                                     show_progress=not args.no_progress)
        record["seconds"] = round(time.time() - started, 3)
        log.append(record)
        if runtime.is_main:
            write_json(args.output / "log.json", log)
            print(json.dumps({k: v for k, v in record.items() if k != "val"}
                             | {"val": _brief(record.get("val"))}), flush=True)
        totals, first_step = torch.zeros(3, dtype=torch.float64), 0
        checkpoint(setup, epoch + 1, 0, totals, log)
    return log


def _brief(result: dict | None) -> dict | None:
    if result is None:
        return None
    keys = ("top1_cls", "max_box_acc_v2", "pxap", "gt_known", "top1_loc", "top5_loc")
    return {k: round(result[k], 3) for k in keys if k in result}


def final_evaluation(setup: Setup, log: list[dict]) -> dict[str, Any]:
    """Evaluate val (unless the last epoch just did) and test with the last model."""
    args = setup.args
    results: dict[str, Any] = {"config": run_config(args), "epochs": args.epochs}
    for name in ("val", "test"):
        reuse = name == "val" and log and "val" in log[-1] and not args.save_scoremaps
        if reuse:
            results[name] = log[-1]["val"]
            continue
        folder = args.output / "scoremaps" / name if args.save_scoremaps else None
        results[name] = evaluate(setup.net, setup.bank, setup.splits[name],
                                 eval_loader(setup.splits[name], setup), setup.runtime,
                                 setup.options, scoremap_dir=folder, model=setup.eval_model,
                                 show_progress=not args.no_progress)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``train_wsol.py`` with ``argv``; returns the final results (also in results.json)."""
    args = parse_args(argv)
    runtime = setup_runtime(args.device, amp=args.amp)
    try:
        if args.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        args.output.mkdir(parents=True, exist_ok=True)
        setup = build(args, runtime)
        log = train(setup)
        results = final_evaluation(setup, log)
        if args.regressor:
            from .regressor_run import run_regressor

            results["regressor"] = run_regressor(setup, results)
        if runtime.is_main:
            write_json(args.output / "results.json", results)
            print(json.dumps({n: _brief(results.get(n)) for n in ("val", "test")}
                             | {"regressor": results.get("regressor")}), flush=True)
        barrier(runtime)
        return results
    finally:
        teardown()
