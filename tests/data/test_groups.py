"""Subgroup labels: an .npz ``group`` array with optional ``group_names``, and nested image folders
(``class/subgroup/*.png``, as BREEDS splits a class), carried to every batch and refused when malformed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gate.data import from_arrays, load_data
from gate.errors import DataError


def arrays(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.random((n, 1, 4, 4), dtype=np.float32), "y": np.arange(n) % 2}


def test_an_npz_group_array_reaches_every_batch_with_its_names(tmp_path: Path) -> None:
    path = tmp_path / "grouped.npz"
    names = np.array(["dog/indoor", "dog/snow", "cat/indoor"])
    np.savez(path, **arrays(), group=np.array([0, 1, 2, 0, 1, 2]), group_names=names)
    data = load_data(str(path))
    assert data.has_group and data.group_names == ("dog/indoor", "dog/snow", "cat/indoor")
    assert not any("ignored" in note for note in data.notes)
    assert data.groups().tolist() == [0, 1, 2, 0, 1, 2]
    assert data.groups(np.array([4, 5])).tolist() == [1, 2]
    batches = list(data.batches(4))
    assert [b.group.tolist() for b in batches] == [[0, 1, 2, 0], [1, 2]]
    assert data.with_selection([1, 5]).groups().tolist() == [1, 2]


def test_groups_without_names_are_named_by_their_ids_and_change_the_digest() -> None:
    plain = from_arrays(**arrays())
    grouped = from_arrays(**arrays(), group=np.array([0, 0, 1, 1, 3, 3]))
    assert not plain.has_group and next(plain.batches(6)).group is None
    assert grouped.group_names == ("0", "1", "2", "3")
    assert grouped.sha256 != plain.sha256
    with pytest.raises(DataError, match="no subgroups: give a 'group' array"):
        plain.groups()


@pytest.mark.parametrize(
    ("group", "names", "message"),
    [
        (np.array([0.0, 1, 0, 1, 0, 1]), None, "group must hold integer group ids; found dtype float64"),
        (np.array([0, 1, 0]), None, r"group must be one id per sample, shape \[6\]; found shape \(3,\)"),
        (np.array([0, 1, -1, 1, 0, 1]), None, "group ids must be >= 0; sample 2 has group -1"),
        (
            np.array([0, 1, 2, 0, 1, 2]),
            np.array(["a", "b"]),
            "group_names has 2 names but group ids go up to 2",
        ),
        (
            np.array([0, 1, 0, 1, 0, 1]),
            np.array(["a", "a"]),
            r"group_names must be distinct; repeated: \['a'\]",
        ),
        (np.array([0, 1, 0, 1, 0, 1]), np.array([1, 2]), "group_names must be a 1-D string array"),
        (None, np.array(["a", "b"]), "the data has none"),
    ],
)
def test_malformed_groups_are_refused_naming_the_file(tmp_path: Path, group, names, message) -> None:
    path = tmp_path / "bad.npz"
    members = arrays()
    if group is not None:
        members["group"] = group
    if names is not None:
        members["group_names"] = names
    np.savez(path, **members)
    with pytest.raises(DataError, match=message) as caught:
        load_data(str(path))
    assert str(path) in str(caught.value)


def write_nested_folder(root: Path) -> None:
    """BREEDS-style: each class folder holds one folder per subpopulation; 'cat' also has a loose image."""
    layout = {"dog/husky": 3, "dog/poodle": 2, "cat/siamese": 2, "cat/tabby/deeper": 1, "cat": 1}
    rng = np.random.default_rng(0)
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (4, 4), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / folder / f"{i}.png")


def test_nested_image_folders_give_a_group_per_class_and_subgroup(tmp_path: Path) -> None:
    write_nested_folder(tmp_path)
    data = load_data(str(tmp_path))
    assert data.group_names == ("cat", "cat/siamese", "cat/tabby", "dog/husky", "dog/poodle")
    labels, groups = data.labels(), data.groups()
    names = [data.group_names[g] for g in groups]
    assert names == [
        "cat",
        "cat/siamese",
        "cat/siamese",
        "cat/tabby",
        *["dog/husky"] * 3,
        *["dog/poodle"] * 2,
    ]
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]  # groups never change the class
    assert next(data.batches(9)).group.tolist() == groups.tolist()


def test_a_flat_image_folder_has_no_groups(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").save(tmp_path / name / "0.png")
    data = load_data(str(tmp_path))
    assert not data.has_group and next(data.batches(2)).group is None
