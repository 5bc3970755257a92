"""One PNG or JPEG read without trusting it: size caps from the header, complete data, a strict full decode.

Pillow is lenient where a gate must not be. With ``ImageFile.LOAD_TRUNCATED_IMAGES`` set (training code that
gate imports often sets it) it decodes a cut file and fills in the rest; even without it, a PNG whose pixel
stream ends early decodes with the missing rows black. So every image is opened as PNG or JPEG only (no
other Pillow plugin sees its bytes), refused when its header claims more than ``gate.data.files``'s pixel
caps, checked for completeness (PNG: every chunk's CRC, a pixel stream of exactly the size the header
implies, an IEND chunk) and decoded in full with Pillow's leniency switched off.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageFile

from gate.data import files
from gate.errors import DataError

FORMATS = ("PNG", "JPEG")
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L"})
SUPPORTED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK"}) | SIXTEEN_BIT
GREY_MODES = frozenset({"1", "L", "LA"}) | SIXTEEN_BIT

_T = TypeVar("_T")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK = struct.Struct(">I4s")
_PNG_IHDR = struct.Struct(">IIBBBBB")
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_CHUNK = 1 << 20
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-15 (not DHT, JPG, DAC)
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI: no length field


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding pixels."""

    size: tuple[int, int]  # (width, height), as Pillow gives it
    mode: str
    transparency: bool  # a palette or colour-key transparency, which the conversion drops


def read_header(path: Path, stream: BinaryIO) -> ImageHeader:
    """The header of the image in ``stream`` (Pillow reads no pixels here); over the caps is refused."""
    if size := sniff_size(stream):
        check_dimensions(path, size)  # before any Pillow plugin sees the file

    def header() -> ImageHeader:
        with Image.open(stream, formats=FORMATS) as image:
            return ImageHeader(image.size, image.mode, "transparency" in image.info)

    found = _with_pillow(path, "expected a PNG or JPEG image, found an unreadable file", header)
    check_header(path, found.size, found.mode)
    return found


def decode(path: Path) -> Image.Image:
    """The image at ``path``, decoded in full; a truncated, corrupt or oversized one is refused, never filled in."""
    content = files.read_regular(path, limit=files.MAX_IMAGE_FILE_BYTES, limit_name="MAX_IMAGE_FILE_BYTES")

    if size := sniff_size(io.BytesIO(content)):
        check_dimensions(path, size)  # before any Pillow plugin sees the file
    if content.startswith(_PNG_SIGNATURE) and (problem := png_problem(content)):
        raise DataError(f"expected a complete PNG image; {problem}", path=path)

    def load() -> Image.Image:
        image = Image.open(io.BytesIO(content), formats=FORMATS)
        check_header(path, image.size, image.mode)
        image.load()
        return image

    return _with_pillow(path, "expected a PNG or JPEG image, could not decode it", load)


def check_header(path: Path, size: tuple[int, int], mode: str) -> None:
    """What Pillow read from the header: the pixel caps again, and a mode gate knows how to give a model."""
    if mode not in SUPPORTED_MODES:
        raise DataError(
            f"expected an image in one of the modes {sorted(SUPPORTED_MODES)}; found mode {mode}", path=path
        )
    check_dimensions(path, size)


def check_dimensions(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image whose header claims more pixels than ``gate.data.files`` allows (a decompression bomb)."""
    width, height = size
    pixels = width * height
    if width < 1 or height < 1:
        raise DataError(f"the image header claims an empty image ({width}x{height})", path=path)
    if pixels > files.MAX_IMAGE_PIXELS or max(width, height) > files.MAX_IMAGE_SIDE:
        raise DataError(
            f"the image header claims {width}x{height} = {pixels:,} pixels; gate decodes at most "
            f"{files.MAX_IMAGE_PIXELS:,} pixels and {files.MAX_IMAGE_SIDE:,} per side (a decompression bomb "
            "looks like this)",
            path=path,
            hint="raise gate.data.files.MAX_IMAGE_PIXELS / MAX_IMAGE_SIDE if images this large are expected",
        )


def sniff_size(stream: BinaryIO) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's frame header, read by gate itself; None if not found.

    Pillow checks its own bomb threshold only after a plugin has parsed the file; this lets the caps refuse
    a bomb before any plugin runs. The stream's position is restored.
    """
    start = stream.tell()
    try:
        head = stream.read(24)
        if len(head) == 24 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if head.startswith(b"\xff\xd8"):
            stream.seek(start + 2)
            return _jpeg_frame_size(stream)
        return None
    finally:
        stream.seek(start)


def _jpeg_frame_size(stream: BinaryIO) -> tuple[int, int] | None:
    """Walk the marker segments after SOI up to the first frame header (SOFn)."""
    while True:
        marker = stream.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        while marker[1] == 0xFF:  # fill bytes
            if not (more := stream.read(1)):
                return None
            marker = marker[:1] + more
        if marker[1] in _JPEG_STANDALONE:
            continue
        raw = stream.read(2)
        if len(raw) < 2 or (length := int.from_bytes(raw, "big")) < 2:
            return None
        if marker[1] in _JPEG_FRAMES:
            frame = stream.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        if marker[1] == 0xDA:  # a scan before any frame header
            return None
        stream.seek(length - 2, io.SEEK_CUR)


def to_unit_pixels(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """``[C, H, W]`` float32 in [0, 1]: converted to 1 (L) or 3 (RGB) channels as ``conversion`` says, resized."""
    if image.mode in SIXTEEN_BIT:
        converted, scale = image.convert("F"), 65535.0  # convert("L") would clip every value above 255
    else:
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")  # palette and transparency applied together: no Pillow warning
        converted, scale = image.convert("L" if channels == 1 else "RGB"), 255.0
    if converted.size != size:
        converted = converted.resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.float32) / np.float32(scale)
    if pixels.ndim == 2:
        return np.repeat(pixels[None], channels, axis=0)
    return pixels.transpose(2, 0, 1)


def conversion(header: ImageHeader, channels: int) -> str | None:
    """How an image of this mode becomes the model's channels, in words for the data notes (None: as stored).

    Alpha is dropped, not composited: ``Image.convert("RGB")`` (torchvision's ``ImageFolder`` loader, timm,
    Hugging Face datasets) does so, and gate must feed the model the pixels its own pipeline fed it.
    """
    mode, target = header.mode, ("L" if channels == 1 else "RGB")
    steps: list[str] = []
    if mode in SIXTEEN_BIT:
        steps.append("16-bit values scaled from 0-65535, not clipped to 8 bits")
    if mode in ("P", "PA"):
        steps.append("palette colours looked up")
    if mode in ("LA", "RGBA", "PA"):
        steps.append(
            "alpha dropped, not composited: transparent pixels keep their stored colour, as "
            "Image.convert('RGB') in torchvision's ImageFolder does"
        )
    elif header.transparency:
        steps.append("transparency dropped: transparent pixels keep their stored colour")
    if mode == "CMYK":
        steps.append("CMYK converted by Pillow's plain formula, no colour profile")
    if target == "L" and mode in ("RGB", "RGBA", "P", "PA", "CMYK"):
        steps.append("colour reduced to grey by ITU-R 601-2 luma")
    if target == "RGB" and mode in GREY_MODES:
        steps.append("grey copied to 3 channels")
    return "; ".join(steps) or None


def png_problem(content: bytes) -> str | None:
    """Why ``content`` is not a complete PNG, or None.

    Checks what Pillow does not: every chunk's CRC, that the pixel stream (consecutive IDAT chunks) inflates
    to exactly the bytes the header's size, depth, colour type and interlacing imply, and that IEND ends the
    file. Inflation is streamed and stops at the expected size, so a bomb costs no memory.
    """
    if not content.startswith(_PNG_SIGNATURE):
        return "the PNG signature is missing"
    view, position, stream = memoryview(content), len(_PNG_SIGNATURE), None
    idat_state = "before"  # before -> inside -> after the run of IDAT chunks
    while True:
        if position + _PNG_CHUNK.size > len(content):
            return "the file ends before its IEND chunk (truncated)"
        length, kind = _PNG_CHUNK.unpack_from(content, position)
        body_start, body_end = position + _PNG_CHUNK.size, position + _PNG_CHUNK.size + length
        if body_end + 4 > len(content):
            return f"chunk {kind!r} at byte {position} is cut short (truncated)"
        body = view[body_start:body_end]
        if zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(content[body_end : body_end + 4], "big"):
            return f"chunk {kind!r} at byte {position} fails its CRC check (corrupt)"
        if kind == b"IHDR":
            if stream is not None:
                return "the file has two IHDR chunks"
            stream = _PngStream.from_header(bytes(body))
            if isinstance(stream, str):
                return stream
        elif kind == b"IDAT":
            if stream is None or idat_state == "after":
                return "its IDAT chunks are not one consecutive run after IHDR"
            idat_state = "inside"
            if problem := stream.feed(body):
                return problem
        elif kind == b"IEND":
            break
        elif idat_state == "inside":
            idat_state = "after"
        position = body_end + 4
    if stream is None:
        return "it has no IHDR chunk"
    return stream.finish()


def png_row_sizes(width: int, height: int, bits: int, *, interlaced: bool) -> list[tuple[int, int]]:
    """(bytes per row, filter byte included; rows) of each pass in stream order: one, or Adam7's seven."""
    sizes = []
    for x0, y0, dx, dy in _ADAM7 if interlaced else ((0, 0, 1, 1),):
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:  # an empty pass has no rows, not even filter bytes
            sizes.append((1 + (columns * bits + 7) // 8, rows))
    return sizes


@dataclass
class _PngStream:
    """Counts the bytes a PNG's zlib pixel stream inflates to, against what its header implies."""

    expected: int
    inflater: zlib._Decompress
    produced: int = 0

    @classmethod
    def from_header(cls, ihdr: bytes) -> _PngStream | str:
        if len(ihdr) != _PNG_IHDR.size:
            return "its IHDR chunk has the wrong length"
        width, height, depth, colour, compression, filtering, interlace = _PNG_IHDR.unpack(ihdr)
        if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace not in (0, 1):
            return f"its IHDR is invalid (depth {depth}, colour type {colour}, interlace {interlace})"
        rows = png_row_sizes(width, height, _PNG_CHANNELS[colour] * depth, interlaced=bool(interlace))
        return cls(expected=sum(size * count for size, count in rows), inflater=zlib.decompressobj())

    def feed(self, data: memoryview) -> str | None:
        pending: bytes | memoryview = data
        try:
            while pending and not self.inflater.eof:
                self.produced += len(self.inflater.decompress(pending, _INFLATE_CHUNK))
                if self.produced > self.expected:
                    return f"its pixel data is longer than the {self.expected:,} bytes its header implies"
                pending = self.inflater.unconsumed_tail
        except zlib.error as exc:
            return f"its pixel data is corrupt ({exc})"
        return None

    def finish(self) -> str | None:
        try:
            while not self.inflater.eof and (out := self.inflater.decompress(b"", _INFLATE_CHUNK)):
                self.produced += len(out)  # output zlib held back at the last chunk's size limit
        except zlib.error as exc:
            return f"its pixel data is corrupt ({exc})"
        if self.produced > self.expected:
            return f"its pixel data is longer than the {self.expected:,} bytes its header implies"
        if not self.inflater.eof or self.produced != self.expected:
            return (
                f"its pixel data ends after {self.produced:,} of the {self.expected:,} bytes its header implies"
                " (truncated)"
            )
        return None


def _with_pillow(path: Path, what: str, action: Callable[[], _T]) -> _T:
    """Run Pillow on untrusted bytes: leniency off, and whatever it raises about them becomes a DataError.

    Pillow's plugins raise many types on malformed files (OSError, SyntaxError, ValueError, struct.error,
    EOFError, IndexError, DecompressionBombError ...); only Pillow calls run here, so any of them is the file's.
    """
    with _strict_pillow():
        try:
            return action()
        except (DataError, MemoryError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(
                f"the image header claims more than {files.MAX_IMAGE_PIXELS:,} pixels: Pillow refuses it as a "
                f"possible decompression bomb ({type(exc).__name__}: {exc})",
                path=path,
                hint="raise gate.data.files.MAX_IMAGE_PIXELS if images this large are expected",
            ) from exc
        except Exception as exc:
            raise DataError(f"{what} ({type(exc).__name__}: {exc})", path=path) from exc


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow's process-wide settings made gate's for this block, whatever code gate imported set them to.

    Truncated data is an error, and Pillow's own bomb check (which runs on every path that opens a file)
    uses gate's pixel cap, its warning an error: one limit, raised in one place.
    """
    truncated, pixels = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, files.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = truncated, pixels
