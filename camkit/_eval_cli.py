"""``camkit eval``: evaluate saved score maps with the WSOL protocol (MaxBoxAccV2 or PxAP)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from camkit._io import check_output_path, write_json_atomic
from camkit._progress import ProgressBar

__all__ = ["add_eval_parser", "run_eval"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

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


def _inside_root(root: Path, image_id: str, path: Path) -> Path:
    """The real path of ``path``, refused when it (or a symbolic link on the way) leaves
    ``root``: image ids are relative, but a link could still point anywhere."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) resolves to {real}, "
                            f"outside --scoremap-root {root}")
    return real


_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def _npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], np.dtype] | str:
    """Shape and dtype from the header of a ``.npy`` file, or why it is not one."""
    fmt = np.lib.format
    start = handle.read(6)
    if not start:
        return "the file is empty"
    if start.startswith(b"PK"):
        return "it is a zip archive (an .npz saved under a .npy name?)"
    handle.seek(0)
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(handle)
        else:
            return f"format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)"
    except (ValueError, EOFError) as error:
        return str(error)
    if dtype.hasobject:
        return "it holds pickled Python objects, which are never loaded"
    return shape, dtype


def _read_npy(handle: BinaryIO, image_id: str, path: Path) -> np.ndarray:
    """Read a ``.npy`` score map after checking its header: nothing is unpickled, and nothing
    is allocated for a shape or dtype that would be refused anyway."""
    header = _npy_header(handle)
    if isinstance(header, str):
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) is not a valid .npy "
                            f"file: {header}")
    shape, dtype = header
    if shape != EVAL_SIZE:
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) must have shape "
                            f"{EVAL_SIZE}, got {shape}")
    if dtype.type not in _FLOAT_DTYPES:
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) must have dtype "
                            f"float16, float32 or float64, got {dtype}")
    handle.seek(0)
    return np.asarray(np.lib.format.read_array(handle, allow_pickle=False))


def load_scoremap(root: Path, image_id: str) -> np.ndarray:
    """Read and check one score map; ``ScoremapError`` names the image id and the file."""
    from camkit.boxes._inputs import as_float64_maps

    path = scoremap_path(root, image_id)
    if not path.is_file():
        if path.exists():  # a folder, FIFO or device: never opened (a FIFO would block)
            raise ScoremapError(f"score map of image id {image_id!r} ({path}) is not a regular "
                                f"file")
        raise MissingScoremap(f"no score map for image id {image_id!r} (expected {path})")
    real = _inside_root(root, image_id, path)
    try:
        with open(real, "rb") as handle:
            array = _read_npy(handle, image_id, path)
    except ScoremapError:
        raise
    except (OSError, ValueError, EOFError) as error:
        # OSError: unreadable; ValueError, EOFError: less data than the header promises
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) is not a valid .npy "
                            f"file: {error}") from None
    try:
        return as_float64_maps(array, "scoremap", ndim=(2,))
    except (TypeError, ValueError) as error:
        raise ScoremapError(f"score map of image id {image_id!r} ({path}) is malformed: "
                            f"{error}") from None


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


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group; the main process alone handles it (it ends the
    # pool), so a worker does not print a KeyboardInterrupt traceback of its own. (Workers
    # inherit this already; a replacement started later by the pool may not.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    single_threaded_worker()


class _Stopped(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException so that no ``except Exception`` keeps it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ``_Stopped`` in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:  # the first signal is being acted on: let the pool shutdown finish
            return
        stopping = True
        raise _Stopped(signum)

    previous = {number: signal.getsignal(number) for number in _STOP_SIGNALS}
    for number in _STOP_SIGNALS:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Signal handling while the worker processes start (a few milliseconds).

    SIGINT is ignored, so that the workers inherit an ignored SIGINT (an ignored signal
    survives exec, and Python keeps it): a Ctrl-C reaches the whole process group, and must
    not interrupt the workers' imports with tracebacks of their own. A Ctrl-C in these
    milliseconds is lost. SIGTERM is recorded by a Python handler and re-sent when the block
    ends: stopped halfway through starting a worker, this process would leave the worker
    failing with a traceback. (A Python handler is not inherited; an ignored or blocked
    SIGTERM would be, and the pool could not terminate such workers.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(signal.SIGTERM, hold)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])


def run_eval(args: argparse.Namespace) -> int:
    """Run the evaluation described by parsed ``args``; returns the exit status.

    SIGINT and SIGTERM stop the worker processes at once and exit with status 130 or 143;
    the result file is only ever written complete, after the evaluation.
    """
    if args.workers < 1:
        raise SystemExit(f"camkit eval: --workers must be >= 1, got {args.workers}")
    output = args.output or Path(f"camkit_eval_{args.dataset}_{args.split}.json")
    try:
        # before the evaluation: an unusable path must not cost its result
        check_output_path(output)
    except ValueError as error:
        raise SystemExit(f"camkit eval: {error}") from None
    try:
        with _stopped_by_signals():
            kind, config, result, evaluated, skipped = _evaluate(args)
    except _Stopped as stopped:
        name = signal.Signals(stopped.signum).name
        print(f"camkit eval: stopped by {name}; no result written", file=sys.stderr, flush=True)
        raise SystemExit(128 + stopped.signum) from None
    payload = {"dataset": args.dataset, "split": args.split, "config": config,
               "evaluated": evaluated, "skipped_missing": skipped, "result": result}
    note = f", {skipped} skipped (no score map)" if skipped else ""
    # printed first, so that the figures survive a failing write
    print(f"{args.dataset} {args.split}: {_summary(kind, result)} over {evaluated} "
          f"images{note}", flush=True)
    try:
        write_json_atomic(output, payload)
    except (ValueError, OSError) as error:
        raise SystemExit(f"camkit eval: {error}") from None
    print(f"wrote {output}")
    return 0


def _evaluate(args: argparse.Namespace) -> tuple[str, dict[str, Any], dict[str, Any], int, int]:
    """Evaluate every chunk; returns (kind, metric config, result, images evaluated, images
    skipped)."""
    from camkit.metrics import BoxAccuracy, PixelAP

    pool = None
    try:
        if args.workers > 1:
            import multiprocessing

            # started first: the workers import while this process reads the metadata
            with _signals_held():
                pool = multiprocessing.get_context("spawn").Pool(args.workers,
                                                                 initializer=_init_worker)
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
            pool.join()
    return kind, config, result, metric.num_images, skipped
