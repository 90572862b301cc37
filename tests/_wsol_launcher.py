"""Run ``examples/train_wsol.py``'s ``main`` in a subprocess (e.g. under torchrun) in tests.

Applies ``conftest.import_torchvision()`` first: torchvision's compiled ops do not load
against the CPU-only torch of the test environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's camkit, whatever is installed
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

from conftest import import_torchvision  # noqa: E402

import_torchvision()

from wsol.run import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
