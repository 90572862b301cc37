"""``camkit eval``: evaluate saved score maps with the WSOL protocol (MaxBoxAccV2 or PxAP)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from camkit._io import write_json_atomic
from camkit._progress import ProgressBar

__all__ = ["add_eval_parser", "run_eval"]

EVAL_SIZE = (224, 224)
_DATASETS = ("CUB", "ILSVRC", "OpenImages")
_CHUNK = 32


class ScoremapError(ValueError):
    """A missing or malformed score map; the message names the image id."""


class MissingScoremap(ScoremapError):
    """The score map file of an image id does not exist."""


def add_eval_parser(subparsers: Any) -> None:
    """Register the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval", help="evaluate saved score maps (MaxBoxAccV2 / PxAP)",
        description="Evaluate one .npy score map per image id (<scoremap-root>/<image_id>.npy, "
                    "224x224, float in [0, 1]) with the WSOL protocol of Choe et al. 2020.")
    parser.add_argument("--scoremap-root", required=True, type=Path)
    parser.add_argument("--metadata-root", required=True, type=Path,
                        help="folder holding <DATASET>/<split>/ metadata")
    parser.add_argument("--dataset", required=True, choices=_DATASETS)
    parser.add_argument("--split", default="test")
    parser.add_argument("--mask-root", type=Path, help="mask folder (OpenImages)")
    parser.add_argument("--cam-curve-interval", type=float, default=0.01)
    parser.add_argument("--multi-contour", action=argparse.BooleanOptionalAction, default=True,
                        help="boxes of every contour (MaxBoxAccV2, default) or of the largest")
    parser.add_argument("--iou-thresholds", type=int, nargs="+", default=[30, 50, 70],
                        help="IoU thresholds in percent")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-missing", action="store_true",
                        help="skip image ids without a score map (and report how many)")
    parser.add_argument("--output", type=Path, help="JSON result file "
                        "(default: camkit_eval_<dataset>_<split>.json)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run_eval)


def scoremap_path(root: Path, image_id: str) -> Path:
    """``<root>/<image_id>.npy`` (the protocol), else ``<root>/<id minus extension>.npy``."""
    from camkit.data.wsol_metadata import safe_join

    path = safe_join(root, image_id + ".npy", "image id")
    if not path.is_file():
        alternative = path.parent / (Path(image_id).stem + ".npy")
        if alternative.is_file():
            return alternative
    return path


def load_scoremap(root: Path, image_id: str) -> np.ndarray:
    """Read and check one score map; ``ScoremapError`` names the image id."""
    from camkit.boxes._inputs import as_float64_maps

    path = scoremap_path(root, image_id)
    if not path.is_file():
        raise MissingScoremap(f"no score map for image id {image_id!r} (expected {path})")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) is not a valid .npy "
                            f"file: {error}") from None
    if array.shape != EVAL_SIZE:
        raise ScoremapError(f"score map of image id {image_id!r} must have shape {EVAL_SIZE}, "
                            f"got {array.shape}")
    try:
        return as_float64_maps(array, "scoremap", ndim=(2,))
    except (TypeError, ValueError) as error:
        raise ScoremapError(f"score map of image id {image_id!r} is malformed: {error}") from None


def _evaluate_chunk(task: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """Accumulate one chunk of image ids; returns (state, images done, images skipped)."""
    from camkit.data.wsol_metadata import load_mask
    from camkit.metrics import BoxAccuracy, PixelAP

    metric = (BoxAccuracy if task["kind"] == "boxes" else PixelAP)(**task["config"])
    skipped = 0
    for image_id, target in zip(task["image_ids"], task["targets"], strict=True):
        try:
            scoremap = load_scoremap(task["scoremap_root"], image_id)
        except MissingScoremap:
            if not task["skip_missing"]:
                raise
            skipped += 1
            continue
        if task["kind"] == "boxes":
            metric.update(scoremap, target)
        else:
            metric.update(scoremap, load_mask(task["mask_root"], target, EVAL_SIZE))
    return metric.state_dict(), len(task["image_ids"]), skipped


def _tasks(args: argparse.Namespace) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    from camkit.boxes import threshold_grid
    from camkit.data.wsol_metadata import load_wsol_metadata, resized_gt_boxes

    metadata = load_wsol_metadata(args.metadata_root / args.dataset / args.split)
    grid = threshold_grid(args.cam_curve_interval).tolist()
    targets: Mapping[str, object]  # per image id: its mask paths or its boxes
    if metadata.masks is not None:
        if args.mask_root is None:
            raise ValueError(f"--mask-root is required for the masks of {args.dataset}")
        kind, config, targets = "masks", {"thresholds": grid}, metadata.masks
    else:
        kind = "boxes"
        config = {"thresholds": grid, "multi_contour": args.multi_contour,
                  "iou_thresholds": [value / 100 for value in args.iou_thresholds]}
        targets = resized_gt_boxes(metadata, EVAL_SIZE)
    ids = metadata.image_ids
    tasks = [{"kind": kind, "config": config, "image_ids": ids[i:i + _CHUNK],
              "targets": [targets[image_id] for image_id in ids[i:i + _CHUNK]],
              "scoremap_root": args.scoremap_root, "mask_root": args.mask_root,
              "skip_missing": args.skip_missing} for i in range(0, len(ids), _CHUNK)]
    return kind, config, tasks


def _summary(kind: str, result: dict[str, Any]) -> str:
    if kind == "masks":
        return f"PxAP = {result['pxap']:.4f}"
    parts = ", ".join(f"IoU {float(k) * 100:g}: {v:.4f}" for k, v in result["max_box_acc"].items())
    return f"MaxBoxAccV2 = {result['max_box_acc_v2']:.4f} ({parts})"


def single_threaded_worker() -> None:
    """Pool initializer: one thread per worker process (the processes are the parallelism;
    OpenCV's and PyTorch's own thread pools would only compete for the same cores). PyTorch is
    not imported for it: the evaluation does not use it, and importing it would cost each
    worker about a second."""
    import sys

    import cv2

    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def run_eval(args: argparse.Namespace) -> int:
    """Run the evaluation described by parsed ``args``; returns the exit status."""
    from camkit.metrics import BoxAccuracy, PixelAP

    if args.workers < 1:
        raise SystemExit(f"camkit eval: --workers must be >= 1, got {args.workers}")
    pool = None
    if args.workers > 1:
        import multiprocessing

        # started first: the workers import while this process reads the metadata
        pool = multiprocessing.get_context("spawn").Pool(
            args.workers, initializer=single_threaded_worker)
    try:
        kind, config, tasks = _tasks(args)
        metric = (BoxAccuracy if kind == "boxes" else PixelAP)(**config)
        total = sum(len(task["image_ids"]) for task in tasks)
        skipped = 0
        outputs: Any = (map(_evaluate_chunk, tasks) if pool is None
                        else pool.imap_unordered(_evaluate_chunk, tasks))
        with ProgressBar(total, f"{args.dataset}/{args.split}",
                         enabled=False if args.no_progress else None) as bar:
            for state, done, missing in outputs:
                metric.merge(type(metric).from_state_dict(state))
                skipped += missing
                bar.update(done)
        result = metric.compute().to_dict()
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"camkit eval: {error}") from None
    finally:
        if pool is not None:
            pool.terminate()
    payload = {"dataset": args.dataset, "split": args.split, "config": config,
               "evaluated": metric.num_images, "skipped_missing": skipped, "result": result}
    output = args.output or Path(f"camkit_eval_{args.dataset}_{args.split}.json")
    write_json_atomic(output, payload)
    note = f", {skipped} skipped (no score map)" if skipped else ""
    print(f"{args.dataset} {args.split}: {_summary(kind, result)} over {metric.num_images} "
          f"images{note}")
    print(f"wrote {output}")
    return 0


