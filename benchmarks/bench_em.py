"""CREAM EM re-activation: eager vs compiled throughput, memory-traffic floor, bank overhead.

Run from the repository root:  python benchmarks/bench_em.py [--repeats 15] [--threads N]

Prints, per feature shape (B, C, h, w): ms per batch and images/s (median and interquartile
range over interleaved repeats, eager and compiled measured side by side), the speed-up of the
compiled path, and achieved time / memory-traffic floor, where the floor is reading the
features once per EM iteration at the copy bandwidth measured on a buffer of the same size
(STREAM convention: a copy moves 2x its size). Then the training overhead of
``ContextEmbeddingBank.update`` as a fraction of a forward+backward+SGD step of a small CNN.

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
import time
from collections.abc import Callable

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import camkit
from camkit._environment import cpu_model
from camkit.cream import ContextEmbeddingBank, cream_map

SHAPES = ((32, 512, 14, 14), (64, 1024, 14, 14), (32, 2048, 28, 28))
PAPER_MS_PER_IMAGE = 4.3
#: Clock used for every measurement; ``--clock cpu`` switches to this thread's CPU time,
#: which time-slicing by other processes on a shared machine inflates much less.
_CLOCK = time.perf_counter
#: Markdown rows collected during the run.
_EM_ROWS: list[str] = []
_BANK_ROWS: list[str] = []


def _machine() -> str:
    model = cpu_model()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{model}; {os.cpu_count()} logical CPUs; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}; load average {load}"
    )


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, alternating between them (seconds)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = _CLOCK()
            fn()
            times[name].append(_CLOCK() - start)
    return times


def _summary(samples: list[float]) -> tuple[float, float, float]:
    """(median, first quartile, third quartile) in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    if len(ms) < 4:
        return statistics.median(ms), ms[0], ms[-1]
    q1, _, q3 = statistics.quantiles(ms, n=4)
    return statistics.median(ms), q1, q3


def _fmt(summary: tuple[float, float, float]) -> str:
    median, q1, q3 = summary
    return f"{median:8.3f} ms [IQR {q1:.3f}-{q3:.3f}]"


def bench_em(repeats: int, iterations: int, seed: int, shapes: tuple[tuple[int, ...], ...]
             ) -> None:
    print(f"\n== EM re-activation, T = {iterations}, float32, with CAM calibration ==")
    for shape in shapes:
        batch, channels, height, width = shape
        gen = torch.Generator().manual_seed(seed)
        features = torch.randn(shape, generator=gen).relu_()
        fg = torch.randn(batch, channels, generator=gen)
        bg = torch.randn(batch, channels, generator=gen)
        cam = torch.randn(batch, height, width, generator=gen)
        nbytes = features.numel() * features.element_size()
        source = torch.rand(features.numel(), generator=gen)
        target = torch.empty_like(source)

        def run(compile_flag: bool, features=features, fg=fg, bg=bg, cam=cam) -> torch.Tensor:
            return cream_map(features, fg, bg, cam=cam, iterations=iterations,
                             compile=compile_flag)

        start = time.perf_counter()
        compiled_out = run(True)
        compile_s = time.perf_counter() - start
        eager_out = run(False)
        max_diff = float((compiled_out - eager_out).abs().max())
        for _ in range(2):  # warm caches and allocator
            run(True), run(False), target.copy_(source)
        times = _interleaved(
            {"eager": lambda: run(False), "compiled": lambda: run(True),
             "copy": lambda target=target, source=source: target.copy_(source)},
            repeats,
        )
        eager, compiled, copy = (_summary(times[k]) for k in ("eager", "compiled", "copy"))
        bandwidth = 2 * nbytes / (copy[0] / 1e3)  # bytes/s, read + write
        floor_ms = iterations * nbytes / bandwidth * 1e3
        print(f"\n(B, C, h, w) = {shape}: features {nbytes / 2**20:.1f} MiB; first compiled "
              f"call {compile_s:.1f} s; max |compiled - eager| = {max_diff:.2e}")
        print(f"  copy bandwidth {bandwidth / 1e9:6.1f} GB/s -> floor ({iterations} reads of "
              f"the features) {floor_ms:.3f} ms")
        for name, summary in (("eager", eager), ("compiled", compiled)):
            print(f"  {name:9s}{_fmt(summary)}  {batch / summary[0] * 1e3:9.0f} images/s  "
                  f"{summary[0] / batch:.4f} ms/image (paper: {PAPER_MS_PER_IMAGE} ms/image)  "
                  f"achieved/floor {summary[0] / floor_ms:5.2f}")
        print(f"  speed-up compiled vs eager: {eager[0] / compiled[0]:.2f}x")
        _EM_ROWS.append(
            f"| {shape} | {nbytes / 2**20:.1f} | {_md(eager)} | {_md(compiled)} | "
            f"{eager[0] / compiled[0]:.2f}× | {batch / eager[0] * 1e3:.0f} / "
            f"{batch / compiled[0] * 1e3:.0f} | {compiled[0] / batch:.4f} | {floor_ms:.3f} | "
            f"{eager[0] / floor_ms:.2f} / {compiled[0] / floor_ms:.2f} | {compile_s:.1f} | "
            f"{max_diff:.1e} |")


def _md(summary: tuple[float, float, float]) -> str:
    median, q1, q3 = summary
    return f"{median:.2f} ({q1:.2f}–{q3:.2f})"


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

    def update() -> None:
        bank.update(features, cam, labels)

    for _ in range(2):
        step(), update()
    times = _interleaved({"step": step, "update": update}, repeats)
    step_s, update_s = _summary(times["step"]), _summary(times["update"])
    print(f"  forward+backward+step {_fmt(step_s)}")
    print(f"  bank.update           {_fmt(update_s)}")
    print(f"  overhead: {update_s[0] / step_s[0] * 100:.2f}% of a training step (target < 3%)")
    _BANK_ROWS.append(f"| {batch} | {num_classes} | {_md(step_s)} | {_md(update_s)} | "
                      f"{update_s[0] / step_s[0] * 100:.2f}% |")


def markdown_tables(args: argparse.Namespace) -> str:
    return "\n".join([
        f"Machine: {_machine()}.", "",
        f"Seed {args.seed}, {args.repeats} interleaved repeats, clock: {args.clock}; times as "
        f"median (interquartile range) in ms per batch; EM with T = {args.iterations}, "
        "float32, CAM calibration. Floor: reading the features once per EM iteration at the "
        "copy bandwidth measured on a buffer of the same size.", "",
        "| (B, C, h, w) | features (MiB) | eager (ms) | compiled (ms) | speed-up "
        "| images/s eager / compiled | compiled ms/image | floor (ms) "
        "| achieved/floor eager / compiled | first compiled call (s) | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *_EM_ROWS, "",
        f"The CREAM paper reports an EM cost of {PAPER_MS_PER_IMAGE} ms/image over CAM.", "",
        "Training overhead of `ContextEmbeddingBank.update` (small CNN, 3×112×112 → "
        "256×14×14, forward + backward + SGD step):", "",
        "| batch | classes | training step (ms) | bank.update (ms) | overhead |",
        "|---|---|---|---|---|", *_BANK_ROWS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="only the first shape")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time, or this thread's CPU time (implies --threads 1)")
    parser.add_argument("--markdown", action="store_true",
                        help="also print Markdown tables (medians and interquartile ranges)")
    parser.add_argument("--kernel-cache", action="store_true",
                        help="load compiled CREAM kernels kept on disk by earlier runs (by "
                             "default the first compiled call compiles from scratch)")
    args = parser.parse_args()
    if not args.kernel_cache:  # the first-call column then times compilation, not a load
        os.environ["CAMKIT_DISABLE_KERNEL_CACHE"] = "1"
    global _CLOCK
    if args.clock == "cpu":
        _CLOCK = time.thread_time
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {_machine()}")
    print(f"seed {args.seed}; {args.repeats} interleaved repeats per measurement; "
          f"clock: {args.clock}")
    shapes = SHAPES[:1] if args.quick else SHAPES
    bench_em(args.repeats, args.iterations, args.seed, shapes)
    bench_bank(args.repeats, args.seed)
    if args.markdown:
        print("<!-- markdown:start -->")
        print(markdown_tables(args))
        print("<!-- markdown:end -->")


if __name__ == "__main__":
    main()
