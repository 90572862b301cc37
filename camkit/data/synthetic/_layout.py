"""Writing the synthetic dataset in the reference WSOL metadata layout."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from camkit._io import write_bytes_atomic
from camkit.data.synthetic._dataset import SyntheticWSOL


def _write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError(f"could not encode {path} as PNG")
    write_bytes_atomic(path, buf.tobytes())


def write_reference_layout(
    dataset: SyntheticWSOL,
    root: str | os.PathLike[str],
    *,
    masks: bool = False,
    image_dir: str = "images",
    indices: Sequence[int] | None = None,
) -> Path:
    """Write ``dataset`` in the reference WSOL layout (Choe et al., CVPR 2020).

    Files (under ``root``; every file is written to a temporary name and renamed):

    * ``<image_dir>/<split>/<class>/<index>.png``: RGB images (image ids are these paths
      relative to ``root / image_dir``, e.g. ``test/3/000017.png``);
    * ``metadata/<split>/image_ids.txt``: one image id a line;
    * ``metadata/<split>/class_labels.txt``: ``id,class``;
    * ``metadata/<split>/image_sizes.txt``: ``id,w,h``;
    * ``metadata/<split>/localization.txt``: ``id,x0,y0,x1,y1`` (inclusive pixels), or with
      ``masks=True``: ``id,mask_path,ignore_path`` with the whole-object masks written as
      ``masks/<split>/<class>/<index>.png`` (0/255 grayscale, paths relative to ``root``) and an
      empty ignore path (the OpenImages variant); the boxes then go to ``localization_box.txt``.

    Args:
        dataset: the dataset to write.
        root: output folder (created if missing).
        masks: also write masks and the mask variant of ``localization.txt``.
        image_dir: name of the image folder under ``root``.
        indices: items to write (default: all, in order).

    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(dataset, SyntheticWSOL):
        raise TypeError(f"dataset must be a SyntheticWSOL, got {type(dataset).__name__}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
    if not isinstance(masks, bool):
        raise TypeError(f"masks must be a bool, got {type(masks).__name__}")
    if not isinstance(image_dir, str) or not image_dir or "/" in image_dir or "\\" in image_dir:
        raise ValueError(f"image_dir must be a non-empty folder name, got {image_dir!r}")
    idx = list(range(len(dataset))) if indices is None else [dataset._check_index(i)
                                                             for i in indices]
    root_p = Path(root)
    split = dataset.config.split
    ids, labels, sizes, locs, boxes = [], [], [], [], []
    for i in idx:
        s = dataset.sample(i)
        image_id = f"{split}/{s.label}/{i:06d}.png"
        _write_png(root_p / image_dir / image_id, s.image[..., ::-1])  # RGB -> BGR
        h, w = s.mask.shape
        ids.append(image_id)
        labels.append(f"{image_id},{s.label}")
        sizes.append(f"{image_id},{w},{h}")
        box = f"{image_id},{s.box[0]},{s.box[1]},{s.box[2]},{s.box[3]}"
        boxes.append(box)
        if masks:
            mask_path = f"masks/{split}/{s.label}/{i:06d}.png"
            _write_png(root_p / mask_path, s.mask.astype(np.uint8) * 255)
            locs.append(f"{image_id},{mask_path},")
        else:
            locs.append(box)
    meta = root_p / "metadata" / split
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", labels),
                        ("image_sizes.txt", sizes), ("localization.txt", locs)):
        write_bytes_atomic(meta / name, ("\n".join(lines) + "\n").encode())
    if masks:
        write_bytes_atomic(meta / "localization_box.txt", ("\n".join(boxes) + "\n").encode())
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(dataset.config).items()}
    write_bytes_atomic(meta / "config.txt",
                        ("\n".join(f"{k}={v}" for k, v in config.items()) + "\n").encode())
    return root_p
