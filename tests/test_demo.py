"""camkit demo: configuration, a tiny end-to-end run, the --quick command and its outputs."""

from __future__ import annotations

import json
import math

import pytest

from camkit.demo import DemoConfig, run_demo
from camkit.demo._report import format_table

pytest.importorskip("cv2")


def _tiny(**overrides):
    settings = {"train_size": 48, "test_size": 16, "epochs": 1, "image_size": 64,
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
    config = DemoConfig().with_overrides(seed=3, epochs=None)
    assert config.seed == 3 and config.epochs == DemoConfig().epochs
    assert DemoConfig.quick().train_size < DemoConfig().train_size


def test_format_table_rows_and_markdown():
    figures = {"max_box_acc_v2": 50.0, "max_box_acc": {"0.3": 80.0, "0.5": 50.0, "0.7": 20.0},
               "pxap": 40.25, "gt_known_loc": 30.0, "top1_loc": 29.0}
    text = format_table({"CAM": figures, "CREAM": figures})
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["method", "MaxBoxAccV2"]
    assert lines[2].split() == ["CAM", "50.0", "80.0", "50.0", "20.0", "40.2", "30.0", "29.0"]
    markdown = format_table({"CAM": figures}, markdown=True)
    assert markdown.splitlines()[2] == "| CAM | 50.0 | 80.0 | 50.0 | 20.0 | 40.2 | 30.0 | 29.0 |"


def _check_figures(results):
    assert 0.0 <= results["top1"] <= 100.0
    assert set(results["methods"]) == {"CAM", "RCAM", "CREAM"}
    for name, figures in results["methods"].items():
        for key in ("max_box_acc_v2", "pxap", "gt_known_loc", "top1_loc"):
            value = figures[key]
            assert math.isfinite(value) and 0.0 <= value <= 100.0, (name, key, value)
        accs = [figures["max_box_acc"][k] for k in ("0.3", "0.5", "0.7")]
        assert accs[0] >= accs[1] >= accs[2]
        assert figures["max_box_acc_v2"] == pytest.approx(sum(accs) / 3)
        assert figures["top1_loc"] <= figures["gt_known_loc"]


@pytest.mark.slow
def test_tiny_run_with_ablation_and_tap(tmp_path):
    results = run_demo(_tiny(ablation=True, tap=0.1), tmp_path, progress=False)
    _check_figures({**results, "methods": {k: v for k, v in results["methods"].items()
                                           if k != "RCAM+TAP"}})
    assert "RCAM+TAP" in results["methods"]
    ablation = results["ablation"]
    assert set(ablation) == {"T=0", "T=1", "T=2", "T=3", "T=4", "lambda=0.2", "lambda=0.6",
                             "lambda=0.8", "lambda=0.99", "lambda=1"}
    # T = 0 is plain CAM: the study and the main table compute it through different paths.
    assert ablation["T=0"]["max_box_acc_v2"] == results["methods"]["CAM"]["max_box_acc_v2"]
    report = (tmp_path / "report.md").read_text()
    assert "Sensitivity studies" in report and "| RCAM+TAP |" in report


@pytest.mark.slow
def test_quick_command_writes_valid_outputs(tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    from camkit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "MaxBoxAccV2" in printed and "CREAM" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["seed"] == 1
    _check_figures(results)
    assert len(results["methods"]["CAM"]["curves"]["0.5"]) == len(results["thresholds"])
    report = (out / "report.md").read_text()
    for name in ("| CAM |", "| RCAM |", "| CREAM |", "overlays.png"):
        assert name in report
    for picture in ("overlays.png", "threshold_curves.png"):
        image = cv2.imread(str(out / picture))
        assert image is not None and image.std() > 0, picture


def test_cli_rejects_bad_options(capsys):
    from camkit.cli import main

    with pytest.raises(SystemExit, match="camkit demo: num_classes must be >= 2, got 1"):
        main(["demo", "--classes", "1"])
    with pytest.raises(SystemExit, match="--threads must be >= 1"):
        main(["demo", "--threads", "0"])


def test_seed_summary_mean_spread_and_gains(tmp_path):
    from camkit.demo._report import write_seed_summary

    def run(cam, cream, top1):
        figures = {"CAM": {"max_box_acc_v2": cam, "pxap": 40.0},
                   "CREAM": {"max_box_acc_v2": cream, "pxap": 30.0}}
        return {"methods": figures, "config": {"num_classes": 8}, "top1": top1}

    write_seed_summary(tmp_path, {0: run(30.0, 40.0, 90.0), 1: run(32.0, 50.0, 94.0)})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert summary["mean"]["CREAM"] == {"max_box_acc_v2": 45.0, "gain_over_cam": 14.0,
                                        "pxap": 30.0}
    table = (tmp_path / "summary.md").read_text()
    assert "| CREAM | 45.0 ± 5.0 (40.0–50.0) | 14.0 ± 4.0 (10.0–18.0) |" in table
    assert "top-1 92.0 ± 2.0 (90.0–94.0)" in table
