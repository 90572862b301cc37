"""camkit.data.wsol_metadata: readers, path safety, mask loader, the shared real metadata."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_METADATA
from hypothesis import given, settings
from hypothesis import strategies as st

from camkit.data.wsol_metadata import (
    ImageSize,
    MaskAnnotation,
    MetadataError,
    load_mask,
    load_wsol_metadata,
    read_box_localization,
    read_class_labels,
    read_image_ids,
    read_image_sizes,
    read_mask_localization,
    resized_gt_boxes,
    safe_join,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_box_split(root: Path) -> Path:
    folder = root / "CUB" / "test"
    write(folder / "image_ids.txt", "a/1.jpg\na/2.jpg\n")
    write(folder / "class_labels.txt", "a/1.jpg,0\na/2.jpg,3\n")
    write(folder / "image_sizes.txt", "a/1.jpg,500,335\na/2.jpg,100,200\n")
    write(folder / "localization.txt",
          "a/1.jpg,60,27,385,331\na/2.jpg,0,0,10,10\na/2.jpg,20,30,99,199\n")
    return folder


def test_box_split_is_read(tmp_path):
    metadata = load_wsol_metadata(make_box_split(tmp_path))
    assert metadata.image_ids == ["a/1.jpg", "a/2.jpg"]
    assert metadata.class_labels == {"a/1.jpg": 0, "a/2.jpg": 3}
    assert metadata.image_sizes["a/1.jpg"] == ImageSize(height=335, width=500)
    assert metadata.boxes["a/2.jpg"].tolist() == [[0, 0, 10, 10], [20, 30, 99, 199]]
    assert metadata.masks is None
    resized = resized_gt_boxes(metadata)
    assert resized["a/1.jpg"].tolist() == [[int(60 * 224 / 500), int(27 * 224 / 335),
                                           int(385 * 224 / 500), int(331 * 224 / 335)]]


@pytest.mark.parametrize(
    ("reader", "text", "match"),
    [
        (read_image_ids, "a.jpg\nb.jpg,1\n", r":2: expected 'image_id'"),
        (read_image_ids, "a.jpg\n\na.jpg\n", r":3: duplicate image id"),
        (read_class_labels, "a.jpg,x\n", r":1: class_index must be an integer"),
        (read_image_sizes, "a.jpg,10\n", r":1: expected 'image_id,width,height'"),
        (read_image_sizes, "a.jpg,0,5\n", r":1: width must lie in \[1, 2147483647\], got '0'"),
        (read_image_sizes, "a.jpg,5,99999999999\n", r":1: height must lie in \[1, 2147483647\]"),
        (read_image_sizes, "a.jpg,5,5\na.jpg,6,6\n", r":2: duplicate image id 'a\.jpg'"),
        (read_class_labels, "a.jpg,-1\n", r":1: class_index must lie in \[0, 2147483647\]"),
        (read_class_labels, "a.jpg,1_0\n", r":1: class_index must be an integer, got '1_0'"),
        (read_class_labels, "a.jpg,\u0663\n", r":1: class_index must be an integer"),
        (read_box_localization, "a.jpg,1,2,3\n", r":1: expected 'image_id,x0,y0,x1,y1'"),
        (read_box_localization, "a.jpg,5,0,3,4\n",
         r":1: box of image id 'a\.jpg' must have x0 <= x1 and y0 <= y1, got \[5, 0, 3, 4\]"),
        (read_box_localization, "a.jpg,0,0,3,4\na.jpg,-1,0,3,4\n",
         r":2: x0 must lie in \[0, 2147483647\], got '-1'"),
        (read_box_localization, f"a.jpg,0,0,{10**30},4\n", r":1: x1 must lie in \[0, "),
        (read_box_localization, f"a.jpg,0,0,{'9' * 5000},4\n",
         r":1: x1 must lie in .*got '9{60}'\.\.\. \(5000 characters\)"),
        (read_box_localization, "a.jpg,0,0,nan,4\n", r":1: x1 must be an integer, got 'nan'"),
        (read_box_localization, "a.jpg,1.5,0,3,4\n", r":1: x0 must be an integer"),
        (read_mask_localization, "a.jpg,m1.png,i.png\na.jpg,m2.png,j.png\n",
         r":2: ignore path must be given on the first line"),
        (read_image_ids, "ok.jpg\n../escape.jpg\n", r":2: .*inside the dataset root"),
        (read_image_ids, "/etc/passwd\n", r":1: .*absolute"),
        (read_class_labels, "C:\\x.jpg,1\n", r":1: .*absolute"),
        (read_mask_localization, "a.jpg,../../m.png,\n", r":1: mask path .*dataset root"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, reader, text, match):
    path = write(tmp_path / "file.txt", text)
    with pytest.raises(MetadataError, match=match):
        reader(path)


def test_non_utf8_file_names_file_and_line(tmp_path):
    path = tmp_path / "image_ids.txt"
    path.write_bytes(b"a.jpg\nb\xe9.jpg\n")
    with pytest.raises(MetadataError, match=r"image_ids\.txt:2: not UTF-8 text \(invalid "
                                            r"continuation byte at byte 2 of the line\)"):
        read_image_ids(path)
    folder = make_box_split(tmp_path)
    (folder / "localization.txt").write_bytes(b"\xff\xfe" + "a/1.jpg,0,0,1,1".encode("utf-16"))
    with pytest.raises(MetadataError, match=r"localization\.txt:1: not UTF-8 text"):
        load_wsol_metadata(folder)


def test_boxes_outside_their_image_are_refused(tmp_path):
    folder = make_box_split(tmp_path)  # a/2.jpg is 100 wide, 200 high
    localization = folder / "localization.txt"
    text = localization.read_text()
    localization.write_text(text.replace("a/2.jpg,20,30,99,199", "a/2.jpg,20,30,101,199"))
    with pytest.raises(MetadataError, match=r"localization\.txt:3: box \[20, 30, 101, 199\] of "
                                            r"image id 'a/2\.jpg' lies outside the image "
                                            r"\(width 100, height 200 in image_sizes\.txt\)"):
        load_wsol_metadata(folder)
    localization.write_text(text.replace("a/2.jpg,20,30,99,199", "a/2.jpg,20,30,99,201"))
    with pytest.raises(MetadataError, match=r":3: box .* of image id 'a/2\.jpg' lies outside"):
        load_wsol_metadata(folder)
    # x1 == width and y1 == height: the exclusive end of a box, accepted
    localization.write_text(text.replace("a/2.jpg,20,30,99,199", "a/2.jpg,20,30,100,200"))
    assert load_wsol_metadata(folder).boxes["a/2.jpg"].tolist()[1] == [20, 30, 100, 200]


def test_missing_entries_are_reported(tmp_path):
    folder = make_box_split(tmp_path)
    write(folder / "class_labels.txt", "a/1.jpg,0\n")
    with pytest.raises(MetadataError, match=r"'a/2\.jpg' is missing from class_labels\.txt"):
        load_wsol_metadata(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_wsol_metadata(tmp_path / "nowhere")


def test_safe_join_refuses_escapes(tmp_path):
    assert safe_join(tmp_path, "a/b.npy") == tmp_path / "a" / "b.npy"
    for bad in ("../x", "a/../../x", "/abs", ""):
        with pytest.raises(ValueError):
            safe_join(tmp_path, bad)


def test_mask_loader_applies_union_resize_and_ignore_rule(tmp_path):
    first = np.zeros((20, 10), dtype=np.uint8)
    first[0:10, 0:5] = 255
    second = np.zeros((20, 10), dtype=np.uint8)
    second[15:20, 5:10] = 1  # 1 > 0.5: foreground too
    ignore = np.zeros((20, 10), dtype=np.uint8)
    ignore[0:20, 0:6] = 255  # overlaps the first instance: foreground wins
    for name, image in (("m1.png", first), ("m2.png", second), ("ig.png", ignore)):
        cv2.imwrite(str(tmp_path / name), image)
    mask = load_mask(tmp_path, MaskAnnotation(("m1.png", "m2.png"), "ig.png"), size=(20, 10))
    assert mask.dtype == np.uint8 and mask.shape == (20, 10)
    assert (mask[0:10, 0:5] == 1).all() and (mask[15:20, 5:10] == 1).all()
    assert (mask[10:20, 0:5] == 255).all() and (mask[0:15, 5] == 255).all()
    assert set(np.unique(mask).tolist()) == {0, 1, 255}
    resized = load_mask(tmp_path, MaskAnnotation(("m1.png",), None), size=(224, 224))
    expected = cv2.resize(first, (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5
    np.testing.assert_array_equal(resized, expected.astype(np.uint8))
    with pytest.raises(FileNotFoundError, match="cannot read mask"):
        load_mask(tmp_path, MaskAnnotation(("absent.png",), None))


@pytest.mark.skipif(not SHARED_METADATA.is_dir(), reason="shared WSOL metadata not present")
def test_shared_metadata_loads():
    cub = load_wsol_metadata(SHARED_METADATA / "CUB" / "test")
    assert len(cub.image_ids) == 5794 and cub.boxes is not None
    openimages = load_wsol_metadata(SHARED_METADATA / "OpenImages" / "val")
    assert len(openimages.image_ids) == 2500 and openimages.masks is not None
    mask_root = SHARED_METADATA / "openimages-masks"
    with_files = [i for i in openimages.image_ids
                  if (mask_root / openimages.masks[i].mask_paths[0]).is_file()]
    assert with_files
    mask = load_mask(mask_root, openimages.masks[with_files[0]])
    assert mask.shape == (224, 224) and (mask == 1).any()


# ---------------------------------------------------------------------------------------------
# Malformed input of every kind: a MetadataError (a ValueError) naming the file, nothing else
# ---------------------------------------------------------------------------------------------
_NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "+5", "0x10", "1e3", "\u0663", "nan", "-", "--1", "9" * 40]),
)
_IDS = st.one_of(st.sampled_from(["a/1.jpg", "a/2.jpg", "", "/abs.jpg", "../up.jpg", "C:x"]),
                 st.text(max_size=12))
_LINE = st.one_of(
    st.binary(max_size=40),  # raw bytes, often not UTF-8
    st.lists(st.one_of(_IDS, _NUMBERS), min_size=0, max_size=7).map(
        lambda fields: ",".join(fields).encode("utf-8", "surrogatepass")),
    st.tuples(_IDS, _NUMBERS, _NUMBERS, _NUMBERS, _NUMBERS).map(
        lambda fields: ",".join(fields).encode("utf-8", "surrogatepass")),
)
_FILE = st.lists(_LINE, max_size=6).map(lambda lines: b"\n".join(lines))


@settings(max_examples=60)
@given(image_ids=_FILE, labels=_FILE, sizes=_FILE, localization=_FILE)
def test_malformed_files_raise_only_metadata_errors(tmp_path, image_ids, labels, sizes,
                                                   localization):
    folder = tmp_path / "fuzz"
    folder.mkdir(exist_ok=True)
    contents = {"image_ids.txt": image_ids, "class_labels.txt": labels,
                "image_sizes.txt": sizes, "localization.txt": localization}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    readers = [(read_image_ids, "image_ids.txt"), (read_class_labels, "class_labels.txt"),
               (read_image_sizes, "image_sizes.txt"),
               (read_box_localization, "localization.txt"),
               (read_mask_localization, "localization.txt"),
               (load_wsol_metadata, None)]
    for reader, name in readers:
        where = folder if name is None else folder / name
        try:
            reader(where)
        except MetadataError as error:
            assert str(error).startswith(str(folder)), str(error)
            if name is not None:
                assert re.match(rf"{re.escape(str(where))}:\d+: ", str(error)), str(error)
