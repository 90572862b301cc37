"""camkit demo: configuration, tiny end-to-end runs, the claims rules and the outputs."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from camkit.demo import DemoConfig, run_benchmark, run_demo
from camkit.demo._claims import claims_table
from camkit.demo._report import format_table, summarize

pytest.importorskip("cv2")

_ROWS = ("CAM", "RCAM", "CREAM", "CREAM on RCAM")
_OUTCOMES = {"holds", "mixed", "does not hold", "holds on the mean only"}


def _tiny(**overrides):
    settings = {"train_size": 48, "eval_size": 16, "epochs": 1, "image_size": 64,
                "batch_size": 16, "head_channels": 8, "overlays": 2, "num_classes": 3}
    settings.update(overrides)
    return DemoConfig.quick(**settings)


def test_config_validation():
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        DemoConfig(num_classes=1)
    with pytest.raises(ValueError, match="image_size must be >= 32, got 16"):
        DemoConfig(image_size=16)
    with pytest.raises(TypeError, match="epochs must be an int, got float"):
        DemoConfig(epochs=1.5)
    with pytest.raises(ValueError, match=r"tap must be in \[0.0, 1.0\], got 2.0"):
        DemoConfig(tap=2.0)
    with pytest.raises(ValueError, match=r"eval_split must be one of \('val', 'test'\), "
                                         r"got 'train'"):
        DemoConfig(eval_split="train")
    with pytest.raises(ValueError, match="added_map must be one of"):
        DemoConfig(added_map="same")
    with pytest.raises(ValueError, match="wsol_methods must be distinct names"):
        DemoConfig(wsol_methods=("has", "has"))
    with pytest.raises(ValueError, match="wsol_methods must be distinct names"):
        DemoConfig(wsol_methods=("cutmix",))
    config = DemoConfig().with_overrides(seed=3, epochs=None)
    assert config.seed == 3 and config.epochs == DemoConfig().epochs
    quick = DemoConfig.quick()
    assert quick.train_size < DemoConfig().train_size and quick.smoke_test
    assert not DemoConfig().smoke_test and DemoConfig().threads == 2


def test_format_table_rows_and_markdown():
    figures = {"max_box_acc_v2": 50.0, "max_box_acc": {"0.3": 80.0, "0.5": 50.0, "0.7": 20.0},
               "pxap": 40.25, "gt_known_loc": 30.0, "top1_loc": 29.0}
    text = format_table({"CAM": figures, "CREAM": figures})
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["method", "MaxBoxAccV2"]
    assert lines[2].split() == ["CAM", "50.0", "80.0", "50.0", "20.0", "40.2", "30.0", "29.0"]
    markdown = format_table({"CAM": figures}, markdown=True)
    assert markdown.splitlines()[2] == "| CAM | 50.0 | 80.0 | 50.0 | 20.0 | 40.2 | 30.0 | 29.0 |"


def _check_figures(results, rows=_ROWS):
    assert set(results["methods"]) == set(rows)
    for value in results["top1"].values():
        assert 0.0 <= value <= 100.0
    for name, figures in results["methods"].items():
        for key in ("max_box_acc_v2", "pxap", "gt_known_loc", "top1_loc"):
            value = figures[key]
            assert math.isfinite(value) and 0.0 <= value <= 100.0, (name, key, value)
        accs = [figures["max_box_acc"][k] for k in ("0.3", "0.5", "0.7")]
        assert accs[0] >= accs[1] >= accs[2]
        assert figures["max_box_acc_v2"] == pytest.approx(sum(accs) / 3)
        assert figures["top1_loc"] <= figures["gt_known_loc"]


@pytest.mark.slow
def test_tiny_validation_run_with_studies_and_methods(tmp_path):
    threads = torch.get_num_threads()
    config = _tiny(eval_split="val", ablation=True, ablation_banks=2, threads=1,
                   wsol_methods=("has", "adl"))
    results = run_demo(config, tmp_path, progress=False, stream=io.StringIO())
    assert torch.get_num_threads() == threads  # the run's thread count is restored
    _check_figures(results, (*_ROWS, "HaS", "HaS + CREAM", "ADL", "ADL + CREAM"))
    assert set(results["top1"]) == {"GAP", "TAP", "HaS", "ADL"}
    gap = results["studies"]["gap"]
    momenta = {f"lambda={m}/bank={k}" for m in ("0.2", "0.6", "0.8", "0.99", "1")
               for k in (0, 1)}
    compositions = {f"calibration={c}/added={a}" for c in ("cam", "rcam")
                    for a in ("cam", "rcam", "none")}
    assert set(gap) == {f"T={t}" for t in range(5)} | momenta | compositions
    assert set(results["studies"]["tap"]) == compositions
    # T = 0 is plain CAM and the default composition is CREAM: the studies compute them from
    # captured features, the table through attach's handle; both must agree.
    assert gap["T=0"]["max_box_acc_v2"] == results["methods"]["CAM"]["max_box_acc_v2"]
    assert gap["T=2"]["max_box_acc_v2"] == \
        gap["calibration=cam/added=cam"]["max_box_acc_v2"] == \
        results["methods"]["CREAM"]["max_box_acc_v2"]
    tap = results["studies"]["tap"][f"calibration={config.calibration_map}/added="
                                    f"{config.added_map}"]
    assert tap["pxap"] == results["methods"]["CREAM on RCAM"]["pxap"]
    assert results["machine"]["instruction_set"] == torch.backends.cpu.get_cpu_capability()
    assert results["machine"]["torch_threads"] == 1
    report = (tmp_path / "report.md").read_text()
    assert "SMOKE TEST" in report and "| HaS + CREAM |" in report and "`val` split" in report
    assert "calibration=rcam/added=none" in report


@pytest.mark.slow
def test_tiny_benchmark_spread_and_claims(tmp_path):
    stream = io.StringIO()
    results = run_benchmark(_tiny(ablation=True, ablation_banks=1), (7, 0, 8), tmp_path,
                            progress=False, stream=stream)
    assert list(results["held_out"]) == [7, 8]  # the first seed is not counted twice
    _check_figures(results["seed"])
    summary = results["summary"]
    assert summary["seeds"] == [7, 8]
    values = [results["held_out"][s]["methods"]["CREAM"]["max_box_acc_v2"] for s in (7, 8)]
    stats = summary["methods"]["CREAM"]["MaxBoxAccV2"]
    assert stats["values"] == values and stats["mean"] == pytest.approx(sum(values) / 2)
    claims = results["claims"]
    assert {c["outcome"] for c in claims} <= _OUTCOMES and len(claims) == 9
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["claims"] == claims and saved["machine"]["cores"] >= 1
    report = (tmp_path / "report.md").read_text()
    for text in ("## Held-out seeds", "## The papers' claims", "| CREAM on RCAM |",
                 "overlays.png", "SMOKE TEST"):
        assert text in report, text
    printed = stream.getvalue()
    assert printed.startswith("SMOKE TEST") and "== seed 8 (held out)" in printed


def _run(cam, cream, rcam, *, t=None, momenta=None, cam_curve=None, cream_curve=None):
    def figures(v2, pxap, curve):
        return {"max_box_acc_v2": v2, "pxap": pxap,
                "curves": {"0.5": curve or [0.0, v2, v2 / 2]}}
    studies = {f"T={k}": {"max_box_acc_v2": v} for k, v in enumerate(t or [])}
    for momentum, draws in (momenta or {}).items():
        studies.update({f"lambda={momentum}/bank={k}": {"max_box_acc_v2": v}
                        for k, v in enumerate(draws)})
    return {"methods": {"CAM": figures(cam, 40.0, cam_curve),
                        "CREAM": figures(cream, 45.0, cream_curve),
                        "RCAM": figures(rcam, 38.0, None),
                        "CREAM on RCAM": figures(rcam + 1, 50.0, None)},
            "studies": {"gap": studies}}


def test_claims_rules():
    runs = {1: _run(30.0, 40.0, 29.0, t=[30, 40, 45, 41, 39],
                    momenta={0.2: [44, 46], 0.8: [45, 45], 1: [30, 32]},
                    cam_curve=[0, 50, 0, 0], cream_curve=[48, 50, 49, 0]),
            2: _run(30.0, 42.0, 33.0, t=[30, 41, 44, 45.5, 39],
                    momenta={0.2: [44, 46], 0.8: [45, 45], 1: [30, 32]},
                    cam_curve=[0, 50, 0, 0], cream_curve=[48, 50, 49, 0])}
    claims = {c["claim"]: c for c in claims_table(runs)}
    assert claims["CREAM > CAM in MaxBoxAccV2"]["outcome"] == "holds"
    assert "+11.0 on the mean (per seed +10.0, +12.0)" in \
        claims["CREAM > CAM in MaxBoxAccV2"]["measured"]
    assert claims["RCAM > CAM in MaxBoxAccV2"]["outcome"] == "mixed"   # -1, +3
    assert claims["RCAM > CAM in PxAP"]["outcome"] == "does not hold"  # 38 < 40
    assert claims["CREAM on RCAM ≥ CAM + 5 MaxBoxAccV2 (mean)"]["outcome"] == "does not hold"
    runs[1]["methods"]["CREAM on RCAM"]["max_box_acc_v2"] = 50.0  # +20 and -2 over CAM
    assert {c["claim"]: c for c in claims_table(runs)}[
        "CREAM on RCAM ≥ CAM + 5 MaxBoxAccV2 (mean)"]["outcome"] == "holds on the mean only"
    runs[1]["methods"]["CREAM on RCAM"]["max_box_acc_v2"] = 30.0
    # T means: 2 -> 44.5, 3 -> 43.25: T = 2 is best.
    assert claims["T = 2 EM iterations are best"]["outcome"] == "holds"
    flat = claims["λ from 0.2 to 0.99 gives about the same map"]
    assert flat["outcome"] == "holds" and "span 0.0" in flat["measured"]
    collapse = claims["λ = 1 (embeddings never updated) collapses"]
    assert collapse["outcome"] == "holds" and "14.0 below" in collapse["measured"]
    flatter = next(c for name, c in claims.items() if name.startswith("CREAM's box accuracy"))
    assert flatter["outcome"] == "holds"  # 3 of 4 thresholds near the peak vs 1 of 4
    runs[2]["studies"]["gap"]["T=3"] = {"max_box_acc_v2": 49.0}
    assert {c["claim"]: c for c in claims_table(runs)}[
        "T = 2 EM iterations are best"]["outcome"] == "mixed"  # 44.5 vs 45.0 for T = 3


def test_claims_without_studies_skip_the_ablation_claims():
    claims = claims_table({0: _run(30.0, 20.0, 35.0)})
    names = [c["claim"] for c in claims]
    assert not any(name.startswith(("T =", "λ")) for name in names)
    assert {c["claim"]: c for c in claims}["CREAM > CAM in MaxBoxAccV2"]["outcome"] == \
        "does not hold"


def test_summarize_mean_and_spread():
    def run(cam, top1):
        figures = {"max_box_acc_v2": cam, "max_box_acc": {"0.3": 1.0, "0.5": 2.0, "0.7": 3.0},
                   "pxap": 40.0, "gt_known_loc": 10.0, "top1_loc": 9.0}
        return {"methods": {"CAM": figures}, "top1": {"GAP": top1}}
    summary = summarize({3: run(30.0, 90.0), 4: run(34.0, 94.0)})
    assert summary["seeds"] == [3, 4]
    assert summary["methods"]["CAM"]["MaxBoxAccV2"] == {
        "mean": 32.0, "std": 2.0, "min": 30.0, "max": 34.0, "values": [30.0, 34.0]}
    assert summary["top1"]["GAP"]["mean"] == 92.0


@pytest.mark.slow
def test_quick_command_is_labelled_a_smoke_test(tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    from camkit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("SMOKE TEST (--quick)")
    assert "MaxBoxAccV2" in printed and "CREAM on RCAM" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["seed"] == 1 and results["config"]["smoke_test"]
    _check_figures(results)
    assert len(results["methods"]["CAM"]["curves"]["0.5"]) == len(results["thresholds"])
    for picture in ("overlays.png", "threshold_curves.png"):
        image = cv2.imread(str(out / picture))
        assert image is not None and image.std() > 0, picture


def test_cli_rejects_bad_options(tmp_path):
    from camkit.cli import main

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(SystemExit, match=r"camkit demo: --out .*file exists and is not a folder"):
        main(["demo", "--out", str(not_a_folder)])

    with pytest.raises(SystemExit, match="camkit demo: num_classes must be >= 2, got 1"):
        main(["demo", "--classes", "1"])
    with pytest.raises(SystemExit, match="camkit demo: threads must be"):
        main(["demo", "--threads", "0"])


def test_render_split_is_the_same_with_worker_processes():
    from camkit.data.synthetic import SyntheticWSOL, SyntheticWSOLConfig
    from camkit.demo._train import render_split

    dataset = SyntheticWSOL(SyntheticWSOLConfig(seed=4, num_classes=3, image_size=48,
                                                split="val", length=40))
    serial = render_split(dataset, "render", False, 0)
    parallel = render_split(dataset, "render", False, 2)
    assert serial.keys() == parallel.keys()
    for key in serial:
        assert torch.equal(serial[key], parallel[key]), key
    item = dataset[37]
    assert torch.equal(serial["images"][37], (item["image"] * 255).round().to(torch.uint8))
    assert torch.equal(serial["part_masks"][37], item["part_mask"])
    assert serial["labels"][37] == item["label"]
