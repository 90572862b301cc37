"""Configuration of the embedded benchmark (``camkit demo``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from camkit._checks import check_finite_number, check_positive_int

__all__ = ["DemoConfig"]

#: EM iterations and momenta of the paper's two sensitivity studies.
ABLATION_ITERATIONS = (0, 1, 2, 3, 4)
ABLATION_MOMENTA = (0.2, 0.6, 0.8, 0.99, 1.0)


@dataclass(frozen=True)
class DemoConfig:
    """Everything that fixes a demo run; the same config and seed repeat the same run.

    Attributes:
        seed: seed of the dataset, the initialization and the data order.
        num_classes: number of object classes ``K``.
        image_size: side of the square images, in pixels.
        train_size, test_size: images in the training and held-out test splits.
        part_ratio: range of the class-specific part's area as a fraction of the body's.
        epochs, batch_size, lr, weight_decay: training schedule of the head (AdamW,
            one-cycle learning rate).
        head_channels: channels of the trained head's conv layers (the CAM features are
            these and the trunk's 40 channels).
        tap: train a second network with thresholded average pooling at this ``theta``
            and report it as ``RCAM+TAP``; ``None`` skips it.
        ablation: also run the EM-iterations and momentum sensitivity studies.
        overlays: test images drawn in the overlay grid.
        cam_curve_interval: step of the score-map threshold grid of MaxBoxAccV2.
    """

    seed: int = 0
    num_classes: int = 8
    image_size: int = 128
    train_size: int = 1600
    test_size: int = 500
    part_ratio: tuple[float, float] = (0.12, 0.2)
    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    head_channels: int = 96
    tap: float | None = None
    ablation: bool = False
    overlays: int = 6
    cam_curve_interval: float = 0.01

    def __post_init__(self) -> None:
        check_positive_int(self.seed, "seed", allow_zero=True)
        check_positive_int(self.num_classes, "num_classes")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        check_positive_int(self.image_size, "image_size")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        for name in ("train_size", "test_size", "epochs", "batch_size", "head_channels"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.overlays, "overlays", allow_zero=True)
        check_finite_number(self.lr, "lr", low=0.0, low_inclusive=False)
        check_finite_number(self.weight_decay, "weight_decay", low=0.0)
        check_finite_number(self.cam_curve_interval, "cam_curve_interval", low=0.0, high=0.5,
                            low_inclusive=False)
        if self.tap is not None:
            check_finite_number(self.tap, "tap", low=0.0, high=1.0)

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A run of well under a minute on two CPU cores (fewer, smaller images)."""
        settings: dict[str, Any] = {"train_size": 800, "test_size": 100, "epochs": 10,
                                    "overlays": 4}
        settings.update(overrides)
        return cls(**settings)

    def with_overrides(self, **overrides: Any) -> DemoConfig:
        """Copy with some fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (the ``config`` entry of ``results.json``)."""
        return asdict(self)
