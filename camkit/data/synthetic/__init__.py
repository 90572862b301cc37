"""Procedural weakly-supervised object localization (WSOL) dataset for demos and tests.

Every image holds one object on a cluttered, textured background:

* a large **body** (40-80 % of the image side by default) whose appearance family is shared by
  all classes -- a striped "fur" texture over a blobby silhouette with an optional head and
  tail -- and differs from the background, whose clutter is made of smooth blobs, flat shapes,
  and small high-contrast distractors drawn from the *same* colour distribution (so the body is
  not salient by brightness or colour alone);
* a small **class-specific part** (a glyph: one of six shapes times three inner fills) placed at
  a random position inside the body. The part is the only cue of the class, so a classifier
  needs nothing else -- the situation in which class activation maps (CAM) fire on the most
  discriminative part only, while a feature-clustering method such as CREAM can still separate
  the body (shared appearance) from the background.

The ground truth is the box and the pixel mask of the **whole object** (body, head, tail and
part); the part's own box and mask come along for diagnostics.

Determinism: item ``i`` of a dataset is drawn from its own
``numpy.random.Generator(PCG64(SeedSequence([seed, split_code, i])))`` and rendered with integer
arithmetic only (integer coordinates, a hard-coded integer sine table, integer blending and
interpolation, OpenCV's integer polygon filling without anti-aliasing), so the same arguments
give the same bytes on every machine and items can be generated independently, in any order.
OpenCV is imported on first use, not at module import.
"""

from __future__ import annotations

from camkit.data.synthetic._dataset import (
    SPLITS,
    SyntheticSample,
    SyntheticWSOL,
    SyntheticWSOLConfig,
)
from camkit.data.synthetic._drawing import MAX_CLASSES
from camkit.data.synthetic._layout import write_reference_layout

__all__ = [
    "MAX_CLASSES",
    "SPLITS",
    "SyntheticSample",
    "SyntheticWSOL",
    "SyntheticWSOLConfig",
    "write_reference_layout",
]
