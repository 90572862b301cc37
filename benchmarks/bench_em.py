"""CREAM EM re-activation: eager vs ``torch.compile``, its share of a CNN forward, bank overhead.

Run from the repository root:  python benchmarks/bench_em.py [--repeats 15] [--threads N]

Prints, with medians and interquartile ranges over interleaved repeats:

* ``cream_map`` at (B, C, h, w) = (32, 512, 14, 14), float32, with the CAM calibration: eager
  against ``use_compile=True``, measured side by side; the first compiled call (compilation,
  from an empty inductor cache unless ``--inductor-cache``) is timed on its own and left out
  of the repeats;
* ``Localizer.localize`` (no boxes) with CAM and with CREAM, as a multiple of a plain
  no-gradient forward of the same CNN (a torchvision ResNet-50 with random weights);
* the training overhead of ``ContextEmbeddingBank.update`` as a fraction of a
  forward+backward+SGD step of a small CNN.

``--markdown`` also prints the results as Markdown tables between ``<!-- markdown:start -->``
and ``<!-- markdown:end -->`` lines, for ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import camkit
from camkit._environment import cpu_model
from camkit.cream import ContextEmbeddingBank, cream_map

EM_SHAPE = (32, 512, 14, 14)
PAPER_MS_PER_IMAGE = 4.3
#: Clock used for every measurement; ``--clock cpu`` switches to this thread's CPU time,
#: which time-slicing by other processes on a shared machine inflates much less.
_CLOCK = time.perf_counter
#: Markdown rows collected during the run.
_ROWS: dict[str, list[str]] = {"em": [], "localize": [], "bank": []}
Summary = tuple[float, float, float]
_SCHEMAS: list[torch.library.Library] = []


def _machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cpu_model()}; {os.cpu_count()} logical CPUs; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}; load average {load}"
    )


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, Summary]:
    """Time each function ``repeats`` times, alternating between them, after one warm-up
    call each; (median, first quartile, third quartile) in ms per function."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = _CLOCK()
            fn()
            times[name].append((_CLOCK() - start) * 1e3)
    return {name: _summary(samples) for name, samples in times.items()}


def _summary(ms: list[float]) -> Summary:
    ms = sorted(ms)
    if len(ms) < 4:
        return statistics.median(ms), ms[0], ms[-1]
    q1, _, q3 = statistics.quantiles(ms, n=4)
    return statistics.median(ms), q1, q3


def _fmt(summary: Summary) -> str:
    median, q1, q3 = summary
    return f"{median:9.3f} ms [IQR {q1:.3f}-{q3:.3f}]"


def _md(summary: Summary) -> str:
    median, q1, q3 = summary
    return f"{median:.2f} ({q1:.2f}–{q3:.2f})"


def bench_em(repeats: int, iterations: int, seed: int) -> None:
    batch, channels, height, width = EM_SHAPE
    print(f"\n== cream_map {EM_SHAPE}, T = {iterations}, float32, CAM calibration ==")
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(EM_SHAPE, generator=gen).relu_()
    fg = torch.randn(batch, channels, generator=gen)
    bg = torch.randn(batch, channels, generator=gen)
    cam = torch.randn(batch, height, width, generator=gen)

    def run(use_compile: bool) -> torch.Tensor:
        return cream_map(features, fg, bg, cam=cam, iterations=iterations,
                         use_compile=use_compile)

    start = time.perf_counter()
    compiled_out = run(True)
    compile_s = time.perf_counter() - start
    max_diff = float((compiled_out - run(False)).abs().max())
    times = _interleaved({"eager": lambda: run(False), "compiled": lambda: run(True)}, repeats)
    eager, compiled = times["eager"], times["compiled"]
    print(f"  first compiled call (compilation) {compile_s:.1f} s; "
          f"max |compiled - eager| = {max_diff:.2e}")
    for name, summary in times.items():
        print(f"  {name:9s}{_fmt(summary)}  {summary[0] / batch:.4f} ms/image "
              f"(paper: {PAPER_MS_PER_IMAGE} ms/image)")
    print(f"  compiled / eager time: {compiled[0] / eager[0]:.2f}")
    _ROWS["em"].append(
        f"| {EM_SHAPE} | {_md(eager)} | {_md(compiled)} | {compiled[0] / eager[0]:.2f} | "
        f"{eager[0] / batch:.3f} / {compiled[0] / batch:.3f} | {compile_s:.1f} | "
        f"{max_diff:.1e} |")


def _resnet50() -> nn.Module:
    """torchvision's ResNet-50, random weights. A CPU-only torch lacks torchvision's compiled
    operators, whose import then fails; declaring their schemas lets the models import."""
    try:
        import torchvision
    except (RuntimeError, ImportError):
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SCHEMAS.append(library)  # the schemas live as long as their library object
        import torchvision
    return torchvision.models.resnet50(weights=None)


def bench_localize(repeats: int, seed: int, batch: int) -> None:
    print(f"\n== localize (no boxes) against a plain forward, ResNet-50, {batch}x3x224x224 ==")
    torch.manual_seed(seed)
    model = _resnet50().eval()
    images = torch.randn(batch, 3, 224, 224)
    labels = torch.randint(0, 1000, (batch,))
    loc = camkit.attach(model, method="cream")
    loc(images, labels=labels)  # a bank update, so that CREAM uses trained embeddings

    def forward() -> None:
        with torch.no_grad():
            model(images)

    times = _interleaved({
        "forward": forward,
        "localize CAM": lambda: loc.localize(images, labels=labels, method="cam", boxes=False),
        "localize CREAM": lambda: loc.localize(images, labels=labels, boxes=False),
    }, repeats)
    plain = times["forward"][0]
    for name, summary in times.items():
        print(f"  {name:15s}{_fmt(summary)}  {summary[0] / plain:.3f}x the forward")
    _ROWS["localize"].append(
        f"| {batch} | {_md(times['forward'])} | {_md(times['localize CAM'])} | "
        f"{_md(times['localize CREAM'])} | {times['localize CAM'][0] / plain:.3f}× | "
        f"{times['localize CREAM'][0] / plain:.3f}× |")


class _SmallCNN(nn.Module):
    """Four strided conv blocks, 3x112x112 -> (256, 14, 14), GAP, linear classifier."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        widths = (3, 32, 64, 128, 256)
        layers: list[nn.Module] = []
        for index, (cin, cout) in enumerate(itertools.pairwise(widths)):
            stride = 2 if index < 3 else 1
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)
        return self.classifier(features.mean((2, 3))), features


def bench_bank(repeats: int, seed: int, batch: int = 32, num_classes: int = 200) -> None:
    print(f"\n== Training overhead of bank.update, batch {batch}, small CNN "
          "(3x112x112 -> 256x14x14) ==")
    torch.manual_seed(seed)
    model = _SmallCNN(num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    bank = ContextEmbeddingBank(num_classes, 256)
    images = torch.randn(batch, 3, 112, 112)
    labels = torch.randint(0, num_classes, (batch,))
    with torch.no_grad():
        _, features = model(images)
        cam = camkit.class_activation_map(features, model.classifier.weight, labels)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits, _ = model(images)
        nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()

    times = _interleaved({"step": step, "update": lambda: bank.update(features, cam, labels)},
                         repeats)
    step_s, update_s = times["step"], times["update"]
    print(f"  forward+backward+step {_fmt(step_s)}")
    print(f"  bank.update           {_fmt(update_s)}")
    print(f"  overhead: {update_s[0] / step_s[0] * 100:.2f}% of a training step (target < 3%)")
    _ROWS["bank"].append(f"| {batch} | {num_classes} | {_md(step_s)} | {_md(update_s)} | "
                         f"{update_s[0] / step_s[0] * 100:.2f}% |")


def markdown_tables(args: argparse.Namespace) -> str:
    return "\n".join([
        f"Machine: {_machine()}.", "",
        f"Seed {args.seed}, clock: {args.clock}; times as median (interquartile range) in ms "
        f"over interleaved repeats ({args.repeats} for the EM and the bank, "
        f"{args.forward_repeats} for `localize`). EM with T = {args.iterations}, float32, "
        "CAM calibration; the first compiled call is timed apart from the repeats"
        f"{' (inductor cache kept)' if args.inductor_cache else ' (empty inductor cache)'}.", "",
        "| (B, C, h, w) | eager (ms) | `use_compile=True` (ms) | compiled / eager "
        "| ms/image eager / compiled | first compiled call (s) | max abs diff |",
        "|---|---|---|---|---|---|---|", *_ROWS["em"], "",
        f"The CREAM paper reports an EM cost of {PAPER_MS_PER_IMAGE} ms/image over CAM.", "",
        "`localize(images, labels=labels, boxes=False)` against a plain no-gradient forward of "
        "the same torchvision ResNet-50 (random weights, eval mode, 224×224 inputs):", "",
        "| batch | forward (ms) | localize CAM (ms) | localize CREAM (ms) | CAM / forward "
        "| CREAM / forward |",
        "|---|---|---|---|---|---|", *_ROWS["localize"], "",
        "Training overhead of `ContextEmbeddingBank.update` (small CNN, 3×112×112 → "
        "256×14×14, forward + backward + SGD step):", "",
        "| batch | classes | training step (ms) | bank.update (ms) | overhead |",
        "|---|---|---|---|---|", *_ROWS["bank"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="repeats of the EM and bank measurements")
    parser.add_argument("--forward-repeats", type=int, default=5,
                        help="repeats of the ResNet-50 forward and localize measurements")
    parser.add_argument("--forward-batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time, or this thread's CPU time (implies --threads 1)")
    parser.add_argument("--inductor-cache", action="store_true",
                        help="keep inductor's on-disk cache (the first compiled call may then "
                             "load earlier runs' code instead of compiling)")
    parser.add_argument("--markdown", action="store_true",
                        help="also print Markdown tables (medians and interquartile ranges)")
    args = parser.parse_args()
    global _CLOCK
    if args.clock == "cpu":
        _CLOCK = time.thread_time
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {_machine()}")
    print(f"seed {args.seed}; clock: {args.clock}")
    with tempfile.TemporaryDirectory(prefix="bench-em-inductor-") as folder:
        if not args.inductor_cache:  # read by inductor when it compiles, not at import
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
        bench_em(args.repeats, args.iterations, args.seed)
    bench_localize(args.forward_repeats, args.seed, args.forward_batch)
    bench_bank(args.repeats, args.seed)
    if args.markdown:
        print("<!-- markdown:start -->")
        print(markdown_tables(args))
        print("<!-- markdown:end -->")


if __name__ == "__main__":
    main()
