"""Fixed-size counting state shared by the metrics: reset, merge, distributed sync, JSON."""

from __future__ import annotations

import inspect
import json
from typing import Any, ClassVar, TypeVar

import numpy as np

from camkit._checks import is_tensor

_Self = TypeVar("_Self", bound="CountingState")
_FORMAT_VERSION = 1
_INT64_MAX = int(np.iinfo(np.int64).max)


class CountingState:
    """Base of the accumulating metrics: a dict of int64 count arrays of fixed shapes.

    Subclasses set ``_state_shapes()`` (name → shape) and ``config()`` (JSON-able constructor
    arguments). Counts only ever add up, so states from several processes or workers combine by
    summation (``merge`` locally, ``sync`` through ``torch.distributed``).
    """

    _metric_name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._state: dict[str, np.ndarray] = {}
        # After a sync: this process's own counts then, and the global counts it received.
        self._local: dict[str, np.ndarray] | None = None
        self._synced: dict[str, np.ndarray] | None = None
        self.reset()

    # -- to be provided by subclasses ---------------------------------------------------------
    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments, as JSON-able values."""
        raise NotImplementedError

    def _check_counts(self) -> None:
        """Raise ``ValueError`` when the counts contradict each other (a loaded snapshot)."""

    # -- common behaviour ----------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        """Images accumulated so far (after ``sync``: over all processes)."""
        return int(self._state["num_images"][0])

    def reset(self) -> None:
        """Zero every count (and forget a ``sync``)."""
        shapes = {"num_images": (1,), **self._state_shapes()}
        self._state = {name: np.zeros(shape, dtype=np.int64) for name, shape in shapes.items()}
        self._local = self._synced = None

    def _make_room(self, added: int, *names: str) -> None:
        """Refuse an update that adds up to ``added`` to each of the counts ``names`` when that
        could pass int64's range (only a loaded snapshot's counts come near it)."""
        for name in names:
            current = int(self._state[name].max())
            if current > _INT64_MAX - added:
                _refuse_overflow(f"{type(self).__name__}.update", name, current, added)

    def merge(self: _Self, other: CountingState) -> _Self:
        """Add ``other``'s counts into this metric (same class and configuration); returns self.

        ``ValueError`` when a sum would pass int64's range; nothing is added then.
        """
        if type(other) is not type(self):
            raise TypeError(f"other must be a {type(self).__name__}, got {type(other).__name__}")
        if other.config() != self.config():
            raise ValueError(
                f"other must have the same configuration, got {other.config()} "
                f"and {self.config()}"
            )
        for name, counts in other._state.items():  # every check before any addition
            mine = self._state[name].ravel()
            over = np.flatnonzero(counts.ravel() > _INT64_MAX - mine)  # counts are >= 0
            if over.size:
                _refuse_overflow("merge", name, int(mine[over[0]]), int(counts.ravel()[over[0]]))
        for name, counts in other._state.items():
            self._state[name] += counts
        return self

    def sync(self: _Self, group: Any = None) -> _Self:
        """Sum the counts over all processes of ``torch.distributed`` (no-op when uninitialized).

        Every process then holds the global counts. ``sync`` is idempotent: it always sums each
        process's own contributions (its updates and merges), never counts already gathered, so
        a second call gives the same global counts, and updates after a sync are included by
        the next one. Call it on every process (it is a collective), e.g. right before
        ``compute()``; ``reset()`` starts afresh. ``ValueError`` when a global count would
        pass int64's range. Returns self.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        names = sorted(self._state)
        local = dict(self._state)
        if self._local is not None and self._synced is not None:
            # Own counts at the last sync plus what was added here since.
            local = {name: self._local[name] + (self._state[name] - self._synced[name])
                     for name in names}
        flat = torch.from_numpy(np.concatenate([local[name].ravel() for name in names]))
        if dist.get_backend(group) == "nccl":
            flat = flat.cuda()
        # A float64 sum cannot wrap: it finds global counts past int64 before anything is
        # replaced, on every process alike; the few that round down to 2**63 wrap negative.
        bound = flat.double()
        dist.all_reduce(bound, op=dist.ReduceOp.SUM, group=group)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        over = torch.nonzero((bound > float(_INT64_MAX)) | (flat < 0))
        if over.numel():
            index = int(over[0, 0])
            own = int(np.concatenate([local[name].ravel() for name in names])[index])
            _refuse_overflow("sync", _name_at(names, local, index), own,
                             int(bound[index].item()) - own)
        values = flat.cpu().numpy()
        offset = 0
        synced: dict[str, np.ndarray] = {}
        for name in names:
            size = local[name].size
            synced[name] = values[offset:offset + size].reshape(local[name].shape)
            offset += size
        self._local = {name: counts.copy() for name, counts in local.items()}
        self._synced = {name: counts.copy() for name, counts in synced.items()}
        self._state = synced
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
        """Rebuild a metric from ``state_dict()`` output.

        The snapshot is checked completely: its metric and ``format_version``, a ``config``
        with exactly the constructor's arguments (the values checked as the constructor checks
        them), every state array of its shape with integer counts in ``[0, 2**63)``, and the
        counts consistent with each other (e.g. ``correct <= num_images``). ``ValueError``
        (``TypeError`` for a wrong kind of value) names what is wrong.
        """
        if not isinstance(snapshot, dict) or snapshot.get("metric") != cls._metric_name:
            found = snapshot.get("metric") if isinstance(snapshot, dict) else type(snapshot)
            raise ValueError(f"snapshot must describe a {cls._metric_name}, got {found!r}")
        version = snapshot.get("format_version")
        if type(version) is not int or version != _FORMAT_VERSION:
            raise ValueError(f"snapshot format_version must be {_FORMAT_VERSION}, got "
                             f"{version!r}")
        config = snapshot.get("config")
        parameters = sorted(inspect.signature(cls).parameters)
        if not isinstance(config, dict) or set(config) != set(parameters):
            found = (sorted(map(str, config)) if isinstance(config, dict)
                     else type(config).__name__ if "config" in snapshot else "no config")
            raise ValueError(f"snapshot config must be a dict with keys {parameters}, got "
                             f"{found}")
        metric = cls(**config)
        if metric.config() != config:
            raise ValueError(f"snapshot config must be the configuration it builds, "
                             f"{metric.config()}, got {config}")
        state = snapshot.get("state")
        if not isinstance(state, dict) or set(state) != set(metric._state):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"snapshot state must have keys {sorted(metric._state)}, got "
                             f"{found}")
        for name, expected in metric._state.items():
            metric._state[name] = _as_counts(state[name], name, expected.shape)
        metric._check_counts()
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


def _refuse_overflow(what: str, name: str, current: int, added: int) -> None:
    """Raise the error of a count that would pass int64's range."""
    raise ValueError(f"{what} would overflow the int64 count {name!r}: {current} + {added} "
                     f"> 2**63 - 1")


def _name_at(names: list[str], counts: dict[str, np.ndarray], index: int) -> str:
    """The name of the state array holding position ``index`` of their concatenation."""
    for name in names:
        if index < counts[name].size:
            return name
        index -= counts[name].size
    return names[-1]


def _as_counts(value: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One state array of a snapshot: integer counts in ``[0, 2**63)`` of ``shape``, as a
    fresh int64 array."""
    try:
        found = np.asarray(value)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:  # ragged; tensors
        # in a list that torch cannot convert (RuntimeError)
        raise ValueError(f"snapshot state {name!r} must have shape {shape}, got "
                         f"{type(value).__name__}") from error
    if found.dtype == object and found.size and all(type(item) is int for item in found.flat):
        # Python ints past int64 (JSON holds any integer): named here, not an OverflowError.
        raise ValueError(f"snapshot state {name!r} must hold counts in [0, 2**63), got "
                         f"{max(found.flat, key=abs)}")
    if found.shape != shape:
        raise ValueError(f"snapshot state {name!r} must have shape {shape}, got {found.shape}")
    if found.dtype.kind not in "iu":  # floats, bools, strings, None
        raise TypeError(f"snapshot state {name!r} must hold integer counts, got dtype "
                        f"{found.dtype}")
    if found.size and (found.min() < 0 or found.max() > _INT64_MAX):
        extreme = found.min() if found.min() < 0 else found.max()
        raise ValueError(f"snapshot state {name!r} must hold counts in [0, 2**63), got "
                         f"{extreme}")
    return found.astype(np.int64)  # a copy: the snapshot stays the caller's


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
