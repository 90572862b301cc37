"""``camkit demo`` command-line options."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_demo_parser"]


def add_demo_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="train, localize and score on the embedded synthetic benchmark",
        description="Train a CAM head on a frozen pretrained trunk with image labels only on a "
                    "procedural WSOL dataset, "
                    "then score CAM, RCAM and CREAM with the reference metrics.")
    parser.add_argument("--quick", action="store_true",
                        help="a run of well under a minute (fewer, smaller images)")
    parser.add_argument("--seed", type=int, default=None, help="seed of data and training")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                        help="run once per seed (into OUT/seed-N) and summarize the spread")
    parser.add_argument("--classes", type=int, default=None, dest="num_classes",
                        help="number of object classes")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--train-size", type=int, default=None, help="training images")
    parser.add_argument("--test-size", type=int, default=None, help="test images")
    parser.add_argument("--tap", type=float, default=None, metavar="THETA",
                        help="also train with thresholded average pooling (RCAM+TAP)")
    parser.add_argument("--ablation", action="store_true",
                        help="EM iterations T in 0..4 and momentum sensitivity studies")
    parser.add_argument("--overlays", type=int, default=None, metavar="N",
                        help="test images in the overlay grid (0: no grid)")
    parser.add_argument("--out", default="camkit-demo",
                        help="folder for results.json, report.md and the PNGs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from camkit.demo import DemoConfig, run_demo

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"camkit demo: --threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    overrides = {"seed": args.seed, "num_classes": args.num_classes, "epochs": args.epochs,
                 "train_size": args.train_size, "test_size": args.test_size, "tap": args.tap,
                 "ablation": args.ablation or None, "overlays": args.overlays}
    try:
        base = DemoConfig.quick() if args.quick else DemoConfig()
        config = base.with_overrides(**overrides)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"camkit demo: {error}") from error
    progress = False if args.no_progress else None
    if not args.seeds:
        run_demo(config, args.out, progress=progress)
        return 0
    from pathlib import Path

    from camkit.demo._report import write_seed_summary

    out = Path(args.out)
    runs = {}
    for seed in dict.fromkeys(args.seeds):
        print(f"== seed {seed}")
        runs[seed] = run_demo(config.with_overrides(seed=seed), out / f"seed-{seed}",
                              progress=progress)
    paths = write_seed_summary(out, runs)
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0
