"""Train a WSOL classifier and evaluate its CAM, RCAM or CREAM maps with the reference metrics.

``--wsol-method cam|has|adl|cutmix|acol|spg`` chooses the training method (default ``cam``),
``--method cam|rcam|cream`` the localization.

Single process::

    python examples/train_wsol.py --dataset CUB --data-root DATA/CUB \
        --metadata-root META/CUB --backbone vgg16 --method cream \
        --pretrained vgg16-imagenet.pth --output runs/cub_vgg16_cream

Several processes (one per GPU): ``torchrun --nproc-per-node 4 examples/train_wsol.py ...``.
See ``examples/README.md`` for the paper-table command lines and ``--help`` for every option.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Libraries the training run needs beyond camkit and torch, all in the ``examples`` extra.
REQUIRED = {"torchvision": "torchvision", "PIL": "Pillow"}


def require_optional_libraries() -> None:
    """Import the training run's optional libraries; exit with one line naming the extra."""
    for module, package in REQUIRED.items():
        try:
            importlib.import_module(module)
        except (ImportError, RuntimeError, OSError) as error:
            # RuntimeError / OSError: installed, but built for another torch.
            sys.exit(f"train_wsol.py: error: {package} is needed to train "
                     f"({type(error).__name__}: {error}); install the examples extra: "
                     "pip install 'camkit[examples]' (a torchvision built for your torch)")


if __name__ == "__main__":
    from wsol.cli import parse_args

    parse_args()  # --help and option errors end here, before any optional library is imported
    require_optional_libraries()

    from wsol.checkpoint import CheckpointError
    from wsol.run import main

    try:
        main()
    except (CheckpointError, FileNotFoundError, FileExistsError) as error:
        # A bad --resume checkpoint or output folder: one clear line, not a traceback.
        sys.exit(f"train_wsol.py: error: {error}")
    sys.exit(0)
