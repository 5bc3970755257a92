"""Open the arrays of an ``.npz`` file without reading them into memory.

``np.load(path, mmap_mode="r")`` ignores ``mmap_mode`` for ``.npz`` archives and reads a member whole on
access, so gate maps the members itself:

* a member stored uncompressed (``np.savez``) is a plain ``.npy`` at a known offset inside the zip file:
  it is memory-mapped in place;
* a compressed member (``np.savez_compressed``) cannot be mapped: it is decompressed once, in 256 KiB
  chunks, to a temporary file that is then memory-mapped (disk, not memory, grows with the data).

Either way the ``.npy`` header is parsed without pickle, and object arrays are refused.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gate.errors import DataError

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then file name and extra field lengths
_LOCAL_SIGNATURE = b"PK\x03\x04"
_COPY_CHUNK = 1 << 18  # zipfile holds a few times this while decompressing


@dataclass(frozen=True)
class NpyHeader:
    """Where an array's bytes start in a file, and how to read them."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int


class NpzArchive:
    """The members of one ``.npz`` as read-only memory maps; temporary files live as long as this object."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.headers: dict[str, NpyHeader] = {}
        self._files: dict[str, Path] = {}
        self.extracted: list[str] = []
        self._tmpdir: Path | None = None
        if not zipfile.is_zipfile(path):
            raise DataError(
                "expected an .npz file (a zip archive written by numpy.savez), found a file that is not a zip",
                path=path,
                hint="save evaluation data with numpy.savez(path, x=..., y=...)",
            )
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith(".npy"):
                        self._open_member(archive, info)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise DataError(f"the .npz archive is corrupt or truncated ({exc})", path=path) from exc

    @property
    def names(self) -> list[str]:
        return sorted(self.headers)

    def _open_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        name = info.filename[: -len(".npy")]
        if info.compress_type == zipfile.ZIP_STORED:
            data_start = self._stored_data_offset(info)
            file = self.path
        else:
            file = self._extract(archive, info, name)
            data_start = 0
            self.extracted.append(name)
        self.headers[name] = _read_npy_header(file, data_start, where=f"{self.path} member {info.filename}")
        self._files[name] = file

    def _stored_data_offset(self, info: zipfile.ZipInfo) -> int:
        """The local header's extra field may differ from the central directory's: read the local one."""
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            raw = f.read(_LOCAL_HEADER.size)
        if len(raw) != _LOCAL_HEADER.size:
            raise DataError(f"member {info.filename} is truncated", path=self.path)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
        if signature != _LOCAL_SIGNATURE:
            raise DataError(f"member {info.filename} has no valid zip local header", path=self.path)
        return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len

    def _extract(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Path:
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="gate-npz-"))
            weakref.finalize(self, shutil.rmtree, self._tmpdir, ignore_errors=True)
        target = self._tmpdir / f"{len(self._files)}.npy"
        with archive.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
        return target

    def array(self, name: str) -> np.ndarray:
        """A read-only memory map of member ``name`` (its header must describe a non-empty, non-object array)."""
        header = self.headers[name]
        try:
            return np.memmap(
                self._files[name],
                dtype=header.dtype,
                mode="r",
                offset=header.offset,
                shape=header.shape,
                order="F" if header.fortran_order else "C",
            )
        except ValueError as exc:
            raise DataError(
                f"member {name!r} is shorter than its header says ({exc})", path=self.path
            ) from exc


def _read_npy_header(file: Path, start: int, *, where: str) -> NpyHeader:
    """Parse a ``.npy`` header with numpy's own (pickle-free) reader."""
    with open(file, "rb") as f:
        f.seek(start)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as exc:
            raise DataError(f"expected a .npy array, found an unreadable header ({exc})", path=where) from exc
        return NpyHeader(dtype=dtype, shape=tuple(shape), fortran_order=fortran_order, offset=f.tell())
