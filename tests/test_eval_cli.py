"""``camkit eval`` end to end on tiny generated metadata and score maps."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_wsol_metadata import write

from camkit.cli import main
from camkit.metrics import BoxAccuracy, PixelAP

IDS = ["x/a.jpg", "x/b.jpg", "y/c.jpg"]


def make_maps(root, seed=0):
    rng = np.random.default_rng(seed)
    maps = {}
    for image_id in IDS:
        scoremap = cv2.GaussianBlur(rng.random((224, 224)), (0, 0), 8)
        scoremap = (scoremap - scoremap.min()) / (scoremap.max() - scoremap.min())
        path = root / (image_id + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
        maps[image_id] = scoremap
    return maps


def make_cub(tmp_path):
    folder = tmp_path / "meta" / "CUB" / "test"
    write(folder / "image_ids.txt", "".join(f"{i}\n" for i in IDS))
    write(folder / "class_labels.txt", "".join(f"{i},0\n" for i in IDS))
    write(folder / "image_sizes.txt", "".join(f"{i},448,224\n" for i in IDS))
    write(folder / "localization.txt", "x/a.jpg,10,20,200,120\nx/b.jpg,0,0,447,223\n"
                                       "y/c.jpg,100,50,300,100\ny/c.jpg,0,0,40,40\n")
    return folder


def run(tmp_path, *extra):
    output = tmp_path / "out.json"
    code = main(["eval", "--scoremap-root", str(tmp_path / "maps"), "--metadata-root",
                 str(tmp_path / "meta"), "--output", str(output), "--no-progress", *extra])
    assert code == 0
    return json.loads(output.read_text())


def test_eval_boxes_end_to_end(tmp_path, capsys):
    maps = make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    payload = run(tmp_path, "--dataset", "CUB", "--split", "test")
    metric = BoxAccuracy()
    gt = [np.array([[5, 20, 100, 120]]), np.array([[0, 0, 223, 223]]),
          np.array([[50, 50, 150, 100], [0, 0, 20, 40]])]  # x scaled by 224/448
    metric.update(np.stack([maps[i] for i in IDS]), gt)
    assert payload["result"] == metric.compute().to_dict()
    assert payload["evaluated"] == 3 and payload["skipped_missing"] == 0
    assert "MaxBoxAccV2" in capsys.readouterr().out
    single = run(tmp_path, "--dataset", "CUB", "--no-multi-contour", "--iou-thresholds", "50",
                 "--cam-curve-interval", "0.05")
    assert list(single["result"]["max_box_acc"]) == ["0.5"]
    assert len(single["result"]["thresholds"]) == 20


def test_eval_missing_and_malformed_maps(tmp_path, capsys):
    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    (tmp_path / "maps" / "y" / "c.jpg.npy").unlink()
    with pytest.raises(SystemExit, match=r"no score map for image id 'y/c\.jpg'"):
        run(tmp_path, "--dataset", "CUB")
    payload = run(tmp_path, "--dataset", "CUB", "--skip-missing")
    assert payload["evaluated"] == 2 and payload["skipped_missing"] == 1
    assert "1 skipped" in capsys.readouterr().out
    np.save(tmp_path / "maps" / "y" / "c.jpg.npy", np.full((224, 224), 1.5))
    with pytest.raises(SystemExit, match=r"'y/c.jpg' is malformed: .*\[0, 1\]"):
        run(tmp_path, "--dataset", "CUB")
    np.save(tmp_path / "maps" / "y" / "c.jpg.npy", np.zeros((10, 10)))
    with pytest.raises(SystemExit, match=r"'y/c.jpg' must have shape \(224, 224\)"):
        run(tmp_path, "--dataset", "CUB")


def test_eval_masks_end_to_end(tmp_path):
    maps = make_maps(tmp_path / "maps", seed=1)
    folder = tmp_path / "meta" / "OpenImages" / "test"
    write(folder / "image_ids.txt", "".join(f"{i}\n" for i in IDS))
    write(folder / "class_labels.txt", "".join(f"{i},1\n" for i in IDS))
    write(folder / "image_sizes.txt", "")
    lines = "".join(f"{i},{i}_m.png,{i}_ig.png\n" for i in IDS)
    write(folder / "localization.txt", lines)
    masks = []
    for index, image_id in enumerate(IDS):
        instance = np.zeros((100, 120), dtype=np.uint8)
        instance[10 * index:60, 20:90] = 255
        ignore = np.zeros_like(instance)
        ignore[70:90, :] = 255
        (tmp_path / "masks" / image_id).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "masks" / f"{image_id}_m.png"), instance)
        cv2.imwrite(str(tmp_path / "masks" / f"{image_id}_ig.png"), ignore)
        size = (224, 224)
        fg = cv2.resize(instance, size, interpolation=cv2.INTER_NEAREST) > 0.5
        ig = cv2.resize(ignore, size, interpolation=cv2.INTER_NEAREST) > 0.5
        masks.append(np.where(fg, 1, np.where(ig, 255, 0)).astype(np.uint8))
    with pytest.raises(SystemExit, match="--mask-root is required"):
        run(tmp_path, "--dataset", "OpenImages")
    payload = run(tmp_path, "--dataset", "OpenImages", "--mask-root", str(tmp_path / "masks"))
    metric = PixelAP()
    metric.update(np.stack([maps[i] for i in IDS]), np.stack(masks))
    assert payload["result"]["pxap"] == metric.compute().pxap


@pytest.mark.slow
def test_eval_with_two_workers_equals_one(tmp_path):
    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    assert run(tmp_path, "--dataset", "CUB", "--workers", "2")["result"] == \
        run(tmp_path, "--dataset", "CUB")["result"]


@pytest.mark.slow
def test_eval_with_two_workers_stops_cleanly_on_bad_input(tmp_path):
    """A malformed map read by a worker, or metadata that is missing while the workers start:
    a clear error, no result file, and no worker process left behind."""
    import multiprocessing

    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    np.save(tmp_path / "maps" / "y" / "c.jpg.npy", np.full((224, 224), 1.5))
    with pytest.raises(SystemExit, match=r"'y/c.jpg' is malformed: .*\[0, 1\]"):
        run(tmp_path, "--dataset", "CUB", "--workers", "2")
    with pytest.raises(SystemExit, match="ILSVRC"):
        run(tmp_path, "--dataset", "ILSVRC", "--workers", "2")
    assert not (tmp_path / "out.json").exists()
    assert multiprocessing.active_children() == []


def test_worker_processes_run_single_threaded():
    """--workers N parallelizes over processes: each pins OpenCV and PyTorch to one thread so
    that N workers do not compete for the same cores."""
    import subprocess
    import sys

    code = ("import cv2, torch; from camkit._eval_cli import single_threaded_worker; "
            "cv2.setNumThreads(4); torch.set_num_threads(4); single_threaded_worker(); "
            "print(cv2.getNumThreads(), torch.get_num_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["1", "1"]
