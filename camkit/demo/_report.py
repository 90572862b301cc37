"""Outputs of the demo: terminal table, ``results.json``, ``report.md`` and pictures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from camkit import viz
from camkit._io import write_json_atomic, write_text_atomic
from camkit.localizer import Localizer

from ._evaluate import method_of
from ._model import to_input

__all__ = ["format_table", "write_outputs", "write_seed_summary"]

_COLUMNS = (
    ("MaxBoxAccV2", "max_box_acc_v2"),
    ("IoU30", ("max_box_acc", "0.3")),
    ("IoU50", ("max_box_acc", "0.5")),
    ("IoU70", ("max_box_acc", "0.7")),
    ("PxAP", "pxap"),
    ("GT-known", "gt_known_loc"),
    ("Top-1 loc", "top1_loc"),
)


def _value(figures: dict[str, Any], key: str | tuple[str, str]) -> float:
    if isinstance(key, tuple):
        return float(figures[key[0]][key[1]])
    return float(figures[key])


def format_table(methods: dict[str, dict[str, Any]], *, markdown: bool = False) -> str:
    """One row per method with the localization figures (percent)."""
    header = ["method", *[title for title, _ in _COLUMNS]]
    rows = [[name, *[f"{_value(fig, key):.1f}" for _, key in _COLUMNS]]
            for name, fig in methods.items()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _overlay_grid(handles: dict[str, Localizer], split: dict[str, Tensor],
                  count: int) -> np.ndarray:
    index = torch.arange(min(count, split["images"].shape[0]))
    images = split["images"][index]
    x = to_input(images)
    labels = split["labels"][index]
    columns: list[list[np.ndarray]] = []
    gt = [viz.draw_boxes(img, box[None], color=(0, 220, 0), thickness=1)
          for img, box in zip(images, split["boxes"][index], strict=True)]
    columns.append(gt)
    for name, loc in handles.items():
        result = loc.localize(x, labels=labels, method=method_of(name)[0])
        column = []
        for b in range(len(index)):
            panel = viz.overlay_heatmap(images[b], result.scoremaps[b], alpha=0.5)
            panel = viz.draw_boxes(panel, split["boxes"][index][b][None], color=(0, 220, 0),
                                   thickness=1)
            boxes = result.boxes[b]
            assert boxes is not None  # localize extracts boxes by default
            column.append(viz.draw_boxes(panel, boxes, color=(255, 255, 255), thickness=1))
        columns.append(column)
    rows = [list(row) for row in zip(*columns, strict=True)]
    scale = max(1, 128 // images.shape[-1])
    if scale > 1:
        import cv2

        rows = [[cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
                 for tile in row] for row in rows]
    return viz.image_grid(rows, column_titles=["image + GT box", *handles])


def _curve_plot(methods: dict[str, dict[str, Any]], thresholds: list[float]) -> np.ndarray:
    curves = {name: (thresholds, fig["curves"]["0.5"]) for name, fig in methods.items()}
    return viz.plot_curves(curves, title="Box accuracy (IoU >= 0.5) vs CAM threshold",
                           xlabel="CAM threshold", ylabel="accuracy (%)", y_range=(0.0, 100.0))


def _markdown(results: dict[str, Any]) -> str:
    config = results["config"]
    lines = [
        "# camkit demo report",
        "",
        f"Synthetic WSOL benchmark: {config['num_classes']} classes, "
        f"{config['image_size']}×{config['image_size']} images, {config['train_size']} "
        f"training and {config['test_size']} test images, seed {config['seed']}.",
        f"Machine: {results['machine']}.",
        f"Time: {results['seconds']['total']:.0f} s in all (training "
        f"{results['seconds']['train']:.0f} s, evaluation {results['seconds']['evaluate']:.0f} s).",
        "",
        f"Classification top-1 on the test split: **{results['top1']:.1f}%**.",
        "",
        "## Localization (percent)",
        "",
        format_table(results["methods"], markdown=True),
        "",
        "MaxBoxAccV2 averages the best box accuracy at IoU 0.3, 0.5 and 0.7 over score-map "
        "thresholds (all contours); PxAP pools pixels over the split; GT-known and top-1 "
        "localization use one fixed threshold per method (CAM and CREAM: 0.2 × max; RCAM: "
        "0.35 × 90th percentile).",
        "",
        "## Where each method fires",
        "",
        "Mean normalized score on the class-specific part, on the rest of the object and on "
        "the background, and MaxBoxAccV2 measured against the part's box instead of the "
        "object's: a method that only finds the discriminative part scores high there.",
        "",
        "| method | part | rest of object | background | MaxBoxAccV2 vs part box |",
        "|---|---|---|---|---|",
    ]
    for name, fig in results["methods"].items():
        score = fig["mean_score"]
        lines.append(f"| {name} | {score['part']:.3f} | {score['rest_of_object']:.3f} | "
                     f"{score['background']:.3f} | {fig['part_max_box_acc_v2']:.1f} |")
    if results.get("ablation"):
        ablation = results["ablation"]
        lines += ["", "## Sensitivity studies (MaxBoxAccV2)", "",
                  "EM iterations T (T = 0 is CAM):", "",
                  "| " + " | ".join(k for k in ablation if k.startswith("T=")) + " |",
                  "|" + "---|" * sum(k.startswith("T=") for k in ablation),
                  "| " + " | ".join(f"{v['max_box_acc_v2']:.1f}" for k, v in ablation.items()
                                    if k.startswith("T=")) + " |",
                  "", "Momentum λ of the embedding update (λ = 1 never updates):", "",
                  "| " + " | ".join(k.replace("lambda", "λ") for k in ablation
                                    if k.startswith("lambda")) + " |",
                  "|" + "---|" * sum(k.startswith("lambda") for k in ablation),
                  "| " + " | ".join(f"{v['max_box_acc_v2']:.1f}" for k, v in ablation.items()
                                    if k.startswith("lambda")) + " |"]
    lines += ["", "## Pictures", ""]
    if config["overlays"]:
        lines += ["![overlays](overlays.png)", ""]
    lines += ["![threshold curves](threshold_curves.png)", ""]
    return "\n".join(lines)


def write_outputs(out: Path, results: dict[str, Any], handles: dict[str, Localizer],
                  split: dict[str, Tensor], overlays: int) -> list[Path]:
    """Write ``results.json``, ``report.md``, ``overlays.png``, ``threshold_curves.png``."""
    written = [write_json_atomic(out / "results.json", results)]
    if overlays:
        written.append(viz.save_png(out / "overlays.png", _overlay_grid(handles, split, overlays)))
    written.append(viz.save_png(out / "threshold_curves.png",
                                _curve_plot(results["methods"], results["thresholds"])))
    written.append(write_text_atomic(out / "report.md", _markdown(results)))
    return written


def _spread(values: Sequence[float]) -> str:
    mean = float(np.mean(values))
    return f"{mean:.1f} ± {float(np.std(values)):.1f} ({min(values):.1f}–{max(values):.1f})"


def write_seed_summary(out: Path, runs: dict[int, dict[str, Any]]) -> list[Path]:
    """Across-seed summary of several runs: ``summary.json`` and ``summary.md``.

    Mean ± standard deviation (min–max) of each method's MaxBoxAccV2 and PxAP, and of the
    gains over CAM, with every seed's figures beside them.
    """
    seeds = sorted(runs)
    methods = list(runs[seeds[0]]["methods"])
    keys = (("MaxBoxAccV2", "max_box_acc_v2"), ("PxAP", "pxap"))
    per_seed = {seed: {name: {key: runs[seed]["methods"][name][key] for _, key in keys}
                       for name in methods} for seed in seeds}
    summary: dict[str, Any] = {"seeds": seeds, "config": runs[seeds[0]]["config"],
                               "per_seed": per_seed, "top1": [runs[s]["top1"] for s in seeds]}
    lines = ["# camkit demo: several seeds", "",
             f"Seeds {', '.join(map(str, seeds))}; {summary['config']['num_classes']} classes; "
             f"classification top-1 {_spread(summary['top1'])}.", "",
             "Mean ± standard deviation (min–max) over the seeds, percent.", "",
             "| method | MaxBoxAccV2 | gain over CAM | PxAP | per seed (MaxBoxAccV2) |",
             "|---|---|---|---|---|"]
    for name in methods:
        boxes = [per_seed[s][name]["max_box_acc_v2"] for s in seeds]
        gains = [b - per_seed[s]["CAM"]["max_box_acc_v2"] for b, s in zip(boxes, seeds,
                                                                         strict=True)]
        pixels = [per_seed[s][name]["pxap"] for s in seeds]
        summary.setdefault("mean", {})[name] = {"max_box_acc_v2": float(np.mean(boxes)),
                                                "gain_over_cam": float(np.mean(gains)),
                                                "pxap": float(np.mean(pixels))}
        gain = "–" if name == "CAM" else _spread(gains)
        lines.append(f"| {name} | {_spread(boxes)} | {gain} | {_spread(pixels)} | "
                     + ", ".join(f"{b:.1f}" for b in boxes) + " |")
    lines.append("")
    return [write_json_atomic(out / "summary.json", summary),
            write_text_atomic(out / "summary.md", "\n".join(lines))]
