"""Images per second of camkit's WSOL metrics against a straightforward implementation.

The straightforward implementation, written below, follows the reference protocol code line by
line: per threshold ``cv2.threshold`` + ``cv2.findContours`` + ``cv2.boundingRect``, one IoU
matrix over all boxes, and per threshold the max over its slice of ``iou.max(1)`` (recomputed
for every threshold, as the reference does). It runs in this process, on the same maps, beside
camkit with its compiled kernel ("kernel") and camkit with the kernel switched off ("fallback",
one contour search per distinct level set, what an install without a compiler runs); every count
is checked for equality. The "passes" column times the kernel's two union-find passes alone on
the same maps (already quantized), and "update/passes" is the whole ``BoxAccuracy.update`` of
the kernel path over that.

Maps: CAM-like maps (Gaussian blobs on a 14x14 feature grid, upsampled bicubically; "cluttered"
from a 28x28 grid with more background), and pixel noise; GT boxes: real CUB test boxes (a
subset), scaled with the protocol's truncation. ``--only kernel-cost`` prints the kernel's cost
per map in full-map contour searches per pixel of map side, the quantity that
``camkit.boxes._engine._SEARCHES_PER_SIDE`` sets.

    python benchmarks/bench_metrics.py --repeat 3 --workers 2

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
from camkit.boxes import _engine, threshold_grid  # noqa: E402
from camkit.boxes._levels import level_sets, quantize  # noqa: E402
from camkit.metrics import BoxAccuracy, PixelAP  # noqa: E402

CUB_TEST = REPO.parent / "shared" / "wsol-metadata" / "CUB" / "test"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def blob_map(rng: np.random.Generator, grid: int = 14, clutter: float = 0.15,
             size: int = 224) -> np.ndarray:
    """A CAM-like map: Gaussian blobs of several sizes plus clutter on a ``grid`` x ``grid``
    feature grid, upsampled bicubically to ``size`` x ``size`` (as CAMs are) and min-max
    normalized; ``grid == 0`` gives uniform pixel noise."""
    if grid == 0:
        return rng.random((size, size))
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float64)
    score = clutter * rng.random((grid, grid))
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(0, grid, 2)
        sy, sx = rng.uniform(0.04, 0.3, 2) * grid
        score += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 / (2 * sy**2)
                                                  + (xx - cx) ** 2 / (2 * sx**2)))
    score = cv2.resize(score, (size, size), interpolation=cv2.INTER_CUBIC)
    score -= score.min()
    return score / score.max()


#: name -> (feature grid, clutter amplitude): VGG-like 14x14 smooth maps, ResNet-like 28x28
#: maps with more background clutter (more contours per threshold), pixel noise (the most
#: contours: the straightforward implementation takes seconds a map on fine grids).
MAP_FAMILIES = {"smooth": (14, 0.15), "cluttered": (28, 0.4), "noisy": (0, 0.0)}

#: The rows: (family, size, grid interval, multi_contour, maps). The number of maps keeps each
#: straightforward run within a few seconds (its cost grows with the thresholds; noise costs it
#: about 4 ms a threshold at 224x224, so noise at the 0.0001 grid, 45 s a map, is left out).
CASES = [
    *[(family, 224, interval, True, maps) for family in ("smooth", "cluttered")
      for interval, maps in ((0.05, 40), (0.01, 20), (0.001, 10), (0.0001, 2))],
    *[("noisy", 224, interval, True, maps)
      for interval, maps in ((0.05, 2), (0.01, 1), (0.001, 1))],
    *[("smooth", size, interval, True, maps)
      for size, interval, maps in ((112, 0.01, 40), (112, 0.001, 20), (448, 0.01, 8),
                                   (448, 0.001, 4))],
    *[(family, 224, interval, False, maps)
      for family, interval, maps in (("smooth", 0.01, 20), ("cluttered", 0.01, 20),
                                     ("noisy", 0.01, 1), ("smooth", 0.001, 4),
                                     ("cluttered", 0.001, 4))],
]


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


def straightforward_correct(maps, gt_boxes, thresholds, iou_thresholds, multi_contour):
    correct = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(maps, gt_boxes, strict=True):
        scoremap = scoremap.astype(np.float64)  # the protocol takes float64 maps only
        boxes, counts = straightforward_boxes(scoremap, thresholds, multi_contour)
        iou = straightforward_iou(np.concatenate(boxes, axis=0), gt)
        best, start = [], 0
        for count in counts:
            rows = iou.max(1)  # the reference recomputes it for every threshold
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
def camkit_correct(maps, gt_boxes, thresholds, multi_contour, kernel=True):
    metric = BoxAccuracy(thresholds, multi_contour=multi_contour)
    saved = _engine.KERNEL
    if not kernel:
        _engine.KERNEL = None
    try:
        metric.update(maps, gt_boxes)
    finally:
        _engine.KERNEL = saved
    return metric.state_dict()["state"]["correct"]


def kernel_passes(quantized, wanted) -> None:
    for q, levels in zip(quantized, wanted, strict=True):
        _engine.KERNEL.level_boxes(q, levels, True)


def wanted_levels(maps, thresholds) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The quantized maps and the kernel's ``wanted`` table of each (as BoxAccuracy builds)."""
    quantized, wanted = [], []
    for scoremap in maps:
        q = quantize(scoremap.astype(np.float64))
        table = np.zeros(256, dtype=np.uint8)
        table[level_sets(q, thresholds).kept] = 1
        quantized.append(q)
        wanted.append(table)
    return quantized, wanted


#: Markdown rows collected during the run: (case, images, {implementation: samples}).
_ROWS: list[tuple[str, int, dict[str, list[float]]]] = []
_PIXEL_ROWS: list[tuple[str, int, dict[str, list[float]]]] = []
#: (maps, kernel time over one full-map search over the map side, per map).
_KERNEL_COSTS: list[tuple[str, list[float]]] = []
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


def _ratio(baseline: list[float], samples: list[float] | None) -> str:
    if not samples:
        return "–"
    return f"{statistics.median(baseline) / statistics.median(samples):.2f}×"


def markdown_tables(args) -> str:
    lines = [f"Machine: {_machine()}.", "",
             f"Maps of the size given, real CUB test boxes, one process, {args.repeat} repeats; "
             "images/s as median (min–max); ratio = median time of the straightforward "
             "implementation / median time of camkit; update/passes = camkit's whole update "
             "(kernel path) / the kernel's union-find passes alone.", "",
             "| case | maps | straightforward (im/s) | camkit, kernel (im/s) | ratio "
             "| camkit, fallback (im/s) | ratio | update/passes |",
             "|---|---|---|---|---|---|---|---|"]
    for case, count, samples in _ROWS:
        ref = samples["straightforward"]
        kernel, fallback = samples.get("kernel"), samples.get("fallback")
        passes = samples.get("passes")
        overhead = (f"{statistics.median(kernel) / statistics.median(passes):.2f}"
                    if kernel and passes else "–")
        lines.append(
            f"| {case} | {count} | {_rate(count, ref)} | "
            f"{_rate(count, kernel) if kernel else '–'} | {_ratio(ref, kernel)} | "
            f"{_rate(count, fallback) if fallback else '–'} | {_ratio(ref, fallback)} | "
            f"{overhead} |")
    for case, count, samples in _PIXEL_ROWS:
        lines += ["", f"{case}, {count} maps: straightforward "
                  f"{_rate(count, samples['straightforward'])} im/s, camkit "
                  f"{_rate(count, samples['camkit'])} im/s, "
                  f"{_ratio(samples['straightforward'], samples['camkit'])}"]
    if _KERNEL_COSTS:
        lines += ["", "The kernel's cost per map in full-map contour searches per pixel of map "
                  f"side (5 maps each; `_SEARCHES_PER_SIDE` is {_engine._SEARCHES_PER_SIDE}):",
                  "", "| maps | median | min–max |", "|---|---|---|"]
        lines += [f"| {name} | {statistics.median(costs):.3f} | {min(costs):.3f}–{max(costs):.3f} |"
                  for name, costs in _KERNEL_COSTS]
    for workers, count, one, many, control in _WORKERS:
        lines += ["", f"Scaling with processes (`camkit eval`, grid 0.001, all contours, {count} "
                  f"smooth float32 maps read from disk by the workers, pool start included): "
                  f"one process {_rate(count, one)} im/s, {workers} processes "
                  f"{_rate(count, many)} im/s, "
                  f"{statistics.median(one) / statistics.median(many):.2f}×. Control in the same "
                  f"repeats, a pure-Python loop in {workers} processes against one: "
                  f"{statistics.median(control):.2f}× ({min(control):.2f}–{max(control):.2f}×)."]
    return "\n".join(lines)


def bench_boxes(gt_boxes, args) -> None:
    for family, size, interval, multi_contour, count in CASES:
        grid, clutter = MAP_FAMILIES[family]
        rng = np.random.default_rng(args.seed)
        maps = np.stack([blob_map(rng, grid, clutter, size) for _ in range(count)])
        scale = size / 224
        boxes = [np.trunc(box * scale).astype(np.int64) for box in gt_boxes[:count]]
        thresholds = threshold_grid(interval)
        runs = {"straightforward": partial(straightforward_correct, maps, boxes,
                                           list(thresholds), (0.3, 0.5, 0.7), multi_contour)}
        if _engine.KERNEL is not None:
            runs["kernel"] = partial(camkit_correct, maps, boxes, thresholds, multi_contour)
        runs["fallback"] = partial(camkit_correct, maps, boxes, thresholds, multi_contour,
                                   kernel=False)
        if _engine.KERNEL is not None and multi_contour:
            runs["passes"] = partial(kernel_passes, *wanted_levels(maps, thresholds))
        for name, function in runs.items():  # warm-up: imports, first calls, allocator
            if name != "straightforward":
                function()
        values, samples = interleaved(runs, args.repeat)
        expected = values.pop("straightforward")
        for name in ("kernel", "fallback"):
            if name in values and not np.array_equal(expected, values[name]):
                raise SystemExit(f"MISMATCH ({name}): {family} {size} grid {interval} "
                                 f"multi={multi_contour}")
        case = (f"{family} {size}² grid {interval} "
                f"{'all contours' if multi_contour else 'largest contour'}")
        _ROWS.append((case, count, samples))
        ref = statistics.median(samples["straightforward"])
        cells = [f"{case:44s} {count / ref:9.1f} im/s"]
        for name in ("kernel", "fallback"):
            if name in samples:
                time_ = statistics.median(samples[name])
                cells.append(f"{name} {count / time_:8.1f} im/s {ref / time_:6.2f}x")
        if "passes" in samples and "kernel" in samples:
            overhead = statistics.median(samples["kernel"]) / statistics.median(samples["passes"])
            cells.append(f"update/passes {overhead:.2f}")
        print("  ".join(cells), flush=True)


def gaussian_map(size: int) -> np.ndarray:
    """One centred Gaussian blob: the map cheapest to search (one contour per level)."""
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 5) ** 2))
    return blob / blob.max()


def bench_kernel_cost(args) -> None:
    """The kernel's two passes on a map in units of one contour search of the whole map
    (threshold at the map's median, ``findContours`` with every contour, bounding boxes),
    divided by the map's side: the rule between the paths runs the kernel past
    ``_SEARCHES_PER_SIDE * side`` distinct sets."""
    if _engine.KERNEL is None:
        return
    makers = {"single blob": lambda rng, size: gaussian_map(size),
              "smooth": lambda rng, size: blob_map(rng, *MAP_FAMILIES["smooth"], size),
              "cluttered": lambda rng, size: blob_map(rng, *MAP_FAMILIES["cluttered"], size)}
    for family, make in makers.items():
        for size in (112, 224, 448):
            rng = np.random.default_rng(args.seed)
            costs = []
            for _ in range(5):
                q = quantize(make(rng, size))
                wanted = np.zeros(256, dtype=np.uint8)
                present = np.flatnonzero(np.bincount(q.ravel(), minlength=256))
                wanted[present[present > 0]] = 1
                level = int(np.median(q))

                def search(q=q, level=level) -> None:
                    binary = (q > level).view(np.uint8)
                    for contour in cv2.findContours(binary, cv2.RETR_TREE,
                                                    cv2.CHAIN_APPROX_SIMPLE)[0]:
                        cv2.boundingRect(contour)

                _, samples = interleaved({"kernel": partial(_engine.KERNEL.level_boxes, q,
                                                            wanted, True), "search": search}, 20)
                costs.append(min(samples["kernel"]) / min(samples["search"]) / size)
            name = f"{family} {size}²"
            _KERNEL_COSTS.append((name, costs))
            print(f"kernel cost on {name} maps: {statistics.median(costs):.3f} full-map "
                  f"searches per pixel of side ({min(costs):.3f}–{max(costs):.3f})", flush=True)


def bench_pixels(args) -> None:
    rng = np.random.default_rng(args.seed)
    maps64 = np.stack([blob_map(rng) for _ in range(args.images)])
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
    state = metric.state_dict()["state"]
    if not (np.array_equal(fg, state["foreground"]) and np.array_equal(bg, state["background"])):
        raise SystemExit("MISMATCH in PixelAP histograms")
    _PIXEL_ROWS.append(("PixelAP grid 0.01 (against two np.histogram per map)", len(maps64),
                        samples))
    ref, fast = statistics.median(samples["straightforward"]), statistics.median(samples["camkit"])
    print(f"PixelAP grid 0.01, {len(maps64)} maps: straightforward {len(maps64) / ref:.1f} im/s, "
          f"camkit {len(maps64) / fast:.1f} im/s, {ref / fast:.2f}x", flush=True)


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
    grid, clutter = MAP_FAMILIES["smooth"]
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
    parser.add_argument("--images", type=int, default=60, help="maps of the PixelAP row")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes of the camkit eval scaling run (1: skip it)")
    parser.add_argument("--workers-images", type=int, default=1000,
                        help="maps of the camkit eval scaling run (written to a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repeats, the implementations alternating in each (the printed "
                             "lines and --markdown give medians)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("boxes", "pixels", "kernel-cost", "workers"),
                        help="run one section only")
    parser.add_argument("--markdown", action="store_true",
                        help="also print Markdown tables (medians and min-max)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"OpenCV {cv2.__version__}, NumPy {np.__version__}; compiled kernel "
          f"{'built' if _engine.KERNEL is not None else 'NOT built'}; median of {args.repeat}")
    if args.only in (None, "kernel-cost"):
        bench_kernel_cost(args)
    if args.only in (None, "boxes"):
        bench_boxes(cub_boxes(max(count for *_, count in CASES)), args)
    if args.only in (None, "pixels"):
        bench_pixels(args)
    if args.only in (None, "workers") and args.workers > 1:
        bench_workers(args)
    print("all counts identical to the straightforward implementation")
    if args.markdown:
        print("<!-- markdown:start -->")
        print(markdown_tables(args))
        print("\nEvery count was identical to the straightforward implementation's.")
        print("<!-- markdown:end -->")


if __name__ == "__main__":
    main()
