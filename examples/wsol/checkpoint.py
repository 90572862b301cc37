"""Atomic, resumable checkpoints: model, optimizer, scheduler, scaler, bank, RNG, progress.

A checkpoint is written to a temporary file beside its target, flushed to disk, then renamed
over the target (``os.replace``), so a crash leaves either the old or the new file, never a
partial one. RNG states of every process are saved, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .distributed import Runtime

__all__ = ["CheckpointError", "load_checkpoint", "restore_rng", "restoring", "rng_states",
           "save_checkpoint"]

FORMAT = "camkit-wsol-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "config", "phase", "epoch", "step_in_epoch", "model",
             "optimizer", "scheduler", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match this run; names the file."""


def _local_rng() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position),
                  int(has_gauss), float(cached)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_states(runtime: Runtime) -> list[dict[str, Any]]:
    """RNG states of every process (gathered to all of them), in rank order."""
    local = _local_rng()
    if not runtime.distributed:
        return [local]
    gathered: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(gathered, local)
    return gathered


def restore_rng(states: list[dict[str, Any]], runtime: Runtime) -> None:
    """Put this process's RNG back where the checkpoint left it (by rank)."""
    if len(states) != runtime.world_size:
        raise CheckpointError(f"checkpoint was written by {len(states)} processes, this run has "
                              f"{runtime.world_size}; RNG streams cannot be restored exactly")
    state = states[runtime.rank]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    body = {"format": FORMAT, "version": VERSION, **payload}
    try:
        with open(temporary, "wb") as handle:
            torch.save(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_checkpoint(path: Path, expected_config: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to this run's configuration.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: unreadable, truncated, not a checkpoint of this script, or written
            for another backbone, method, class count or feature-map size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle means a bad file
        # First line only: torch's unpickling errors run over many lines and advise
        # weights_only=False, which would run code from the file.
        if isinstance(error, pickle.UnpicklingError):
            detail = "the file is truncated or holds more than tensors and plain containers"
        else:
            detail = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a PyTorch file: "
                              f"{type(error).__name__}: {detail}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a checkpoint of train_wsol.py")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version "
                              f"{payload.get('version')!r}, this script reads {VERSION}")
    absent = [key for key in _REQUIRED if key not in payload]
    if absent:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {absent}")
    stored = payload["config"]
    different = {key: (stored.get(key), value) for key, value in expected_config.items()
                 if stored.get(key) != value}
    if different:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs run {b!r}" for k, (a, b) in
                           different.items())
        raise CheckpointError(f"checkpoint {str(path)!r} was written for another setup ({detail})")
    return payload


@contextlib.contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Around putting a loaded checkpoint's entries into the model, optimizer, scheduler and
    RNGs: a file that unpickles but does not fit them raises a ``CheckpointError`` naming it,
    not whatever error the first misfit entry gives."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit this run: "
                              f"{type(error).__name__}: {detail}") from error
