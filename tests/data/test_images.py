"""One image: PNG/JPEG only, pixel caps from the header, complete data, a strict decode, and conversions."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from gate.data import files, images
from gate.errors import DataError

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (24, 20, 3), dtype=np.uint8)  # H = 24, W = 20


def chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk with a correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(
    width: int, height: int, stream: bytes, *, colour: int = 0, depth: int = 8, interlace: int = 0
) -> bytes:
    """A PNG whose chunks are all well formed around the zlib ``stream`` given (whatever it inflates to)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def encoded(image: Image.Image, format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def write(tmp_path: Path, content: bytes, name: str = "image.png") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def half_rows_png() -> bytes:
    """Valid chunks, CRCs and IEND, but the pixel stream holds only the first half of the rows."""
    rows = b"".join(b"\x00" + PIXELS[r].tobytes() for r in range(12))
    return crafted_png(20, 24, zlib.compress(rows), colour=2)


def test_pillow_alone_fills_in_a_png_whose_pixel_stream_ends_early() -> None:
    """Why gate checks PNG completeness itself: Pillow decodes this without a word, the missing rows black."""
    with Image.open(io.BytesIO(half_rows_png())) as image:
        image.load()
        assert not np.asarray(image)[12:].any()


def test_a_png_whose_pixel_stream_ends_early_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, half_rows_png())
    with pytest.raises(DataError, match=r"ends after 732 of the 1,464 bytes .*\(truncated\)") as info:
        images.decode(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.97])
def test_truncated_images_are_refused_even_when_pillow_is_told_to_load_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, keep: float
) -> None:
    """Training code often sets LOAD_TRUNCATED_IMAGES; gate's decode must not depend on it."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    content = encoded(Image.fromarray(PIXELS), fmt)
    path = write(tmp_path, content[: int(len(content) * keep)], f"cut.{fmt.lower()}")
    with pytest.raises(DataError, match="truncated") as info:
        images.decode(path)
    assert str(path) in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda png: png[:-12], "ends before its IEND chunk"),
        (lambda png: png[:-1], "cut short"),
        (lambda png: png[:40] + bytes([png[40] ^ 0x01]) + png[41:], "fails its CRC check"),
        (lambda png: png[:60] + bytes([png[60] ^ 0x01]) + png[61:], "chunk b'IDAT' at byte 33 fails its CRC"),
        (lambda png: png[:8] + png[33:], "has no IHDR chunk|not one consecutive run after IHDR"),
    ],
)
def test_incomplete_or_corrupt_pngs_are_refused(tmp_path: Path, damage, message: str) -> None:
    path = write(tmp_path, damage(encoded(Image.fromarray(PIXELS))))
    with pytest.raises(DataError, match=message):
        images.decode(path)


def test_pixel_data_longer_than_the_header_says_is_refused(tmp_path: Path) -> None:
    rows = b"".join(b"\x00" + PIXELS[r].tobytes() for r in range(24))
    path = write(tmp_path, crafted_png(20, 12, zlib.compress(rows), colour=2))
    with pytest.raises(DataError, match="longer than the 732 bytes its header implies"):
        images.decode(path)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 5), (8, 8), (9, 17), (33, 2)])
@pytest.mark.parametrize(("colour", "depth"), [(0, 1), (0, 4), (0, 16), (2, 8), (3, 2), (4, 8), (6, 16)])
@pytest.mark.parametrize("interlace", [0, 1])
def test_row_layout_agrees_with_pillow(
    tmp_path: Path, width: int, height: int, colour: int, depth: int, interlace: int
) -> None:
    """Plain and Adam7 rows of the sizes gate expects, each a 0 filter byte then all ones: Pillow decodes
    every pixel to its maximum only if its rows are the same (a misplaced row would make a 0xFF filter byte).
    One byte fewer is refused as truncated."""
    bits = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour] * depth
    rows = images.png_row_sizes(width, height, bits, interlaced=bool(interlace))
    stream = b"".join((b"\x00" + b"\xff" * (size - 1)) * count for size, count in rows)
    content = crafted_png(
        width, height, zlib.compress(stream), colour=colour, depth=depth, interlace=interlace
    )
    if colour == 3:  # a palette image needs its palette: all white
        content = content[:33] + chunk(b"PLTE", b"\xff" * 768) + content[33:]
    assert images.png_problem(content) is None
    with images.decode(write(tmp_path, content)) as image:
        assert np.asarray(image.convert("RGBA")).min() == 255
    short = crafted_png(
        width, height, zlib.compress(stream[:-1]), colour=colour, depth=depth, interlace=interlace
    )
    assert "truncated" in (images.png_problem(short) or "")


def test_pngs_pillow_writes_are_complete() -> None:
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA"):
        assert images.png_problem(encoded(Image.fromarray(PIXELS).convert(mode))) is None
    assert images.png_problem(encoded(Image.fromarray(PIXELS[..., 0].astype(np.uint16) * 257))) is None


def test_a_header_claiming_huge_dimensions_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100,000 x 100,000 in a file of a few dozen bytes: refused from the header, no pixel is decoded."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as code that disables Pillow's own check does
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded a bomb"))
    path = write(tmp_path, crafted_png(100_000, 100_000, zlib.compress(b"\x00" * 100)))
    with pytest.raises(DataError, match=r"claims 100000x100000 = 10,000,000,000 pixels") as info:
        images.decode(path)
    assert "MAX_IMAGE_PIXELS" in str(info.value) and str(path) in str(info.value)
    with open(path, "rb") as stream, pytest.raises(DataError, match="claims 100000x100000"):
        images.read_header(path, stream)


def test_a_jpeg_header_claiming_huge_dimensions_is_refused(tmp_path: Path) -> None:
    content = bytearray(encoded(Image.fromarray(PIXELS), "JPEG"))
    sof = content.index(b"\xff\xc0")
    content[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width
    with pytest.raises(DataError, match="claims 60000x60000"):
        images.decode(write(tmp_path, bytes(content), "huge.jpg"))


@pytest.mark.parametrize("pillow_limit", [None, 10**12, 100])
def test_pillow_bomb_check_runs_at_gate_threshold_whatever_the_process_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pillow_limit: int | None
) -> None:
    """Where gate cannot read a header itself, Pillow's DecompressionBombWarning / Error refuse the image, at
    gate's cap, however code in the process set PIL.Image.MAX_IMAGE_PIXELS (None turns Pillow's check off)."""
    path = write(tmp_path, encoded(Image.fromarray(PIXELS)))  # 480 pixels
    monkeypatch.setattr(images, "sniff_size", lambda stream: None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 400)  # Pillow warns above 400, raises above 800
    with pytest.raises(DataError, match="DecompressionBombWarning") as info:
        images.decode(path)
    assert "raise gate.data.files.MAX_IMAGE_PIXELS" in str(info.value)
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 200)
    with pytest.raises(DataError, match="DecompressionBombError"):
        images.decode(path)
    with open(path, "rb") as stream, pytest.raises(DataError, match="DecompressionBombError"):
        images.read_header(path, stream)
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # restored


@pytest.mark.parametrize(("limit", "value"), [("MAX_IMAGE_PIXELS", 479), ("MAX_IMAGE_SIDE", 23)])
def test_gate_pixel_caps_are_raisable_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, value: int
) -> None:
    path = write(tmp_path, encoded(Image.fromarray(PIXELS)))
    monkeypatch.setattr(files, limit, value)
    with pytest.raises(DataError, match=r"raise gate\.data\.files\.MAX_IMAGE_PIXELS / MAX_IMAGE_SIDE"):
        images.decode(path)
    monkeypatch.setattr(files, limit, value + 1)
    images.decode(path).close()


def test_an_image_file_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, encoded(Image.fromarray(PIXELS)))
    monkeypatch.setattr(files, "MAX_IMAGE_FILE_BYTES", 100)
    with pytest.raises(
        DataError, match=r"(?s)larger than the limit of 100 bytes \(100 bytes\).*MAX_IMAGE_FILE_BYTES"
    ):
        images.decode(path)


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF", "WEBP"])
def test_only_png_and_jpeg_reach_pillow_plugins(tmp_path: Path, fmt: str) -> None:
    """A file named .png that is another format is refused: no other decoder (EPS runs Ghostscript) sees it."""
    path = write(tmp_path, encoded(Image.fromarray(PIXELS), fmt))
    with pytest.raises(DataError, match="expected a PNG or JPEG image"):
        images.decode(path)


def test_alpha_is_dropped_not_composited() -> None:
    rgba = np.dstack([PIXELS, np.zeros((24, 20), np.uint8)])  # fully transparent, colours stored
    with Image.open(io.BytesIO(encoded(Image.fromarray(rgba, "RGBA")))) as image:
        pixels = images.to_unit_pixels(image, 3, (20, 24))
    np.testing.assert_allclose(pixels, PIXELS.transpose(2, 0, 1) / 255, atol=1e-7)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.arange(24 * 20, dtype=np.uint16).reshape(24, 20) * 100
    with Image.open(io.BytesIO(encoded(Image.fromarray(values)))) as image:
        assert image.mode == "I;16"
        grey, rgb = images.to_unit_pixels(image, 1, (20, 24)), images.to_unit_pixels(image, 3, (20, 24))
    np.testing.assert_allclose(grey[0], values / 65535, atol=1e-6)
    np.testing.assert_array_equal(rgb, np.repeat(grey, 3, axis=0))


def test_palette_with_transparency_converts_without_pillow_warnings() -> None:
    palette = Image.fromarray(PIXELS).quantize(16)
    content = encoded(palette, transparency=bytes([0, 128] + [255] * 14))
    with Image.open(io.BytesIO(content)) as image:
        assert image.mode == "P" and isinstance(image.info["transparency"], bytes)
        pixels = images.to_unit_pixels(image, 3, (20, 24))  # warnings are errors in this suite
    expected = np.asarray(palette.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(pixels, expected, atol=1e-7)


@pytest.mark.parametrize(
    ("mode", "transparency", "channels", "words"),
    [
        ("RGB", False, 3, None),
        ("L", False, 1, None),
        ("RGBA", False, 3, "alpha dropped, not composited"),
        ("LA", False, 1, "alpha dropped"),
        ("P", True, 3, "palette colours looked up; transparency dropped"),
        ("CMYK", False, 3, "no colour profile"),
        ("I;16", False, 1, "16-bit values scaled"),
        ("RGB", False, 1, "colour reduced to grey"),
        ("L", False, 3, "grey copied to 3 channels"),
    ],
)
def test_conversion_says_what_happens(
    mode: str, transparency: bool, channels: int, words: str | None
) -> None:
    said = images.conversion(images.ImageHeader((1, 1), mode, transparency), channels)
    assert said == words if words is None else words in (said or "")


@pytest.mark.parametrize("keep", range(0, 40, 3))
def test_a_file_cut_inside_its_header_is_refused_not_crashed(tmp_path: Path, keep: int) -> None:
    """Found by the input fuzzer: a PNG cut inside IHDR made the size sniffing raise struct.error (exit 3)."""
    for content in (encoded(Image.fromarray(PIXELS)), encoded(Image.fromarray(PIXELS), "JPEG")):
        path = write(tmp_path, content[:keep])
        with pytest.raises(DataError, match="expected a"):
            images.decode(path)
        with open(path, "rb") as stream, pytest.raises(DataError, match="expected a"):
            images.read_header(path, stream)


def test_a_text_chunk_bomb_is_a_data_error(tmp_path: Path) -> None:
    """A zTXt chunk inflating past Pillow's text limit: Pillow's ValueError is the file's fault, exit 2."""
    content = encoded(Image.fromarray(PIXELS))
    ztxt = chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (2 << 20)))
    path = write(tmp_path, content[:33] + ztxt + content[33:])
    with pytest.raises(DataError, match=r"Decompressed [Dd]ata [Tt]oo [Ll]arge") as info:
        images.decode(path)
    assert str(path) in str(info.value)
    with open(path, "rb") as stream, pytest.raises(DataError, match=r"Decompressed [Dd]ata [Tt]oo [Ll]arge"):
        images.read_header(path, stream)
