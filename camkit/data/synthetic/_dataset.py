"""The synthetic dataset itself: configuration, one rendered sample, the ``Dataset``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from camkit.data.synthetic._drawing import (
    _FILLS,
    _ONE,
    _PART_COLOURS,
    _SHAPES,
    MAX_CLASSES,
    _bbox,
    _glyph_mask,
    _icos,
    _isin,
    _poly,
    _rand_colour,
    _stripes,
    _upsample_int,
)

#: Split names and the code mixed into each item's seed (disjoint random streams per split).
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

@dataclass(frozen=True)
class SyntheticWSOLConfig:
    """Parameters of :class:`SyntheticWSOL`.

    Attributes:
        seed: base seed; with ``split`` and the item index it fixes every byte of an item.
        num_classes: number of classes ``K`` (distinct part glyphs), in ``[2, MAX_CLASSES]``.
        image_size: side ``S`` of the square images, in pixels, ``>= 32``.
        object_size: ``(low, high)`` range of the body's long extent as a fraction of ``S``,
            ``0 < low <= high <= 0.95``. The object with head and tail can be a little larger.
        part_ratio: ``(low, high)`` range of the part's area as a fraction of the body's area,
            ``0 < low <= high <= 0.5``.
        part_colour_cue: probability in ``[0, 1]`` that the part's main colour is its class
            colour (a fixed saturated colour per class, lightly jittered) rather than a random
            colour contrasting with the body; the glyph shape always codes the class.
        clutter: background clutter level in ``[0, 1]`` (number of blobs and distractors,
            pixel noise).
        body_class_cue: strength in ``[0, 1]`` of an optional weak class cue in the body colour
            (0: bodies are class-agnostic; 1: body hue fully determined by the class).
        split: ``"train"``, ``"val"`` or ``"test"``; splits use disjoint random streams.
        length: number of items ``N >= 1``.
    """

    seed: int = 0
    num_classes: int = 12
    image_size: int = 128
    object_size: tuple[float, float] = (0.4, 0.8)
    part_ratio: tuple[float, float] = (0.08, 0.16)
    part_colour_cue: float = 1.0
    clutter: float = 0.5
    body_class_cue: float = 0.0
    split: str = "train"
    length: int = 1000

    def __post_init__(self) -> None:
        _check_int(self.seed, "seed", low=0)
        _check_int(self.num_classes, "num_classes", low=2, high=MAX_CLASSES)
        _check_int(self.image_size, "image_size", low=32)
        _check_int(self.length, "length", low=1)
        _check_range(self.object_size, "object_size", high=0.95)
        _check_range(self.part_ratio, "part_ratio", high=0.5)
        _check_unit(self.part_colour_cue, "part_colour_cue")
        _check_unit(self.clutter, "clutter")
        _check_unit(self.body_class_cue, "body_class_cue")
        if not isinstance(self.split, str):
            raise TypeError(f"split must be a str, got {type(self.split).__name__}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {self.split!r}")
        # normalize sequences given as lists into tuples of floats (frozen dataclass)
        object.__setattr__(self, "object_size", tuple(float(v) for v in self.object_size))
        object.__setattr__(self, "part_ratio", tuple(float(v) for v in self.part_ratio))


def _check_int(value: object, name: str, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_unit(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_range(value: object, name: str, *, high: float) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
    low_v, high_v = float(value[0]), float(value[1])
    if not 0.0 < low_v <= high_v <= high:
        raise ValueError(f"{name} must satisfy 0 < low <= high <= {high}, got {value!r}")


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered item, as NumPy arrays.

    Attributes:
        image: ``(S, S, 3)`` uint8 RGB image.
        label: class index in ``[0, K)``.
        box: ``(x0, y0, x1, y1)`` inclusive pixel box of the whole object (= bbox of ``mask``).
        mask: ``(S, S)`` bool mask of the whole object (body, head, tail and part).
        part_box: inclusive box of the class-specific part (= bbox of ``part_mask``).
        part_mask: ``(S, S)`` bool mask of the part (a subset of ``mask``).
    """

    image: np.ndarray
    label: int
    box: tuple[int, int, int, int]
    mask: np.ndarray
    part_box: tuple[int, int, int, int]
    part_mask: np.ndarray



class SyntheticWSOL(Dataset):
    """Seeded procedural WSOL dataset (random access, identical bytes on every machine).

    ``dataset[i]`` returns a dict:

    * ``"image"``: ``(3, S, S)`` float32 tensor in ``[0, 1]`` (RGB);
    * ``"label"``: int64 scalar tensor in ``[0, K)``;
    * ``"box"``: ``(4,)`` int64 tensor ``(x0, y0, x1, y1)``, inclusive pixels, the bounding box
      of the whole object (equal to the bounding box of ``"mask"``);
    * ``"mask"``: ``(S, S)`` bool tensor, the whole object;
    * ``"part_box"``, ``"part_mask"``: the same for the class-specific part (diagnostics);
    * ``"index"``: int64 scalar tensor, the item index.

    :meth:`sample` gives the same item as NumPy arrays (uint8 ``(S, S, 3)`` image).

    Args:
        config: a :class:`SyntheticWSOLConfig`; or pass its fields as keyword arguments.
        **kwargs: fields of :class:`SyntheticWSOLConfig` (only without ``config``).
    """

    def __init__(self, config: SyntheticWSOLConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = SyntheticWSOLConfig(**kwargs)
        elif kwargs:
            raise TypeError(
                f"pass either config or keyword fields, got config and {sorted(kwargs)}"
            )
        elif not isinstance(config, SyntheticWSOLConfig):
            raise TypeError(
                f"config must be a SyntheticWSOLConfig, got {type(config).__name__}"
            )
        self.config = config

    @property
    def num_classes(self) -> int:
        """Number of classes ``K``."""
        return self.config.num_classes

    @property
    def class_names(self) -> list[str]:
        """Human-readable names of the ``K`` part glyphs, e.g. ``"star-dot"``."""
        return [f"{_SHAPES[k % len(_SHAPES)]}-{_FILLS[k // len(_SHAPES)]}"
                for k in range(self.config.num_classes)]

    def __len__(self) -> int:
        return self.config.length

    def _rng(self, index: int) -> np.random.Generator:
        cfg = self.config
        seq = np.random.SeedSequence([cfg.seed, SPLITS[cfg.split], index])
        return np.random.Generator(np.random.PCG64(seq))

    def label_of(self, index: int) -> int:
        """Class of item ``index`` without rendering it (labels are balanced: ``index % K``
        permuted within each block of ``K`` consecutive items)."""
        index = self._check_index(index)
        k = self.config.num_classes
        block, pos = divmod(index, k)
        seq = np.random.SeedSequence([self.config.seed, SPLITS[self.config.split], block, 7])
        perm = np.random.Generator(np.random.PCG64(seq)).permutation(k)
        return int(perm[pos])

    def _check_index(self, index: object) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = self.config.length
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index must be in [-{n}, {n}), got {index}")
        return i

    # ------------------------------------------------------------------ rendering
    def sample(self, index: int) -> SyntheticSample:
        """Render item ``index`` as NumPy arrays (see :class:`SyntheticSample`)."""
        import cv2

        index = self._check_index(index)
        cfg = self.config
        label = self.label_of(index)
        rng = self._rng(index)
        size = cfg.image_size
        scale_q = size * _ONE // 128  # lengths below are given for 128 px images

        img = self._background(cv2, rng, size)

        # ---- body silhouette: blobby polygon + optional head and tail, rescaled once so that
        # the object's long extent matches the drawn target length
        lo, hi = cfg.object_size
        length = max(int(size * (lo + (hi - lo) * rng.random())), 8)
        has_head = bool(rng.random() < 0.7)
        has_tail = bool(rng.random() < 0.5)
        aspect_q = int(_ONE * (0.45 + 0.45 * rng.random()))
        rot = int(rng.integers(0, 256))
        harm = rng.integers(-1, 2, size=(3,)) * rng.integers(0, 250, size=(3,))
        hph = rng.integers(0, 256, size=(3,))
        head_q = int(rng.integers(28, 42))
        tail_q = int(rng.integers(35, 60))
        bend = int(rng.integers(-20, 21))
        big_r = max(length // 2, 6)
        body = self._silhouette(cv2, size, big_r, aspect_q, rot, harm, hph, has_head, has_tail,
                                head_q, tail_q, bend)
        bx0, by0, bx1, by1 = _bbox(body)
        extent = max(bx1 - bx0 + 1, by1 - by0 + 1)
        big_r = max(big_r * length // extent, 6)
        body = self._silhouette(cv2, size, big_r, aspect_q, rot, harm, hph, has_head, has_tail,
                                head_q, tail_q, bend)
        # crop the silhouette and place it at a random position fully inside the image
        bx0, by0, bx1, by1 = _bbox(body)
        bw, bh = bx1 - bx0 + 1, by1 - by0 + 1
        if bw > size - 2 or bh > size - 2:  # too large: shrink with nearest neighbour
            f = (size - 2) / max(bw, bh)
            crop = cv2.resize(body[by0:by1 + 1, bx0:bx1 + 1], (max(int(bw * f), 1),
                              max(int(bh * f), 1)), interpolation=cv2.INTER_NEAREST)
        else:
            crop = body[by0:by1 + 1, bx0:bx1 + 1]
        ch, cw = crop.shape
        ox = int(rng.integers(1, size - cw))
        oy = int(rng.integers(1, size - ch))
        mask = np.zeros((size, size), bool)
        mask[oy:oy + ch, ox:ox + cw] = crop.astype(bool)

        # ---- body appearance: shared "striped fur" family, class-agnostic colour by default
        base = _rand_colour(rng)
        if cfg.body_class_cue > 0 and rng.random() < cfg.body_class_cue:
            base = self._class_colour(label, rng)
        base2 = np.clip(base + rng.integers(-50, 51, size=3), 20, 235)
        period = int(rng.integers(80, 150)) * scale_q // _ONE  # 1/16 px: 5..9 px at 128
        period = max(period, 48)
        amp = int(rng.integers(28, 48))
        stripe = _stripes(size, rot + 64 + int(rng.integers(-12, 13)), period,
                          int(rng.integers(0, period)), amp)
        # body colour: gradient base -> base2 along the stripes' perpendicular, plus grating
        yy, xx = np.mgrid[0:size, 0:size]
        ramp = ((xx - ox) * 256 // max(cw, 1) + (yy - oy) * 256 // max(ch, 1)) // 2
        ramp = np.clip(ramp, 0, 256)[..., None]
        body_rgb = (base[None, None] * (256 - ramp) + base2[None, None] * ramp) // 256
        body_rgb = body_rgb + stripe[..., None]
        body_rgb = body_rgb + rng.integers(-6, 7, size=(size, size, 1), dtype=np.int32)
        img = np.where(mask[..., None], body_rgb, img)
        # thin dark outline (1 px) like a contour of a real object, inside the mask
        er = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        edge = mask & ~er
        img[edge] = img[edge] * 3 // 5

        # ---- class-specific part: glyph inside the body
        lo, hi = cfg.part_ratio
        ratio = lo + (hi - lo) * rng.random()
        area = int(mask.sum())
        p = max(int((ratio * area) ** 0.5), 5)
        part_mask = np.zeros((size, size), bool)
        for _ in range(8):
            cand = self._square_positions(er, p)
            if cand.size:
                break
            p = max(p * 4 // 5, 4)
        if not cand.size:  # degenerate body: put the part at the body's first pixel
            ys, xs = np.nonzero(er if er.any() else mask)
            cand = np.array([[ys[0], xs[0]]])
            p = 1
        py, px = (int(v) for v in cand[int(rng.integers(0, len(cand)))])
        shape, fill = label % len(_SHAPES), label // len(_SHAPES)
        grot = int(rng.integers(-10, 11))
        if p >= 5:
            outer, inner = _glyph_mask(cv2, p, shape, fill, grot)
        else:
            outer, inner = np.ones((p, p), bool), np.zeros((p, p), bool)
        local = img[py:py + p, px:px + p]
        lum = int(local.mean())
        c1 = rng.integers(0, 90, size=3) if lum > 128 else rng.integers(165, 256, size=3)
        c2 = rng.integers(165, 256, size=3) if lum > 128 else rng.integers(0, 90, size=3)
        if cfg.part_colour_cue > 0 and rng.random() < cfg.part_colour_cue:
            c1 = np.clip(np.array(_PART_COLOURS[label], np.int32)
                         + rng.integers(-15, 16, size=3), 0, 255)
        local[outer] = c1
        local[inner] = c2
        part_mask[py:py + p, px:px + p] = outer & mask[py:py + p, px:px + p]
        if not part_mask.any():
            part_mask[py, px] = True

        image = np.clip(img, 0, 255).astype(np.uint8)
        return SyntheticSample(image=image, label=label, box=_bbox(mask), mask=mask,
                               part_box=_bbox(part_mask), part_mask=part_mask)

    @staticmethod
    def _silhouette(cv2: Any, size: int, big_r: int, aspect_q: int, rot: int, harm: np.ndarray,
                    hph: np.ndarray, has_head: bool, has_tail: bool, head_q: int, tail_q: int,
                    bend: int) -> np.ndarray:
        """Object silhouette on a ``(3S, 3S)`` uint8 canvas centred on the body."""
        n_vert = 24
        radii = []
        for k in range(n_vert):
            a = 256 * k // n_vert
            wob = sum(int(harm[j]) * _icos((j + 2) * a + int(hph[j])) // _ONE for j in range(3))
            radii.append(max(big_r * (2048 + wob) // 2048, 3))
        canvas = 3 * size
        c0 = canvas // 2
        body = np.zeros((canvas, canvas), np.uint8)
        cv2.fillPoly(body, [_poly(c0, c0, radii, rot, aspect_q)], 1)
        if has_head:
            hr = max(big_r * head_q // 100, 3)
            d = big_r - hr // 3
            cv2.circle(body, (c0 + d * _icos(rot) // _ONE, c0 + d * _isin(rot) // _ONE), hr, 1,
                       -1, cv2.LINE_8)
        if has_tail:
            tl = big_r * tail_q // 100
            tw = max(big_r * aspect_q // _ONE // 3, 2)
            back = rot + 128
            bx = c0 + (big_r - 2) * _icos(back) // _ONE
            by = c0 + (big_r - 2) * _isin(back) // _ONE
            tip = (bx + tl * _icos(back + bend) // _ONE, by + tl * _isin(back + bend) // _ONE)
            r34 = big_r * 3 // 4
            side1 = (c0 + tw * _icos(back + 64) // _ONE + r34 * _icos(back) // _ONE,
                     c0 + tw * _isin(back + 64) // _ONE + r34 * _isin(back) // _ONE)
            side2 = (c0 + tw * _icos(back - 64) // _ONE + r34 * _icos(back) // _ONE,
                     c0 + tw * _isin(back - 64) // _ONE + r34 * _isin(back) // _ONE)
            cv2.fillPoly(body, [np.array([side1, tip, side2], np.int32)], 1)
        return body

    @staticmethod
    def _square_positions(allowed: np.ndarray, p: int) -> np.ndarray:
        """Top-left corners ``(y, x)`` of all ``p x p`` squares lying inside ``allowed``."""
        n = allowed.shape[0]
        if p > n:
            return np.zeros((0, 2), np.int64)
        ii = np.zeros((n + 1, n + 1), np.int64)
        ii[1:, 1:] = allowed.astype(np.int64).cumsum(0).cumsum(1)
        s = ii[p:, p:] - ii[:-p, p:] - ii[p:, :-p] + ii[:-p, :-p]
        return np.argwhere(s == p * p)

    def _class_colour(self, label: int, rng: np.random.Generator) -> np.ndarray:
        k = self.config.num_classes
        seq = np.random.SeedSequence([self.config.seed, 99, label % k])
        centre = np.random.Generator(np.random.PCG64(seq)).integers(50, 206, size=3)
        return np.clip(centre + rng.integers(-25, 26, size=3), 30, 225).astype(np.int32)

    def _background(self, cv2: Any, rng: np.random.Generator, size: int) -> np.ndarray:
        """Cluttered background, ``(S, S, 3)`` int32: a smooth colour field, flat and smooth
        blobs of the shared palette, small high-contrast distractors and pixel noise."""
        clutter = self.config.clutter
        g = int(rng.integers(3, 6))
        grid = np.stack([_rand_colour(rng) for _ in range(g * g)]).reshape(g, g, 3)
        img = _upsample_int(grid, size)
        n_blobs = round(4 + 30 * clutter)
        scale = size / 128.0
        for _ in range(n_blobs):
            kind = int(rng.integers(0, 3))
            cx, cy = (int(v) for v in rng.integers(0, size, size=2))
            r = max(int((6 + 30 * rng.random()) * scale), 2)
            layer = np.zeros((size, size), np.uint8)
            if kind == 0:
                ax2 = max(r * int(rng.integers(40, 101)) // 100, 1)
                cv2.ellipse(layer, (cx, cy), (r, ax2), int(rng.integers(0, 180)), 0, 360, 1, -1,
                            cv2.LINE_8)
            elif kind == 1:
                n = int(rng.integers(3, 8))
                radii = [max(r * int(rng.integers(50, 101)) // 100, 1) for _ in range(n)]
                cv2.fillPoly(layer, [_poly(cx, cy, radii, int(rng.integers(0, 256)), _ONE)], 1)
            else:
                w = max(r * int(rng.integers(30, 101)) // 100, 1)
                cv2.rectangle(layer, (cx - r, cy - w), (cx + r, cy + w), 1, -1)
            sel = layer.astype(bool)
            if rng.random() < 0.5:  # flat colour
                img[sel] = _rand_colour(rng)
            else:  # smooth two-colour gradient blob
                gg = np.stack([_rand_colour(rng) for _ in range(4)]).reshape(2, 2, 3)
                img = np.where(sel[..., None], _upsample_int(gg, size), img)
        n_dis = round(8 * clutter)
        for _ in range(n_dis):  # part-sized high-contrast distractors (not class glyphs)
            cx, cy = (int(v) for v in rng.integers(0, size, size=2))
            r = max(int((3 + 6 * rng.random()) * scale), 2)
            n = int(rng.integers(3, 9))
            radii = [max(r * int(rng.integers(40, 101)) // 100, 1) for _ in range(n)]
            col = rng.integers(0, 90, size=3) if rng.random() < 0.5 else rng.integers(165, 256,
                                                                                      size=3)
            cv2.fillPoly(img_u := np.zeros((size, size), np.uint8),
                         [_poly(cx, cy, radii, int(rng.integers(0, 256)), _ONE)], 1)
            img[img_u.astype(bool)] = col
        noise = round(4 + 10 * clutter)
        img = img + rng.integers(-noise, noise + 1, size=(size, size, 3), dtype=np.int32)
        return img

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.sample(index)
        image = torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1))).float() / 255.0
        return {
            "image": image,
            "label": torch.tensor(s.label, dtype=torch.int64),
            "box": torch.tensor(s.box, dtype=torch.int64),
            "mask": torch.from_numpy(s.mask),
            "part_box": torch.tensor(s.part_box, dtype=torch.int64),
            "part_mask": torch.from_numpy(s.part_mask),
            "index": torch.tensor(self._check_index(index), dtype=torch.int64),
        }
