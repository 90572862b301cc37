"""The regressor phase of a run (``--regressor``): pseudo boxes, training, evaluation.

Checkpointed every epoch to ``<output>/regressor.pt`` (with the pseudo boxes, so a resumed
run does not recompute them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import load_checkpoint, restore_rng, restoring, rng_states, save_checkpoint
from .data import ResumableDistributedSampler, ShardSampler, WSOLImages
from .distributed import all_reduce_sum, barrier
from .regressor import BoxRegressor, evaluate_regressor, pseudo_boxes, train_regressor_epoch

if TYPE_CHECKING:
    from .run import Setup

__all__ = ["run_regressor"]

REGRESSOR_CHECKPOINT = "regressor.pt"


def _threshold(setup: Setup, results: dict[str, Any]) -> float:
    if setup.args.pseudo_box_threshold is not None:
        return float(setup.args.pseudo_box_threshold)
    return float(results["val"]["best_threshold"]["0.5"])


def run_regressor(setup: Setup, results: dict[str, Any]) -> dict[str, Any]:
    """Train the class-agnostic box regressor on pseudo boxes; evaluate it with the classifier."""
    from .run import _loader, eval_loader, optimizer_for, run_config, wrap

    args, runtime = setup.args, setup.runtime
    path = args.output / REGRESSOR_CHECKPOINT
    config = run_config(args) | {"phase": "regressor"}
    regressor = BoxRegressor(args.backbone, large_feature_map=args.large_feature_map,
                             pretrained=args.pretrained).to(runtime.device)
    optimizer = optimizer_for(regressor.parameter_groups(), args.regressor_lr, args)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, args.lr_decay_epochs, gamma=0.1)
    scaler = torch.amp.GradScaler(runtime.device.type,
                                  enabled=runtime.amp_dtype == torch.float16)
    ids, labels = setup.train_set.image_ids, setup.train_set.labels
    start, log = 0, []
    if args.resume is not None and path.exists():
        state = load_checkpoint(path, config)
        with restoring(path):
            regressor.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"], runtime)
            start, log = int(state["epoch"]), list(state["log"])
            boxes, threshold = state["pseudo_boxes"], float(state["threshold"])
    else:
        threshold = _threshold(setup, results)
        plain = WSOLImages(args.data_root, ids, labels, train=False, resize=args.resize_size,
                           crop=args.crop_size)
        loader = _loader(plain, ShardSampler(len(plain), runtime.rank, runtime.world_size),
                         args, args.batch_size)
        boxes = pseudo_boxes(setup.net, setup.bank, loader, len(plain), runtime,
                             method=args.method, size=args.crop_size, threshold=threshold,
                             show_progress=not args.no_progress)
    dataset = WSOLImages(args.data_root, ids, labels, train=True, resize=args.resize_size,
                         crop=args.crop_size, seed=args.seed + 1, boxes=boxes)
    sampler = ResumableDistributedSampler(dataset, num_replicas=runtime.world_size,
                                          rank=runtime.rank, shuffle=True, seed=args.seed + 1)
    model = wrap(regressor, args, runtime)
    for epoch in range(start, args.regressor_epochs):
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        totals = train_regressor_epoch(model, _loader(dataset, sampler, args, args.batch_size),
                                       optimizer, scaler, runtime,
                                       show_progress=not args.no_progress)
        scheduler.step()
        loss_sum, count = all_reduce_sum(totals, runtime).tolist()
        log.append({"epoch": epoch + 1, "mse": loss_sum / max(count, 1.0)})
        state = {"config": config, "phase": "regressor", "epoch": epoch + 1,
                 "step_in_epoch": 0, "model": regressor.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict(), "rng": rng_states(runtime), "log": log,
                 "pseudo_boxes": boxes, "threshold": threshold}
        if runtime.is_main:
            save_checkpoint(path, state)
        barrier(runtime)
    figures: dict[str, Any] = {"pseudo_box_threshold": threshold, "log": log}
    for name in ("val", "test"):
        split = setup.splits[name]
        figures[name] = evaluate_regressor(setup.net, regressor, split,
                                           eval_loader(split, setup), runtime,
                                           size=args.crop_size,
                                           show_progress=not args.no_progress)
    return figures
