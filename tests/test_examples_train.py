"""Tests of the full-benchmark training example (``examples/train_wsol.py``, ``examples/wsol``).

Every run is tiny: a handful of 64x64 images in the reference layout (``_wsol_fixture``),
inputs of 32x32 (InceptionV3: 80x80), one or two optimizer steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, import_torchvision

import_torchvision()
sys.path.insert(0, str(REPO_ROOT / "examples"))

from _wsol_fixture import write_tiny_benchmark  # noqa: E402
from wsol.backbones import build_model, load_imagenet_weights  # noqa: E402
from wsol.checkpoint import CheckpointError  # noqa: E402
from wsol.data import ResumableDistributedSampler, WSOLImages  # noqa: E402
from wsol.regressor import _to_pixels  # noqa: E402
from wsol.run import SimulatedFailure, main  # noqa: E402

from camkit import normalize_map  # noqa: E402
from camkit.data.wsol_metadata import MetadataError  # noqa: E402

SIZES = {"vgg16": ("36", "32"), "resnet50": ("36", "32"), "inception_v3": ("88", "80")}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convolutions gain nothing from a second thread, and lose a lot when the cores
    # are shared with other jobs (threads spin-wait on each other).
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_benchmark(tmp_path_factory.mktemp("bench"))


def tiny_args(bench: tuple[Path, Path], output: Path, backbone: str = "vgg16",
              method: str = "cam", *extra: str) -> list[str]:
    resize, crop = SIZES[backbone]
    data_root, metadata_root = bench
    return ["--data-root", str(data_root), "--metadata-root", str(metadata_root),
            "--backbone", backbone, "--method", method, "--num-classes", "4",
            "--epochs", "1", "--batch-size", "2", "--lr", "0.01",
            "--resize-size", resize, "--crop-size", crop, "--workers", "0",
            "--no-progress", "--output", str(output), *extra]


def load_last(output: Path) -> dict:
    return torch.load(output / "last.pt", map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------
# Backbones (shapes on the meta device: no arithmetic)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("backbone", "large", "side", "channels"), [
    ("vgg16", False, 14, 1024), ("resnet50", True, 28, 2048), ("resnet50", False, 14, 2048),
    ("inception_v3", False, 14, 1024), ("inception_v3", True, 28, 1024)])
def test_feature_map_of_the_protocol(backbone, large, side, channels):
    with torch.device("meta"):
        net = build_model(backbone, 7, large_feature_map=large)
        logits, features = net(torch.empty(2, 3, 224, 224))
    assert tuple(features.shape) == (2, channels, side, side)
    assert tuple(logits.shape) == (2, 7)


@pytest.mark.parametrize(("backbone", "fast"), [
    ("vgg16", {"body.conv6", "fc"}), ("resnet50", {"body.layer4", "fc"}),
    ("inception_v3", {"body.SPG_A3_1b", "body.SPG_A3_2b", "fc"})])
def test_new_layers_get_the_larger_learning_rate(backbone, fast):
    with torch.device("meta"):
        net = build_model(backbone, 3, large_feature_map=False)
    slow_ids = {id(p) for p in net.parameter_groups()[0]}
    fast_names = {".".join(n.split(".")[:2]) if n.startswith("body.") else n.split(".")[0]
                  for n, p in net.named_parameters() if id(p) not in slow_ids}
    assert fast_names == fast


def test_rcam_uses_thresholded_pooling():
    from camkit import ThresholdedAvgPool

    with torch.device("meta"):
        net = build_model("vgg16", 3, large_feature_map=False, tap_theta=0.1)
    assert isinstance(net.pool, ThresholdedAvgPool) and net.pool.theta == 0.1


@pytest.mark.parametrize(("backbone", "factory"), [
    ("vgg16", "vgg16"), ("resnet50", "resnet50"), ("inception_v3", "inception_v3")])
def test_backbones_take_torchvision_imagenet_checkpoints(backbone, factory, torchvision_models):
    from wsol.backbones import build_body

    with torch.device("meta"):
        reference = getattr(torchvision_models, factory)(weights=None).state_dict()
        body, _, fresh, _ = build_body(backbone, large_feature_map=True)
    wanted = {k: v for k, v in body.state_dict().items() if not fresh or not k.startswith(fresh)}
    assert len(wanted) >= 26  # VGG16: 13 convolutions
    for key, value in wanted.items():
        assert key in reference, key
        assert reference[key].shape == value.shape, key


@pytest.mark.parametrize("method", ["cam", "rcam", "cream"])
def test_maps_are_those_of_camkit_attach(method):
    from wsol.engine import localization_maps

    import camkit
    from camkit.cream import ContextEmbeddingBank

    torch.manual_seed(0)
    net = build_model("vgg16", 4, large_feature_map=False).eval()
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 3])
    bank = ContextEmbeddingBank(4, net.channels)
    with torch.no_grad():
        _, features = net(images)
        bank.update(features, camkit.class_activation_map(features, net.fc.weight, labels),
                    labels)
        ours = localization_maps(net, features, labels, method=method, bank=bank, size=32)
    with camkit.attach(net, method=method, feature_layer="body", classifier="fc", logits=0,
                       example_input=images[:1]) as handle:
        if method == "cream":
            handle.bank.load_state_dict(bank.state_dict())
        theirs = handle.localize(images, labels=labels, boxes=False).scoremaps
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_imagenet_weights_load_from_a_local_file(tmp_path):
    from torchvision.models import vgg

    reference = vgg.make_layers(vgg.cfgs["D"])
    state = {f"features.{k}": v for k, v in reference.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(1000, 4096)  # ignored: not in the body
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = build_model("vgg16", 5, large_feature_map=False, pretrained=path)
    torch.testing.assert_close(net.body.features[28].weight, reference[28].weight)
    del state["features.0.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"vgg16\.pth.*lacks 1 tensors"):
        build_model("vgg16", 5, large_feature_map=False, pretrained=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"--pretrained file .*vgg16\.pth.* not a readable"):
        load_imagenet_weights(net.body, path, fresh_prefixes=("conv6.",))


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def test_augmentation_depends_only_on_seed_epoch_and_index(bench):
    data_root, metadata_root = bench
    ids = (metadata_root / "train" / "image_ids.txt").read_text().split()
    first = WSOLImages(data_root, ids, [0] * len(ids), train=True, resize=48, crop=32, seed=3)
    second = WSOLImages(data_root, ids, [0] * len(ids), train=True, resize=48, crop=32, seed=3)
    second[5]  # other draws in between change nothing
    torch.testing.assert_close(first[2][0], second[2][0], rtol=0, atol=0)
    first.set_epoch(1)
    assert not torch.equal(first[2][0], second[2][0])
    assert tuple(first[2][0].shape) == (3, 32, 32)


def test_sampler_shards_form_the_single_process_batches():
    data = list(range(12))
    whole = list(ResumableDistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=4))
    shards = [list(ResumableDistributedSampler(data, num_replicas=2, rank=r, shuffle=True,
                                               seed=4)) for r in (0, 1)]
    for step in range(3):  # global batch 4 = 2 per rank
        assert set(whole[4 * step:4 * step + 4]) == set(
            shards[0][2 * step:2 * step + 2] + shards[1][2 * step:2 * step + 2])
    skipping = ResumableDistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=4)
    skipping.set_skip(5)
    assert list(skipping) == whole[5:] and len(skipping) == 7


def test_regressor_boxes_back_to_pixels():
    normalized = torch.tensor([[0.25, 0.5, 0.75, 1.0], [0.9, 0.1, 0.1, 0.2]])
    assert _to_pixels(normalized, 32).tolist() == [[8, 16, 23, 31], [3, 3, 27, 5]]


# ---------------------------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------------------------
def test_malformed_metadata_names_file_and_line(tmp_path):
    data_root, metadata_root = write_tiny_benchmark(tmp_path)
    labels = metadata_root / "val" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[2] = lines[2].replace(",", ";")
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match=r"val/class_labels\.txt:3:"):
        main(tiny_args((data_root, metadata_root), tmp_path / "run"))


def test_missing_image_is_named(tmp_path):
    data_root, metadata_root = write_tiny_benchmark(tmp_path)
    (data_root / "test" / "c1" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"test/c1/1\.png.*test/image_ids\.txt"):
        main(tiny_args((data_root, metadata_root), tmp_path / "run"))


def test_unknown_backbone_names_the_option(bench, tmp_path, capsys):
    args = tiny_args(bench, tmp_path / "run")
    args[args.index("vgg16")] = "alexnet"
    with pytest.raises(SystemExit):
        main(args)
    assert "--backbone: invalid choice: 'alexnet'" in capsys.readouterr().err


def test_corrupt_or_foreign_checkpoint_is_named(bench, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "last.pt").write_bytes(b"\x00truncated")
    with pytest.raises(CheckpointError, match=r"last\.pt.* corrupt"):
        main(tiny_args(bench, output, "vgg16", "cam", "--resume"))
    with pytest.raises(FileExistsError, match=r"last\.pt.*--resume"):
        main(tiny_args(bench, output))
    torch.save({"format": "camkit-wsol-checkpoint", "version": 1}, output / "last.pt")
    with pytest.raises(CheckpointError, match=r"lacks \['config'"):
        main(tiny_args(bench, output, "vgg16", "cam", "--resume"))


def test_resume_from_a_corrupt_checkpoint_ends_with_one_line(bench, tmp_path):
    """The script itself (its ``__main__`` block, as ``python examples/train_wsol.py`` runs
    it): a clear ``CheckpointError`` line and a non-zero status, no traceback."""
    output = tmp_path / "run"
    output.mkdir()
    (output / "last.pt").write_bytes(b"\x00truncated")
    script = REPO_ROOT / "examples" / "train_wsol.py"
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1]]; "
            "from conftest import import_torchvision; import_torchvision(); "
            "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "tests"), str(script),
                           *tiny_args(bench, output, "vgg16", "cam", "--resume")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"train_wsol.py: error: checkpoint {str(output / 'last.pt')!r} is corrupt or not a "
        "PyTorch file: UnpicklingError: the file is truncated or holds more than tensors and "
        "plain containers"]


def test_checkpoint_that_does_not_fit_the_model_is_named(bench, tmp_path):
    from wsol.cli import parse_args
    from wsol.run import run_config

    output = tmp_path / "run"
    output.mkdir()
    args = tiny_args(bench, output, "vgg16", "cam", "--resume")
    torch.save({"format": "camkit-wsol-checkpoint", "version": 1,
                "config": run_config(parse_args(args)), "phase": "classifier", "epoch": 0,
                "step_in_epoch": 0, "model": {"fc.weight": torch.zeros(1)}, "optimizer": {},
                "scheduler": {}, "rng": []}, output / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt' does not fit this run: RuntimeError: "):
        main(args)


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", ["cam", "rcam", "cream"])
@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "inception_v3"])
def test_one_short_epoch(bench, tmp_path, backbone, method):
    output = tmp_path / "run"
    results = main(tiny_args(bench, output, backbone, method, "--max-steps-per-epoch", "1"))
    for split in ("val", "test"):
        figures = results[split]
        assert figures["images"] == 4
        assert figures["top5_cls"] == 100.0  # 4 classes: the label is always in the top 5
        assert 0.0 <= figures["max_box_acc_v2"] <= 100.0
        assert 0.0 <= figures["top1_loc"] <= figures["gt_known"] <= 100.0
    log = json.loads((output / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1] and log[0]["train"]["images"] == 2
    assert log[0]["lr"] == [0.01, 0.1]
    state = load_last(output)
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0
    if method == "cream":
        assert int(state["bank"]["seen"].sum()) == 2  # one step of two images
    else:
        assert state["bank"] is None


@pytest.mark.slow
def test_kill_mid_epoch_and_resume_ends_like_an_uninterrupted_run(bench, tmp_path):
    common = ("--epochs", "2", "--max-steps-per-epoch", "2", "--checkpoint-every-steps", "1")
    straight = main(tiny_args(bench, tmp_path / "a", "vgg16", "cream", *common))
    killed = tiny_args(bench, tmp_path / "b", "vgg16", "cream", *common)
    with pytest.raises(SimulatedFailure):
        main([*killed, "--simulate-failure-after-step", "1"])
    interrupted = load_last(tmp_path / "b")
    assert (interrupted["epoch"], interrupted["step_in_epoch"]) == (0, 1)
    resumed = main([*killed, "--resume"])
    assert resumed["val"] == straight["val"] and resumed["test"] == straight["test"]
    first, second = load_last(tmp_path / "a"), load_last(tmp_path / "b")
    for key in ("fg", "bg", "seen"):
        assert torch.equal(first["bank"][key], second["bank"][key])
    for name, value in first["model"].items():
        assert torch.equal(value, second["model"][name]), name
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in first["log"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in second["log"]]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    # 8 classes in 8 training images: no class repeats inside a global batch, so the order in
    # which the bank applies the samples of a batch (rank-major under DDP) cannot matter.
    bench = write_tiny_benchmark(tmp_path / "bench", classes=8)
    common = ("--num-classes", "8", "--epochs", "1", "--method", "cream")
    single = main([*tiny_args(bench, tmp_path / "one"), *common, "--batch-size", "4"])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(REPO_ROOT / "tests" / "_wsol_launcher.py"),
               *tiny_args(bench, tmp_path / "two"), *common, "--batch-size", "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    double = json.loads((tmp_path / "two" / "results.json").read_text())
    assert double["val"] == json.loads(json.dumps(single["val"]))
    assert double["test"] == json.loads(json.dumps(single["test"]))
    one, two = load_last(tmp_path / "one"), load_last(tmp_path / "two")
    assert torch.equal(one["bank"]["seen"], two["bank"]["seen"])
    # DDP averages per-process gradients: the same sum in another order, so parameters and
    # embeddings agree to float32 rounding, not bit for bit.
    for key in ("fg", "bg"):
        torch.testing.assert_close(one["bank"][key], two["bank"][key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_regressor_variant_and_scoremaps(bench, tmp_path):
    from camkit.data.wsol_metadata import load_wsol_metadata, resized_gt_boxes
    from camkit.metrics import BoxAccuracy

    output = tmp_path / "run"
    results = main(tiny_args(bench, output, "vgg16", "cream", "--regressor",
                             "--regressor-epochs", "1", "--save-scoremaps"))
    figures = results["regressor"]
    assert figures["pseudo_box_threshold"] == results["val"]["best_threshold"]["0.5"]
    for split in ("val", "test"):
        assert figures[split]["images"] == 4
        assert 0.0 <= figures[split]["top1_loc"] <= figures[split]["gt_known"] <= 100.0
    state = torch.load(output / "regressor.pt", map_location="cpu", weights_only=True)
    boxes = state["pseudo_boxes"]
    assert boxes.shape == (8, 4) and bool((boxes >= 0).all() & (boxes <= 1).all())
    assert bool((boxes[:, 0] < boxes[:, 2]).all() & (boxes[:, 1] < boxes[:, 3]).all())
    # the written score maps give back the reported MaxBoxAccV2
    meta = load_wsol_metadata(bench[1] / "test")
    gt = resized_gt_boxes(meta, (32, 32))
    maps = np.stack([np.load(output / "scoremaps" / "test" / f"{i}.npy") for i in meta.image_ids])
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
    metric = BoxAccuracy()
    metric.update(maps, [gt[i] for i in meta.image_ids])
    assert metric.compute().max_box_acc_v2 == results["test"]["max_box_acc_v2"]


@pytest.mark.slow
def test_masks_amp_and_compile(tmp_path):
    bench = write_tiny_benchmark(tmp_path / "bench", masks=True)
    results = main(tiny_args(bench, tmp_path / "run", "vgg16", "rcam", "--dataset",
                             "OpenImages", "--amp", "--compile", "--compile-backend", "eager",
                             "--max-steps-per-epoch", "1"))
    for split in ("val", "test"):
        assert 0.0 <= results[split]["pxap"] <= 100.0
        assert "max_box_acc_v2" not in results[split]
    with pytest.raises(ValueError, match="--regressor needs a benchmark with boxes"):
        main(tiny_args(bench, tmp_path / "again", "vgg16", "cam", "--dataset", "OpenImages",
                       "--regressor", "--max-steps-per-epoch", "1"))


# ---------------------------------------------------------------------------------------------
# WSOL training methods (--wsol-method)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["cam", "rcam", "cream"])
@pytest.mark.parametrize("wsol_method", ["cam", "has", "adl", "cutmix", "acol", "spg"])
def test_one_short_epoch_of_each_wsol_method(bench, tmp_path, wsol_method, method):
    output = tmp_path / "run"
    results = main(tiny_args(bench, output, "vgg16", method, "--wsol-method", wsol_method,
                             "--max-steps-per-epoch", "1", "--has-grid", "8"))
    log = json.loads((output / "log.json").read_text())
    assert log[0]["train"]["images"] == 2 and np.isfinite(log[0]["train"]["loss"])
    for split in ("val", "test"):
        figures = results[split]
        assert figures["images"] == 4
        for key in ("top1_cls", "max_box_acc_v2", "gt_known", "top1_loc"):
            assert np.isfinite(figures[key]) and 0.0 <= figures[key] <= 100.0, key
    state = load_last(output)
    assert state["config"]["wsol_method"] == wsol_method
    if method == "cream":  # under CutMix the bank learns each image's own label
        assert int(state["bank"]["seen"].sum()) == 2


def test_ivr_normalization_changes_only_the_maps(bench, tmp_path):
    runs = {norm: main(tiny_args(bench, tmp_path / norm, "vgg16", "cam", "--normalization",
                                 norm, "--max-steps-per-epoch", "1", "--save-scoremaps"))
            for norm in ("minmax", "ivr")}
    assert runs["ivr"]["test"]["top1_cls"] == runs["minmax"]["test"]["top1_cls"]
    for path in sorted((tmp_path / "minmax" / "scoremaps" / "test").rglob("*.npy")):
        plain = torch.from_numpy(np.load(path))
        ivr = torch.from_numpy(np.load(tmp_path / "ivr" / path.relative_to(tmp_path / "minmax")))
        # IVR of a min-max map is IVR of the raw map: both are affine-invariant.
        assert torch.allclose(ivr, normalize_map(plain[None], method="ivr")[0], atol=1e-6)
        assert bool((ivr == 0).float().mean() >= 0.45)  # the inferior values are removed


@pytest.mark.parametrize("method", ["cam", "rcam", "cream"])
@pytest.mark.parametrize("wsol_method", ["adl", "acol", "spg"])
def test_wsol_models_give_the_maps_of_camkit_attach(wsol_method, method):
    from wsol.engine import localization_maps

    import camkit
    from camkit.cream import ContextEmbeddingBank

    torch.manual_seed(0)
    net = build_model("vgg16", 4, large_feature_map=False, wsol_method=wsol_method,
                      tap_theta=0.1 if method == "rcam" else None).eval()
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 3])
    bank = ContextEmbeddingBank(4, net.channels)
    with torch.no_grad():
        _, features = net(images)
        bank.update(features, camkit.class_activation_map(features, net.cam_weight(), labels),
                    labels)
        ours = localization_maps(net, features, labels, method=method, bank=bank, size=32)
    feature_layer, classifier = net.cam_layer_names()
    kwargs = {"tap": 0.1} if method == "rcam" else {}
    with camkit.attach(net, method=method, feature_layer=feature_layer, classifier=classifier,
                       logits=0, example_input=images[:1], **kwargs) as handle:
        if method == "cream":
            handle.bank.load_state_dict(bank.state_dict())
        theirs = handle.localize(images, labels=labels, boxes=False).scoremaps
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_wsol_method_options_are_checked(bench, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(tiny_args(bench, tmp_path / "run", "vgg16", "cam", "--wsol-method", "mixup"))
    assert "--wsol-method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(tiny_args(bench, tmp_path / "run", "vgg16", "cam", "--has-prob", "1.5"))
    assert "--has-prob must lie in [0, 1]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Optional libraries: --help without torchvision, one clear line when a run needs it
# ---------------------------------------------------------------------------------------------
_WITHOUT_TORCHVISION = (
    "import runpy, sys\n"
    "sys.modules['torchvision'] = None\n"  # every `import torchvision` raises ImportError
    "sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "finally:\n    print('imported:', sorted(m for m in sys.modules if m.startswith('torch')"
    " and sys.modules[m] is not None), file=sys.stderr)"
)


def _run_without_torchvision(*argv: str) -> subprocess.CompletedProcess[str]:
    script = REPO_ROOT / "examples" / "train_wsol.py"
    return subprocess.run([sys.executable, "-c", _WITHOUT_TORCHVISION, str(script), *argv],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_help_works_without_torchvision():
    done = _run_without_torchvision("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: train_wsol.py")
    assert "--wsol-method" in done.stdout
    assert "{vgg16,resnet50,inception_v3,resnet50_se,mobilenet_v1}" in done.stdout
    assert done.stderr.strip() == "imported: []"  # neither torch nor torchvision for --help


def test_run_without_torchvision_ends_with_one_line_naming_the_extra(tmp_path):
    output = tmp_path / "run"
    done = _run_without_torchvision("--data-root", str(tmp_path), "--metadata-root",
                                    str(tmp_path), "--backbone", "vgg16", "--method", "cam",
                                    "--output", str(output))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    # The wrapper's own line first, then the script's one line.
    imported, error = done.stderr.strip().splitlines()
    assert imported.startswith("imported:")
    assert error.startswith("train_wsol.py: error: torchvision is needed to train (")
    assert "pip install 'camkit[examples]'" in error
    assert not output.exists()


def test_option_parser_lists_the_backbones_it_can_build():
    from wsol import backbones, cli

    assert cli.BACKBONE_NAMES == backbones.BACKBONE_NAMES


# ---------------------------------------------------------------------------------------------
# Bae et al.'s other backbones: ResNet50-SE and MobileNetV1 (randomly initialized)
# ---------------------------------------------------------------------------------------------
SIZES.update({"resnet50_se": ("36", "32"), "mobilenet_v1": ("36", "32")})


@pytest.mark.parametrize(("backbone", "large", "side", "channels"), [
    ("resnet50_se", True, 28, 2048), ("resnet50_se", False, 14, 2048),
    ("mobilenet_v1", False, 14, 1024), ("mobilenet_v1", True, 28, 1024)])
def test_rethinking_cam_backbones_have_the_wsol_layout(backbone, large, side, channels):
    with torch.device("meta"):
        net = build_model(backbone, 7, large_feature_map=large)
        logits, features = net(torch.empty(2, 3, 224, 224))
    assert tuple(features.shape) == (2, channels, side, side)
    assert tuple(logits.shape) == (2, 7)


def test_resnet50_se_has_one_squeeze_excitation_per_bottleneck():
    from wsol.backbones import SqueezeExcitation

    with torch.device("meta"):
        net = build_model("resnet50_se", 3, large_feature_map=True)
    blocks = [m for m in net.modules() if type(m).__name__ == "_SEBottleneck"]
    gates = [m for m in net.modules() if isinstance(m, SqueezeExcitation)]
    assert len(blocks) == len(gates) == 16  # 3 + 4 + 6 + 3 bottlenecks
    for block in blocks:
        out = block.bn3.num_features
        assert (block.se.fc1.in_channels, block.se.fc1.out_channels) == (out, out // 16)


def test_mobilenet_v1_is_the_standard_architecture():
    with torch.device("meta"):
        net = build_model("mobilenet_v1", 1000, large_feature_map=False)
    convs = [m for m in net.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 27  # stem + 13 x (depthwise, pointwise)
    assert sum(c.groups > 1 for c in convs) == 13
    # 1.0-width MobileNetV1 has 4.2M parameters, its 1000-way classifier included.
    assert 4.1e6 < sum(p.numel() for p in net.parameters()) < 4.3e6


def test_squeeze_excitation_gates_each_channel():
    from wsol.backbones import SqueezeExcitation

    torch.manual_seed(0)
    se = SqueezeExcitation(32, reduction=16)
    x = torch.randn(2, 32, 5, 5)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), x * gate)
    with pytest.raises(ValueError, match="channels >= reduction"):
        SqueezeExcitation(8, reduction=16)


@pytest.mark.parametrize("backbone", ["resnet50_se", "mobilenet_v1"])
def test_one_short_epoch_of_the_rethinking_cam_backbones(bench, tmp_path, backbone):
    output = tmp_path / "run"
    results = main(tiny_args(bench, output, backbone, "cam", "--max-steps-per-epoch", "1"))
    log = json.loads((output / "log.json").read_text())
    assert log[0]["train"]["images"] == 2 and np.isfinite(log[0]["train"]["loss"])
    for split in ("val", "test"):
        assert results[split]["images"] == 4
        assert 0.0 <= results[split]["max_box_acc_v2"] <= 100.0
    assert load_last(output)["config"]["backbone"] == backbone


@pytest.mark.parametrize("wsol_method", ["adl", "acol", "spg"])
@pytest.mark.parametrize("backbone", ["resnet50_se", "mobilenet_v1"])
def test_rethinking_cam_backbones_take_each_wsol_head(backbone, wsol_method):
    torch.manual_seed(0)
    net = build_model(backbone, 4, large_feature_map=False, wsol_method=wsol_method)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    net.train()
    output, _ = net(images, labels)
    assert output is not None
    net.eval()
    with torch.no_grad():
        logits, features = net(images)
    assert tuple(logits.shape) == (2, 4) and features.shape[1] == net.channels
    assert tuple(net.cam_weight().shape) == (4, net.channels)
