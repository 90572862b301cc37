"""camkit._io: how output files are written (replaced, written in place, or refused)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from camkit import _io
from camkit._io import check_output_path, write_bytes_atomic, write_json_atomic, write_text_atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_regular_file_is_replaced_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.txt"
    assert write_text_atomic(target, "first") == target
    old_inode = target.stat().st_ino
    target.chmod(0o640)
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert target.stat().st_ino != old_inode  # a new file renamed over the old one
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_new_file_follows_the_umask_and_missing_folders_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    check_output_path(target)
    write_json_atomic(target, {"x": 1})
    assert target.read_text() == '{\n  "x": 1\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failed_replacement_leaves_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old content")

    def failing_replace(source: str, destination: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new content")
    assert target.read_text() == "old content"
    assert leftovers(tmp_path) == []


def test_a_write_failing_midway_leaves_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            self.stream.write(data[: len(data) // 2])
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(_io.os, "fdopen", lambda *a, **k: HalfWriter(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="Input/output error"):
        write_bytes_atomic(target, b"0123456789")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_symlink_target_is_replaced_and_the_link_kept(tmp_path):
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "result.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(Path("data") / "result.json")  # relative, resolved from the link's folder
    write_text_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(Path("data") / "result.json")
    assert real.read_text() == "new"
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "data") == []


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "later.json")
    check_output_path(link)
    write_text_atomic(link, "made")
    assert link.is_symlink() and (tmp_path / "later.json").read_text() == "made"


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    check_output_path(fifo)
    write_text_atomic(fifo, "through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not (os.path.exists("/dev/null")
                         and stat.S_ISCHR(os.stat("/dev/null").st_mode)),
                    reason="/dev/null is not a character device here")
def test_dev_null_stays_a_character_device():
    check_output_path("/dev/null")
    write_text_atomic("/dev/null", "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"output path .* is a directory, expected a file path"):
        check_output_path(tmp_path)
    with pytest.raises(ValueError, match=r"is a directory"):
        write_text_atomic(tmp_path, "x")
    link = tmp_path / "to_folder"
    link.symlink_to(tmp_path)
    with pytest.raises(ValueError, match=r"to_folder.* is a directory"):
        check_output_path(link)


def test_socket_is_refused(tmp_path):
    import socket

    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        with pytest.raises(ValueError, match=r"output path .*sock.* is a socket"):
            check_output_path(path)
        with pytest.raises(ValueError, match=r"is a socket"):
            write_text_atomic(path, "x")
    finally:
        server.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)  # never replaced


def test_unusable_paths_are_refused(tmp_path, monkeypatch):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"output path .* cannot be used: Not a directory"):
        check_output_path(afile / "out.json")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ValueError, match=r"loop.* cannot be used: Too many levels"):
        check_output_path(loop)
    # Permissions: root may write anywhere, so the access check is simulated.
    monkeypatch.setattr(_io.os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=r"cannot be created: folder .* is not writable"):
        check_output_path(tmp_path / "new" / "out.json")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"output path .*pipe.* is not writable"):
        check_output_path(fifo)


@pytest.mark.skipif(not (os.path.exists("/dev/null")
                         and stat.S_ISCHR(os.stat("/dev/null").st_mode)),
                    reason="/dev/null is not a character device here")
def test_camkit_eval_output_to_dev_null(tmp_path, capsys):
    from test_eval_cli import make_cub, make_maps

    from camkit.cli import main

    make_maps(tmp_path / "maps")
    make_cub(tmp_path)
    code = main(["eval", "--scoremap-root", str(tmp_path / "maps"), "--metadata-root",
                 str(tmp_path / "meta"), "--dataset", "CUB", "--output", "/dev/null",
                 "--no-progress"])
    assert code == 0 and "wrote /dev/null" in capsys.readouterr().out
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(Path("/dev")) == []
