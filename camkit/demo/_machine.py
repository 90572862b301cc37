"""The machine a demo run was measured on (recorded in ``results.json`` and the report)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from camkit._environment import cpu_model

__all__ = ["describe_machine", "machine"]


def machine(threads: int) -> dict[str, Any]:
    """CPU model, the instruction set PyTorch's kernels were dispatched to, core count,
    torch threads and versions."""
    return {"cpu": cpu_model(), "instruction_set": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version()}


def describe_machine(info: dict[str, Any]) -> str:
    """One line: ``"<cpu> (<isa>), N cores, T torch threads, torch X, Python Y"``."""
    return (f"{info['cpu']} ({info['instruction_set']}), {info['cores']} cores, "
            f"{info['torch_threads']} torch threads, torch {info['torch']}, "
            f"Python {info['python']}")
