"""``camkit demo``: an embedded WSOL benchmark that trains, localizes and reports on a CPU.

A classifier is trained with image labels only on a procedural dataset
(``camkit.data.synthetic``) in which each object's class is told by a small part, so CAM
fires on the part and misses the rest of the object. CAM, RCAM (a model trained with TAP,
then NWC + PaS), CREAM and CREAM on RCAM (and optionally HaS and ADL, with and without CREAM)
are scored with the reference metrics on a split generated apart from the training data:
``test`` for reported figures, ``val`` for design decisions.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import torch

from camkit.demo._config import HELD_OUT_SEEDS, DemoConfig
from camkit.demo._efficientnet import EfficientNetLite0, load_efficientnet_lite0
from camkit.demo._machine import machine

__all__ = ["HELD_OUT_SEEDS", "DemoConfig", "EfficientNetLite0", "load_efficientnet_lite0",
           "run_benchmark", "run_demo"]


def run_demo(config: DemoConfig, out: str | os.PathLike[str] | None = None, *,
             progress: bool | None = None, stream: TextIO | None = None) -> dict[str, Any]:
    """Train, localize and score one seed; print the table; write the outputs to ``out``.

    Runs with ``config.threads`` torch threads (restored afterwards). Returns the results as
    a JSON-able dict (the content of ``results.json``).
    """
    from camkit.demo._report import format_table, smoke_test_banner, write_outputs
    from camkit.demo._run import run_seed

    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    if config.smoke_test:
        print(smoke_test_banner(), file=stream)
    with _threads(config.threads):
        results, keep = run_seed(config, progress=progress)
        try:
            _print_seed(results, stream, format_table)
            results["seconds"]["total"] = time.perf_counter() - start
            if out is not None:
                paths = write_outputs(Path(out), results, keep)
                print(f"wrote {', '.join(str(p) for p in paths)}", file=stream)
        finally:
            keep.close()
    results["seconds"]["total"] = time.perf_counter() - start
    print(f"total time: {results['seconds']['total']:.0f} s", file=stream)
    return results


def run_benchmark(config: DemoConfig, seeds: tuple[int, ...] = HELD_OUT_SEEDS,
                  out: str | os.PathLike[str] | None = None, *, progress: bool | None = None,
                  stream: TextIO | None = None) -> dict[str, Any]:
    """``camkit demo``'s default: ``config.seed`` in full (table, pictures) plus the spread
    over ``seeds`` (never used for a decision), and the papers' claims tested on them.

    Writes ``results.json``, ``report.md`` and the pictures of ``config.seed`` to ``out``.
    """
    from camkit.demo._claims import claims_table
    from camkit.demo._report import (
        format_claims,
        format_spread,
        format_table,
        smoke_test_banner,
        summarize,
        write_benchmark,
    )
    from camkit.demo._run import run_seed

    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    if config.smoke_test:
        print(smoke_test_banner(), file=stream)
    seeds = tuple(dict.fromkeys(s for s in seeds if s != config.seed))
    with _threads(config.threads):
        print(f"== seed {config.seed}", file=stream)
        # The sensitivity studies feed the claims, which are tested on the held-out seeds.
        first = config.with_overrides(ablation=False) if seeds else config
        main, keep = run_seed(first, progress=progress)
        try:
            _print_seed(main, stream, format_table)
            runs: dict[int, dict[str, Any]] = {}
            for seed in seeds:
                print(f"== seed {seed} (held out)", file=stream)
                runs[seed], other = run_seed(config.with_overrides(seed=seed),
                                             progress=progress)
                other.close()
                _print_seed(runs[seed], stream, format_table)
            spread_runs = runs or {config.seed: main}
            results: dict[str, Any] = {
                "config": config.to_dict(), "machine": machine(config.threads),
                "seed": main, "held_out": runs,
                "summary": summarize(spread_runs),
                "claims": claims_table(spread_runs),
            }
            print(format_spread(results["summary"]), file=stream)
            print(format_claims(results["claims"]), file=stream)
            results["seconds"] = time.perf_counter() - start
            if out is not None:
                paths = write_benchmark(Path(out), results, keep)
                print(f"wrote {', '.join(str(p) for p in paths)}", file=stream)
        finally:
            keep.close()
    results["seconds"] = time.perf_counter() - start
    print(f"total time: {results['seconds']:.0f} s", file=stream)
    return results


def _print_seed(results: dict[str, Any], stream: TextIO, format_table: Any) -> None:
    top1 = ", ".join(f"{name} {value:.1f}%" for name, value in results["top1"].items())
    print(f"classification top-1 on {results['config']['eval_split']}: {top1}", file=stream)
    print(format_table(results["methods"]), file=stream)


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch threads, restoring the previous count on exit."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
