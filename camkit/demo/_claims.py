"""The two papers' claims that the demo can test, and the demo's outcome for each.

Outcomes are decided by fixed rules, written before any held-out seed was run:

* a comparison "A > B" *holds* when A beats B on every seed, is *mixed* when it does on the
  mean only, and *does not hold* otherwise;
* "T = 2 best" holds when T = 2 has the highest mean, is mixed when it is within
  ``_NEAR_BEST`` points of it;
* "λ flat from 0.2 to 0.99" holds when the λ means span at most ``_FLAT`` points, is mixed
  up to ``2 × _FLAT``; "λ = 1 collapses" holds when λ = 1 is at least ``_COLLAPSE`` points
  below the mean of the other momenta, is mixed when it is below by less;
* "flatter threshold curve" compares the share of thresholds at which the IoU-0.5 box
  accuracy is within ``_PLATEAU`` points of its peak.

The point margins follow the granularity of the figures, not a run: one image of a 500-image
split moves a MaxBoxAccV2 by 0.07 points and the spread over seeds is several points, so 1
point separates "best" from "about as good" and 2 points is "flat"; a collapse must exceed
the widest band still called mixed (4 points), hence 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._run import study_group

__all__ = ["claims_table"]

_NEAR_BEST = 1.0
_FLAT = 2.0
_COLLAPSE = 5.0
_PLATEAU = 5.0
_TARGET_GAIN = 5.0


def _comparison(claim: str, source: str, values: Sequence[float], unit: str) -> dict[str, Any]:
    gains = np.asarray(values, dtype=float)
    if gains.size and bool((gains > 0).all()):
        outcome = "holds"
    elif gains.size and gains.mean() > 0:
        outcome = "mixed"
    else:
        outcome = "does not hold"
    detail = (f"{unit} {gains.mean():+.1f} on the mean (per seed "
              + ", ".join(f"{g:+.1f}" for g in gains) + ")")
    return {"claim": claim, "source": source, "outcome": outcome, "measured": detail}


def _gains(runs: dict[int, dict[str, Any]], better: str, worse: str, key: str) -> list[float]:
    return [run["methods"][better][key] - run["methods"][worse][key] for run in runs.values()]


def _plateau_share(curve: Sequence[float]) -> float:
    values = np.asarray(curve, dtype=float)
    return float((values >= values.max() - _PLATEAU).mean())


def _study_means(runs: dict[int, dict[str, Any]], prefix: str) -> dict[str, float]:
    """Mean MaxBoxAccV2 of each study key ``prefix...`` (its ``/bank=k`` draws pooled) over
    the seeds."""
    pooled: dict[str, list[float]] = {}
    for run in runs.values():
        for name, figures in run.get("studies", {}).get("gap", {}).items():
            if name.startswith(prefix):
                pooled.setdefault(study_group(name), []).append(figures["max_box_acc_v2"])
    return {name: float(np.mean(values)) for name, values in pooled.items()}


def claims_table(runs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per testable claim: claim, source, outcome and the measured figures."""
    rows = [
        _comparison("CREAM > CAM in MaxBoxAccV2", "CREAM, Table 1",
                    _gains(runs, "CREAM", "CAM", "max_box_acc_v2"), "MaxBoxAccV2"),
        _comparison("CREAM > CAM in PxAP", "CREAM (OpenImages PxAP)",
                    _gains(runs, "CREAM", "CAM", "pxap"), "PxAP"),
        _comparison("RCAM > CAM in MaxBoxAccV2", "Rethinking CAM (CUB, ImageNet)",
                    _gains(runs, "RCAM", "CAM", "max_box_acc_v2"), "MaxBoxAccV2"),
        _comparison("RCAM > CAM in PxAP", "Rethinking CAM (OpenImages PxAP)",
                    _gains(runs, "RCAM", "CAM", "pxap"), "PxAP"),
    ]
    target = _comparison(f"CREAM on RCAM ≥ CAM + {_TARGET_GAIN:g} MaxBoxAccV2 (mean)",
                         "camkit's target", [g - _TARGET_GAIN for g in _gains(
                             runs, "CREAM on RCAM", "CAM", "max_box_acc_v2")],
                         "margin over CAM + 5:")
    # The target is on the mean: met on the mean but not on every seed is said as such.
    target["outcome"] = {"mixed": "holds on the mean only"}.get(target["outcome"],
                                                                target["outcome"])
    rows.append(target)
    iterations = _study_means(runs, "T=")
    if iterations:
        best = max(iterations, key=iterations.__getitem__)
        gap = iterations[best] - iterations.get("T=2", -np.inf)
        outcome = "holds" if best == "T=2" else "mixed" if gap <= _NEAR_BEST else \
            "does not hold"
        rows.append({"claim": "T = 2 EM iterations are best", "source": "CREAM, ablation of T",
                     "outcome": outcome, "measured": "MaxBoxAccV2 " + ", ".join(
                         f"{k} {v:.1f}" for k, v in iterations.items())})
    momenta = _study_means(runs, "lambda=")
    if momenta:
        updated = [v for k, v in momenta.items() if k != "lambda=1"]
        span = max(updated) - min(updated)
        outcome = "holds" if span <= _FLAT else "mixed" if span <= 2 * _FLAT else \
            "does not hold"
        measured = "MaxBoxAccV2 " + ", ".join(f"{k.replace('lambda', 'λ')} {v:.1f}"
                                             for k, v in momenta.items())
        rows.append({"claim": "λ from 0.2 to 0.99 gives about the same map",
                     "source": "CREAM, ablation of λ", "outcome": outcome,
                     "measured": f"{measured} (span {span:.1f} over λ < 1)"})
        if "lambda=1" in momenta:
            drop = float(np.mean(updated)) - momenta["lambda=1"]
            outcome = "holds" if drop >= _COLLAPSE else "mixed" if drop > 0 else \
                "does not hold"
            rows.append({"claim": "λ = 1 (embeddings never updated) collapses",
                         "source": "CREAM, ablation of λ", "outcome": outcome,
                         "measured": f"λ = 1 is {drop:.1f} below the mean of λ < 1"})
    shares = [(_plateau_share(run["methods"]["CREAM"]["curves"]["0.5"]),
               _plateau_share(run["methods"]["CAM"]["curves"]["0.5"]))
              for run in runs.values()]
    row = _comparison("CREAM's box accuracy is flatter around its best threshold than CAM's",
                      "CREAM, threshold sensitivity", [100.0 * (c - m) for c, m in shares],
                      f"share of thresholds within {_PLATEAU:g} points of the IoU-0.5 peak, "
                      "CREAM − CAM (points of %):")
    rows.append(row)
    return rows
