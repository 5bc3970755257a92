"""Image folders: labels from sorted class names, pixels decoded per batch, resized and scaled, digested."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from gate.data import load_data, select_indices
from gate.errors import DataError


def _write_folder(root: Path, *, mode: str = "L", size: tuple[int, int] = (6, 5)) -> dict[str, np.ndarray]:
    """Two images per class under class names that sort differently from creation order."""
    rng = np.random.default_rng(0)
    written = {}
    for name in ("zebra", "ant", "mole"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / name / f"{i}.png")
            written[f"{name}/{i}.png"] = pixels
    return written


def test_round_trip_grayscale(tmp_path: Path) -> None:
    written = _write_folder(tmp_path)
    data = load_data(str(tmp_path), input_shape=(1, 5, 6))
    assert data.sample_shape == (1, 5, 6) and len(data) == 6
    batch = next(data.batches(6))
    assert batch.y.tolist() == [0, 0, 1, 1, 2, 2]  # ant, mole, zebra
    order = ["ant/0.png", "ant/1.png", "mole/0.png", "mole/1.png", "zebra/0.png", "zebra/1.png"]
    expected = np.stack([written[name][None] / 255.0 for name in order]).astype(np.float32)
    np.testing.assert_allclose(batch.x.numpy(), expected, atol=1e-7)


def test_rgb_images_scaled_to_the_input_range(tmp_path: Path) -> None:
    written = _write_folder(tmp_path, mode="RGB")
    data = load_data(str(tmp_path), input_shape=(3, 5, 6), input_range=(-1.0, 1.0))
    x = next(data.batches(1)).x[0].numpy()
    np.testing.assert_allclose(x, written["ant/0.png"].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)


def test_images_are_resized_and_converted_to_the_model_input(tmp_path: Path) -> None:
    _write_folder(tmp_path, mode="RGB", size=(12, 10))
    batch = next(load_data(str(tmp_path), input_shape=(1, 8, 8)).batches(4))
    assert batch.x.shape == (4, 1, 8, 8) and float(batch.x.min()) >= 0 and float(batch.x.max()) <= 1


def test_shape_is_inferred_when_not_given(tmp_path: Path) -> None:
    _write_folder(tmp_path, mode="RGB")
    data = load_data(str(tmp_path))
    assert data.sample_shape == (3, 5, 6) and any("no input shape" in note for note in data.notes)


def test_jpeg_images_are_read(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "cat" / "a.JPG", quality=95)
    x = next(load_data(str(tmp_path), input_shape=(3, 8, 8)).batches(1)).x
    np.testing.assert_allclose(x.numpy(), 200 / 255, atol=3 / 255)


def test_digest_covers_names_and_bytes(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    before = load_data(str(tmp_path)).sha256
    assert load_data(str(tmp_path)).sha256 == before
    (tmp_path / "ant" / "0.png").rename(tmp_path / "ant" / "9.png")
    renamed = load_data(str(tmp_path)).sha256
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(tmp_path / "ant" / "9.png")
    assert len({before, renamed, load_data(str(tmp_path)).sha256}) == 3


def test_decoding_is_lazy(tmp_path: Path) -> None:
    """Only the images of the batches asked for are decoded (a broken one later is not touched)."""
    _write_folder(tmp_path)
    data = load_data(str(tmp_path))
    assert len(data) == 6  # headers read, pixels not decoded yet
    path = tmp_path / "zebra" / "1.png"
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data gone
    assert len(next(data.batches(2))) == 2
    with pytest.raises(DataError, match="truncated") as info:
        list(data.batches(2))
    assert "1.png" in str(info.value)


def test_no_class_folders(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="one sub-folder per class; found no sub-folders"):
        load_data(str(tmp_path))


def test_no_images(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(
        DataError, match=r"expected PNG or JPEG images in the class folders \['cat'\]; found none"
    ):
        load_data(str(tmp_path))


def test_unreadable_image(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "ant" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable file") as info:
        load_data(str(tmp_path))
    assert "bad.png" in str(info.value)


def test_sizes_differ_without_input_shape(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "ant" / "big.png")
    with pytest.raises(DataError, match="images differ in size") as info:
        load_data(str(tmp_path))
    assert "input_shape" in str(info.value)
    assert load_data(str(tmp_path), input_shape=(1, 5, 6)).sample_shape == (1, 5, 6)


@pytest.mark.parametrize("shape", [(2, 5, 6), (5, 6)])
def test_input_shape_must_be_one_or_three_channel_images(tmp_path: Path, shape: tuple[int, ...]) -> None:
    _write_folder(tmp_path)
    with pytest.raises(DataError, match=r"input shape \(C, H, W\) with C = 1 or 3"):
        load_data(str(tmp_path), input_shape=shape)


# --------------------------------------------------------------------- broken and hostile images
RNG = np.random.default_rng(1)


def _png_bytes(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _short_stream_png() -> bytes:
    """Every chunk well formed (CRCs, IEND), but the pixel stream stops after 2 of the 5 rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 6, 5, 8, 0, 0, 0, 0)
    stream = zlib.compress(b"".join(b"\x00" + bytes(range(i, i + 6)) for i in range(2)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def _cut(content: bytes) -> bytes:
    return content[: len(content) * 2 // 3]


BROKEN_IMAGES = {  # name: (content, what the refusal says)
    "truncated.png": (lambda: _cut(_png_bytes(RNG.integers(0, 256, (5, 6), np.uint8))), "cut short"),
    "truncated.jpg": (lambda: _cut(_encoded_jpeg()), "image file is truncated"),
    "short-stream.png": (
        _short_stream_png,
        r"ends after 14 of the 35 bytes its header implies \(truncated\)",
    ),
    "bmp-named.png": (lambda: _encoded(np.zeros((5, 6), np.uint8), "BMP"), "expected a PNG or JPEG image"),
}


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def _encoded_jpeg() -> bytes:
    return _encoded(RNG.integers(0, 256, (32, 32), np.uint8), "JPEG")  # big enough to cut in its scan


@pytest.mark.parametrize("name", sorted(BROKEN_IMAGES))
def test_broken_images_are_refused_at_load_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Refused when the data is loaded (exit 2 before any check), never decoded in part; whatever
    Pillow's LOAD_TRUNCATED_IMAGES says (training code often sets it)."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    _write_folder(tmp_path)
    path = tmp_path / "mole" / name
    content, message = BROKEN_IMAGES[name]
    path.write_bytes(content())
    with pytest.raises(DataError, match=message) as info:
        load_data(str(tmp_path), input_shape=(1, 5, 6))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("name", "width", "height"), [("bomb.png", 100_000, 100_000), ("wide.png", 70_000, 1)]
)
def test_images_whose_header_claims_huge_dimensions_are_refused_at_load(
    tmp_path: Path, name: str, width: int, height: int
) -> None:
    _write_folder(tmp_path)
    content = bytearray(_png_bytes(np.zeros((5, 6), np.uint8)))
    content[16:24] = struct.pack(">II", width, height)
    content[29:33] = struct.pack(">I", zlib.crc32(bytes(content[12:29])))
    path = tmp_path / "ant" / name
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=f"claims {width}x{height}") as info:
        load_data(str(tmp_path), input_shape=(1, 5, 6))
    assert str(path) in str(info.value)


def test_load_decodes_every_image_the_run_may_read(tmp_path: Path) -> None:
    """The drawn samples of all shards (shard 1's diagnostics read beyond its own): others are left alone."""
    _write_folder(tmp_path)  # 6 images
    drawn = select_indices(6, samples=3, seed=0, shard=None)
    order = sorted(tmp_path.glob("*/*.png"))
    spared = order[min(set(range(6)) - set(drawn.tolist()))]
    broken = order[int(drawn[-1])]  # drawn for shard 3, read by shard 1's whole-set diagnostics
    spared.write_bytes(_cut(spared.read_bytes()))
    assert len(load_data(str(tmp_path), samples=3, seed=0, shard=(1, 3))) == 1
    broken.write_bytes(_cut(broken.read_bytes()))
    with pytest.raises(DataError, match="truncated") as info:
        load_data(str(tmp_path), samples=3, seed=0, shard=(1, 3))
    assert str(broken) in str(info.value)


def _mode_folder(root: Path, image: Image.Image, suffix: str = "png", **options: object) -> Path:
    (root / "cat").mkdir(parents=True)
    image.save(root / "cat" / f"0.{suffix}", **options)
    return root / "cat" / f"0.{suffix}"


RGB = np.random.default_rng(3).integers(0, 256, (5, 6, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("name", "make", "note"),
    [
        (
            "RGBA",
            lambda: Image.fromarray(np.dstack([RGB, np.zeros((5, 6), np.uint8)]), "RGBA"),
            "alpha dropped",
        ),
        ("LA", lambda: Image.fromarray(RGB).convert("LA"), "alpha dropped"),
        ("P", lambda: Image.fromarray(RGB).quantize(8), "palette colours looked up"),
        ("P+tRNS", lambda: Image.fromarray(RGB).quantize(8), "transparency dropped"),
        ("CMYK", lambda: Image.fromarray(RGB).convert("CMYK"), "no colour profile"),
        ("I;16", lambda: Image.fromarray(RGB[..., 0].astype(np.uint16) * 257), "16-bit values scaled"),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_other_modes_are_converted_to_the_model_channels_with_a_note(
    tmp_path: Path, name: str, make, note: str, channels: int
) -> None:
    image = make()
    options: dict[str, object] = {"transparency": bytes([0, 90] + [255] * 6)} if name == "P+tRNS" else {}
    suffix = "jpg" if name == "CMYK" else "png"
    path = _mode_folder(tmp_path, image, suffix, **options)
    data = load_data(str(tmp_path), input_shape=(channels, 5, 6))
    x = next(data.batches(1)).x[0].numpy()
    assert x.shape == (channels, 5, 6) and x.min() >= 0 and x.max() <= 1
    [said] = [n for n in data.notes if "converted to" in n]
    assert note in said and "cat/0." in said and f"converted to {'L' if channels == 1 else 'RGB'}" in said
    with Image.open(path) as stored:
        if name in ("RGBA", "LA", "P", "P+tRNS", "CMYK"):  # what Image.convert (torchvision's loader) gives
            expected = stored.convert("RGBA").convert("L" if channels == 1 else "RGB")
            expected_x = np.asarray(expected, np.float32) / 255
            expected_x = expected_x[None] if channels == 1 else expected_x.transpose(2, 0, 1)
            np.testing.assert_allclose(x, expected_x, atol=1e-6)
        else:  # 16-bit: scaled from 0-65535, not clipped
            np.testing.assert_allclose(x[0], RGB[..., 0] / 255, atol=1e-6)


def test_grey_with_alpha_infers_one_channel(tmp_path: Path) -> None:
    _mode_folder(tmp_path, Image.fromarray(RGB).convert("LA"))
    assert load_data(str(tmp_path)).sample_shape == (1, 5, 6)
