"""Full-benchmark WSOL training with camkit's operators (CAM, RCAM, CREAM).

Modules: ``config`` (per-dataset defaults), ``data`` (reference-layout datasets, transforms,
samplers), ``backbones`` (VGG16-GAP, ResNet50, InceptionV3 built from torchvision),
``engine`` (training and evaluation loops), ``checkpoint`` (atomic, resumable checkpoints),
``regressor`` (CREAM's box-regressor variant), ``distributed`` (torchrun helpers).
The command line is ``examples/train_wsol.py``.
"""
