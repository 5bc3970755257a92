"""Guards for every file gate reads as evaluation data: regular files only, and limits on what they expand to.

The limits are module constants read each time a file is opened, so a caller that expects larger data raises
them before loading (``gate.data.files.MAX_NPZ_EXTRACTED_BYTES = 16 * 1024**3``), the way
``gate.model.files.MAX_FILE_BYTES`` is raised for very large models.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from gate.errors import DataError
from gate.sizes import human_size

MAX_NPZ_EXTRACTED_BYTES = 4 * 1024**3
"""Bytes the compressed members an ``.npz`` run uses (x, y, mask) may decompress to, in all, on disk."""

MAX_IMAGE_FILE_BYTES = 256 * 1024**2
"""Bytes of one image file (it is read into memory whole, once, to be checked and decoded)."""

MAX_IMAGE_PIXELS = 89_478_485
"""Pixels of one image, from its header: Pillow's own default bomb threshold, about 256 MiB as RGB."""

MAX_IMAGE_SIDE = 65_535
"""Width or height of one image, from its header: the most a JPEG can have."""

MAX_TABLE_FILE_BYTES = 1024**3
"""Bytes of one CSV or Parquet file (it is parsed into memory whole, once)."""

MAX_TABLE_VALUES = 256 * 1024**2
"""Values (rows times the columns read) of one CSV or Parquet table: 1 GiB as float32. A Parquet file's
encodings can expand a small file into far more values than its size suggests; its metadata is checked
against this before any column is decoded."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)
# A FIFO swapped in between the check and the open must not block the run; O_NONBLOCK is a no-op on files.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


def file_kind(mode: int) -> str:
    """What a ``st_mode`` describes, in words for a message."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def require_regular(path: Path) -> os.stat_result:
    """Refuse ``path`` unless it is a regular file, before anything opens it.

    Reading a device (``/dev/zero``) or a pipe never ends, and opening some devices has side effects.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise DataError("no such file (or a symbolic link to nothing)", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot inspect the file ({exc.strerror})", path=path) from exc
    if not stat.S_ISREG(status.st_mode):
        raise DataError(
            f"expected a regular file, found {file_kind(status.st_mode)}",
            path=path,
            hint="copy the data into a file; gate does not read devices, pipes or sockets",
        )
    return status


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading; the open descriptor is checked again, so a swapped-in pipe is refused."""
    require_regular(path)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise DataError(f"cannot open the file ({exc.strerror})", path=path) from exc
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise DataError(f"expected a regular file, found {file_kind(mode)}", path=path)
    return os.fdopen(descriptor, "rb")


def read_regular(path: Path, *, limit: int, limit_name: str) -> bytes:
    """The whole content of a regular file of at most ``limit`` bytes (``limit_name`` tells how to raise it)."""
    with open_regular(path) as stream:
        check_size(path, os.fstat(stream.fileno()).st_size, limit=limit, limit_name=limit_name)
        content = stream.read(limit + 1)
    check_size(path, len(content), limit=limit, limit_name=limit_name)  # it grew since the check
    return content


def check_size(path: Path, size: int, *, limit: int, limit_name: str) -> None:
    """Refuse a file of more than ``limit`` bytes, naming the ``gate.data.files`` limit to raise."""
    if size > limit:
        raise DataError(
            f"the file is {human_size(size)} ({size:,} bytes), larger than the limit of {human_size(limit)} "
            f"({limit:,} bytes)",
            path=path,
            hint=f"raise gate.data.files.{limit_name} if files this large are expected",
        )
