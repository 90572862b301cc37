"""Integer-only drawing primitives of the synthetic dataset (same bytes on every machine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_SHAPES = ("disk", "square", "triangle", "plus", "star", "crescent")
_FILLS = ("solid", "dot", "bar")
#: Number of distinct class glyphs (part designs): shapes x fills.
MAX_CLASSES: int = len(_SHAPES) * len(_FILLS)
#: Class colours of the parts (RGB), well spread for the first 12 classes.
_PART_COLOURS = (
    (230, 25, 25), (25, 200, 40), (30, 60, 230), (240, 220, 20), (220, 30, 220), (20, 210, 220),
    (250, 130, 10), (130, 40, 200), (150, 240, 30), (250, 120, 170), (0, 130, 130),
    (140, 70, 20), (10, 20, 120), (120, 130, 10), (120, 10, 40), (250, 250, 250), (10, 10, 10),
    (128, 128, 128),
)

# round(4096 * sin(pi/2 * i / 64)) for i = 0..64: a quarter wave, 256 angle steps per turn.
_SIN_QUARTER = (
    0, 101, 201, 301, 401, 501, 601, 700, 799, 897, 995, 1092, 1189, 1285, 1380, 1474, 1567,
    1660, 1751, 1842, 1931, 2019, 2106, 2191, 2276, 2359, 2440, 2520, 2598, 2675, 2751, 2824,
    2896, 2967, 3035, 3102, 3166, 3229, 3290, 3349, 3406, 3461, 3513, 3564, 3612, 3659, 3703,
    3745, 3784, 3822, 3857, 3889, 3920, 3948, 3973, 3996, 4017, 4036, 4052, 4065, 4076, 4085,
    4091, 4095, 4096,
)
_ONE = 4096  # fixed-point unit of the sine table


def _isin(a: int) -> int:
    """Integer sine, ``round(4096 * sin(2*pi*a/256))``, for any integer angle step ``a``."""
    a %= 256
    q, r = divmod(a, 64)
    if q == 0:
        return _SIN_QUARTER[r]
    if q == 1:
        return _SIN_QUARTER[64 - r]
    if q == 2:
        return -_SIN_QUARTER[r]
    return -_SIN_QUARTER[64 - r]


def _icos(a: int) -> int:
    """Integer cosine, ``round(4096 * cos(2*pi*a/256))``."""
    return _isin(a + 64)




def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def _rand_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour of the shared palette: each channel uniform in [30, 225]."""
    return rng.integers(30, 226, size=3, dtype=np.int32)


def _upsample_int(grid: np.ndarray, size: int) -> np.ndarray:
    """Integer bilinear upsampling of a ``(g, g, 3)`` int grid to ``(size, size, 3)``."""
    g = grid.shape[0]
    pos = np.arange(size, dtype=np.int64) * (g - 1) * 256 // max(size - 1, 1)
    i0 = np.minimum(pos >> 8, g - 2)
    fr = pos - (i0 << 8)
    rows = (grid[i0] * (256 - fr)[:, None, None] + grid[i0 + 1] * fr[:, None, None]) >> 8
    out = (rows[:, i0] * (256 - fr)[None, :, None] + rows[:, i0 + 1] * fr[None, :, None]) >> 8
    return out.astype(np.int32)


def _stripes(size: int, angle: int, period: int, phase: int, amp: int) -> np.ndarray:
    """Integer triangle-wave grating, ``(size, size)`` int32 in ``[-amp, amp]``.

    ``period`` is in 1/16 pixel, ``angle`` in 1/256 turn (direction of the wave vector).
    """
    c, s = _icos(angle), _isin(angle)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.int64)
    proj = (xx * c + yy * s) // 256 + phase  # in 1/16 px
    t = np.mod(proj, period)
    return (np.abs(2 * t - period) * (2 * amp) // period - amp).astype(np.int32)


def _poly(cx: int, cy: int, radii: Sequence[int], rot: int, aspect_q: int) -> np.ndarray:
    """Integer polygon: vertex ``k`` at angle ``256*k/n`` with radius ``radii[k]``, the minor
    axis scaled by ``aspect_q/4096``, rotated by ``rot`` (1/256 turn). Returns ``(n, 2)``."""
    n = len(radii)
    cr, sr = _icos(rot), _isin(rot)
    pts = []
    for k, r in enumerate(radii):
        a = (256 * k) // n
        u = r * _icos(a) // _ONE
        v = r * _isin(a) // _ONE * aspect_q // _ONE
        pts.append((cx + (u * cr - v * sr) // _ONE, cy + (u * sr + v * cr) // _ONE))
    return np.array(pts, dtype=np.int32)


def _glyph_mask(cv2: Any, p: int, shape: int, fill: int, rot: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(outer, inner)`` of a class glyph in a ``(p, p)`` square; ``inner`` is the fill."""
    outer = np.zeros((p, p), np.uint8)
    c = p // 2
    r = max(p // 2 - 1, 2)
    name = _SHAPES[shape]
    if name == "disk":
        cv2.circle(outer, (c, c), r, 1, -1, cv2.LINE_8)
    elif name == "square":
        cv2.fillPoly(outer, [_poly(c, c, [r * 1448 // 1024] * 4, rot + 32, _ONE)], 1)
    elif name == "triangle":
        cv2.fillPoly(outer, [_poly(c, c, [r] * 3, rot - 64, _ONE)], 1)
    elif name == "plus":
        w = max(r // 3, 1)
        arm = _poly(c, c, [r * 1448 // 1024] * 4, rot + 32, _ONE)
        bar1 = np.zeros_like(outer)
        cv2.fillPoly(bar1, [arm], 1)
        cross = np.zeros_like(outer)
        # two rotated bars of half-width w and half-length r
        for extra in (0, 64):
            cr, sr = _icos(rot + extra), _isin(rot + extra)
            corners = [(r, w), (-r, w), (-r, -w), (r, -w)]
            pts = np.array([(c + (u * cr - v * sr) // _ONE, c + (u * sr + v * cr) // _ONE)
                            for u, v in corners], np.int32)
            cv2.fillPoly(cross, [pts], 1)
        outer = cross
    elif name == "star":
        radii = [r if k % 2 == 0 else r * 2 // 5 for k in range(10)]
        cv2.fillPoly(outer, [_poly(c, c, radii, rot - 64, _ONE)], 1)
    else:  # crescent
        cv2.circle(outer, (c, c), r, 1, -1, cv2.LINE_8)
        off_x = c + r * 2 * _icos(rot) // (3 * _ONE)
        off_y = c + r * 2 * _isin(rot) // (3 * _ONE)
        cv2.circle(outer, (off_x, off_y), r * 4 // 5, 0, -1, cv2.LINE_8)
    inner = np.zeros_like(outer)
    if _FILLS[fill] == "dot":
        cv2.circle(inner, (c, c), max(r // 3, 1), 1, -1, cv2.LINE_8)
    elif _FILLS[fill] == "bar":
        h = max(r // 5, 1)
        inner[c - h:c + h + 1, :] = 1
    inner &= outer
    return outer.astype(bool), inner.astype(bool)
