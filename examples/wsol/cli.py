"""Command-line options of ``train_wsol.py`` and their per-dataset / per-backbone defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .config import BACKBONES, DATASETS, METHODS, WSOL_DEFAULTS, WSOL_METHODS

#: Read from the defaults table, so that ``--help`` never imports torchvision (``backbones``).
BACKBONE_NAMES = tuple(BACKBONES)

__all__ = ["build_parser", "parse_args"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_wsol.py",
        description="Train a WSOL classifier (--wsol-method: plain CAM training, HaS, ADL, "
                    "CutMix, ACoL or SPG) and evaluate its CAM, RCAM or CREAM maps (--method) "
                    "on CUB, ILSVRC or OpenImages in the reference metadata layout.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=sorted(DATASETS), default="CUB",
                      help="benchmark: sets the schedule defaults (default: CUB)")
    data.add_argument("--data-root", type=Path, required=True,
                      help="folder the image ids of the metadata are relative to")
    data.add_argument("--metadata-root", type=Path, required=True,
                      help="the dataset's metadata folder, holding train/, val/ and test/")
    data.add_argument("--mask-root", type=Path, default=None,
                      help="folder the OpenImages mask paths are relative to (default: "
                           "--data-root)")
    data.add_argument("--resize-size", type=_positive_int, default=256)
    data.add_argument("--crop-size", type=_positive_int, default=224,
                      help="training crop and evaluation size (default: 224)")
    data.add_argument("--workers", type=int, default=4, help="data-loading processes")
    data.add_argument("--skip-image-check", action="store_true",
                      help="do not check up front that every listed image exists")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", choices=BACKBONE_NAMES, required=True,
                       help="resnet50_se (ResNet50 with squeeze-and-excitation, reduction 16) "
                            "and mobilenet_v1 (width 1.0, last stride removed: 14x14 at 224) "
                            "are the other two backbones of Bae et al. (ECCV 2020); no "
                            "ImageNet weights for them are available offline, so they start "
                            "from random initialization")
    model.add_argument("--method", choices=METHODS, required=True,
                       help="localization: cam, rcam (TAP in training, NWC maps, PaS "
                            "threshold) or cream (context-embedding bank)")
    model.add_argument("--pretrained", type=Path, default=None,
                       help="local torchvision ImageNet checkpoint of the backbone (loaded with "
                            "weights_only=True; nothing is downloaded)")
    model.add_argument("--num-classes", type=_positive_int, default=None,
                       help="default: the dataset's (CUB 200, ILSVRC 1000, OpenImages 100)")
    model.add_argument("--large-feature-map", action=argparse.BooleanOptionalAction,
                       default=None,
                       help="default: on for resnet50 and resnet50_se, off otherwise")
    model.add_argument("--tap-theta", type=float, default=None,
                       help="rcam's TAP threshold (default: 0.1 vgg16, 0.0 otherwise)")

    wsol = parser.add_argument_group(
        "WSOL training method (defaults: the papers' and the reference protocol's, see "
        "config.py WSOLDefaults)")
    wsol.add_argument("--wsol-method", choices=WSOL_METHODS, default="cam",
                      help="cam: cross-entropy; has: Hide-and-Seek on each batch; adl: "
                           "attention-based dropout layers; cutmix: CutMix batches and loss "
                           "(--method cream then updates the bank with each image's own "
                           "label, the image the box was pasted into); acol: ACoL head (maps "
                           "from branch A); spg: SPG head (default: cam)")
    wsol.add_argument("--has-grid", type=_positive_int, default=WSOL_DEFAULTS.has_grid,
                      help="HaS cell side in pixels (default: %(default)s, HaS-32)")
    wsol.add_argument("--has-prob", type=float, default=WSOL_DEFAULTS.has_prob,
                      help="HaS probability of hiding a cell (default: %(default)s)")
    wsol.add_argument("--adl-drop-rate", type=float, default=WSOL_DEFAULTS.adl_drop_rate,
                      help="ADL probability of the drop mask (default: %(default)s)")
    wsol.add_argument("--adl-threshold", type=float, default=WSOL_DEFAULTS.adl_threshold,
                      help="ADL drop threshold, fraction of the maximum (default: "
                           "%(default)s)")
    wsol.add_argument("--cutmix-alpha", type=float, default=WSOL_DEFAULTS.cutmix_alpha,
                      help="CutMix Beta(alpha, alpha) parameter (default: %(default)s)")
    wsol.add_argument("--cutmix-prob", type=float, default=WSOL_DEFAULTS.cutmix_prob,
                      help="CutMix probability of mixing a batch (default: %(default)s)")
    wsol.add_argument("--acol-threshold", type=float, default=WSOL_DEFAULTS.acol_threshold,
                      help="ACoL erasing threshold (default: %(default)s)")

    train = parser.add_argument_group("training (defaults per --dataset, see config.py)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help="per process (under torchrun the global batch is this x world)")
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--lr-classifier-ratio", type=float, default=10.0)
    train.add_argument("--lr-decay-epochs", type=_positive_int, default=None)
    train.add_argument("--weight-decay", type=float, default=None)
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--max-steps-per-epoch", type=_positive_int, default=None,
                       help="cut every epoch short (smoke tests)")
    train.add_argument("--seed", type=int, default=0)

    method = parser.add_argument_group("localization")
    method.add_argument("--cream-momentum", type=float, default=0.8)
    method.add_argument("--cream-delta", type=float, default=0.2)
    method.add_argument("--cream-scale", type=float, default=8.0)
    method.add_argument("--cream-iterations", type=_positive_int, default=2)
    method.add_argument("--normalization", choices=("minmax", "ivr"), default="minmax",
                        help="per-map normalization of the score maps: minmax (the protocol) "
                             "or ivr (inferior value removal at the 0.45 quantile: CAM_IVR)")
    method.add_argument("--curve-interval", type=float, default=0.01,
                        help="score-map threshold step of MaxBoxAccV2 / PxAP (default 0.01)")
    method.add_argument("--loc-rule", choices=("max", "pas"), default=None,
                        help="threshold of GT-known / top-1 / top-5 loc (default: pas for "
                             "rcam, max otherwise)")
    method.add_argument("--loc-theta", type=float, default=None)
    method.add_argument("--eval-every", type=int, default=1,
                        help="evaluate val every N epochs (0: only at the end)")
    method.add_argument("--save-scoremaps", action="store_true",
                        help="write <output>/scoremaps/<split>/<image_id>.npy at the end")

    regressor = parser.add_argument_group("CREAM regressor variant")
    regressor.add_argument("--regressor", action="store_true",
                           help="after training: pseudo boxes, box regressor, evaluation")
    regressor.add_argument("--regressor-epochs", type=int, default=None)
    regressor.add_argument("--regressor-lr", type=float, default=None,
                           help="default: the classifier's --lr")
    regressor.add_argument("--pseudo-box-threshold", type=float, default=None,
                           help="default: the val threshold maximizing MaxBoxAcc at IoU 0.5")

    run = parser.add_argument_group("run")
    run.add_argument("--output", type=Path, required=True, help="run folder")
    run.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                     help="continue from CHECKPOINT (default: <output>/last.pt)")
    run.add_argument("--checkpoint-every-steps", type=int, default=0,
                     help="also checkpoint every N steps inside an epoch")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if any)")
    run.add_argument("--amp", action="store_true",
                     help="mixed precision (float16 + gradient scaling on CUDA, bfloat16 on CPU)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)
    run.add_argument("--deterministic", action="store_true",
                     help="torch.use_deterministic_algorithms (slower)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--simulate-failure-after-step", type=int, default=None,
                     help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and fill the dataset / backbone defaults (``args.defaults_used`` lists them)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    dataset = DATASETS[args.dataset]
    backbone = BACKBONES[args.backbone]
    filled = {
        "num_classes": dataset.num_classes, "epochs": dataset.epochs,
        "batch_size": dataset.batch_size, "lr": dataset.lr[args.backbone],
        "lr_decay_epochs": dataset.lr_decay_epochs, "weight_decay": dataset.weight_decay,
        "large_feature_map": backbone.large_feature_map, "tap_theta": backbone.tap_theta,
        "loc_rule": "pas" if args.method == "rcam" else "max",
        "regressor_epochs": dataset.regressor_epochs,
    }
    for name, value in filled.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.regressor_lr is None:
        args.regressor_lr = args.lr
    if args.mask_root is None:
        args.mask_root = args.data_root
    if args.crop_size > args.resize_size:
        parser.error(f"--crop-size ({args.crop_size}) must not exceed --resize-size "
                     f"({args.resize_size})")
    if args.crop_size < backbone.min_input:
        parser.error(f"--backbone {args.backbone} needs --crop-size >= {backbone.min_input}, "
                     f"got {args.crop_size}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    for name in ("has_prob", "adl_drop_rate", "adl_threshold", "cutmix_prob", "acol_threshold"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must lie in [0, 1], got {value}")
    if not args.cutmix_alpha > 0.0:
        parser.error(f"--cutmix-alpha must be > 0, got {args.cutmix_alpha}")
    if not 0.0 < args.curve_interval < 1.0:
        parser.error(f"--curve-interval must lie in (0, 1), got {args.curve_interval}")
    return args
