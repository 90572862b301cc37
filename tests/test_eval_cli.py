"""``camkit eval`` end to end on tiny generated metadata and score maps."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

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
    with pytest.raises(SystemExit, match=r"'y/c\.jpg' \(.*\.npy\) is malformed: .*\[0, 1\]"):
        run(tmp_path, "--dataset", "CUB")
    np.save(tmp_path / "maps" / "y" / "c.jpg.npy", np.zeros((10, 10)))
    with pytest.raises(SystemExit, match=r"'y/c\.jpg' \(.*\.npy\) must have shape \(224, 224\)"):
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
    with pytest.raises(SystemExit, match=r"'y/c\.jpg' \(.*\.npy\) is malformed: .*\[0, 1\]"):
        run(tmp_path, "--dataset", "CUB", "--workers", "2")
    (tmp_path / "maps" / "y" / "c.jpg.npy").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"'y/c\.jpg' \(.*\.npy\) is not a valid .*empty"):
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


# ---------------------------------------------------------------------------------------------
# Hostile score-map files, output paths and signals
# ---------------------------------------------------------------------------------------------
def _npz(path):
    with open(path, "wb") as handle:
        np.savez(handle, scoremap=np.zeros((224, 224)))


def _truncated(path):
    np.save(path, np.zeros((224, 224)))
    path.write_bytes(path.read_bytes()[:1000])


def _header_only(path, shape=(10**12,)):
    # a header that promises a huge array: refused from the header, nothing allocated
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f8", "fortran_order": False, "shape": shape})


def _version_3(path):
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, np.zeros((224, 224)), version=(3, 0))


BAD_MAPS = [
    ("empty", lambda p: p.write_bytes(b""), r"is not a valid \.npy file: the file is empty"),
    ("npz", _npz, r"is not a valid \.npy file: it is a zip archive"),
    ("pickled", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
     r"is not a valid \.npy file: it holds pickled Python objects"),
    ("text", lambda p: p.write_text("0.5\n" * 10), r"is not a valid \.npy file: .*magic string"),
    ("truncated", _truncated, r"is not a valid \.npy file: .*"),
    ("version 3", _version_3, r"is not a valid \.npy file: format version 3\.0 is not supported"),
    ("huge header", _header_only, r"must have shape \(224, 224\), got \(1000000000000,\)"),
    ("3-D", lambda p: np.save(p, np.zeros((1, 224, 224))), r"must have shape \(224, 224\)"),
    ("int", lambda p: np.save(p, np.zeros((224, 224), dtype=np.int64)),
     r"must have dtype float16, float32 or float64, got int64"),
    ("bool", lambda p: np.save(p, np.zeros((224, 224), dtype=bool)),
     r"must have dtype float16, float32 or float64, got bool"),
    ("complex", lambda p: np.save(p, np.zeros((224, 224), dtype=complex)),
     r"must have dtype .*, got complex128"),
    ("nan", lambda p: np.save(p, np.full((224, 224), np.nan, dtype=np.float32)),
     r"is malformed: scoremap must be finite"),
    ("folder", lambda p: p.mkdir(), r"is not a regular file"),
    ("fifo", lambda p: os.mkfifo(p), r"is not a regular file"),
]


@pytest.mark.parametrize(("make", "match"), [case[1:] for case in BAD_MAPS],
                         ids=[case[0] for case in BAD_MAPS])
def test_bad_scoremap_files_are_one_clear_line(tmp_path, make, match):
    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    path = tmp_path / "maps" / "y" / "c.jpg.npy"
    path.unlink()
    make(path)
    with pytest.raises(SystemExit) as raised:
        run(tmp_path, "--dataset", "CUB")
    message = str(raised.value.code)
    assert "\n" not in message
    assert re.match(rf"camkit eval: score map of image id 'y/c\.jpg' \(.*c\.jpg\.npy\) {match}",
                    message), message
    assert not (tmp_path / "out.json").exists()


def test_scoremaps_resolving_outside_the_root_are_refused(tmp_path):
    maps = make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    reference = run(tmp_path, "--dataset", "CUB")["result"]
    path = tmp_path / "maps" / "y" / "c.jpg.npy"
    np.save(tmp_path / "elsewhere.npy", maps["y/c.jpg"])
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.npy")
    outside = r"'y/c\.jpg' \(.*c\.jpg\.npy\) resolves to .*elsewhere\.npy, outside --scoremap-root"
    with pytest.raises(SystemExit, match=outside):
        run(tmp_path, "--dataset", "CUB")
    # a link that stays inside the root is followed
    path.unlink()
    np.save(tmp_path / "maps" / "y" / "kept.npy", maps["y/c.jpg"])
    path.symlink_to("kept.npy")
    assert run(tmp_path, "--dataset", "CUB")["result"] == reference
    # a linked folder that leads outside is refused too
    (tmp_path / "maps" / "y").rename(tmp_path / "y_elsewhere")
    (tmp_path / "maps" / "y").symlink_to(tmp_path / "y_elsewhere")
    with pytest.raises(SystemExit, match=r"'y/c\.jpg' .* outside --scoremap-root"):
        run(tmp_path, "--dataset", "CUB")
    # the root itself may be a link
    (tmp_path / "maps" / "y").unlink()
    (tmp_path / "y_elsewhere").rename(tmp_path / "maps" / "y")
    (tmp_path / "maps_link").symlink_to(tmp_path / "maps")
    output = tmp_path / "linked.json"
    assert main(["eval", "--scoremap-root", str(tmp_path / "maps_link"), "--metadata-root",
                 str(tmp_path / "meta"), "--dataset", "CUB", "--output", str(output),
                 "--no-progress"]) == 0
    assert json.loads(output.read_text())["result"] == reference


def test_unusable_output_is_refused_before_the_evaluation(tmp_path, monkeypatch):
    import camkit._eval_cli as eval_cli

    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    (tmp_path / "file.txt").write_text("x")

    def must_not_run(args):
        raise AssertionError("the evaluation ran before the output path was checked")

    monkeypatch.setattr(eval_cli, "_evaluate", must_not_run)
    for output, match in [
        (tmp_path, r"output path .* is a directory, expected a file path"),
        (tmp_path / "file.txt" / "out.json", r"output path .* cannot be used: Not a directory"),
    ]:
        with pytest.raises(SystemExit, match=rf"^camkit eval: {match}"):
            main(["eval", "--scoremap-root", str(tmp_path / "maps"), "--metadata-root",
                  str(tmp_path / "meta"), "--dataset", "CUB", "--output", str(output)])


def test_symlinked_output_keeps_the_link_and_signal_handlers_are_restored(tmp_path):
    import signal

    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "out.json").symlink_to(tmp_path / "results" / "cub.json")
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    payload = run(tmp_path, "--dataset", "CUB", "--workers", "1")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert (tmp_path / "out.json").is_symlink()
    assert json.loads((tmp_path / "results" / "cub.json").read_text()) == payload


def _children(pid):
    """(pid, is a pool worker) of the live child processes of ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(entry.name), b"spawn_main" in command))
    return found


def _alive(pid):
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_signal_stops_the_workers_at_once(tmp_path, signum):
    """Each worker gets a chunk of 32 noisy maps that takes it over ten seconds; the signal
    must end both workers and the command within a few seconds, with status 128 + signal,
    one line on stderr and no result file."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    number = getattr(signal, signum)
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "noise.npy", np.random.default_rng(0).random((224, 224)))
    ids = [f"i{k}.jpg" for k in range(64)]
    for image_id in ids:
        os.link(maps / "noise.npy", maps / f"{image_id}.npy")
    folder = tmp_path / "meta" / "CUB" / "test"
    write(folder / "image_ids.txt", "".join(f"{i}\n" for i in ids))
    write(folder / "class_labels.txt", "".join(f"{i},0\n" for i in ids))
    write(folder / "image_sizes.txt", "".join(f"{i},448,224\n" for i in ids))
    write(folder / "localization.txt", "".join(f"{i},10,20,200,120\n" for i in ids))
    output = tmp_path / "out.json"
    command = [sys.executable, "-m", "camkit.cli", "eval", "--scoremap-root", str(maps),
               "--metadata-root", str(tmp_path / "meta"), "--dataset", "CUB", "--output",
               str(output), "--no-progress", "--workers", "2", "--no-multi-contour",
               "--cam-curve-interval", "0.001"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while sum(worker for _, worker in _children(process.pid)) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "no workers started"
            time.sleep(0.02)
        time.sleep(1.0)  # the workers are into their chunks
        workers = [pid for pid, worker in _children(process.pid) if worker]
        sent = time.monotonic()
        process.send_signal(number)
        _, stderr = process.communicate(timeout=60)  # EOF once no worker holds the pipes
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + number
    assert stderr.strip() == f"camkit eval: stopped by {signum}; no result written"
    assert elapsed < 5, f"the command took {elapsed:.1f} s to stop"
    assert not any(_alive(pid) for pid in workers)
    assert not output.exists()
