"""EvalData: batches in a fixed order with the right values, digests, selections, and bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from gate.data import EvalData, evaldata, from_arrays, load_data
from gate.errors import DataError


def test_batches_cover_the_selection_in_order(digits_npz: Path, digits_split: dict[str, np.ndarray]) -> None:
    data = load_data(str(digits_npz), samples=100, seed=3, input_shape=(1, 8, 8))
    batches = list(data.batches(32))
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    index = torch.cat([b.index for b in batches]).numpy()
    np.testing.assert_array_equal(index, data.selected)
    for batch in batches:
        assert (
            batch.x.dtype == torch.float32
            and batch.y.dtype == torch.int64
            and batch.index.dtype == torch.int64
        )
        assert batch.mask is None
        np.testing.assert_array_equal(batch.x.numpy(), digits_split["x_test"][batch.index.numpy()])
        np.testing.assert_array_equal(batch.y.numpy(), digits_split["y_test"][batch.index.numpy()])
    np.testing.assert_array_equal(data.labels(), digits_split["y_test"][data.selected])


def test_metadata(digits_npz: Path) -> None:
    data = load_data(str(digits_npz))
    assert (data.source, data.sample_shape, data.has_mask) == (str(digits_npz), (1, 8, 8), False)
    assert len(data) == data.n_total == 297


def test_same_arguments_give_the_same_run(digits_npz: Path) -> None:
    first, second = (load_data(str(digits_npz), samples=64, seed=5) for _ in range(2))
    assert first.sha256 == second.sha256
    for a, b in zip(first.batches(20), second.batches(20), strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x)


def test_digest_follows_the_content(tmp_path: Path, digits_split: dict[str, np.ndarray]) -> None:
    x, y = digits_split["x_test"], digits_split["y_test"]
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x=x, y=y)
    np.savez(tmp_path / "c.npz", x=x, y=np.roll(y, 1))
    digests = [load_data(str(tmp_path / f"{n}.npz")).sha256 for n in "abc"]
    assert digests[0] == digests[1] != digests[2] and len(digests[0]) == 64


def test_shards_through_load_data_partition_the_draw(digits_npz: Path) -> None:
    full = load_data(str(digits_npz), samples=101, seed=9)
    shards = [load_data(str(digits_npz), samples=101, seed=9, shard=(k, 4)) for k in range(1, 5)]
    assert sum(len(s) for s in shards) == len(full)
    np.testing.assert_array_equal(np.sort(np.concatenate([s.selected for s in shards])), full.selected)


def test_with_selection(digits_npz: Path) -> None:
    data = load_data(str(digits_npz))
    view = data.with_selection(torch.tensor([40, 3, 17]))
    assert isinstance(view, EvalData) and len(view) == 3 and len(data) == 297
    assert next(view.batches(8)).index.tolist() == [3, 17, 40]
    with pytest.raises(ValueError, match=r"in \[0, 297\)"):
        data.with_selection([297])
    with pytest.raises(ValueError, match="repeat"):
        data.with_selection([1, 1])


def test_batch_size_must_be_positive(digits_npz: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(load_data(str(digits_npz)).batches(0))


@pytest.mark.parametrize("compressed", [False, True])
def test_memory_does_not_grow_with_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    """16 MB of images are validated, digested and streamed with a few MB of Python-visible memory."""
    monkeypatch.setattr(evaldata, "SCAN_CHUNK_BYTES", 1 << 20)
    n, side = 4_000, 32
    x = (np.random.default_rng(0).integers(0, 4, (n, 1, side, side)) / 3).astype(np.float32)
    path = tmp_path / "big.npz"
    (np.savez_compressed if compressed else np.savez)(path, x=x, y=np.arange(n) % 10)
    x_bytes = x.nbytes
    del x
    tracemalloc.start()
    try:
        data = load_data(str(path))
        seen = sum(len(batch) for batch in data.batches(256))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == n
    assert peak < x_bytes / 4  # about one scan chunk (1 MiB here) and one batch, not the 16 MB of x


def test_from_arrays_checks_and_digests_like_a_file(digits_split: dict[str, np.ndarray]) -> None:
    x, y = digits_split["x_test"], digits_split["y_test"]
    data = from_arrays(torch.from_numpy(x), y, samples=50, seed=2)
    assert len(data) == 50 and data.source == "<arrays>" and data.sha256 == from_arrays(x, y).sha256
    np.testing.assert_array_equal(next(data.batches(50)).x.numpy(), x[data.selected])
    with pytest.raises(DataError, match="x values must lie in input_range"):
        from_arrays(x * 2, y)


@pytest.mark.gpu
def test_batches_land_on_the_gpu(digits_npz: Path) -> None:
    batch = next(load_data(str(digits_npz), samples=10).batches(10, device="cuda"))
    assert {batch.x.device.type, batch.y.device.type, batch.index.device.type} == {"cuda"}
