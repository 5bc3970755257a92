"""CSV and Parquet tables: what a file is comes from its bytes, every cell is a finite number, and features
data of any source carries names and statistics over all its rows."""

from __future__ import annotations

import builtins
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from gate.data import FeatureStats, files, from_arrays, load_data
from gate.errors import DataError

TABLE = "age,income,label\n0.25,0.5,1\n0.75,0.125,0\n0.5,1,2\n"
X = np.array([[0.25, 0.5], [0.75, 0.125], [0.5, 1.0]], dtype=np.float32)
Y = np.array([1, 0, 2])


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _rows(data) -> tuple[np.ndarray, np.ndarray]:
    batch = next(data.batches(len(data)))
    return batch.x.numpy(), batch.y.numpy()


def test_csv_values_names_labels_and_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", TABLE)
    data = load_data(str(path))
    x, y = _rows(data)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert data.feature_names == ("age", "income") and data.sample_shape == (2,) and not data.has_mask
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == load_data(str(path)).sha256
    np.testing.assert_array_equal(data.labels(), Y)


def test_label_in_the_middle_and_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "age,label,income\n\n0.25,1,0.5\n0.75,0,0.125\n\n0.5,2,1\n\n")
    x, y = _rows(load_data(str(path)))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)


@pytest.mark.parametrize(("delimiter", "said"), [(";", "';'"), ("\t", "tab")])
def test_semicolon_and_tab_delimiters_are_sniffed(tmp_path: Path, delimiter: str, said: str) -> None:
    data = load_data(str(_write(tmp_path / "t.txt", TABLE.replace(",", delimiter))))
    np.testing.assert_array_equal(_rows(data)[0], X)
    assert data.feature_names == ("age", "income")
    assert f"columns are separated by {said}" in data.notes


def test_a_comma_inside_a_quoted_field_does_not_change_the_delimiter(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", '"a, the first";b;label\n0.5;0.25;1\n')
    assert load_data(str(path)).feature_names == ("a, the first", "b")


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    data = load_data(str(_write(tmp_path / "t.csv", "\ufeff" + TABLE)))
    assert data.feature_names == ("age", "income")
    np.testing.assert_array_equal(_rows(data)[1], Y)


def test_feature_columns_select_and_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "id,age,income,label\nabc,0.25,0.5,1\ndef,0.75,0.125,0\nghi,0.5,1,2\n")
    data = load_data(str(path), feature_columns=("income", "age"))
    assert data.feature_names == ("income", "age")
    np.testing.assert_array_equal(_rows(data)[0], X[:, ::-1])
    assert any("['id'] are ignored" in note for note in data.notes)  # and their text never parsed
    with pytest.raises(DataError, match=r"feature_columns names \['height'\], which the table lacks"):
        load_data(str(path), feature_columns=("age", "height"))
    with pytest.raises(DataError, match="names the label column"):
        load_data(str(path), feature_columns=("age", "label"))


def test_label_column_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", TABLE.replace("label", "target"))
    np.testing.assert_array_equal(_rows(load_data(str(path), label_column="target"))[1], Y)


def test_missing_label_column_lists_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", TABLE.replace("label", "target"))
    with pytest.raises(
        DataError, match=r"no label column 'label'; the columns are \['age', 'income', 'target'\]"
    ) as info:
        load_data(str(path))
    assert "features: {label: COLUMN}" in str(info.value)


@pytest.mark.parametrize(
    ("cell", "said", "hint"),
    [
        ("", "a missing value ('')", "impute or drop missing values"),
        ("NA", "a missing value ('NA')", "impute or drop missing values"),
        ("nan", "a missing value ('nan')", "impute or drop missing values"),
        ("tall", "'tall' is not a number", "encode categorical features"),
        ("inf", "'inf' is infinite", "clip or drop"),
        ("-1e39", "'-1e39' is beyond float32's range", "clip or drop"),
    ],
)
def test_a_bad_cell_names_its_line_column_and_value(tmp_path: Path, cell: str, said: str, hint: str) -> None:
    # Line 3 holds a quoted field over two lines, so the bad row starts on file line 6, record 4.
    text = f'age,income,note,label\n0.25,0.5,x,1\n0.75,0.125,"two\nlines",0\n\n0.5,{cell},y,2\n'
    with pytest.raises(DataError, match=re.escape(f"line 6, column 'income': {said}")) as info:
        load_data(str(_write(tmp_path / "t.csv", text)), feature_columns=("age", "income"))
    assert hint in str(info.value)


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("cat", "label 'cat' is not a class index"),
        ("1.5", "not an integer"),
        ("-1", "label -1"),
        ("", "missing label"),
    ],
)
def test_bad_labels_are_refused_with_their_line(tmp_path: Path, cell: str, said: str) -> None:
    with pytest.raises(DataError, match=f"line 3, column 'label': .*{said}"):
        load_data(str(_write(tmp_path / "t.csv", f"a,label\n0.5,1\n0.5,{cell}\n")))


def test_integral_float_labels_are_accepted(tmp_path: Path) -> None:
    data = load_data(str(_write(tmp_path / "t.csv", "a,label\n0.5,1.0\n0.5,2e0\n0.5, 3 \n")))
    np.testing.assert_array_equal(_rows(data)[1], [1, 2, 3])


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 3 has 3 fields; the header \(line 1\) has 2"):
        load_data(str(_write(tmp_path / "t.csv", "a,label\n0.5,1\n0.5,1,7\n")))


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "the file is empty"),
        ("0.5,1\n0.25,0\n", "line 1 holds numbers, not column names"),
        ("a,label\n", "the table has no rows"),
        (",a,label\n0,0.5,1\n", "column 1 has no name"),
        ("a,a,label\n0.5,0.5,1\n", r"\['a'\] repeat"),
        ("label\n1\n", "no feature columns"),
    ],
)
def test_malformed_tables(tmp_path: Path, text: str, said: str) -> None:
    with pytest.raises(DataError, match=said):
        load_data(str(_write(tmp_path / "t.csv", text)))


def test_text_that_is_not_utf8_later_in_the_file(tmp_path: Path) -> None:
    body = TABLE + "".join(f"0.5,0.5,{i % 3}\n" for i in range(20_000)) + "0.5,0.5,1 \xe9\n"
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_data(str(_write(tmp_path / "t.csv", body, encoding="latin-1")))


def test_a_binary_file_named_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(DataError, match="found binary content") as info:
        load_data(str(path))
    assert "UTF-8 CSV" in str(info.value)


def test_a_latin1_csv_is_refused_as_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "caf\xe9,label\n0.5,1\n", encoding="latin-1")
    with pytest.raises(DataError, match="byte 0xe9 at offset 3 is not UTF-8"):
        load_data(str(path))


def test_a_zip_named_csv_is_read_as_npz(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=X, y=Y)
    path = tmp_path / "t.csv"
    path.write_bytes(buffer.getvalue())
    data = load_data(str(path))
    np.testing.assert_array_equal(_rows(data)[0], X)
    assert data.feature_names == ("f0", "f1")


def test_csv_text_named_npz_is_read_as_csv(tmp_path: Path) -> None:
    assert load_data(str(_write(tmp_path / "t.npz", TABLE))).feature_names == ("age", "income")


def test_the_file_size_limit_is_checked_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "t.csv", TABLE)
    monkeypatch.setattr(files, "MAX_TABLE_FILE_BYTES", 16)
    with pytest.raises(DataError, match="larger than the limit") as info:
        load_data(str(path))
    assert "MAX_TABLE_FILE_BYTES" in str(info.value)


def test_the_value_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_TABLE_VALUES", 8)
    with pytest.raises(DataError, match="MAX_TABLE_VALUES"):
        load_data(str(_write(tmp_path / "t.csv", TABLE)))


def test_feature_columns_are_refused_for_arrays(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=X, y=Y)
    with pytest.raises(DataError, match="feature_columns selects columns of a CSV or Parquet table"):
        load_data(str(path), feature_columns=("f0",))


# Parquet ------------------------------------------------------------------------------------------------


def _parquet(path: Path, **columns: object) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    path = _parquet(
        tmp_path / "t.bin",
        age=X[:, 0],
        label=pa.array(Y, pa.int8()),
        income=X[:, 1].astype(np.float64),
        smoker=[True, False, True],
    )
    data = load_data(str(path))
    x, y = _rows(data)
    np.testing.assert_array_equal(x, np.column_stack([X, [1, 0, 1]]))
    np.testing.assert_array_equal(y, Y)
    assert data.feature_names == ("age", "income", "smoker")
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_data(str(path), feature_columns=("income",)).feature_names == ("income",)


def test_parquet_float_labels_must_be_integral(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", a=[0.5, 0.5], label=[1.0, 2.0])
    np.testing.assert_array_equal(_rows(load_data(str(path)))[1], [1, 2])
    path = _parquet(tmp_path / "u.parquet", a=[0.5, 0.5], label=[1.0, 2.5])
    with pytest.raises(DataError, match=r"sample 1 \(row 2 of the table\), column 'label': label 2.5"):
        load_data(str(path))


def test_parquet_null_names_row_and_column(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", a=[0.5, 0.25, 0.5], b=[0.5, None, 0.5], label=[0, 1, 0])
    with pytest.raises(
        DataError, match=r"sample 1 \(row 2 of the table\), column 'b': a missing value"
    ) as info:
        load_data(str(path))
    assert "impute" in str(info.value)


def test_parquet_non_numeric_column_is_refused_from_the_schema(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", a=[0.5, 0.25], colour=["red", "blue"], label=[0, 1])
    with pytest.raises(DataError, match="column 'colour' has type string; features must be numbers"):
        load_data(str(path))
    assert load_data(str(path), feature_columns=("a",)).feature_names == (
        "a",
    )  # an ignored column may be text


def test_parquet_text_labels_are_refused(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", a=[0.5, 0.25], label=["cat", "dog"])
    with pytest.raises(DataError, match="label column 'label' has type string") as info:
        load_data(str(path))
    assert "0..C-1" in str(info.value)


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _parquet(tmp_path / "t.parquet", a=[0.5], label=[0])
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(DataError, match="needs pyarrow") as info:
        load_data(str(path))
    assert "pip install pyarrow" in str(info.value)


def test_parquet_pandas_index_columns_are_not_features(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", __index_level_0__=[7, 9], a=[0.5, 0.25], label=[0, 1])
    data = load_data(str(path))
    assert data.feature_names == ("a",)
    assert any("pandas index" in note for note in data.notes)


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", a=np.zeros(0), label=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="the table has no rows"):
        load_data(str(path))


def test_a_truncated_parquet_file_is_refused(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", a=np.linspace(0, 1, 100), label=np.arange(100) % 3)
    path.write_bytes(path.read_bytes()[:-40] + b"PAR1")
    with pytest.raises(DataError, match="Parquet file is corrupt or unreadable"):
        load_data(str(path))


# Feature names and statistics, for every features source --------------------------------------------------


def _features(n: int = 500, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.normal(0, 3, (n, count)).astype(np.float32), rng.integers(0, 3, n))


def _assert_stats_of(stats: FeatureStats | None, x: np.ndarray) -> None:
    assert stats is not None
    values = x.astype(np.float64)
    for name, expected in [
        ("low", values.min(axis=0)),
        ("high", values.max(axis=0)),
        ("mean", values.mean(axis=0)),
        ("std", values.std(axis=0)),
        ("median", np.median(values, axis=0)),
    ]:
        found = getattr(stats, name)
        assert found.dtype == np.float64 and found.shape == (x.shape[1],)
        np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-12, err_msg=name)


def test_stats_cover_all_rows_whatever_the_selection(tmp_path: Path) -> None:
    x, y = _features()
    path = tmp_path / "t.csv"
    path.write_text(
        "a,b,c,d,label\n"
        + "".join(f"{','.join(map(repr, row.tolist()))},{t}\n" for row, t in zip(x, y, strict=True))
    )
    full = load_data(str(path), input_range=None)
    _assert_stats_of(full.feature_stats, x)
    for data in (
        load_data(str(path), input_range=None, samples=50, seed=1),
        load_data(str(path), input_range=None, samples=50, seed=1, shard=(2, 3)),
    ):
        assert len(data) < len(x)
        for name in ("low", "high", "mean", "std", "median"):
            np.testing.assert_array_equal(
                getattr(data.feature_stats, name), getattr(full.feature_stats, name)
            )


def test_stats_in_column_blocks_equal_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from gate.data import evaldata, features

    x, y = _features(n=300, count=5)
    monkeypatch.setattr(features, "STATS_BLOCK_BYTES", 1)  # one column at a time
    monkeypatch.setattr(evaldata, "SCAN_CHUNK_BYTES", 64)  # a few rows at a time
    _assert_stats_of(from_arrays(x, y, input_range=None).feature_stats, x)


def test_stats_are_read_only() -> None:
    x, y = _features()
    stats = from_arrays(x, y, input_range=None).feature_stats
    assert stats is not None and len(stats) == 4
    with pytest.raises(ValueError, match="read-only"):
        stats.mean[0] = 1.0


def test_no_input_range_accepts_any_finite_values_the_default_refuses_them(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "age,income,label\n37,52000,1\n-4.5,0,0\n")
    data = load_data(str(path), input_range=None)
    assert data.input_range is None
    np.testing.assert_array_equal(_rows(data)[0], [[37, 52000], [-4.5, 0]])
    with pytest.raises(DataError, match=r"x values must lie in input_range \[0, 1\]"):
        load_data(str(path))
    x, y = _features()
    assert from_arrays(x, y, input_range=None).input_range is None
    with pytest.raises(DataError, match="input_range"):
        from_arrays(x, y)


def test_npz_and_arrays_features_are_named_f0(tmp_path: Path) -> None:
    x, y = _features(count=3)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    data = load_data(str(path), input_range=None)
    assert data.feature_names == ("f0", "f1", "f2")
    _assert_stats_of(data.feature_stats, x)
    assert from_arrays(x, y, input_range=None).feature_names == ("f0", "f1", "f2")
    named = from_arrays(x, y, input_range=None, feature_names=["a", "b", "c"])
    assert named.feature_names == ("a", "b", "c")
    with pytest.raises(DataError, match="expected 3 feature names"):
        from_arrays(x, y, input_range=None, feature_names=["a", "b"])
    with pytest.raises(DataError, match="distinct"):
        from_arrays(x, y, input_range=None, feature_names=["a", "b", "a"])


def test_images_have_no_feature_names_or_stats(digits_npz: Path) -> None:
    data = load_data(str(digits_npz))
    assert data.feature_names is None and data.feature_stats is None
    x = np.zeros((2, 1, 4, 4), np.float32)
    with pytest.raises(DataError, match=r"feature names need features \[N, F\]"):
        from_arrays(x, np.zeros(2, np.int64), feature_names=["a"])


def test_an_image_folder_without_input_range_is_scaled_to_unit_range(tmp_path: Path) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("L", (4, 4), color=255).save(tmp_path / label / "0.png")
    data = load_data(str(tmp_path), input_range=None)
    assert data.input_range is None and data.feature_names is None
    assert float(next(data.batches(2)).x.max()) == 1.0
