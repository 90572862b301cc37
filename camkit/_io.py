"""Output files: a reader never sees a half-written file, and nothing but a file is replaced.

Rules of every writer here:

* a regular file (or a path that does not exist yet) is written to a temporary file in the
  same folder, which is then renamed over it (``os.replace``): a reader sees the old content
  or the new, never a part;
* a symbolic link is followed: its target is replaced, the link stays a link;
* anything else that exists (a FIFO, a character device such as ``/dev/null``) is opened for
  writing and written in place: never replaced, never removed;
* a directory, a socket or a path that cannot be written is refused with a ``ValueError``.

``check_output_path`` applies the same rules without writing, so that a command can refuse an
unusable path before it spends time computing what it would write there.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Literal

__all__ = ["check_output_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]

_Plan = tuple[Literal["replace", "in_place"], Path]


def _plan(path: Path) -> _Plan:
    """How ``path`` is written: replaced at its resolved location, or written in place."""
    try:
        status = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        # Nothing there, or a dangling symbolic link: create the file where the link points.
        return "replace", Path(os.path.realpath(path))
    except OSError as error:  # a symbolic link loop, a file used as a folder, no permission
        raise ValueError(f"output path {str(path)!r} cannot be used: {error.strerror}") from None
    if stat.S_ISDIR(status.st_mode):
        raise ValueError(f"output path {str(path)!r} is a directory, expected a file path")
    if stat.S_ISSOCK(status.st_mode):
        raise ValueError(f"output path {str(path)!r} is a socket, which cannot be written")
    if not stat.S_ISREG(status.st_mode):
        return "in_place", path
    real = Path(os.path.realpath(path))
    try:
        same = os.path.samestat(os.stat(real), status)
    except OSError:
        same = False
    # Links that do not resolve to a path (e.g. /proc/self/fd/N of a deleted file) are written
    # through as they are: there is no folder in which to build the replacement.
    return ("replace", real) if same else ("in_place", path)


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that the writers of this module could not write; returns it.

    Missing folders above the file are fine (the writers create them) as long as the nearest
    existing one is a writable folder.
    """
    target = Path(path)
    how, where = _plan(target)
    if how == "in_place":
        if not os.access(where, os.W_OK):
            raise ValueError(f"output path {str(target)!r} is not writable")
        return target
    folder = _existing_ancestor(where.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"output path {str(target)!r} cannot be created: folder "
                         f"{str(folder)!r} is not writable")
    return target


def _write_in_place(path: Path, data: bytes) -> None:
    # No O_CREAT: if the FIFO or device vanished meanwhile, fail rather than create a file.
    handle = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)


def _replace(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # a replaced file keeps its permissions
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask  # mkstemp creates 0600 files; a new file follows the umask
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` by the rules of this module; returns ``path`` as a ``Path``.

    Raises:
        ValueError: ``path`` is a directory or a socket, or cannot be resolved.
        OSError: the write itself failed (the previous content of a regular file is intact).
    """
    target = Path(path)
    how, where = _plan(target)
    if how == "in_place":
        _write_in_place(where, data)
    else:
        _replace(where, data)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text version of ``write_bytes_atomic``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON, by the rules of ``write_bytes_atomic``."""
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
