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
