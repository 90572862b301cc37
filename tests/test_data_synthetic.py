"""Tests of the procedural WSOL dataset ``camkit.data.synthetic``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from camkit.data.synthetic import (
    MAX_CLASSES,
    SyntheticWSOL,
    SyntheticWSOLConfig,
    write_reference_layout,
)

SMALL = dict(num_classes=6, image_size=64, length=12)


def _digest(ds: SyntheticWSOL, indices: range) -> str:
    h = hashlib.sha256()
    for i in indices:
        s = ds.sample(i)
        for arr in (s.image, s.mask, s.part_mask):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(repr((s.label, s.box, s.part_box)).encode())
    return h.hexdigest()


def test_same_seed_same_bytes():
    a = SyntheticWSOL(seed=3, **SMALL)
    b = SyntheticWSOL(seed=3, **SMALL)
    assert _digest(a, range(12)) == _digest(b, range(12))


def test_random_access_matches_sequential():
    ds = SyntheticWSOL(seed=5, **SMALL)
    forward = [ds.sample(i).image for i in range(6)]
    backward = [ds.sample(i).image for i in reversed(range(6))][::-1]
    for f, b in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(f, b)


def test_different_seeds_and_splits_differ():
    a = SyntheticWSOL(seed=0, **SMALL)
    b = SyntheticWSOL(seed=1, **SMALL)
    c = SyntheticWSOL(seed=0, split="test", **SMALL)
    assert _digest(a, range(4)) != _digest(b, range(4))
    assert _digest(a, range(4)) != _digest(c, range(4))
    assert not np.array_equal(a.sample(0).image, a.sample(1).image)


def test_getitem_types_and_shapes():
    ds = SyntheticWSOL(seed=0, **SMALL)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64)
    assert item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert item["box"].shape == (4,) and item["box"].dtype == torch.int64
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.bool
    s = ds.sample(0)
    np.testing.assert_array_equal((item["image"] * 255).round().to(torch.uint8).numpy(),
                                  s.image.transpose(2, 0, 1))
    assert ds[-1]["index"].item() == len(ds) - 1
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 64, 64)


@pytest.mark.parametrize("size", [48, 96])
def test_box_mask_part_consistency(size: int):
    ds = SyntheticWSOL(seed=7, num_classes=12, image_size=size, length=24, clutter=1.0)
    for i in range(len(ds)):
        s = ds.sample(i)
        assert 0 <= s.label < 12
        assert s.label == ds.label_of(i)
        ys, xs = np.nonzero(s.mask)
        assert s.box == (xs.min(), ys.min(), xs.max(), ys.max())
        pys, pxs = np.nonzero(s.part_mask)
        assert s.part_box == (pxs.min(), pys.min(), pxs.max(), pys.max())
        assert not (s.part_mask & ~s.mask).any(), "part must lie inside the object"
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 <= x1 < size and 0 <= y0 <= y1 < size
        assert s.part_mask.sum() < s.mask.sum()


def test_object_size_range_is_respected():
    ds = SyntheticWSOL(seed=2, image_size=128, length=30, object_size=(0.5, 0.6))
    for i in range(len(ds)):
        x0, y0, x1, y1 = ds.sample(i).box
        extent = max(x1 - x0 + 1, y1 - y0 + 1) / 128
        assert 0.4 <= extent <= 0.7


def test_labels_are_balanced():
    ds = SyntheticWSOL(seed=0, num_classes=5, image_size=32, length=25)
    counts = np.bincount([ds.label_of(i) for i in range(25)], minlength=5)
    assert counts.tolist() == [5] * 5


def _read_csv(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


@pytest.mark.parametrize("masks", [False, True])
def test_reference_layout_round_trip(tmp_path: Path, masks: bool):
    import cv2

    ds = SyntheticWSOL(seed=4, split="test", **SMALL)
    root = write_reference_layout(ds, tmp_path / "out", masks=masks, indices=range(5))
    meta = root / "metadata" / "test"
    ids = (meta / "image_ids.txt").read_text().splitlines()
    assert len(ids) == 5
    labels = dict(_read_csv(meta / "class_labels.txt"))
    sizes = {r[0]: (int(r[1]), int(r[2])) for r in _read_csv(meta / "image_sizes.txt")}
    loc = _read_csv(meta / ("localization_box.txt" if masks else "localization.txt"))
    boxes = {r[0]: tuple(int(v) for v in r[1:]) for r in loc}
    for i, image_id in enumerate(ids):
        s = ds.sample(i)
        bgr = cv2.imread(str(root / "images" / image_id), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(bgr[..., ::-1], s.image)
        assert int(labels[image_id]) == s.label
        assert sizes[image_id] == (64, 64)
        assert boxes[image_id] == s.box
    if masks:
        rows = _read_csv(meta / "localization.txt")
        assert all(len(r) == 3 and r[2] == "" for r in rows)
        for i, (image_id, mask_path, _) in enumerate(rows):
            assert image_id == ids[i]
            m = cv2.imread(str(root / mask_path), cv2.IMREAD_GRAYSCALE)
            np.testing.assert_array_equal(m > 127, ds.sample(i).mask)
    assert not list(root.rglob("*.tmp")), "temporary files must be renamed away"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_classes=1), ValueError, r"num_classes must be in \[2, 18\], got 1"),
        (dict(num_classes=MAX_CLASSES + 1), ValueError, "num_classes"),
        (dict(num_classes=3.0), TypeError, "num_classes must be an int, got float"),
        (dict(image_size=16), ValueError, "image_size must be >= 32, got 16"),
        (dict(length=0), ValueError, "length must be >= 1, got 0"),
        (dict(seed=-1), ValueError, "seed must be >= 0, got -1"),
        (dict(seed=True), TypeError, "seed must be an int, got bool"),
        (dict(object_size=(0.8, 0.4)), ValueError, r"object_size must satisfy 0 < low <= high"),
        (dict(object_size=0.5), TypeError, r"object_size must be a \(low, high\) pair"),
        (dict(part_ratio=(0.0, 0.2)), ValueError, "part_ratio must satisfy"),
        (dict(clutter=1.5), ValueError, r"clutter must be in \[0, 1\], got 1.5"),
        (dict(clutter="high"), TypeError, "clutter must be a real number, got str"),
        (dict(body_class_cue=-0.1), ValueError, "body_class_cue"),
        (dict(part_colour_cue=2), ValueError, "part_colour_cue"),
        (dict(split="validation"), ValueError, r"split must be one of \['test', 'train', 'val'\]"),
        (dict(split=1), TypeError, "split must be a str, got int"),
    ],
)
def test_argument_errors(kwargs: dict, error: type, match: str):
    with pytest.raises(error, match=match):
        SyntheticWSOL(**kwargs)


def test_index_and_other_errors(tmp_path: Path):
    ds = SyntheticWSOL(**SMALL)
    with pytest.raises(IndexError, match=r"index must be in \[-12, 12\), got 12"):
        ds.sample(12)
    with pytest.raises(TypeError, match="index must be an int, got float"):
        ds[1.0]
    with pytest.raises(TypeError, match="config must be a SyntheticWSOLConfig, got dict"):
        SyntheticWSOL({"seed": 1})
    with pytest.raises(TypeError, match="pass either config or keyword fields"):
        SyntheticWSOL(SyntheticWSOLConfig(), seed=2)
    with pytest.raises(TypeError, match="dataset must be a SyntheticWSOL, got list"):
        write_reference_layout([], tmp_path)
    with pytest.raises(ValueError, match="image_dir must be a non-empty folder name"):
        write_reference_layout(ds, tmp_path, image_dir="a/b")


def test_class_names_and_config_kwargs():
    ds = SyntheticWSOL(SyntheticWSOLConfig(num_classes=7, object_size=[0.4, 0.5]))
    assert ds.config.object_size == (0.4, 0.5)
    assert len(ds.class_names) == 7 and len(set(ds.class_names)) == 7
    assert ds.num_classes == 7
