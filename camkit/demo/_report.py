"""Text of the demo's outputs: terminal tables, spread over seeds, claims, ``report.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camkit._io import write_json_atomic, write_text_atomic

from ._machine import describe_machine
from ._pictures import draw_pictures
from ._run import Trained, study_group

__all__ = ["format_claims", "format_spread", "format_table", "smoke_test_banner", "summarize",
           "write_benchmark", "write_outputs"]

COLUMNS = (
    ("MaxBoxAccV2", "max_box_acc_v2"),
    ("IoU30", ("max_box_acc", "0.3")),
    ("IoU50", ("max_box_acc", "0.5")),
    ("IoU70", ("max_box_acc", "0.7")),
    ("PxAP", "pxap"),
    ("GT-known", "gt_known_loc"),
    ("Top-1 loc", "top1_loc"),
)


def smoke_test_banner() -> str:
    return ("SMOKE TEST (--quick): fewer images and epochs; the classifier is weak and these "
            "figures are not the benchmark's.")


def _value(figures: dict[str, Any], key: str | tuple[str, str]) -> float:
    if isinstance(key, tuple):
        return float(figures[key[0]][key[1]])
    return float(figures[key])


def _render(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_table(methods: dict[str, dict[str, Any]], *, markdown: bool = False) -> str:
    """One row per method with the localization figures (percent)."""
    rows = [[name, *[f"{_value(fig, key):.1f}" for _, key in COLUMNS]]
            for name, fig in methods.items()]
    return _render(["method", *[title for title, _ in COLUMNS]], rows, markdown)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std()), "min": float(array.min()),
            "max": float(array.max()), "values": [float(v) for v in array]}


def summarize(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation, min, max and per-seed values of every figure of every row
    (and of each classifier's top-1) over the runs."""
    first = next(iter(runs.values()))
    return {
        "seeds": list(runs),
        "top1": {model: _stats([run["top1"][model] for run in runs.values()])
                 for model in first["top1"]},
        "methods": {name: {title: _stats([_value(run["methods"][name], key)
                                          for run in runs.values()])
                           for title, key in COLUMNS}
                    for name in first["methods"]},
    }


def format_spread(summary: dict[str, Any], *, markdown: bool = False) -> str:
    """Mean ± standard deviation of each figure over the summarized seeds."""
    seeds = ", ".join(map(str, summary["seeds"]))
    rows = [[name, *[f"{fig[title]['mean']:.1f} ± {fig[title]['std']:.1f}"
                     for title, _ in COLUMNS]] for name, fig in summary["methods"].items()]
    table = _render(["method", *[title for title, _ in COLUMNS]], rows, markdown)
    top1 = ", ".join(f"{m} {s['mean']:.1f} ± {s['std']:.1f}%" for m, s in summary["top1"].items())
    return (f"mean ± standard deviation over seeds {seeds} (classification top-1: {top1}):\n\n"
            if markdown else f"mean ± std over seeds {seeds} (top-1: {top1})\n") + table


def format_claims(claims: list[dict[str, Any]], *, markdown: bool = False) -> str:
    rows = [[c["claim"], c["source"], c["measured"], c["outcome"]] for c in claims]
    if markdown:
        return _render(["claim", "source", "measured here", "outcome"], rows, True)
    return "\n".join(f"[{c['outcome']}] {c['claim']}: {c['measured']}" for c in claims)


def _focus_table(methods: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | part | rest of object | background | MaxBoxAccV2 vs part box |",
             "|---|---|---|---|---|"]
    for name, fig in methods.items():
        score = fig["mean_score"]
        lines.append(f"| {name} | {score['part']:.3f} | {score['rest_of_object']:.3f} | "
                     f"{score['background']:.3f} | {fig['part_max_box_acc_v2']:.1f} |")
    return lines


def _study_tables(studies: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Sensitivity and design-study variants, pooled over momentum-bank draws."""
    lines: list[str] = []
    for model, variants in studies.items():
        pooled: dict[str, list[tuple[float, float]]] = {}
        for name, fig in variants.items():
            pooled.setdefault(study_group(name), []).append(
                (fig["max_box_acc_v2"], fig["pxap"]))
        lines += ["", f"Model {model}: MaxBoxAccV2 and PxAP of each variant (momentum "
                  "variants: mean over the bank draws).", "",
                  "| variant | MaxBoxAccV2 | PxAP | draws |", "|---|---|---|---|"]
        for name, values in pooled.items():
            boxes, pixels = zip(*values, strict=True)
            lines.append(f"| {name.replace('lambda', 'λ')} | {np.mean(boxes):.1f} | "
                         f"{np.mean(pixels):.1f} | {len(values)} |")
    return lines


def _header(config: dict[str, Any], info: dict[str, Any]) -> list[str]:
    lines = ["# camkit demo report", ""]
    if config["smoke_test"]:
        lines += [f"**{smoke_test_banner()}**", ""]
    lines += [
        f"Synthetic WSOL benchmark: {config['num_classes']} classes, "
        f"{config['image_size']}×{config['image_size']} images, {config['train_size']} "
        f"training images; scored on {config['eval_size']} images of the "
        f"`{config['eval_split']}` split.",
        f"Machine: {describe_machine(info)}.",
    ]
    return lines


def _seed_section(results: dict[str, Any], level: str) -> list[str]:
    top1 = ", ".join(f"{m} {v:.1f}%" for m, v in results["top1"].items())
    seed = results["config"]["seed"]
    lines = [f"{level} Seed {seed} (percent)", "",
             f"Classification top-1: {top1}.", "",
             format_table(results["methods"], markdown=True), "",
             "MaxBoxAccV2 averages the best box accuracy at IoU 0.3, 0.5 and 0.7 over score-map "
             "thresholds (all contours); PxAP pools pixels over the split; GT-known and top-1 "
             "localization use one fixed threshold per row (CAM, CREAM, HaS, ADL: 0.2 × max; "
             "RCAM and CREAM on RCAM: 0.35 × 90th percentile).", "",
             f"{level}# Where each method fires (seed {seed})", "",
             "Mean normalized score on the class-specific part, on the rest of the object and "
             "on the background, and MaxBoxAccV2 against the part's box instead of the "
             "object's: a method that only finds the discriminative part scores high there.",
             "", *_focus_table(results["methods"])]
    if results.get("studies"):
        lines += ["", f"{level}# Studies (seed {seed})", "",
                  "T = EM iterations with the learned bank (T = 0 is CAM); λ = momentum of the "
                  "embedding update, each from random initial banks (λ = 1 never updates); "
                  "calibration/added = the maps of `cream_map`'s calibration and addition.",
                  *_study_tables(results["studies"])]
    return lines


def write_outputs(out: Path, results: dict[str, Any], trained: Trained) -> list[Path]:
    """One seed: ``results.json``, ``report.md``, ``overlays.png``, ``threshold_curves.png``."""
    written = [write_json_atomic(out / "results.json", results)]
    written += draw_pictures(out, results, trained)
    lines = [*_header(results["config"], results["machine"]),
             f"Time: {results['seconds'].get('total', 0.0):.0f} s.", "",
             *_seed_section(results, "##"), *_pictures_md(results["config"])]
    written.append(write_text_atomic(out / "report.md", "\n".join(lines) + "\n"))
    return written


def _pictures_md(config: dict[str, Any]) -> list[str]:
    lines = ["", "## Pictures", ""]
    if config["overlays"]:
        lines += ["![overlays](overlays.png)", ""]
    return [*lines, "![threshold curves](threshold_curves.png)"]


def write_benchmark(out: Path, results: dict[str, Any], trained: Trained) -> list[Path]:
    """The default run: ``results.json``, ``report.md`` and the first seed's pictures."""
    main = results["seed"]
    written = [write_json_atomic(out / "results.json", results)]
    written += draw_pictures(out, main, trained)
    summary = results["summary"]
    lines = [*_header(results["config"], results["machine"]),
             f"Time: {results['seconds']:.0f} s for {1 + len(results['held_out'])} seeds.", "",
             "## Held-out seeds", "",
             "No design choice was made on these seeds (the choices were made on validation "
             "splits; see docs/demo-dataset-design.md).", "",
             format_spread(summary, markdown=True), "",
             "## The papers' claims, tested here", "",
             f"On seeds {', '.join(map(str, summary['seeds']))}; the outcome rules are fixed "
             "in `camkit/demo/_claims.py`.", "",
             format_claims(results["claims"], markdown=True), "",
             *_seed_section(main, "##"), *_pictures_md(results["config"])]
    written.append(write_text_atomic(out / "report.md", "\n".join(lines) + "\n"))
    return written
