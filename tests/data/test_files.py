"""Data files: devices, pipes and sockets are refused before they are opened, for every data path."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gate.data import files, load_data
from gate.errors import DataError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="devices, FIFOs and Unix sockets are POSIX")


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "data.npz"
    os.mkfifo(path)
    return path


@pytest.fixture()
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.npz"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


def test_dev_zero_as_data_is_refused_unopened(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading /dev/zero never ends (it ran out of memory); nothing may even open it."""
    monkeypatch.setattr(os, "open", lambda *args, **kwargs: pytest.fail("opened the device"))
    with pytest.raises(DataError, match="expected a regular file, found a character device") as info:
        load_data("/dev/zero")
    assert str(info.value).startswith("/dev/zero: ")


def test_a_named_pipe_as_data_is_refused_without_blocking(fifo: Path) -> None:
    with pytest.raises(DataError, match=r"found a named pipe \(FIFO\)"):
        load_data(str(fifo))


def test_a_socket_as_data_is_refused(unix_socket: Path) -> None:
    with pytest.raises(DataError, match="found a socket"):
        load_data(str(unix_socket))


def test_a_pipe_swapped_in_after_the_check_is_refused_at_open(
    fifo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor is checked again (opened non-blocking, so the open itself cannot hang)."""
    monkeypatch.setattr(files, "require_regular", lambda path: None)
    with pytest.raises(DataError, match="named pipe"):
        files.open_regular(fifo)


def _folder(root: Path) -> Path:
    (root / "cat").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((4, 4), 60 * i, np.uint8)).save(root / "cat" / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", ["device link", "fifo", "dangling link", "fifo without image suffix"])
def test_special_files_inside_an_image_folder_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    root = _folder(tmp_path / "images")
    culprit = root / "cat" / ("notes" if kind.endswith("suffix") else "2.png")
    if kind == "device link":
        culprit.symlink_to("/dev/zero")
    elif kind == "dangling link":
        culprit.symlink_to(tmp_path / "gone.png")
    else:
        os.mkfifo(culprit)
    expected = "no such file" if kind == "dangling link" else "expected a regular file"
    with pytest.raises(DataError, match=expected) as info:
        load_data(str(root))
    assert str(culprit) in str(info.value)


def test_a_link_to_a_regular_image_is_read(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images")
    (root / "cat" / "2.png").symlink_to(root / "cat" / "1.png")
    assert len(load_data(str(root))) == 3


def test_read_regular_caps_the_size(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 2048)
    assert files.read_regular(path, limit=2048, limit_name="MAX_IMAGE_FILE_BYTES") == b"x" * 2048
    with pytest.raises(
        DataError, match=r"\(2,048 bytes\), larger than the limit of 2\.0 KiB \(2,047 bytes\)"
    ):
        files.read_regular(path, limit=2047, limit_name="MAX_IMAGE_FILE_BYTES")


@pytest.mark.parametrize(
    ("count", "text"),
    [(5, "5 bytes"), (1536, "1.5 KiB"), (3 * 1024**2, "3.0 MiB"), (5 * 1024**4, "5120.0 GiB")],
)
def test_human_size(count: int, text: str) -> None:
    assert files.human_size(count) == text
