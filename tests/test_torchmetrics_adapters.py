"""camkit.metrics.torchmetrics: the camkit metrics as torchmetrics.Metric, in MetricCollection,
across devices and processes, and logged by Lightning."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, import_torchvision

import_torchvision()  # torchmetrics imports torchvision when it is installed
torchmetrics = pytest.importorskip("torchmetrics")

from torchmetrics import MetricCollection  # noqa: E402

from camkit.metrics import (  # noqa: E402
    BoxAccuracy,
    EnergyPointingGame,
    LocalizationAccuracy,
    PixelAP,
    PointingGame,
)
from camkit.metrics.torchmetrics import (  # noqa: E402
    BoxAccuracyMetric,
    EnergyPointingGameMetric,
    LocalizationAccuracyMetric,
    PixelAPMetric,
    PointingGameMetric,
)


def batches(seed: int = 0, count: int = 3, size: int = 24):
    """``count`` batches of 4: maps in [0, 1], boxes, masks, logits and labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(count):
        maps = np.empty((4, size, size))
        boxes = []
        for index in range(4):
            cy, cx = rng.uniform(4, size - 4, 2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2, 5) ** 2))
            maps[index] = 0.9 * blob + 0.1 * rng.random((size, size))
            x0, y0 = rng.integers(0, size // 2, 2)
            boxes.append(np.array([[x0, y0, x0 + rng.integers(3, size // 2),
                                    y0 + rng.integers(3, size // 2)]]))
        masks = (maps > 0.5).astype(np.uint8)
        masks[:, 0, 0] = 1
        out.append({"scoremaps": maps, "gt_boxes": boxes, "masks": masks,
                    "logits": rng.normal(size=(4, 6)), "labels": rng.integers(0, 6, 4)})
    return out


CASES = [
    (BoxAccuracyMetric, BoxAccuracy, {}, ("scoremaps", "gt_boxes"),
     lambda r: r.max_box_acc_v2),
    (BoxAccuracyMetric, BoxAccuracy, {"iou_thresholds": (0.5,), "multi_contour": False},
     ("scoremaps", "gt_boxes"), lambda r: r.max_box_acc[0.5]),
    (PixelAPMetric, PixelAP, {"thresholds": np.linspace(0, 0.99, 34)}, ("scoremaps", "masks"),
     lambda r: r.pxap),
    (PointingGameMetric, PointingGame, {"tolerance": 3}, ("scoremaps", "gt_boxes"),
     lambda r: r.accuracy),
    (PointingGameMetric, PointingGame, {"ties": "any", "target": "masks"},
     ("scoremaps", "masks"), lambda r: r.accuracy),
    (EnergyPointingGameMetric, EnergyPointingGame, {}, ("scoremaps", "gt_boxes"),
     lambda r: r.energy),
]


def call_args(batch: dict, names: tuple[str, ...], tensors: bool) -> dict:
    args = {name: batch[name] for name in names}
    if tensors:
        args["scoremaps"] = torch.from_numpy(args["scoremaps"]).float()
    return args


@pytest.mark.parametrize(("adapter", "metric", "kwargs", "names", "headline"), CASES)
def test_adapters_count_and_compute_exactly_as_the_camkit_metrics(adapter, metric, kwargs,
                                                                    names, headline):
    wrapped, reference = adapter(**kwargs), metric(**kwargs)
    for index, batch in enumerate(batches()):
        args = call_args(batch, names, tensors=bool(index % 2))
        wrapped.update(**args)
        reference.update(**args)
    expected = reference.state_dict()["state"]
    for name, counts in expected.items():
        state = getattr(wrapped, name)
        assert state.dtype == torch.int64 and state.tolist() == counts, name
        assert wrapped._reductions[name] is torchmetrics.utilities.dim_zero_sum
    value = wrapped.compute()
    assert value.dtype == torch.float64 and value.ndim == 0
    assert value.item() == headline(reference.compute())  # the same float, bit for bit
    assert wrapped.to_camkit().state_dict() == reference.state_dict()


def test_localization_adapter_returns_a_dict_of_the_three_accuracies():
    wrapped, reference = LocalizationAccuracyMetric(theta=0.3), LocalizationAccuracy(theta=0.3)
    for batch in batches(1):
        args = call_args(batch, ("scoremaps", "gt_boxes", "logits", "labels"), tensors=True)
        wrapped.update(**args)
        reference.update(**args)
    value, expected = wrapped.compute(), reference.compute()
    assert set(value) == {"gt_known", "top1", "top5"}
    assert {k: v.item() for k, v in value.items()} == {
        "gt_known": expected.gt_known, "top1": expected.top1, "top5": expected.top5}
    assert all(v.dtype == torch.float64 for v in value.values())


def test_metric_collection_routes_arguments_by_name_and_keeps_options_apart():
    """One call feeds every metric the arguments its update names; two metrics of one class
    with different options never share states, even when their first counts agree."""
    collection = MetricCollection({
        "box": BoxAccuracyMetric(),
        "pxap": PixelAPMetric(),
        "loc": LocalizationAccuracyMetric(),
        "point": PointingGameMetric(),
        "point_exact": PointingGameMetric(tolerance=0),
        "point_masks": PointingGameMetric(target="masks"),
        "energy": EnergyPointingGameMetric(),
    })
    singles = {"box": BoxAccuracy(), "pxap": PixelAP(), "loc": LocalizationAccuracy(),
               "point": PointingGame(), "point_exact": PointingGame(tolerance=0),
               "point_masks": PointingGame(target="masks"), "energy": EnergyPointingGame()}
    data = batches(2)
    first = dict(data[0])
    first["scoremaps"] = np.zeros_like(first["scoremaps"])  # every map points at (0, 0)
    first["gt_boxes"] = [np.array([[0, 0, 3, 3]])] * 4  # a hit at any tolerance
    for batch in [first, *data[1:]]:
        collection.update(**batch)
        for name, metric in singles.items():
            if name == "loc":
                metric.update(batch["scoremaps"], batch["gt_boxes"], batch["logits"],
                              batch["labels"])
            elif name in ("box", "pxap"):
                metric.update(batch["scoremaps"], batch["gt_boxes" if name == "box" else "masks"])
            else:
                metric.update(batch["scoremaps"], batch["gt_boxes"], masks=batch["masks"])
    values = {name: value.item() for name, value in collection.compute().items()}
    loc = singles["loc"].compute()
    assert values == {
        "box": singles["box"].compute().max_box_acc_v2,
        "pxap": singles["pxap"].compute().pxap,
        "gt_known": loc.gt_known, "top1": loc.top1, "top5": loc.top5,
        "point": singles["point"].compute().accuracy,
        "point_exact": singles["point_exact"].compute().accuracy,
        "point_masks": singles["point_masks"].compute().accuracy,
        "energy": singles["energy"].compute().energy,
    }
    assert values["point"] != values["point_exact"]
    assert all(len(group) == 1 for group in collection.compute_groups.values())


def test_to_device_and_dtype_keep_the_counts_int64():
    metric = BoxAccuracyMetric()
    batch = batches(3)[0]
    metric.update(batch["scoremaps"], batch["gt_boxes"])
    expected = metric.compute()
    moved = metric.to("cpu").to(torch.float16).half().double()
    assert moved.correct.dtype == torch.int64 and moved.device == torch.device("cpu")
    assert moved.compute().item() == expected.item()
    assert moved.set_dtype(torch.float32) is moved
    assert moved.correct.dtype == torch.int64 and moved.dtype == torch.float32
    assert moved.compute().dtype == torch.float32
    assert moved.set_dtype("float64").compute().item() == expected.item()
    with pytest.raises(TypeError, match="dst_type must be a floating torch.dtype, got "
                                        "torch.int32"):
        moved.set_dtype(torch.int32)
    with pytest.raises(TypeError, match="dst_type must be a floating torch.dtype, got "
                                        "'nonsense'"):
        moved.set_dtype("nonsense")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_states_move_to_cuda_and_back():
    metric = PointingGameMetric().to("cuda")
    batch = batches(4)[0]
    metric.update(torch.from_numpy(batch["scoremaps"]).cuda(), batch["gt_boxes"])
    assert metric.hits.device.type == "cuda" and metric.compute().device.type == "cuda"
    expected = PointingGame()
    expected.update(batch["scoremaps"], batch["gt_boxes"])
    assert metric.to("cpu").compute().item() == expected.compute().accuracy


def test_forward_merge_state_reset_and_clone():
    data = batches(5)
    metric = PointingGameMetric(tolerance=2)
    batch_values = [metric(b["scoremaps"], b["gt_boxes"]).item() for b in data]
    for value, batch in zip(batch_values, data, strict=True):
        single = PointingGame(tolerance=2)
        single.update(batch["scoremaps"], batch["gt_boxes"])
        assert value == single.compute().accuracy  # forward: the batch's own value
    whole = PointingGame(tolerance=2)
    for batch in data:
        whole.update(batch["scoremaps"], batch["gt_boxes"])
    assert metric.compute().item() == whole.compute().accuracy
    other = metric.clone()
    other.reset()
    other.update(data[0]["scoremaps"], data[0]["gt_boxes"])
    metric.merge_state(other)
    whole.update(data[0]["scoremaps"], data[0]["gt_boxes"])
    assert metric.to_camkit().state_dict() == whole.state_dict()
    assert copy.deepcopy(metric).compute().item() == whole.compute().accuracy
    metric.reset()
    assert metric.num_images.item() == 0 and metric.hits.tolist() == [0]


def test_errors_are_the_camkit_metrics_errors():
    with pytest.raises(ValueError, match="ties must be one of"):
        PointingGameMetric(ties="middle")
    metric = BoxAccuracyMetric()
    with pytest.raises(ValueError, match="scoremaps must lie in"):
        metric.update(np.full((1, 8, 8), 2.0), [np.array([[0, 0, 4, 4]])])
    assert metric.num_images.item() == 0  # nothing added
    with pytest.warns(UserWarning, match="called before the ``update``"), \
            pytest.raises(ValueError, match="needs at least one update"):
        BoxAccuracyMetric().compute()


def test_importing_camkit_does_not_import_torchmetrics_and_a_missing_extra_is_named():
    code = ("import sys, camkit, camkit.metrics; from camkit.metrics import PointingGame; "
            "print('torchmetrics' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
    code = ("import sys; sys.modules['torchmetrics'] = None\n"
            "try:\n    import camkit.metrics.torchmetrics\n"
            "except ImportError as error:\n    print(error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ("camkit.metrics.torchmetrics needs torchmetrics, which is "
                                     "not installed: pip install 'camkit[torchmetrics]'")


# ---------------------------------------------------------------------------------------------
# Two processes: torchmetrics' own sync sums the counts
# ---------------------------------------------------------------------------------------------
def _worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        data = batches(6, count=2)
        box, point = BoxAccuracyMetric(), PointingGameMetric(num_classes=6)
        box.update(data[rank]["scoremaps"], data[rank]["gt_boxes"])
        point.update(data[rank]["scoremaps"], data[rank]["gt_boxes"],
                     labels=data[rank]["labels"])
        values = [box.compute().item(), point.compute().item()]
        states = [box.to_camkit().state_dict(), point.to_camkit().state_dict()]
        local = box.correct.sum().item()  # compute() restores the local counts afterwards
        if rank == 0:
            with open(out_file, "w") as handle:
                json.dump({"values": values, "states": states, "local": local}, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_compute_sums_counts_over_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp

    out_file = tmp_path / "result.json"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    found = json.loads(out_file.read_text())
    data = batches(6, count=2)
    box, point = BoxAccuracy(), PointingGame(num_classes=6)
    for batch in data:
        box.update(batch["scoremaps"], batch["gt_boxes"])
        point.update(batch["scoremaps"], batch["gt_boxes"], labels=batch["labels"])
    assert found["values"] == [box.compute().max_box_acc_v2, point.compute().accuracy]
    assert found["states"] == [box.state_dict(), point.state_dict()]
    first = BoxAccuracy()
    first.update(data[0]["scoremaps"], data[0]["gt_boxes"])
    assert found["local"] == int(np.sum(first.state_dict()["state"]["correct"]))


# ---------------------------------------------------------------------------------------------
# Lightning
# ---------------------------------------------------------------------------------------------
def test_lightning_module_logs_the_metrics_with_self_log_and_log_dict():
    lightning = pytest.importorskip("lightning")
    from torch import nn

    data = batches(7, count=2, size=16)

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(4, 6))
            self.box = BoxAccuracyMetric()
            self.point = PointingGameMetric()
            self.loc = LocalizationAccuracyMetric()

        def training_step(self, batch, batch_index):
            maps, boxes, labels = batch
            logits = self.net(maps[:, None].float())
            self.box.update(maps, boxes)
            self.point.update(maps, boxes)
            self.loc.update(maps, boxes, logits.detach(), labels)
            self.log("train/box", self.box, on_step=False, on_epoch=True)
            self.log_dict({"train/point": self.point}, on_step=False, on_epoch=True)
            return nn.functional.cross_entropy(logits, labels)

        def on_train_epoch_end(self) -> None:
            self.log_dict({f"train/{k}": v for k, v in self.loc.compute().items()})
            self.loc.reset()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(
        [(torch.from_numpy(b["scoremaps"]), b["gt_boxes"], torch.from_numpy(b["labels"]))
         for b in data], batch_size=None)
    trainer = lightning.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
    module = Module()
    trainer.fit(module, loader)
    logged = {name: value.item() for name, value in trainer.callback_metrics.items()}
    box, point = BoxAccuracy(), PointingGame()
    for batch in data:
        box.update(batch["scoremaps"], batch["gt_boxes"])
        point.update(batch["scoremaps"], batch["gt_boxes"])
    assert logged["train/box"] == pytest.approx(box.compute().max_box_acc_v2, abs=1e-12)
    assert logged["train/point"] == pytest.approx(point.compute().accuracy, abs=1e-12)
    assert {"train/gt_known", "train/top1", "train/top5"} <= set(logged)
    assert trainer.global_step == 2


# ---------------------------------------------------------------------------------------------
# The quickstart's torchmetrics and Lightning section runs
# ---------------------------------------------------------------------------------------------
def test_quickstart_torchmetrics_and_lightning_blocks_run(tmp_path, monkeypatch):
    """The docs test skips these blocks (torchmetrics needs the torchvision workaround here):
    run the quickstart's python blocks in order, in one namespace, through this section."""
    pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)
    text = (REPO_ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    section = text.index("## torchmetrics and Lightning")
    end = text.index("\n## ", section + 1)
    namespace: dict[str, object] = {"__name__": "__quickstart__"}
    pattern = re.compile(r"(<!-- skip -->\s*\n)?```python\n(.*?)```", re.DOTALL)
    ran = 0
    for match in pattern.finditer(text[:end]):
        inside = match.start() > section
        if match.group(1) and not inside:
            continue
        exec(compile(match.group(2), "quickstart.md", "exec"), namespace)
        ran += inside
    assert ran == 2
    trainer = namespace["trainer"]
    assert {"train/maxboxacc_v2", "train/top1"} <= set(trainer.callback_metrics)
