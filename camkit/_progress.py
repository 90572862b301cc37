"""Progress bars on stderr: ``tqdm`` when it is installed, a minimal text bar otherwise."""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]


def _tqdm_class() -> Any | None:
    """``tqdm.tqdm`` when tqdm can be imported, else None (the built-in bar is used)."""
    try:
        return importlib.import_module("tqdm").tqdm
    except (ImportError, AttributeError):
        return None


class ProgressBar:
    """Progress bar drawn with ``tqdm`` when it is installed, else a text bar redrawn in place
    at most ten times a second.

    Disabled (silent) when ``enabled`` is False, or by default when ``stream`` is not a TTY.

    Args:
        total: number of steps.
        description: label printed before the bar.
        enabled: force on or off; ``None`` follows ``stream.isatty()``.
        stream: where to draw, stderr by default.
    """

    def __init__(self, total: int, description: str = "", *, enabled: bool | None = None,
                 stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else enabled
        self.total = max(int(total), 0)
        self.description = description
        self.width = width
        self.count = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self.postfix = ""
        self._tqdm: Any | None = None
        tqdm = _tqdm_class() if self.enabled else None
        if tqdm is not None:
            self._tqdm = tqdm(total=self.total, desc=description or None, file=self.stream,
                              dynamic_ncols=True)

    def set_postfix(self, text: str) -> None:
        """Text shown after the counts (e.g. the current loss)."""
        self.postfix = text
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(text, refresh=False)

    def update(self, steps: int = 1) -> None:
        """Advance by ``steps`` and redraw when due."""
        self.count += steps
        if self._tqdm is not None:
            self._tqdm.update(steps)
            return
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw >= 0.1 or self.count >= self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = self.count / self.total if self.total else 1.0
        filled = round(self.width * min(fraction, 1.0))
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.description} [{bar}] {self.count}/{self.total} "
                          f"({rate:.1f}/s) {self.postfix}")
        self.stream.flush()

    def close(self) -> None:
        """Finish the line."""
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.enabled:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
