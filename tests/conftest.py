"""Shared test harness: device/dtype fixtures, tolerance table, gradcheck helper.

Also holds the torchvision import workaround for CPU-only torch builds (tests only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "camkit",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", parent=settings.get_profile("camkit"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "camkit")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

#: Repository root and the shared WSOL metadata beside it (read-only data, never committed).
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_METADATA = REPO_ROOT.parent / "shared" / "wsol-metadata"


# ---------------------------------------------------------------------------------------------
# torchvision on a CPU-only torch
# ---------------------------------------------------------------------------------------------
_TORCHVISION_LIB: torch.library.Library | None = None


def _register_torchvision_schemas() -> None:
    """Declare the operator schemas that ``import torchvision`` registers fake kernels for.

    torchvision's compiled ops do not load against a CPU-only torch build, and its import then
    fails with "operator torchvision::nms does not exist". Declaring the schemas lets the pure
    Python model definitions import; calling the ops themselves still fails (no kernel).
    """
    global _TORCHVISION_LIB
    if _TORCHVISION_LIB is not None:
        return
    try:
        torch.ops.torchvision.nms.default  # noqa: B018 - probe whether the real ops loaded
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define(
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    )
    _TORCHVISION_LIB = lib


def import_torchvision():
    """Import torchvision, working around the missing compiled ops on CPU-only torch."""
    try:
        import torchvision
    except (RuntimeError, ImportError):
        import sys

        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        _register_torchvision_schemas()
        import torchvision
    return torchvision


@pytest.fixture(scope="session")
def torchvision_models():
    """``torchvision.models``, importable on CPU-only torch."""
    return import_torchvision().models


# ---------------------------------------------------------------------------------------------
# Devices, dtypes, tolerances
# ---------------------------------------------------------------------------------------------
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every test taking ``device`` runs on CPU and, when present, on CUDA."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture(params=[torch.float16, torch.bfloat16, torch.float32, torch.float64],
                ids=["float16", "bfloat16", "float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def full_dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


#: (rtol, atol) used when comparing a result in ``dtype`` against a float64 reference.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (4e-2, 4e-2),
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-10, 1e-12),
}


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None,
                 **overrides: float) -> None:
    """Compare in float64 with the tolerance of ``dtype`` (default: ``actual``'s dtype)."""
    tol = tolerance(dtype or actual.dtype)
    tol.update(overrides)
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), **tol)


def gradcheck(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, **kwargs: object) -> bool:
    """float64 ``torch.autograd.gradcheck`` with the project's default settings."""
    prepared = tuple(
        t.detach().double().requires_grad_(t.is_floating_point()) if isinstance(t, torch.Tensor)
        else t for t in inputs
    )
    options: dict[str, object] = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-4}
    options.update(kwargs)
    return torch.autograd.gradcheck(fn, prepared, **options)


# ---------------------------------------------------------------------------------------------
# Box engine paths
# ---------------------------------------------------------------------------------------------
@pytest.fixture(params=["kernel", "search"])
def box_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test taking ``box_path`` runs once with every multi-contour map on the compiled
    kernel and once on the per-set contour searches (the fallback when it is not built).

    CI builds the kernel: there its absence fails the test; elsewhere the kernel run is skipped.
    """
    from camkit.boxes import _engine

    if request.param == "kernel":
        if _engine.KERNEL is None:
            if os.environ.get("CI"):
                pytest.fail("the compiled box kernel (camkit.boxes._union_find) is not built")
            pytest.skip("the compiled box kernel is not built")
        monkeypatch.setattr(_engine, "_SEARCHES_PER_SIDE", -1)
    else:
        monkeypatch.setattr(_engine, "KERNEL", None)
    return str(request.param)
