"""Package-level contracts: cheap import, version, public surface."""

from __future__ import annotations

import subprocess
import sys

import camkit


def test_version_comes_from_metadata():
    from importlib.metadata import version

    assert camkit.__version__ == version("camkit")


def test_import_is_cheap():
    code = (
        "import sys, camkit; "
        "heavy = [m for m in ('cv2', 'torchvision', 'matplotlib', 'numba') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve():
    for name in camkit.__all__:
        assert getattr(camkit, name) is not None, name


def test_unknown_attribute_raises():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        camkit.nope  # noqa: B018
