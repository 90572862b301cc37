"""``python -m camkit``: the same command line as ``camkit``."""

import sys

from camkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
