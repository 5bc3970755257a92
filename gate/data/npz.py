"""Open the arrays of an ``.npz`` file without reading them into memory, and without trusting the file.

``np.load(path, mmap_mode="r")`` ignores ``mmap_mode`` for ``.npz`` archives and reads a member whole on
access, so gate maps the members itself:

* a member stored uncompressed (``np.savez``) is a plain ``.npy`` at a known offset inside the zip file:
  it is memory-mapped in place;
* a compressed member (``np.savez_compressed``) cannot be mapped: it is decompressed once, in 256 KiB
  chunks, to a temporary file that is then memory-mapped (disk, not memory, grows with the data).

Only the members a run uses (``x``, ``y``, ``mask``, ``group``, ``group_names``) are touched; any other member is named in a note and
never decompressed, parsed or unpickled. A used member must be stored or deflated (what numpy writes), appear
once, match its CRC-32 (a stored member is read once to check it: mapping it skips zipfile's own check),
decompress to at most ``gate.data.files.MAX_NPZ_EXTRACTED_BYTES`` (as the zip directory declares it and as
it is written, since declared sizes can lie) and hold as many bytes as its ``.npy`` header says. The header
is parsed by numpy's pickle-free reader.
"""

from __future__ import annotations

import math
import shutil
import struct
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gate.data import files
from gate.errors import DataError
from gate.sizes import human_size

USED_MEMBERS = ("x", "y", "mask", "group", "group_names")
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then file name and extra field lengths
_LOCAL_SIGNATURE = b"PK\x03\x04"
_COPY_CHUNK = 1 << 18  # zipfile holds a few times this while decompressing
_NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


@dataclass(frozen=True)
class NpyHeader:
    """Where an array's bytes start in a file, and how to read them."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class NpzArchive:
    """The used members of one ``.npz`` as read-only memory maps; temporary files live as long as this object."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.headers: dict[str, NpyHeader] = {}
        self.extracted: list[str] = []
        self.ignored: list[str] = []  # member file names that are not used members
        self.members: list[str] = []  # every member file name, for messages
        self._files: dict[str, Path] = {}
        self._tmpdir: Path | None = None
        self._cleanup: weakref.finalize | None = None
        try:
            self._open()
        except BaseException:
            if self._cleanup is not None:
                self._cleanup()  # a refused archive leaves no temporary file behind
            raise

    @property
    def names(self) -> list[str]:
        return sorted(self.headers)

    def _open(self) -> None:
        with files.open_regular(self.path) as stream:
            if not zipfile.is_zipfile(stream):
                raise DataError(
                    "expected an .npz file (a zip archive written by numpy.savez), found a file that is not a zip",
                    path=self.path,
                    hint="save evaluation data with numpy.savez(path, x=..., y=...)",
                )
            try:
                with zipfile.ZipFile(stream) as archive:
                    used = self._used_members(archive)
                    self._check_declared_sizes(list(used.values()))
                    for name, info in used.items():
                        self._open_member(archive, stream, name, info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error) as exc:
                raise DataError(f"the .npz archive is corrupt or truncated ({exc})", path=self.path) from exc
            except NotImplementedError as exc:  # "zip file version 21.0": a damaged directory, or not numpy's
                raise DataError(
                    f"the .npz archive uses zip features numpy never writes, or is corrupt ({exc})",
                    path=self.path,
                ) from exc

    def _used_members(self, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        """The used members, each once, in a form numpy writes; every other member is only listed."""
        found: dict[str, list[zipfile.ZipInfo]] = {}
        for info in archive.infolist():
            self.members.append(info.filename)
            name = info.filename.removesuffix(".npy")
            if name in USED_MEMBERS and info.filename.endswith(".npy"):
                found.setdefault(name, []).append(info)
            else:
                self.ignored.append(info.filename)
        for name, infos in found.items():
            if len(infos) > 1:
                raise DataError(
                    f"the archive holds {len(infos)} members named {name}.npy; readers disagree on which one "
                    "counts, so gate reads none",
                    path=self.path,
                )
            info = infos[0]
            if info.flag_bits & 0x1:
                raise DataError(
                    f"member {info.filename} is encrypted; numpy never writes that", path=self.path
                )
            if info.compress_type not in _METHODS:
                raise DataError(
                    f"member {info.filename} uses zip compression method {info.compress_type}; expected stored "
                    "or deflated, as numpy.savez and numpy.savez_compressed write",
                    path=self.path,
                )
        return {name: infos[0] for name, infos in found.items()}

    def _check_declared_sizes(self, used: list[zipfile.ZipInfo]) -> None:
        """Refuse before extracting anything when the zip directory already declares too much."""
        compressed = [info for info in used if info.compress_type != zipfile.ZIP_STORED]
        declared = sum(info.file_size for info in compressed)
        limit = files.MAX_NPZ_EXTRACTED_BYTES
        names = [info.filename for info in compressed]
        if declared > limit:
            raise DataError(
                f"the compressed members {names} declare {human_size(declared)} decompressed, more than the "
                f"limit of {human_size(limit)} (gate decompresses them to a temporary file)",
                path=self.path,
                hint="raise gate.data.files.MAX_NPZ_EXTRACTED_BYTES if data this large is expected, or save "
                "with numpy.savez: uncompressed members are memory-mapped in place, never copied",
            )
        if compressed:
            tmp = tempfile.gettempdir()
            free = shutil.disk_usage(tmp).free
            if declared > free:
                raise DataError(
                    f"the compressed members {names} decompress to {human_size(declared)}; the temporary "
                    f"directory {tmp} has {human_size(free)} free",
                    path=self.path,
                    hint="set TMPDIR to a disk with more room, or save with numpy.savez (memory-mapped in place)",
                )

    def _open_member(
        self, archive: zipfile.ZipFile, stream: BinaryIO, name: str, info: zipfile.ZipInfo
    ) -> None:
        where = f"{self.path} member {info.filename}"
        if info.compress_type == zipfile.ZIP_STORED:
            copy_checked(archive, info, None, budget=info.file_size, where=where)
            start = self._stored_data_offset(stream, info)
            header = read_npy_header(stream, start, where=where)
            file, end = self.path, start + info.file_size
        else:
            file = self._extract(archive, info, where)
            with open(file, "rb") as extracted:
                header = read_npy_header(extracted, 0, where=where)
            end = info.file_size
            self.extracted.append(name)
        if header.offset + header.nbytes > end:
            raise DataError(
                f"its header describes shape {header.shape} of {header.dtype} ({human_size(header.nbytes)}) but "
                f"the member holds {human_size(max(end - header.offset, 0))} of data (truncated or forged)",
                path=where,
            )
        self.headers[name] = header
        self._files[name] = file

    def _stored_data_offset(self, stream: BinaryIO, info: zipfile.ZipInfo) -> int:
        """The local header's extra field may differ from the central directory's: read the local one."""
        stream.seek(info.header_offset)
        raw = stream.read(_LOCAL_HEADER.size)
        if len(raw) != _LOCAL_HEADER.size:
            raise DataError(f"member {info.filename} is truncated", path=self.path)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
        if signature != _LOCAL_SIGNATURE:
            raise DataError(f"member {info.filename} has no valid zip local header", path=self.path)
        return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len

    def _extract(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> Path:
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="gate-npz-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmpdir, ignore_errors=True)
        target = self._tmpdir / f"{len(self._files)}.npy"
        already = sum(self._files[name].stat().st_size for name in self.extracted)
        budget = files.MAX_NPZ_EXTRACTED_BYTES - already
        with open(target, "wb") as destination:
            copy_checked(archive, info, destination, budget=budget, where=where)
        return target

    def array(self, name: str) -> np.ndarray:
        """A read-only memory map of member ``name`` (its header must describe a non-empty, non-object array)."""
        header = self.headers[name]
        with files.open_regular(self._files[name]) as stream:  # the map outlives the descriptor
            return np.memmap(
                stream,
                dtype=header.dtype,
                mode="r",
                offset=header.offset,
                shape=header.shape,
                order="F" if header.fortran_order else "C",
            )


def copy_checked(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: BinaryIO | None, *, budget: int, where: str
) -> None:
    """Read member ``info`` once, to ``destination`` if given; refuse it past ``budget`` bytes, past its
    declared size, or when its CRC-32 differs from the zip directory's."""
    with archive.open(info) as source:
        size, crc = stream_checked(source, destination, declared=info.file_size, budget=budget, where=where)
    if size != info.file_size or crc != info.CRC:
        raise DataError(
            f"the member is corrupt: {size:,} bytes with CRC-32 {crc:08x}, where the zip directory says "
            f"{info.file_size:,} bytes with CRC-32 {info.CRC:08x} (the file changed after it was written)",
            path=where,
        )


def stream_checked(
    source: BinaryIO, destination: BinaryIO | None, *, declared: int, budget: int, where: str
) -> tuple[int, int]:
    """Copy ``source`` in chunks, counting: (bytes, CRC-32). Stops as soon as it passes ``declared`` or
    ``budget``, so a member that lies about its size never fills the disk."""
    size, crc = 0, 0
    while chunk := source.read(_COPY_CHUNK):
        size += len(chunk)
        if size > declared:
            raise DataError(
                f"the member decompresses to more than the {declared:,} bytes the zip directory declares",
                path=where,
            )
        if size > budget:
            raise DataError(
                f"the compressed members decompress to more than the limit of "
                f"{human_size(files.MAX_NPZ_EXTRACTED_BYTES)}",
                path=where,
                hint="raise gate.data.files.MAX_NPZ_EXTRACTED_BYTES if data this large is expected",
            )
        crc = zlib.crc32(chunk, crc)
        if destination is not None:
            _write(destination, chunk, where)
    return size, crc


def _write(destination: BinaryIO, chunk: bytes, where: str) -> None:
    try:
        destination.write(chunk)
    except OSError as exc:  # the disk filled up: not a corrupt archive
        raise DataError(
            f"could not write the decompressed member to the temporary directory ({exc.strerror})",
            path=where,
            hint="set TMPDIR to a disk with more room, or save with numpy.savez (memory-mapped in place)",
        ) from exc


def read_npy_header(stream: BinaryIO, start: int, *, where: str) -> NpyHeader:
    """Parse a ``.npy`` header with numpy's own (pickle-free) reader.

    The header is a Python literal of at most 10,000 bytes (numpy's cap): numpy's tokenizer and
    ``ast.literal_eval`` raise many types on garbage (ValueError, SyntaxError, tokenize.TokenError ...),
    and only numpy runs here, so any of them is the file's fault.
    """
    stream.seek(start)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in _NPY_VERSIONS:
            raise ValueError(f"unknown .npy format version {version[0]}.{version[1]}")
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception as exc:
        raise DataError(
            f"expected a .npy array, found an unreadable header ({type(exc).__name__}: {exc})", path=where
        ) from exc
    if any(d < 0 for d in shape):
        raise DataError(f"expected a .npy array, found a header with shape {tuple(shape)}", path=where)
    return NpyHeader(dtype=dtype, shape=tuple(shape), fortran_order=fortran_order, offset=stream.tell())
