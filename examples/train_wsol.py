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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wsol.checkpoint import CheckpointError
from wsol.run import main

if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, FileNotFoundError, FileExistsError) as error:
        # A bad --resume checkpoint or output folder: one clear line, not a traceback.
        sys.exit(f"train_wsol.py: error: {error}")
    sys.exit(0)
