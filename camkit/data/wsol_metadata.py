"""Readers of the WSOL evaluation protocol's metadata folders and its mask loader.

A split folder ``<root>/<DATASET>/<split>/`` holds ``image_ids.txt`` (one image id a line),
``class_labels.txt`` (``image_id,class``), ``image_sizes.txt`` (``image_id,width,height``; empty
for OpenImages) and ``localization.txt``: ``image_id,x0,y0,x1,y1`` boxes in original-image
pixels, one line per box (CUB, ILSVRC), or ``image_id,mask_path,ignore_path``, one line per
instance mask with the ignore path on the first line of each image (OpenImages).

Malformed lines raise ``MetadataError`` naming the file and the line number. Image ids and mask
paths are relative paths below a dataset root: absolute paths and ``..`` are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np

__all__ = [
    "ImageSize",
    "MaskAnnotation",
    "MetadataError",
    "WSOLMetadata",
    "load_mask",
    "load_wsol_metadata",
    "read_box_localization",
    "read_class_labels",
    "read_image_ids",
    "read_image_sizes",
    "read_mask_localization",
    "resized_gt_boxes",
    "safe_join",
]


class MetadataError(ValueError):
    """A malformed metadata file; the message starts with ``path:line:``."""


class ImageSize(NamedTuple):
    """Original image size, ``(height, width)`` like every size in camkit."""

    height: int
    width: int


class MaskAnnotation(NamedTuple):
    """Instance mask paths of one image and its ignore-region path (``None`` when absent)."""

    mask_paths: tuple[str, ...]
    ignore_path: str | None


def _check_relative(text: str, what: str) -> str:
    """Refuse empty, absolute and parent-escaping paths; return ``text``."""
    if not text:
        raise ValueError(f"{what} must be a non-empty relative path, got an empty string")
    if text[0] in "/\\" or text[1:2] == ":":
        raise ValueError(f"{what} must be relative to the dataset root, got absolute {text!r}")
    if ".." in text and ".." in text.replace("\\", "/").split("/"):
        raise ValueError(f"{what} must stay inside the dataset root, got {text!r} (with '..')")
    return text


def safe_join(root: str | Path, relative: str, what: str = "path") -> Path:
    """``root / relative`` after refusing absolute paths and ``..`` in ``relative``."""
    return Path(root) / _check_relative(relative, what)


def _lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (line ``n`` at index ``n - 1``), without line endings."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        number = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise MetadataError(f"{path}:{number}: not UTF-8 text ({error.reason} at byte {column} "
                            f"of the line)") from None
    return text.split("\n")


def _records(path: str | Path, fields: tuple[int, ...], layout: str) -> Iterator[tuple[int, list]]:
    """Yield ``(line_number, fields)`` of the non-blank lines of a comma-separated file."""
    for number, line in enumerate(_lines(path), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) not in fields:
            raise MetadataError(f"{path}:{number}: expected '{layout}', got {_shown(line)}")
        try:
            _check_relative(parts[0], "image id")
        except ValueError as error:
            raise MetadataError(f"{path}:{number}: {error}") from None
        yield number, parts


#: Largest class index, size or coordinate accepted: far above any image, and small enough
#: that no computation on it can overflow an int64.
_LIMIT = 2**31 - 1


def _shown(text: str, width: int = 60) -> str:
    """``repr(text)``, shortened when long: a message quotes the value, not a whole file."""
    if len(text) <= width:
        return repr(text)
    return f"{text[:width]!r}... ({len(text)} characters)"


def _int_field(text: str, path: str | Path, number: int, name: str, low: int = 0) -> int:
    """A decimal integer in ``[low, _LIMIT]`` (ASCII digits, an optional ``-``, and spaces
    around them)."""
    if len(text) <= 10 and text.isascii() and text.isdigit():
        value = int(text)  # plain digits, as on every line of the real files
    else:
        digits = text.strip(" \t")
        body = digits[1:] if digits[:1] == "-" else digits
        if not (body.isascii() and body.isdigit()):
            raise MetadataError(f"{path}:{number}: {name} must be an integer, got "
                                f"{_shown(text)}")
        # more digits than _LIMIT has: out of range, and not worth converting
        value = int(digits) if len(body) <= 10 else _LIMIT + 1
    if not low <= value <= _LIMIT:
        raise MetadataError(f"{path}:{number}: {name} must lie in [{low}, {_LIMIT}], got "
                            f"{_shown(text)}")
    return value


def read_image_ids(path: str | Path) -> list[str]:
    """Image ids in file order; duplicates are an error."""
    ids: list[str] = []
    seen: set[str] = set()
    for number, (image_id,) in _records(path, (1,), "image_id"):
        if image_id in seen:
            raise MetadataError(f"{path}:{number}: duplicate image id {image_id!r}")
        seen.add(image_id)
        ids.append(image_id)
    return ids


def read_class_labels(path: str | Path) -> dict[str, int]:
    """``image_id → class index``."""
    labels: dict[str, int] = {}
    for number, (image_id, label) in _records(path, (2,), "image_id,class_index"):
        if image_id in labels:
            raise MetadataError(f"{path}:{number}: duplicate image id {image_id!r}")
        labels[image_id] = _int_field(label, path, number, "class_index")
    return labels


def read_image_sizes(path: str | Path) -> dict[str, ImageSize]:
    """``image_id → ImageSize(height, width)`` (the file stores ``width,height``)."""
    sizes: dict[str, ImageSize] = {}
    for number, (image_id, width, height) in _records(path, (3,), "image_id,width,height"):
        if image_id in sizes:
            raise MetadataError(f"{path}:{number}: duplicate image id {image_id!r}")
        w = _int_field(width, path, number, "width", low=1)
        h = _int_field(height, path, number, "height", low=1)
        sizes[image_id] = ImageSize(h, w)
    return sizes


def _read_boxes(path: str | Path, sizes: dict[str, ImageSize] | None) -> dict[str, np.ndarray]:
    """``read_box_localization``, checking each box against its image size when ``sizes``
    holds it (an image without a size is reported by ``load_wsol_metadata``)."""
    boxes: dict[str, list[list[int]]] = {}
    names = ("x0", "y0", "x1", "y1")
    for number, parts in _records(path, (5,), "image_id,x0,y0,x1,y1"):
        image_id = parts[0]
        coords = [_int_field(v, path, number, n) for v, n in zip(parts[1:], names, strict=True)]
        if coords[2] < coords[0] or coords[3] < coords[1]:
            raise MetadataError(f"{path}:{number}: box of image id {image_id!r} must have "
                                f"x0 <= x1 and y0 <= y1, got {coords}")
        size = None if sizes is None else sizes.get(image_id)
        # x1 == width is allowed: some annotations store the exclusive end of the box
        if size is not None and (coords[2] > size.width or coords[3] > size.height):
            raise MetadataError(f"{path}:{number}: box {coords} of image id {image_id!r} "
                                f"lies outside the image (width {size.width}, height "
                                f"{size.height} in image_sizes.txt)")
        boxes.setdefault(image_id, []).append(coords)
    return {key: np.asarray(value, dtype=np.int64) for key, value in boxes.items()}


def read_box_localization(path: str | Path) -> dict[str, np.ndarray]:
    """``image_id → (n, 4)`` int64 ``x0, y0, x1, y1`` boxes in original-image pixels."""
    return _read_boxes(path, None)


def read_mask_localization(path: str | Path) -> dict[str, MaskAnnotation]:
    """``image_id → MaskAnnotation``; the ignore path must appear on an image's first line only."""
    masks: dict[str, list[str]] = {}
    ignores: dict[str, str | None] = {}
    for number, (image_id, mask_path, ignore_path) in _records(
            path, (3,), "image_id,mask_path,ignore_path"):
        try:
            _check_relative(mask_path, "mask path")
            if ignore_path:
                _check_relative(ignore_path, "ignore path")
        except ValueError as error:
            raise MetadataError(f"{path}:{number}: {error}") from None
        if image_id in masks:
            if ignore_path:
                raise MetadataError(f"{path}:{number}: ignore path must be given on the first "
                                    f"line of {image_id!r} only, got {ignore_path!r}")
            masks[image_id].append(mask_path)
        else:
            masks[image_id] = [mask_path]
            ignores[image_id] = ignore_path or None
    return {key: MaskAnnotation(tuple(value), ignores[key]) for key, value in masks.items()}


@dataclass(frozen=True)
class WSOLMetadata:
    """One split's metadata. Exactly one of ``boxes`` and ``masks`` is set."""

    folder: Path
    image_ids: list[str]
    class_labels: dict[str, int]
    image_sizes: dict[str, ImageSize]
    boxes: dict[str, np.ndarray] | None
    masks: dict[str, MaskAnnotation] | None


def _localization_kind(path: Path) -> str:
    for number, line in enumerate(_lines(path), start=1):
        if line.strip():
            count = line.count(",") + 1
            if count in (3, 5):
                return "masks" if count == 3 else "boxes"
            raise MetadataError(f"{path}:{number}: expected 'image_id,x0,y0,x1,y1' or "
                                f"'image_id,mask_path,ignore_path', got {_shown(line.strip())}")
    return "boxes"


def load_wsol_metadata(folder: str | Path) -> WSOLMetadata:
    """Read a split folder; every image id must have a class label and a localization."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"metadata folder {str(folder)!r} does not exist")
    for name in ("image_ids.txt", "class_labels.txt", "localization.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"metadata folder {str(folder)!r} lacks {name}")
    image_ids = read_image_ids(folder / "image_ids.txt")
    labels = read_class_labels(folder / "class_labels.txt")
    sizes_file = folder / "image_sizes.txt"
    sizes = read_image_sizes(sizes_file) if sizes_file.is_file() else {}
    localization = folder / "localization.txt"
    kind = _localization_kind(localization)
    boxes = _read_boxes(localization, sizes) if kind == "boxes" else None
    masks = read_mask_localization(localization) if kind == "masks" else None
    annotated = boxes if boxes is not None else masks
    assert annotated is not None  # _localization_kind gives "boxes" or "masks"
    for image_id in image_ids:
        tables = (("class_labels.txt", labels), ("localization.txt", annotated))
        missing = [name for name, table in tables if image_id not in table]
        if boxes is not None and image_id not in sizes:
            missing.append("image_sizes.txt")
        if missing:
            raise MetadataError(f"{folder}: image id {image_id!r} is missing from "
                                f"{', '.join(missing)}")
    return WSOLMetadata(folder, image_ids, labels, sizes, boxes, masks)


def resized_gt_boxes(metadata: WSOLMetadata, size: tuple[int, int] = (224, 224)
                     ) -> dict[str, np.ndarray]:
    """GT boxes of every image scaled to ``size`` ``(H, W)`` with the protocol's truncation."""
    from camkit.boxes import resize_boxes

    if metadata.boxes is None:
        raise ValueError(f"metadata of {str(metadata.folder)!r} holds masks, not boxes")
    # NumPy boxes in, NumPy boxes out.
    return {
        image_id: cast(np.ndarray, resize_boxes(metadata.boxes[image_id],
                                                metadata.image_sizes[image_id], size))
        for image_id in metadata.image_ids
    }


def _read_gray(path: Path, size: tuple[int, int]) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if image is None:
        raise FileNotFoundError(f"cannot read mask {str(path)!r}")
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def load_mask(mask_root: str | Path, annotation: MaskAnnotation,
              size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """GT mask of one image at ``size`` ``(H, W)``: 0 background, 1 foreground, 255 ignore.

    Each mask is read as grayscale and resized with nearest-neighbour interpolation; foreground
    is the union of instance pixels ``> 0.5``; ignore is the ignore mask (``> 0.5``) minus
    the foreground. Without an ignore path nothing is ignored.
    """
    foreground = np.zeros(size, dtype=bool)
    for relative in annotation.mask_paths:
        foreground |= _read_gray(safe_join(mask_root, relative, "mask path"), size) > 0.5
    mask = foreground.astype(np.uint8)
    if annotation.ignore_path is not None:
        ignore = _read_gray(safe_join(mask_root, annotation.ignore_path, "ignore path"), size) > 0.5
        mask[ignore & ~foreground] = 255
    return mask
