"""Fixed-size counting state shared by the metrics: reset, merge, distributed sync, JSON."""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar

import numpy as np

from camkit._checks import is_tensor

_Self = TypeVar("_Self", bound="CountingState")
_FORMAT_VERSION = 1


class CountingState:
    """Base of the accumulating metrics: a dict of int64 count arrays of fixed shapes.

    Subclasses set ``_state_shapes()`` (name → shape) and ``config()`` (JSON-able constructor
    arguments). Counts only ever add up, so states from several processes or workers combine by
    summation (``merge`` locally, ``sync`` through ``torch.distributed``).
    """

    _metric_name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._state: dict[str, np.ndarray] = {}
        self.reset()

    # -- to be provided by subclasses ---------------------------------------------------------
    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments, as JSON-able values."""
        raise NotImplementedError

    # -- common behaviour ----------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        """Images accumulated so far (after ``sync``: over all processes)."""
        return int(self._state["num_images"][0])

    def reset(self) -> None:
        """Zero every count."""
        shapes = {"num_images": (1,), **self._state_shapes()}
        self._state = {name: np.zeros(shape, dtype=np.int64) for name, shape in shapes.items()}

    def merge(self: _Self, other: CountingState) -> _Self:
        """Add ``other``'s counts into this metric (same class and configuration); returns self."""
        if type(other) is not type(self):
            raise TypeError(f"other must be a {type(self).__name__}, got {type(other).__name__}")
        if other.config() != self.config():
            raise ValueError(
                f"other must have the same configuration, got {other.config()} "
                f"and {self.config()}"
            )
        for name, counts in other._state.items():
            self._state[name] += counts
        return self

    def sync(self: _Self, group: Any = None) -> _Self:
        """Sum the counts over all processes of ``torch.distributed`` (no-op when uninitialized).

        Every process then holds the global counts: call it once, right before ``compute()``,
        and ``reset()`` before accumulating again. Returns self.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        names = sorted(self._state)
        flat = torch.from_numpy(np.concatenate([self._state[name].ravel() for name in names]))
        if dist.get_backend(group) == "nccl":
            flat = flat.cuda()
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        values = flat.cpu().numpy()
        offset = 0
        for name in names:
            size = self._state[name].size
            self._state[name] = values[offset:offset + size].reshape(self._state[name].shape)
            offset += size
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-able snapshot: metric name, configuration and counts."""
        return {
            "metric": self._metric_name,
            "format_version": _FORMAT_VERSION,
            "config": self.config(),
            "state": {name: counts.tolist() for name, counts in self._state.items()},
        }

    @classmethod
    def from_state_dict(cls: type[_Self], snapshot: dict[str, Any]) -> _Self:
        """Rebuild a metric from ``state_dict()`` output."""
        if not isinstance(snapshot, dict) or snapshot.get("metric") != cls._metric_name:
            found = snapshot.get("metric") if isinstance(snapshot, dict) else type(snapshot)
            raise ValueError(f"snapshot must describe a {cls._metric_name}, got {found!r}")
        metric = cls(**snapshot["config"])
        state = snapshot.get("state", {})
        if set(state) != set(metric._state):
            raise ValueError(f"snapshot state must have keys {sorted(metric._state)}, got "
                             f"{sorted(state)}")
        for name, expected in metric._state.items():
            counts = np.asarray(state[name], dtype=np.int64)
            if counts.shape != expected.shape:
                raise ValueError(f"snapshot state {name!r} must have shape {expected.shape}, "
                                 f"got {counts.shape}")
            metric._state[name] = counts.copy()
        return metric

    def to_json(self) -> str:
        """``state_dict()`` as a JSON string (floats round-trip exactly)."""
        return json.dumps(self.state_dict())

    @classmethod
    def from_json(cls: type[_Self], text: str) -> _Self:
        """Rebuild a metric from ``to_json()`` output."""
        return cls.from_state_dict(json.loads(text))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_images={self.num_images})"


def as_image_list(value: object, name: str, count: int) -> list:
    """Check that ``value`` is a list/tuple (or batched array) of ``count`` per-image items."""
    if (isinstance(value, np.ndarray) or is_tensor(value)) and value.ndim == 3:
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list with one entry per image, got "
                        f"{type(value).__name__}")
    if len(value) != count:
        raise ValueError(f"{name} must have one entry per score map ({count}), got {len(value)}")
    return list(value)
