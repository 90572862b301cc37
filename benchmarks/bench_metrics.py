"""Images per second of camkit's WSOL metrics against a straightforward implementation.

The straightforward implementation, written below, follows the reference protocol code line by
line: per threshold ``cv2.threshold`` + ``cv2.findContours`` + ``cv2.boundingRect``, one IoU
matrix over all boxes, and per threshold the max over its slice of ``iou.max(1)`` (recomputed
for every threshold, as the reference does). A "lean" variant hoists that max out of the loop.
Both run in this process, on the same maps, and every count is checked for equality.

"camkit" is the default install (NumPy and OpenCV); when numba is installed (``camkit[fast]``)
a separate "camkit[fast]" column times the compiled path, which the default install then
uses automatically. ``--workers N`` times ``camkit eval`` (default path) with N processes
against one, on ``--workers-images`` maps written to a temporary folder.

Maps: smooth 224x224 maps made of Gaussian blobs of several sizes; GT boxes: the real CUB test
boxes (a subset), scaled to 224 with the protocol's truncation.

    python benchmarks/bench_metrics.py --images 100 --workers 2

``--markdown`` also prints the results as Markdown tables (medians with min–max over the
repeats), between ``<!-- markdown:start -->`` and ``<!-- markdown:end -->`` lines, for
``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from camkit._environment import cpu_model  # noqa: E402
from camkit.boxes import _compiled, _levels, boxes_from_scoremap, threshold_grid  # noqa: E402
from camkit.metrics import BoxAccuracy, PixelAP  # noqa: E402

CUB_TEST = REPO.parent / "shared" / "wsol-metadata" / "CUB" / "test"
SIZE = 224


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def blob_map(rng: np.random.Generator, grid: int = 14, clutter: float = 0.15) -> np.ndarray:
    """A CAM-like map: Gaussian blobs of several sizes plus clutter on a ``grid`` x ``grid``
    feature grid, upsampled bicubically to 224x224 (as CAMs are) and min-max normalized."""
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float64)
    score = clutter * rng.random((grid, grid))
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(0, grid, 2)
        sy, sx = rng.uniform(0.04, 0.3, 2) * grid
        score += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 / (2 * sy**2)
                                                  + (xx - cx) ** 2 / (2 * sx**2)))
    score = cv2.resize(score, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    score -= score.min()
    return score / score.max()


#: name -> (feature grid, clutter amplitude): VGG-like 14x14 smooth maps, ResNet-like 28x28
#: maps with more background clutter (more contours per threshold).
MAP_FAMILIES = {"smooth 14x14": (14, 0.15), "cluttered 28x28": (28, 0.4)}


def cub_boxes(count: int) -> list[np.ndarray]:
    from camkit.data.wsol_metadata import load_wsol_metadata, resized_gt_boxes

    if not CUB_TEST.is_dir():
        raise SystemExit(f"CUB test metadata not found at {CUB_TEST}")
    metadata = load_wsol_metadata(CUB_TEST)
    boxes = resized_gt_boxes(metadata)
    step = max(1, len(metadata.image_ids) // count)
    return [boxes[image_id] for image_id in metadata.image_ids[::step][:count]]


# ---------------------------------------------------------------------------------------------
# Straightforward implementation of the protocol
# ---------------------------------------------------------------------------------------------
def straightforward_boxes(scoremap: np.ndarray, thresholds: list[float], multi_contour: bool):
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    all_boxes, counts = [], []
    for threshold in thresholds:
        _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            all_boxes.append(np.asarray([[0, 0, 0, 0]]))
            counts.append(1)
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        all_boxes.append(np.asarray(boxes))
        counts.append(len(contours))
    return all_boxes, counts


def straightforward_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    num_a, num_b = box_a.shape[0], box_b.shape[0]
    box_a = np.tile(box_a, num_b).reshape((num_a, num_b, -1))
    box_b = np.transpose(np.tile(box_b, num_a).reshape((num_b, num_a, -1)), (1, 0, 2))
    min_x = np.maximum(box_a[:, :, 0], box_b[:, :, 0])
    min_y = np.maximum(box_a[:, :, 1], box_b[:, :, 1])
    max_x = np.minimum(box_a[:, :, 2], box_b[:, :, 2])
    max_y = np.minimum(box_a[:, :, 3], box_b[:, :, 3])
    intersection = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (box_a[:, :, 2] - box_a[:, :, 0] + 1) * (box_a[:, :, 3] - box_a[:, :, 1] + 1)
    area_b = (box_b[:, :, 2] - box_b[:, :, 0] + 1) * (box_b[:, :, 3] - box_b[:, :, 1] + 1)
    denominator = area_a + area_b - intersection
    degenerate = np.where(denominator <= 0)
    denominator[degenerate] = 1
    iou = intersection / denominator
    iou[degenerate] = 0
    return iou


def straightforward_correct(maps, gt_boxes, thresholds, iou_thresholds, multi_contour, lean):
    correct = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(maps, gt_boxes, strict=True):
        scoremap = scoremap.astype(np.float64)  # the protocol takes float64 maps only
        boxes, counts = straightforward_boxes(scoremap, thresholds, multi_contour)
        iou = straightforward_iou(np.concatenate(boxes, axis=0), gt)
        per_box = iou.max(1) if lean else None
        best, start = [], 0
        for count in counts:
            rows = per_box if lean else iou.max(1)  # the reference recomputes it every time
            best.append(max(rows[start:start + count]))
            start += count
        for row, iou_threshold in enumerate(iou_thresholds):
            correct[row, np.where(np.asarray(best) >= iou_threshold)[0]] += 1
    return correct


def straightforward_histograms(maps, masks, thresholds):
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    foreground = np.zeros(len(edges) - 1)
    background = np.zeros(len(edges) - 1)
    for scoremap, mask in zip(maps, masks, strict=True):
        scoremap = scoremap.astype(np.float64)
        foreground += np.histogram(scoremap[mask == 1], bins=edges)[0]
        background += np.histogram(scoremap[mask == 0], bins=edges)[0]
    return foreground, background


# ---------------------------------------------------------------------------------------------
# camkit, in this process (and camkit eval with several, in bench_workers)
# ---------------------------------------------------------------------------------------------
def camkit_correct(maps, gt_boxes, thresholds, multi_contour, compiled=False):
    metric = BoxAccuracy(thresholds, multi_contour=multi_contour)
    _levels._USE_COMPILED = compiled
    try:
        metric.update(maps, gt_boxes)
    finally:
        _levels._USE_COMPILED = False
    return metric._state["correct"]


#: Markdown rows collected during the run: (case, images, {implementation: samples}).
_ROWS: list[tuple[str, int, dict[str, list[float]]]] = []
#: (workers, images, one-process samples, several-process samples, control ratios).
_WORKERS: list[tuple[int, int, list[float], list[float], list[float]]] = []


def interleaved(runs: dict, repeat: int) -> tuple[dict, dict[str, list[float]]]:
    """Run every callable of ``runs`` once per repeat, in turn, so that a slow spell of a shared
    machine falls on all of them rather than on one; returns (last value of each, wall times
    of each in seconds)."""
    values: dict = {}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, function in runs.items():
            start = time.perf_counter()
            values[name] = function()
            samples[name].append(time.perf_counter() - start)
    return values, samples


def _machine() -> str:
    model = cpu_model()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{model}; {os.cpu_count()} logical CPUs; OpenCV {cv2.__version__} (1 thread), "
            f"NumPy {np.__version__}; Python {platform.python_version()}; {platform.system()} "
            f"{platform.release()}; load average {load}")


def _rate(count: int, samples: list[float]) -> str:
    """Images/s: median with the min–max range over the repeats."""
    rates = sorted(count / s for s in samples)
    return f"{statistics.median(rates):.1f} ({rates[0]:.1f}–{rates[-1]:.1f})"


def markdown_tables(args) -> str:
    lines = [f"Machine: {_machine()}.", "",
             f"{args.images} maps of 224×224 per family ({args.images_fine} at the 0.001 grid), "
             f"real CUB test boxes, one process, {args.repeat} repeats; images/s as median "
             "(min–max); ratio = median time of the baseline / median time of camkit.", "",
             "| case | images | straightforward (im/s) | lean (im/s) | camkit (im/s) "
             "| ratio | ratio vs lean | camkit[fast] (im/s) | ratio [fast] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case, count, samples in _ROWS:
        fast = statistics.median(samples["camkit"])
        ref = samples["straightforward"]
        lean = samples.get("lean")
        compiled = samples.get("camkit[fast]")
        compiled_ratio = (f"{statistics.median(ref) / statistics.median(compiled):.2f}×"
                          if compiled else "–")
        lines.append(
            f"| {case} | {count} | {_rate(count, ref)} | "
            f"{_rate(count, lean) if lean else '–'} | {_rate(count, samples['camkit'])} | "
            f"{statistics.median(ref) / fast:.2f}× | "
            f"{f'{statistics.median(lean) / fast:.2f}×' if lean else '–'} | "
            f"{_rate(count, compiled) if compiled else '–'} | "
            f"{compiled_ratio} |")
    for workers, count, one, many, control in _WORKERS:
        lines += ["", f"Scaling with processes (`camkit eval`, grid 0.001, all contours, {count} "
                  f"smooth float32 maps read from disk by the workers, pool start included): "
                  f"one process {_rate(count, one)} im/s, {workers} processes "
                  f"{_rate(count, many)} im/s, "
                  f"{statistics.median(one) / statistics.median(many):.2f}×. Control in the same "
                  f"repeats, a pure-Python loop in {workers} processes against one: "
                  f"{statistics.median(control):.2f}× ({min(control):.2f}–{max(control):.2f}×)."]
    return "\n".join(lines)


def bench_boxes(family, maps64, gt_boxes, args):
    for interval, count in ((0.01, len(maps64)), (0.001, min(len(maps64), args.images_fine))):
        thresholds = threshold_grid(interval)
        for multi_contour in (True, False):
            for dtype in (np.float64, np.float32):
                maps, boxes = maps64[:count].astype(dtype), gt_boxes[:count]
                run = (maps, boxes, list(thresholds), (0.3, 0.5, 0.7), multi_contour)
                camkit_run = (maps, boxes, thresholds, multi_contour)
                runs = {"straightforward": partial(straightforward_correct, *run, lean=False),
                        "lean": partial(straightforward_correct, *run, lean=True),
                        "camkit": partial(camkit_correct, *camkit_run)}
                if args.compiled:
                    runs["camkit[fast]"] = partial(camkit_correct, *camkit_run, compiled=True)
                values, samples = interleaved(runs, args.repeat)
                expected = values.pop("straightforward")
                results = list(values.values())
                t_ref, t_lean, t_fast = (min(samples[key])
                                         for key in ("straightforward", "lean", "camkit"))
                compiled_note = ""
                if args.compiled:
                    t_compiled = min(samples["camkit[fast]"])
                    compiled_note = f" {count / t_compiled:10.1f} {t_ref / t_compiled:6.1f}x"
                if not all(np.array_equal(expected, result) for result in results):
                    raise SystemExit(f"MISMATCH: {family}, grid {interval}, multi={multi_contour}")
                name = (f"{family} grid {interval} {'multi ' if multi_contour else 'single'}"
                        f" {np.dtype(dtype).name}")
                _ROWS.append((name, count, samples))
                print(f"{name:44s} {count / t_ref:12.1f} im/s {count / t_lean:10.1f} "
                      f"{count / t_fast:10.1f} {t_ref / t_fast:6.1f}x {t_lean / t_fast:10.1f}x"
                      f"{compiled_note}")


def bench_pixels(maps64, args):
    thresholds = threshold_grid(0.01)
    masks = np.where(maps64 > 0.5, 1, 0).astype(np.uint8)
    masks[(maps64 > 0.4) & (maps64 <= 0.5)] = 255

    def camkit_histograms() -> PixelAP:
        metric = PixelAP(thresholds)
        metric.update(maps64, masks)
        return metric

    values, samples = interleaved(
        {"straightforward": partial(straightforward_histograms, maps64, masks, thresholds),
         "camkit": camkit_histograms}, args.repeat)
    (fg, bg), metric = values["straightforward"], values["camkit"]
    t_ref, t_fast = min(samples["straightforward"]), min(samples["camkit"])
    _ROWS.append(("PixelAP grid 0.01 (vs two np.histogram)", len(maps64), samples))
    if not (np.array_equal(fg, metric._state["foreground"])
            and np.array_equal(bg, metric._state["background"])):
        raise SystemExit("MISMATCH in PixelAP histograms")
    print(f"{'PixelAP grid 0.01 (vs two np.histogram)':44s} {len(maps64) / t_ref:12.1f} im/s "
          f"{'':10s} {len(maps64) / t_fast:10.1f} {t_ref / t_fast:6.1f}x")


def _eval_folder(root: Path, count: int, seed: int) -> None:
    """``root/metadata/CUB/test``: the first ``count`` image ids of the real CUB test split;
    ``root/maps``: one smooth float32 map per image id, as the reference code saves them."""
    ids = (CUB_TEST / "image_ids.txt").read_text(encoding="utf-8").splitlines()[:count]
    kept = set(ids)
    folder = root / "metadata" / "CUB" / "test"
    folder.mkdir(parents=True)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        lines = (CUB_TEST / name).read_text(encoding="utf-8").splitlines()
        (folder / name).write_text("".join(f"{line}\n" for line in lines
                                           if line.split(",")[0] in kept), encoding="utf-8")
    rng = np.random.default_rng(seed)
    grid, clutter = MAP_FAMILIES["smooth 14x14"]
    for image_id in ids:
        path = root / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, blob_map(rng, grid, clutter).astype(np.float32))


def _spin(iterations: int) -> int:
    """Pure-Python arithmetic: the control of the scaling run (no memory traffic, no I/O)."""
    total = 0
    for i in range(iterations):
        total += i * i
    return total


#: Iterations of ``_spin`` per process in the control: about 0.3 s on the recorded machine.
_SPIN = 6_000_000


def _spin_serially(times: int) -> None:
    for _ in range(times):
        _spin(_SPIN)


def bench_workers(args) -> None:
    """``camkit eval --workers N`` against ``--workers 1``, as a user runs it: each process reads
    its own maps from disk, and the N-process time includes starting the pool.

    A control runs in the same repeats: ``_spin`` N times in this process against once in each
    of N processes of a pool started beforehand. It shows how far the machine's N cores scale
    at that moment (on a shared virtual machine they may not give N×)."""
    import contextlib
    import io
    import json
    import multiprocessing
    import tempfile

    from camkit._eval_cli import run_eval

    with tempfile.TemporaryDirectory() as tmp, \
            multiprocessing.get_context("spawn").Pool(args.workers) as control_pool:
        control_pool.map(_spin, [1] * args.workers)  # started before any timing
        root = Path(tmp)
        _eval_folder(root, args.workers_images, args.seed)
        os.environ["CAMKIT_DISABLE_NUMBA"] = "1"  # every process runs the default install's path
        options = {workers: argparse.Namespace(
            scoremap_root=root / "maps", metadata_root=root / "metadata", dataset="CUB",
            split="test", mask_root=None, cam_curve_interval=0.001, multi_contour=True,
            iou_thresholds=[30, 50, 70], workers=workers, skip_missing=False,
            output=root / f"result-{workers}.json", no_progress=True)
            for workers in (1, args.workers)}
        runs = {"one": partial(run_eval, options[1]),
                "many": partial(run_eval, options[args.workers]),
                "control one": partial(_spin_serially, args.workers),
                "control many": partial(control_pool.map, _spin, [_SPIN] * args.workers)}
        with contextlib.redirect_stdout(io.StringIO()):
            _, samples = interleaved(runs, args.repeat)
        results = {workers: json.loads(options[workers].output.read_text(encoding="utf-8"))
                   for workers in options}
        del os.environ["CAMKIT_DISABLE_NUMBA"]
    if results[1]["result"] != results[args.workers]["result"]:
        raise SystemExit(f"MISMATCH: camkit eval with {args.workers} workers and with one")
    count, one, many = args.workers_images, samples["one"], samples["many"]
    control = [a / b for a, b in zip(samples["control one"], samples["control many"],
                                     strict=True)]
    _WORKERS.append((args.workers, count, one, many, control))
    ratio = statistics.median(one) / statistics.median(many)
    print(f"camkit eval grid 0.001 multi, {count} maps: {args.workers} processes "
          f"{count / statistics.median(many):.1f} im/s vs {count / statistics.median(one):.1f} "
          f"im/s with one: {ratio:.2f}x (control: a pure-Python loop in {args.workers} processes "
          f"{statistics.median(control):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--images-fine", type=int, default=20,
                        help="images for the slow straightforward runs at the 0.001 grid")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes of the camkit eval scaling run (1: skip it)")
    parser.add_argument("--workers-images", type=int, default=1000,
                        help="maps of the camkit eval scaling run (written to a temporary folder)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="repeats, the implementations alternating in each (the printed "
                             "lines keep the best, --markdown the median and min-max)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true",
                        help="also print Markdown tables (medians and min-max)")
    parser.add_argument("--no-compiled", dest="compiled", action="store_false",
                        help="skip the camkit[fast] (numba) column even when numba is installed")
    args = parser.parse_args()
    args.compiled = args.compiled and _compiled.available()
    _levels._USE_COMPILED = False  # "camkit" is the default install's path
    if args.compiled:  # load numba's cached compilation before any timing
        rng = np.random.default_rng(args.seed)
        warm = blob_map(rng)[None]
        camkit_correct(warm, [np.array([[0, 0, 9, 9]])], threshold_grid(0.001), True,
                       compiled=True)
    cv2.setNumThreads(1)

    gt_boxes = cub_boxes(args.images)
    print(f"{args.images} maps 224x224 per family, CUB test boxes, one process unless noted; "
          f"OpenCV {cv2.__version__}, NumPy {np.__version__}; best of {args.repeat}")
    print(f"{'case (BoxAccuracy unless noted)':44s} {'straightforward':>16s} {'lean':>10s} "
          f"{'camkit':>10s} {'ratio':>7s} {'ratio(lean)':>11s}"
          + (f" {'[fast]':>10s} {'ratio':>6s}" if args.compiled else ""))
    for family, (grid, clutter) in MAP_FAMILIES.items():
        rng = np.random.default_rng(args.seed)
        maps64 = np.stack([blob_map(rng, grid, clutter) for _ in range(args.images)])
        boxes_per_threshold = np.mean([len(b) for m in maps64[:5]
                                       for b in boxes_from_scoremap(m, threshold_grid(0.01))])
        print(f"-- {family}: {boxes_per_threshold:.1f} boxes per threshold on average")
        bench_boxes(family, maps64, gt_boxes, args)
    bench_pixels(maps64, args)
    if args.workers > 1:
        bench_workers(args)
    print("all counts identical to the straightforward implementation")
    if args.markdown:
        print("<!-- markdown:start -->")
        print(markdown_tables(args))
        print("\nEvery count was identical to the straightforward implementation's.")
        print("<!-- markdown:end -->")


if __name__ == "__main__":
    main()
