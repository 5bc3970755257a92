"""Image folders: labels from sorted class names, pixels decoded per batch, resized and scaled, digested."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gate.data import load_data
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
    data = load_data(str(tmp_path), input_shape=(1, 5, 6), num_classes=3)
    assert data.sample_shape == (1, 5, 6) and len(data) == 6 and data.num_classes_seen == 3
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


def test_more_class_folders_than_model_classes(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    with pytest.raises(DataError, match=r"labels in \[0, 2\); sample 4 has label 2"):
        load_data(str(tmp_path), num_classes=2)
