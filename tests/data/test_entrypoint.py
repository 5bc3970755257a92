"""``package.module:function`` sources: arrays, tensors or a Dataset from code in the current directory."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from gate.data import load_data
from gate.errors import DataError


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """Write a uniquely named module into a fresh current directory; return its name."""
    name = f"gate_test_data_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    return name


ARRAYS = """
    import numpy as np

    def load():
        rng = np.random.default_rng(0)
        return rng.random((20, 1, 4, 4), dtype=np.float32), np.arange(20) % 4

    def load_with_mask():
        x, y = load()
        return x, y, (x[:, 0] > 0.5)

    def load_tensors():
        import torch
        x, y = load()
        return torch.from_numpy(x), torch.from_numpy(y)

    def load_ints():
        return np.zeros((3, 4), np.int64), np.zeros(3, np.int64)

    def load_other():
        return {"x": 1}

    def broken():
        raise RuntimeError("no network")
"""

DATASET = """
    import torch
    from torch.utils.data import Dataset

    class Squares(Dataset):
        reads = []

        def __len__(self):
            return 10

        def __getitem__(self, i):
            type(self).reads.append(i)
            return torch.full((1, 3, 3), i / 10), i % 2, torch.ones(3, 3)

    SQUARES = Squares()

    def load():
        return SQUARES

    class FloatLabels(Squares):
        def __getitem__(self, i):
            return torch.zeros(1, 3, 3), 0.5

    def load_float_labels():
        return FloatLabels()
"""


@pytest.mark.parametrize("function", ["load", "load_tensors"])
def test_arrays_and_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    name = _module(tmp_path, monkeypatch, ARRAYS)
    data = load_data(f"{name}:{function}", samples=8, seed=1, input_shape=(1, 4, 4))
    assert len(data) == 8 and data.sample_shape == (1, 4, 4)
    x = np.random.default_rng(0).random((20, 1, 4, 4), dtype=np.float32)
    batch = next(data.batches(8))
    np.testing.assert_array_equal(batch.x.numpy(), x[data.selected])


def test_digest_is_of_the_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, ARRAYS)
    digests = {load_data(f"{name}:{f}").sha256 for f in ("load", "load_tensors")}
    assert len(digests) == 1
    assert load_data(f"{name}:load_with_mask").sha256 not in digests


def test_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, ARRAYS)
    data = load_data(f"{name}:load_with_mask")
    batch = next(data.batches(5))
    assert data.has_mask and batch.mask is not None and batch.mask.shape == (5, 4, 4)
    assert set(batch.mask.unique().tolist()) <= {0.0, 1.0}


def test_dataset_is_read_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, DATASET)
    data = load_data(f"{name}:load", input_shape=(1, 3, 3))
    reads = __import__(name).Squares.reads
    reads.clear()
    batches = data.batches(4)
    assert reads == []  # nothing read until a batch is asked for
    batch = next(batches)
    assert reads == [0, 1, 2, 3]
    assert batch.y.tolist() == [0, 1, 0, 1] and batch.mask is not None and data.has_mask
    np.testing.assert_allclose(batch.x[:, 0, 0, 0].numpy(), [0.0, 0.1, 0.2, 0.3])


def test_dataset_float_labels_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, DATASET)
    with pytest.raises(DataError, match=r"item 0 has label 0\.5.*expected one integer"):
        load_data(f"{name}:load_float_labels")


def test_integer_pixels_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, ARRAYS)
    with pytest.raises(DataError, match="x must be a float array"):
        load_data(f"{name}:load_ints")


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("missing", "has no function 'missing'"),
        ("broken", r"raised RuntimeError\('no network'\)"),
        ("load_other", r"expected \(x, y\), \(x, y, mask\) or a torch Dataset; the function returned dict"),
    ],
)
def test_bad_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str, message: str) -> None:
    name = _module(tmp_path, monkeypatch, ARRAYS)
    with pytest.raises(DataError, match=message):
        load_data(f"{name}:{function}")


def test_missing_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="module 'gate_no_such_module' not found"):
        load_data("gate_no_such_module:load")


def test_dataset_items_must_agree_with_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(
        tmp_path,
        monkeypatch,
        """
        import torch

        class Ragged(torch.utils.data.Dataset):
            def __len__(self):
                return 4

            def __getitem__(self, i):
                side = 3 if i < 2 else 4
                return torch.zeros(1, side, side), 0

        class BadMask(Ragged):
            def __getitem__(self, i):
                return torch.zeros(1, 3, 3), 0, torch.ones(3, 3 if i < 2 else 2)

        def ragged():
            return Ragged()

        def bad_mask():
            return BadMask()
        """,
    )
    with pytest.raises(DataError, match=r"item 2 has x of shape \(1, 4, 4\); item 0 has \(1, 3, 3\)"):
        load_data(f"{name}:ragged")
    with pytest.raises(DataError, match=r"item 2 has a mask of shape \(3, 2\); expected \[H, W\] = \(3, 3\)"):
        load_data(f"{name}:bad_mask")


def test_a_data_function_may_import_a_module_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = f"gate_test_helper_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{helper}.py").write_text("import numpy as np\nX = np.zeros((4, 3), np.float32)\n")
    name = _module(
        tmp_path,
        monkeypatch,
        f"""
        import numpy as np
        def load():
            import {helper}
            return {helper}.X, np.arange(4) % 2
        """,
    )
    data = load_data(f"{name}:load")
    assert data.sample_shape == (3,) and len(data) == 4
