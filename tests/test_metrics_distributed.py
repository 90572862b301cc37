"""Metric ``sync()`` across two gloo processes on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from camkit.metrics import BoxAccuracy, PixelAP


def _data():
    rng = np.random.default_rng(0)
    maps = rng.random((4, 16, 16))
    boxes = [np.array([[1, 1, 8 + i, 9]]) for i in range(4)]
    masks = (maps > 0.5).astype(np.uint8)
    return maps, boxes, masks


def _worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        maps, boxes, masks = _data()
        part = slice(rank * 2, rank * 2 + 2)
        boxes_metric, pixel_metric = BoxAccuracy(), PixelAP()
        boxes_metric.update(maps[part], boxes[part])
        pixel_metric.update(maps[part], masks[part])
        boxes_metric.sync()
        pixel_metric.sync()
        if rank == 0:
            with open(out_file, "w") as handle:
                json.dump({"boxes": boxes_metric.state_dict(),
                           "pixels": pixel_metric.state_dict()}, handle)
    finally:
        dist.destroy_process_group()


def test_sync_without_process_group_is_a_no_op():
    metric = BoxAccuracy()
    maps, boxes, _ = _data()
    metric.update(maps, boxes)
    before = metric.state_dict()
    assert metric.sync().state_dict() == before


@pytest.mark.slow
def test_sync_sums_counts_over_two_gloo_processes(tmp_path):
    out_file = tmp_path / "result.json"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    synced = json.loads(out_file.read_text())
    maps, boxes, masks = _data()
    boxes_metric, pixel_metric = BoxAccuracy(), PixelAP()
    boxes_metric.update(maps, boxes)
    pixel_metric.update(maps, masks)
    assert synced["boxes"] == boxes_metric.state_dict()
    assert synced["pixels"] == pixel_metric.state_dict()
    assert BoxAccuracy.from_state_dict(synced["boxes"]).num_images == 4
    assert torch.distributed.is_available()


# ---------------------------------------------------------------------------------------------
# sync() is idempotent: it sums each process's own counts, never counts already gathered
# ---------------------------------------------------------------------------------------------
def _six_images():
    rng = np.random.default_rng(1)
    maps = rng.random((6, 16, 16))
    boxes = [np.array([[1, 2, 7 + i, 12]]) for i in range(6)]
    return maps, boxes, (maps > 0.4).astype(np.uint8)


def _repeated_sync_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        maps, boxes, masks = _six_images()
        first, extra = slice(rank * 2, rank * 2 + 2), slice(4 + rank, 5 + rank)
        boxes_metric, pixel_metric = BoxAccuracy(), PixelAP()
        boxes_metric.update(maps[first], boxes[first])
        pixel_metric.update(maps[first], masks[first])
        record = {}
        for metric in (boxes_metric, pixel_metric):
            metric.sync()
            metric.sync()  # the second call must not count the gathered images again
        record["twice"] = [boxes_metric.state_dict(), pixel_metric.state_dict()]
        boxes_metric.update(maps[extra], boxes[extra])  # after a sync: added to this process's
        pixel_metric.update(maps[extra], masks[extra])
        for metric in (boxes_metric, pixel_metric):
            metric.sync()
        record["after_update"] = [boxes_metric.state_dict(), pixel_metric.state_dict()]
        for metric in (boxes_metric, pixel_metric):
            metric.sync()
        record["third"] = [boxes_metric.state_dict(), pixel_metric.state_dict()]
        full = BoxAccuracy().state_dict()
        full["state"]["num_images"] = [2**63 - 3]
        near_max = BoxAccuracy.from_state_dict(full)
        try:  # each process holds 2**63 - 3 images: the global count does not fit
            near_max.sync()
        except ValueError as error:
            record["overflow"] = str(error)
        record["near_max_after"] = near_max.num_images
        with open(f"{out_file}.{rank}", "w") as handle:
            json.dump(record, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sync_twice_and_after_more_updates_counts_every_image_once(tmp_path):
    out_file = tmp_path / "result.json"
    mp.spawn(_repeated_sync_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2,
             join=True)
    maps, boxes, masks = _six_images()

    def single_pass(count: int) -> list[dict]:
        boxes_metric, pixel_metric = BoxAccuracy(), PixelAP()
        boxes_metric.update(maps[:count], boxes[:count])
        pixel_metric.update(maps[:count], masks[:count])
        return [boxes_metric.state_dict(), pixel_metric.state_dict()]

    for rank in range(2):
        record = json.loads((tmp_path / f"result.json.{rank}").read_text())
        assert record["twice"] == single_pass(4)
        assert record["twice"][0]["state"]["num_images"] == [4]
        assert record["after_update"] == single_pass(6)
        assert record["third"] == single_pass(6)
        assert record["overflow"].startswith("sync would overflow the int64 count 'num_images'")
        assert record["near_max_after"] == 2**63 - 3  # refused: nothing replaced
