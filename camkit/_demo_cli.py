"""``camkit demo`` command-line options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_demo_parser"]


def add_demo_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="train, localize and score on the embedded synthetic benchmark",
        description="Train CAM heads on a frozen pretrained trunk with image labels only on a "
                    "procedural WSOL dataset, then score CAM, RCAM, CREAM and CREAM on RCAM "
                    "with the reference metrics: one seed in full plus the spread over "
                    "held-out seeds, and the papers' claims tested on them.")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test of well under a minute (one seed, fewer images, no "
                             "sensitivity studies); its figures are not the benchmark's")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed reported in full, with pictures (default 0)")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, metavar="N",
                        help="held-out seeds of the spread (default 101 102 103; none with "
                             "--quick); give the option alone for the first seed only")
    parser.add_argument("--split", choices=("test", "val"), default=None, dest="eval_split",
                        help="split to score: test (default) or val (design decisions)")
    parser.add_argument("--classes", type=int, default=None, dest="num_classes",
                        help="number of object classes")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--train-size", type=int, default=None, help="training images")
    parser.add_argument("--eval-size", type=int, default=None, help="images of the scored split")
    parser.add_argument("--tap", type=float, default=None, metavar="THETA",
                        help="theta of the RCAM model's thresholded average pooling (0.1)")
    parser.add_argument("--calibration-map", choices=("cam", "rcam"), default=None,
                        help="CREAM on RCAM: map that calibrates the EM clusters")
    parser.add_argument("--added-map", choices=("cam", "rcam", "none"), default=None,
                        help="CREAM on RCAM: map added to the calibrated one")
    parser.add_argument("--methods", nargs="+", choices=("has", "adl"), default=None,
                        dest="wsol_methods",
                        help="also train with these WSOL methods (rows with and without CREAM)")
    parser.add_argument("--no-ablation", action="store_true",
                        help="skip the EM-iterations and momentum sensitivity studies")
    parser.add_argument("--trunk-channels-in-cam", action="store_true",
                        help="design study only: the earlier head that concatenates the "
                             "frozen trunk's channels to the CAM features")
    parser.add_argument("--overlays", type=int, default=None, metavar="N",
                        help="images in the overlay grid (0: no grid)")
    parser.add_argument("--out", default="camkit-demo",
                        help="folder for results.json, report.md and the PNGs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 2, on any machine)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from camkit.demo import HELD_OUT_SEEDS, DemoConfig, run_benchmark, run_demo

    overrides = {"seed": args.seed, "num_classes": args.num_classes, "epochs": args.epochs,
                 "train_size": args.train_size, "eval_size": args.eval_size, "tap": args.tap,
                 "eval_split": args.eval_split, "calibration_map": args.calibration_map,
                 "added_map": args.added_map, "overlays": args.overlays,
                 "threads": args.threads,
                 "wsol_methods": tuple(args.wsol_methods) if args.wsol_methods else None,
                 "ablation": False if args.no_ablation else None,
                 "trunk_channels_in_cam": args.trunk_channels_in_cam or None}
    try:
        base = DemoConfig.quick() if args.quick else DemoConfig()
        config = base.with_overrides(**overrides)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"camkit demo: {error}") from error
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # checked now, not after minutes of training
        raise SystemExit(f"camkit demo: --out {out} exists and is not a folder")
    progress = False if args.no_progress else None
    seeds = args.seeds if args.seeds is not None else () if args.quick else HELD_OUT_SEEDS
    if not [s for s in seeds if s != config.seed]:
        run_demo(config, args.out, progress=progress)
    else:
        run_benchmark(config, tuple(seeds), args.out, progress=progress)
    return 0
