"""The .npz source: members read lazily (stored or compressed), and every malformed file refused clearly."""

from __future__ import annotations

import io
import shutil
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gate.data import files, load_data, npz
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
    """A binary file named .npz that is not a zip keeps the .npz reader's message (text would be read as
    CSV: content decides, tests/data/test_table.py)."""
    path = tmp_path / "d.npz"
    path.write_bytes(b"\x93NUMPY\x01\x00" + bytes(range(256)))
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


def test_negative_labels(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    y = small["y"].copy()
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
    assert data.sample_shape == (4,) and not data.has_mask
    np.testing.assert_array_equal(next(data.batches(10)).x.numpy(), x)


# --------------------------------------------------------------------- corrupt, forged and hostile archives
def _npy(array: np.ndarray, *, header: dict | None = None, raw_header: bytes | None = None) -> bytes:
    """A .npy member: numpy's own bytes, or its data behind a header that says something else."""
    buffer = io.BytesIO()
    if header is None and raw_header is None:
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    if raw_header is not None:
        body = raw_header.ljust(118) + b"\n"  # 10 + 118 + 1 = 128 bytes, as numpy aligns
        buffer.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + np.ascontiguousarray(array).tobytes()


def _zip(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(path, "w", compression=compression) as archive:
            for name, content in members.items():
                archive.writestr(name.split("#")[0], content)  # "x.npy#2": a second member named x.npy
    return path


def _central_entry(content: bytes, name: bytes) -> int:
    """Offset of the central-directory record of member ``name``."""
    return content.rindex(b"PK\x01\x02", 0, content.rindex(name))


def test_flipped_bytes_in_a_stored_member_are_refused(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    """A stored member is memory-mapped, which skips zipfile's CRC check: gate checks it itself."""
    path = _write(tmp_path / "d.npz", x=small["x"], y=small["y"])
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 8] = bytes(b ^ 0x10 for b in content[middle : middle + 8])
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match="CRC") as info:
        load_data(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("raw_header", "message"),
    [
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (12, \"\"\"", "TokenError|SyntaxError"),
        (b"garbage(((", "TokenError|SyntaxError"),
        (b"{'descr': 'not a dtype', 'fortran_order': False, 'shape': (12,), }", "descr"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (12, -1, 4, 4), }", r"shape \(12, -1, 4, 4\)"),
        (b"\xff\xfe\x00", "unreadable header"),
    ],
)
def test_garbage_npy_headers_are_data_errors(
    tmp_path: Path, small: dict[str, np.ndarray], raw_header: bytes, message: str
) -> None:
    """header-garbage.npz was an internal error (TokenError), exit 3."""
    path = _zip(
        tmp_path / "header-garbage.npz",
        {"x.npy": _npy(small["x"], raw_header=raw_header), "y.npy": _npy(small["y"])},
    )
    with pytest.raises(DataError, match=message) as info:
        load_data(str(path))
    assert f"{path} member x.npy" in str(info.value)


def test_an_unknown_npy_version_is_refused(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    member = bytearray(_npy(small["x"]))
    member[6:8] = b"\x07\x00"
    path = _zip(tmp_path / "d.npz", {"x.npy": bytes(member), "y.npy": _npy(small["y"])})
    with pytest.raises(DataError, match=r"unknown \.npy format version 7\.0"):
        load_data(str(path))


def test_a_header_larger_than_its_member_is_refused(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    """A stored x claiming 24 rows of 12 would map the next member's bytes as pixels: refused."""
    forged = {"descr": "<f4", "fortran_order": False, "shape": (24, 1, 4, 4)}
    path = _zip(tmp_path / "d.npz", {"x.npy": _npy(small["x"], header=forged), "y.npy": _npy(small["y"])})
    with pytest.raises(
        DataError, match=r"shape \(24, 1, 4, 4\) of float32 \(1\.5 KiB\) but the member holds 768"
    ):
        load_data(str(path))


def test_duplicate_members_are_refused(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    """Two x.npy: np.load takes the last, another reader may take the first; gate takes neither."""
    members = {"x.npy": _npy(small["x"]), "y.npy": _npy(small["y"]), "x.npy#2": _npy(small["x"] * 0)}
    with pytest.raises(DataError, match=r"2 members named x\.npy"):
        load_data(str(_zip(tmp_path / "d.npz", members)))


def test_encrypted_and_foreign_compression_members_are_refused(
    tmp_path: Path, small: dict[str, np.ndarray]
) -> None:
    members = {"x.npy": _npy(small["x"]), "y.npy": _npy(small["y"])}
    bzip2 = _zip(tmp_path / "bz.npz", members, compression=zipfile.ZIP_BZIP2)
    with pytest.raises(DataError, match="compression method 12; expected stored or deflated"):
        load_data(str(bzip2))
    path = _zip(tmp_path / "enc.npz", members)
    content = bytearray(path.read_bytes())
    entry = _central_entry(bytes(content), b"x.npy")
    content[entry + 8] |= 0x01  # the general-purpose flag's "encrypted" bit
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"member x\.npy is encrypted"):
        load_data(str(path))


class _Trap:
    """Unpickling this fails the test: proof that gate never unpickles an ignored member."""

    def __reduce__(self) -> tuple:
        return (pytest.fail, ("gate unpickled an ignored member",))


@pytest.mark.parametrize("compressed", [False, True])
def test_extra_members_are_ignored_with_a_note_and_never_read(
    tmp_path: Path, small: dict[str, np.ndarray], compressed: bool
) -> None:
    """Extra arrays (object arrays too) and other files: named in a note, never decompressed or unpickled."""
    trap = np.empty(2, dtype=object)
    trap[:] = [_Trap(), _Trap()]
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(
        path, x=small["x"], y=small["y"], labels=trap, x_train=small["x"]
    )
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("README.txt", "extra")
    data = load_data(str(path))
    assert len(data) == 12
    [note] = [n for n in data.notes if "ignored" in n]
    assert "'labels.npy'" in note and "'x_train.npy'" in note and "'README.txt'" in note
    archive = NpzArchive(path)
    assert archive.extracted == (["x", "y"] if compressed else []) and archive.names == ["x", "y"]


def test_an_ignored_member_declaring_gigabytes_costs_nothing(
    tmp_path: Path, small: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=small["x"], y=small["y"], junk=np.zeros(1000))
    content = bytearray(path.read_bytes())
    entry = _central_entry(bytes(content), b"junk.npy")
    content[entry + 24 : entry + 28] = struct.pack("<I", 0xFFFF_FFFE)  # declared uncompressed size
    path.write_bytes(bytes(content))
    assert len(load_data(str(path))) == 12
    assert NpzArchive(path).extracted == ["x", "y"]  # never extracted: only what the run uses is


@pytest.fixture()
def temporary_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where extraction writes, watched by the test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_declared_sizes_over_the_limit_are_refused_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temporary_dir: Path
) -> None:
    """A 20 KB file declaring 2.4 MB decompressed, against a 1 MiB limit: refused, nothing written."""
    x = np.zeros((600, 1, 32, 32), np.float32)
    path = _write(tmp_path / "d.npz", compressed=True, x=x, y=np.zeros(600, np.int64))
    assert path.stat().st_size < 20_000
    monkeypatch.setattr(files, "MAX_NPZ_EXTRACTED_BYTES", 1 << 20)
    with pytest.raises(DataError, match=r"(?s)declare 2\.3 MiB decompressed, more than the limit of 1\.0 MiB.*"
                       r"raise gate\.data\.files\.MAX_NPZ_EXTRACTED_BYTES") as info:  # fmt: skip
        load_data(str(path))
    assert str(path) in str(info.value) and not any(temporary_dir.iterdir())
    monkeypatch.setattr(files, "MAX_NPZ_EXTRACTED_BYTES", 3 << 20)
    assert len(load_data(str(path))) == 600


def test_a_member_that_lies_about_its_size_is_refused_and_leaves_nothing(
    tmp_path: Path, temporary_dir: Path, small: dict[str, np.ndarray]
) -> None:
    path = _write(
        tmp_path / "d.npz",
        compressed=True,
        x=np.zeros((600, 1, 32, 32), np.float32),
        y=np.zeros(600, np.int64),
    )
    content = bytearray(path.read_bytes())
    entry = _central_entry(bytes(content), b"x.npy")
    content[entry + 24 : entry + 28] = struct.pack("<I", 4096)  # declares 4 KiB, inflates to 2.3 MiB
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match="corrupt") as info:
        load_data(str(path))
    assert str(path) in str(info.value) and not any(temporary_dir.iterdir())


def test_copying_stops_past_the_declared_size_or_the_budget() -> None:
    """Declared sizes can lie: the copy counts what it writes and stops, whatever zipfile does."""
    with pytest.raises(DataError, match="more than the 10 bytes the zip directory declares"):
        npz.stream_checked(io.BytesIO(b"x" * 1000), io.BytesIO(), declared=10, budget=100, where="m")
    sink = io.BytesIO()
    with pytest.raises(DataError, match="more than the limit"):
        npz.stream_checked(io.BytesIO(b"x" * (1 << 20)), sink, declared=1 << 20, budget=100, where="m")
    assert len(sink.getvalue()) == 0  # refused before the chunk past the budget was written


def test_not_enough_temporary_disk_is_said_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: dict[str, np.ndarray]
) -> None:
    path = _write(tmp_path / "d.npz", compressed=True, **small)
    monkeypatch.setattr(npz.shutil, "disk_usage", lambda where: shutil._ntuple_diskusage(10**9, 10**9, 10))
    with pytest.raises(DataError, match=r"(?s)has 10 bytes free.*TMPDIR"):
        load_data(str(path))


def test_a_full_disk_while_extracting_is_not_called_a_corrupt_archive() -> None:
    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(DataError, match=r"(?s)could not write .*No space left on device.*TMPDIR"):
        npz.stream_checked(io.BytesIO(b"x" * 10), Full(), declared=10, budget=10, where="m")


def test_a_damaged_zip_directory_is_a_data_error(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    """Found by the input fuzzer: a flipped "version needed" byte made zipfile raise NotImplementedError."""
    path = _write(tmp_path / "d.npz", **small)
    content = bytearray(path.read_bytes())
    content[_central_entry(bytes(content), b"x.npy") + 6] = 0xD2  # needs zip version 21.0
    path.write_bytes(bytes(content))
    with pytest.raises(
        DataError, match=r"zip features numpy never writes, or is corrupt \(zip file version 21\.0\)"
    ):
        load_data(str(path))


def test_a_long_list_of_ignored_members_is_cut_short(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=small["x"], y=small["y"], **{f"extra{i:02}": np.zeros(1) for i in range(25)})
    [note] = [n for n in load_data(str(path)).notes if "ignored" in n]
    assert "'extra09.npy', '... 15 more'" in note and "extra10" not in note
