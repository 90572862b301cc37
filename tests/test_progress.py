"""Progress bars: tqdm when it is installed, the built-in text bar otherwise."""

from __future__ import annotations

import io
import sys

import pytest

from camkit import _progress
from camkit._progress import ProgressBar


def _run(bar: ProgressBar, steps: int) -> None:
    with bar:
        for _ in range(steps):
            bar.update()
        bar.set_postfix("loss 0.5")


def test_tqdm_draws_the_bar_when_installed():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    bar = ProgressBar(3, "evaluate", enabled=True, stream=stream)
    assert bar._tqdm is not None
    _run(bar, 3)
    text = stream.getvalue()
    assert "evaluate" in text and "3/3" in text and "loss 0.5" in text
    assert "100%" in text  # tqdm's own format, not the built-in "[###...]"
    assert "#" * 30 not in text
    assert bar.count == 3


def test_builtin_bar_when_tqdm_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError
    assert _progress._tqdm_class() is None
    stream = io.StringIO()
    bar = ProgressBar(3, "evaluate", enabled=True, stream=stream)
    assert bar._tqdm is None
    _run(bar, 3)
    text = stream.getvalue()
    assert "\revaluate [" + "#" * 30 + "] 3/3" in text
    assert "loss 0.5" in text and text.endswith("\n")


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_disabled_bar_writes_nothing(monkeypatch, tqdm_installed):
    if tqdm_installed:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = io.StringIO()  # not a TTY: off by default
    for bar in (ProgressBar(3, "x", stream=stream), ProgressBar(3, "x", enabled=False,
                                                                 stream=stream)):
        assert not bar.enabled and bar._tqdm is None
        _run(bar, 3)
    assert stream.getvalue() == ""
