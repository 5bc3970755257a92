"""The .npz source: members read lazily (stored or compressed), and every malformed file refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gate.data import load_data
from gate.data.npz import NpzArchive
from gate.errors import DataError


def _write(path: Path, *, compressed: bool = False, **arrays: np.ndarray) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.fixture()
def small(tmp_path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.random((12, 1, 4, 4), dtype=np.float32),
        "y": rng.integers(0, 3, 12),
        "mask": (rng.random((12, 4, 4)) > 0.5).astype(np.float32),
    }


@pytest.mark.parametrize("compressed", [False, True])
def test_members_are_memory_maps_with_the_saved_values(
    tmp_path: Path, small: dict[str, np.ndarray], compressed: bool
) -> None:
    archive = NpzArchive(_write(tmp_path / "d.npz", compressed=compressed, **small))
    assert archive.names == ["mask", "x", "y"]
    for name, expected in small.items():
        loaded = archive.array(name)
        assert isinstance(loaded, np.memmap)
        np.testing.assert_array_equal(loaded, expected)
    assert archive.extracted == (["x", "y", "mask"] if compressed else [])


def test_fortran_order_and_big_endian_members_read_correctly(
    tmp_path: Path, small: dict[str, np.ndarray]
) -> None:
    x = np.asfortranarray(small["x"].astype(">f4"))
    data = load_data(str(_write(tmp_path / "d.npz", x=x, y=small["y"].astype(">i8"))))
    batch = next(data.batches(12))
    np.testing.assert_array_equal(batch.x.numpy(), small["x"])
    np.testing.assert_array_equal(batch.y.numpy(), small["y"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder") as info:
        load_data(str(tmp_path / "nope.npz"))
    assert "nope.npz" in str(info.value)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_text("x,y\n0.1,1\n")
    with pytest.raises(DataError, match=r"expected an \.npz file.*not a zip"):
        load_data(str(path))


def test_truncated_archive(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", **small)
    data = path.read_bytes()
    path.write_bytes(data[:200] + data[-300:])  # keeps the central directory, loses member bytes
    with pytest.raises(DataError, match=r"d\.npz"):
        load_data(str(path))


@pytest.mark.parametrize("keep", [["x"], ["y"], ["mask"]])
def test_missing_x_or_y(tmp_path: Path, small: dict[str, np.ndarray], keep: list[str]) -> None:
    path = _write(tmp_path / "d.npz", **{k: small[k] for k in keep})
    with pytest.raises(DataError, match=r"expected arrays 'x' and 'y'.*missing"):
        load_data(str(path))


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    objects = np.empty(12, dtype=object)
    objects[:] = [{"label": i} for i in range(12)]
    path = _write(tmp_path / "d.npz", x=small["x"], y=objects)
    with pytest.raises(DataError, match="y is an object array"):
        load_data(str(path))


def test_integer_pixels_are_refused(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=(small["x"] * 255).astype(np.uint8), y=small["y"])
    with pytest.raises(DataError, match=r"x must be a float array.*found dtype uint8"):
        load_data(str(path))


def test_float64_pixels_are_converted_with_a_note(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    data = load_data(str(_write(tmp_path / "d.npz", x=small["x"].astype(np.float64), y=small["y"])))
    assert any("float64" in note for note in data.notes)
    assert next(data.batches(4)).x.dtype.is_floating_point and next(data.batches(4)).x.dtype.itemsize == 4


@pytest.mark.parametrize("shape", [(12, 4, 4), (12, 1, 1, 4, 4), (12,)])
def test_wrong_ndim(tmp_path: Path, small: dict[str, np.ndarray], shape: tuple[int, ...]) -> None:
    path = _write(tmp_path / "d.npz", x=np.zeros(shape, np.float32), y=small["y"])
    with pytest.raises(DataError, match=f"found {len(shape)} dimensions"):
        load_data(str(path))


def test_empty_arrays(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.npz", x=np.zeros((0, 1, 4, 4), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="empty"):
        load_data(str(path))


def test_x_y_length_mismatch(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"][:10])
    with pytest.raises(DataError, match="12 samples and 10 labels"):
        load_data(str(path))


def test_x_mask_length_mismatch(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"], mask=small["mask"][:5])
    with pytest.raises(DataError, match="x and mask must have the same length; found 12 and 5"):
        load_data(str(path))


def test_mask_shape_must_match_images(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"], mask=np.ones((12, 4, 5), np.float32))
    with pytest.raises(
        DataError, match=r"mask must have shape \[N, H, W\] = \[12, 4, 4\]; found \(12, 4, 5\)"
    ):
        load_data(str(path))


def test_mask_values_must_be_in_unit_interval(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"], mask=small["mask"] * 3)
    with pytest.raises(DataError, match=r"mask values must lie in \[0, 1\]; found min 0, max 3"):
        load_data(str(path))


def test_float_labels_are_refused(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"].astype(np.float32))
    with pytest.raises(DataError, match="y must hold integer class labels; found dtype float32"):
        load_data(str(path))


def test_labels_out_of_range(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    y = small["y"].copy()
    y[7] = 10
    path = _write(tmp_path / "d.npz", x=small["x"], y=y)
    with pytest.raises(DataError, match=r"labels in \[0, 10\); sample 7 has label 10"):
        load_data(str(path), num_classes=10)
    y[7] = -1
    path = _write(tmp_path / "d.npz", x=small["x"], y=y)
    with pytest.raises(DataError, match="labels >= 0; sample 7 has label -1"):
        load_data(str(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels(tmp_path: Path, small: dict[str, np.ndarray], bad: float) -> None:
    x = small["x"].copy()
    x[5, 0, 2, 2] = bad
    with pytest.raises(DataError, match="x must be finite; sample 5 contains NaN or inf"):
        load_data(str(_write(tmp_path / "d.npz", x=x, y=small["y"])))


def test_values_outside_input_range_report_min_and_max(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    x = small["x"] * 255
    path = _write(tmp_path / "d.npz", x=x, y=small["y"])
    with pytest.raises(
        DataError, match=r"input_range \[0, 1\]; found min [\d.e-]+ \(sample \d+\) and max 2[\d.]+"
    ):
        load_data(str(path))
    assert len(load_data(str(path), input_range=(0, 255))) == 12


def test_input_shape_mismatch(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"])
    with pytest.raises(DataError, match=r"expects samples of shape \(3, 4, 4\); the data has \(1, 4, 4\)"):
        load_data(str(path), input_shape=(3, 4, 4))


def test_tabular_features(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 40, dtype=np.float32).reshape(10, 4)
    data = load_data(str(_write(tmp_path / "t.npz", x=x, y=np.arange(10) % 2)), input_shape=(4,))
    assert data.sample_shape == (4,) and not data.has_mask and data.num_classes_seen == 2
    np.testing.assert_array_equal(next(data.batches(10)).x.numpy(), x)
