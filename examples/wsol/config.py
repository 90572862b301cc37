"""Per-dataset and per-backbone defaults of the WSOL protocol.

Structural settings (transforms, optimizer family, 10x learning rate on the new layers, step
decay by 0.1) follow the evaluation protocol of Choe et al. (CVPR 2020). The numbers below are
*starting points* for that protocol (epochs, decay period and batch size as commonly used on
each benchmark; learning rates to be tuned on the ``val`` split, which is what the protocol's
``train-fullsup`` split is for). Every one of them can be overridden on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKBONES", "DATASETS", "METHODS", "BackboneDefaults", "DatasetDefaults"]

METHODS = ("cam", "rcam", "cream")


@dataclass(frozen=True)
class DatasetDefaults:
    """Training schedule defaults of one benchmark."""

    num_classes: int
    epochs: int
    lr_decay_epochs: int
    batch_size: int
    weight_decay: float
    lr: dict[str, float]  # backbone name -> base learning rate (new layers get 10x)
    localization: str  # "boxes" (MaxBoxAccV2, loc accuracies) or "masks" (PxAP)
    regressor_epochs: int


@dataclass(frozen=True)
class BackboneDefaults:
    """Architecture-dependent defaults."""

    tap_theta: float  # TAP threshold ratio (Bae et al. 2020): 0.1 VGG, 0.0 ResNet/Inception
    large_feature_map: bool  # ResNet50: 28x28 at 224; Inception: 28x28 instead of 14x14
    min_input: int  # smallest input side the architecture accepts


DATASETS: dict[str, DatasetDefaults] = {
    "CUB": DatasetDefaults(
        num_classes=200, epochs=50, lr_decay_epochs=15, batch_size=32, weight_decay=1e-4,
        lr={"vgg16": 1.7e-5, "resnet50": 1.7e-4, "inception_v3": 1.7e-3},
        localization="boxes", regressor_epochs=30,
    ),
    "ILSVRC": DatasetDefaults(
        num_classes=1000, epochs=10, lr_decay_epochs=3, batch_size=32, weight_decay=1e-4,
        lr={"vgg16": 2e-5, "resnet50": 2e-4, "inception_v3": 2e-3},
        localization="boxes", regressor_epochs=6,
    ),
    "OpenImages": DatasetDefaults(
        num_classes=100, epochs=10, lr_decay_epochs=3, batch_size=32, weight_decay=5e-4,
        lr={"vgg16": 2.3e-3, "resnet50": 2e-4, "inception_v3": 2e-3},
        localization="masks", regressor_epochs=0,
    ),
}

BACKBONES: dict[str, BackboneDefaults] = {
    "vgg16": BackboneDefaults(tap_theta=0.1, large_feature_map=False, min_input=32),
    "resnet50": BackboneDefaults(tap_theta=0.0, large_feature_map=True, min_input=32),
    "inception_v3": BackboneDefaults(tap_theta=0.0, large_feature_map=False, min_input=75),
}
