"""Per-dataset and per-backbone defaults of the WSOL protocol.

Structural settings (transforms, optimizer family, 10x learning rate on the new layers, step
decay by 0.1) follow the evaluation protocol of Choe et al. (CVPR 2020). The numbers below are
*starting points* for that protocol (epochs, decay period and batch size as commonly used on
each benchmark; learning rates to be tuned on the ``val`` split, which is what the protocol's
``train-fullsup`` split is for). Every one of them can be overridden on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADL_POSITIONS",
    "BACKBONES",
    "DATASETS",
    "METHODS",
    "SPG_STAGES",
    "WSOL_DEFAULTS",
    "WSOL_METHODS",
    "BackboneDefaults",
    "DatasetDefaults",
    "WSOLDefaults",
]

#: Localization methods (``--method``): how the maps are read from the trained classifier.
METHODS = ("cam", "rcam", "cream")

#: Training methods (``--wsol-method``): how the classifier is trained.
WSOL_METHODS = ("cam", "has", "adl", "cutmix", "acol", "spg")


@dataclass(frozen=True)
class WSOLDefaults:
    """Hyperparameters of the WSOL training methods (``--wsol-method``), with their sources.

    * HaS (Singh and Lee, ICCV 2017): ``has_grid`` 32 pixels and ``has_prob`` 0.5, the
      "HaS-32" rows of Bae et al. (ECCV 2020) and the paper's hiding probability; hidden
      cells take the dataset's mean pixel, 0 after the mean/std normalization.
    * ADL (Choe and Shim, CVPR 2019): ``adl_drop_rate`` 0.75 and ``adl_threshold`` 0.8, the
      authors' and the evaluation protocol's (Choe et al., CVPR 2020) code; inserted where
      that code inserts it, see ``ADL_POSITIONS``.
    * CutMix (Yun et al., ICCV 2019): ``cutmix_alpha`` 1.0 and ``cutmix_prob`` 1.0, the
      protocol's code (the authors' ImageNet recipe uses the same alpha).
    * ACoL (Zhang et al., CVPR 2018): ``acol_threshold`` 0.7, the protocol's
      ``acol_threshold`` (the ACoL authors' scripts use 0.6); two branches of 1024 channels.
    * SPG (Zhang et al., ECCV 2018): the protocol's thresholds ``((0.7, 0.01), (0.5, 0.05),
      (0.7, 0.1))`` (``camkit.spg.SPG_THRESHOLDS``); the guidance masks at the crop size
      (224 in the protocol).
    """

    has_grid: int = 32
    has_prob: float = 0.5
    adl_drop_rate: float = 0.75
    adl_threshold: float = 0.8
    cutmix_alpha: float = 1.0
    cutmix_prob: float = 1.0
    acol_threshold: float = 0.7


WSOL_DEFAULTS = WSOLDefaults()

#: Where ``--wsol-method adl`` inserts ADL: after these modules of the backbone's body (names
#: within ``WSOLNet.body``). VGG16: after conv4_3's and conv5_3's ReLU (the protocol's
#: ``configs_dict["ADL"]``: ``512, 512, 512, "A", "M", 512, 512, 512, "A"``). ResNet50: after
#: ``layer3[0]``, ``layer4[0]`` and ``layer4[2]`` (the protocol's ``_ADL_POSITION = [[], [],
#: [], [0], [0, 2]]``). InceptionV3: after the last block, on the feature map CAM reads (the
#: protocol's exact places in its Inception code are not reproduced here). ResNet50-SE: the
#: places of ResNet50 (same module names). MobileNetV1 (not in the protocol's code): after
#: ``block11`` and ``block13``, the last 512- and 1024-channel blocks, as VGG16's conv4_3 and
#: conv5_3 end their 512-channel stages.
ADL_POSITIONS: dict[str, tuple[str, ...]] = {
    "vgg16": ("features.22", "features.29"),
    "resnet50": ("layer3.0", "layer4.0", "layer4.2"),
    "inception_v3": ("SPG_A3_2b",),
    "resnet50_se": ("layer3.0", "layer4.0", "layer4.2"),
    "mobilenet_v1": ("block11", "block13"),
}

#: The two intermediate feature maps SPG-B reads (``camkit.SPGHead``'s docstring): outputs of
#: these modules of the body, ``(name, channels)``. VGG16: the conv4 block after its 3x3/2
#: max-pooling (14 x 14 maps), the conv5 block. ResNet50: ``layer3[0]``, ``layer3[1:]``.
#: InceptionV3: ``Mixed_5d`` (after the max-pooling for 14 x 14 maps), ``Mixed_6d``.
#: ResNet50-SE: as ResNet50. MobileNetV1 (not in the protocol's code): ``block6``, the first
#: 512-channel block (14 x 14 at 224), and ``block11``, the last.
SPG_STAGES: dict[str, tuple[tuple[str, int], tuple[str, int]]] = {
    "vgg16": (("features.23", 512), ("features.29", 512)),
    "resnet50": (("layer3.0", 1024), ("layer3", 1024)),
    "inception_v3": (("Mixed_5d", 288), ("Mixed_6d", 768)),
    "resnet50_se": (("layer3.0", 1024), ("layer3", 1024)),
    "mobilenet_v1": (("block6", 512), ("block11", 512)),
}


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

    tap_theta: float  # TAP threshold ratio (Bae et al. 2020): 0.1 VGG, 0.0 the others
    large_feature_map: bool  # ResNets: 28x28 at 224; Inception, MobileNetV1: 28x28, not 14x14
    min_input: int  # smallest input side the architecture accepts


DATASETS: dict[str, DatasetDefaults] = {
    "CUB": DatasetDefaults(
        num_classes=200, epochs=50, lr_decay_epochs=15, batch_size=32, weight_decay=1e-4,
        lr={"vgg16": 1.7e-5, "resnet50": 1.7e-4, "inception_v3": 1.7e-3,
            "resnet50_se": 1.7e-4, "mobilenet_v1": 1.7e-4},
        localization="boxes", regressor_epochs=30,
    ),
    "ILSVRC": DatasetDefaults(
        num_classes=1000, epochs=10, lr_decay_epochs=3, batch_size=32, weight_decay=1e-4,
        lr={"vgg16": 2e-5, "resnet50": 2e-4, "inception_v3": 2e-3, "resnet50_se": 2e-4,
            "mobilenet_v1": 2e-4},
        localization="boxes", regressor_epochs=6,
    ),
    "OpenImages": DatasetDefaults(
        num_classes=100, epochs=10, lr_decay_epochs=3, batch_size=32, weight_decay=5e-4,
        lr={"vgg16": 2.3e-3, "resnet50": 2e-4, "inception_v3": 2e-3,
            "resnet50_se": 2e-4, "mobilenet_v1": 2e-4},
        localization="masks", regressor_epochs=0,
    ),
}

BACKBONES: dict[str, BackboneDefaults] = {
    "vgg16": BackboneDefaults(tap_theta=0.1, large_feature_map=False, min_input=32),
    "resnet50": BackboneDefaults(tap_theta=0.0, large_feature_map=True, min_input=32),
    "inception_v3": BackboneDefaults(tap_theta=0.0, large_feature_map=False, min_input=75),
    # Bae et al.'s other two backbones, randomly initialized (no weights ship offline): the
    # learning rates above are ResNet50's, untuned starting points for these.
    "resnet50_se": BackboneDefaults(tap_theta=0.0, large_feature_map=True, min_input=32),
    "mobilenet_v1": BackboneDefaults(tap_theta=0.0, large_feature_map=False, min_input=32),
}
