from datetime import UTC, datetime

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.data.validate import (
    Check,
    canonical_checks,
    find_table,
    require_columns,
    scan_table,
    split_rows,
    staged,
    typed_column,
)
from seasonrec.errors import InputError


def test_find_table_prefers_parquet_folder_then_files(tmp_path):
    (tmp_path / "events.csv").write_text("a\n1\n")
    assert find_table(tmp_path, "events") == tmp_path / "events.csv"
    (tmp_path / "events").mkdir()
    assert find_table(tmp_path, "events") == tmp_path / "events"


def test_find_table_missing_names_folder_and_table(tmp_path):
    with pytest.raises(InputError) as excinfo:
        find_table(tmp_path, "items")
    message = str(excinfo.value)
    assert str(tmp_path) in message
    assert "items" in message


def test_scan_table_reads_folder_of_parquet_parts(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"a": [1, 2]}).write_parquet(folder / "part-00000.parquet")
    pl.DataFrame({"a": [3]}).write_parquet(folder / "part-00001.parquet")
    assert sorted(scan_table(folder).collect()["a"].to_list()) == [1, 2, 3]


def test_scan_table_reads_csv_cells_as_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("quantity\n1\nabc\n")
    frame = scan_table(path).collect()
    assert frame.schema["quantity"] == pl.String
    assert frame["quantity"].to_list() == ["1", "abc"]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.csv", "", "empty"),
        ("header_only.csv", "user_id,item_id\n", "no rows"),
        ("table.txt", "a\n1\n", "unsupported"),
        ("broken.parquet", "not parquet at all", "cannot be read"),
    ],
)
def test_scan_table_unreadable_inputs_are_input_errors(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as excinfo:
        scan_table(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert words in message
    assert "\n" not in message


def test_scan_table_zero_row_parquet_is_rejected(tmp_path):
    path = tmp_path / "z.parquet"
    pl.DataFrame({"a": [1]}).clear().write_parquet(path)
    with pytest.raises(InputError, match="no rows"):
        scan_table(path)


def test_scan_table_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        scan_table(tmp_path / "nothing.parquet")
    (tmp_path / "parts").mkdir()
    with pytest.raises(InputError, match="no .parquet"):
        scan_table(tmp_path / "parts")


def test_require_columns_names_file_and_missing_column(tmp_path):
    lf = pl.LazyFrame({"user_id": ["u"], "item_id": ["i"]})
    with pytest.raises(InputError) as excinfo:
        require_columns(lf, tmp_path / "events.csv", ["user_id", "item_id", "event_ts"])
    assert excinfo.value.column == "event_ts"
    assert "events.csv" in str(excinfo.value)
    assert "'event_ts'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [("int", pl.Boolean), ("float", pl.List(pl.Int64)), ("datetime", pl.Int64), ("str", pl.List(pl.String))],
)
def test_typed_column_rejects_whole_column_of_wrong_type(tmp_path, kind, dtype):
    with pytest.raises(InputError) as excinfo:
        typed_column(tmp_path / "x.parquet", "col", kind, dtype)
    assert excinfo.value.column == "col"
    assert "x.parquet" in str(excinfo.value)


def _cast(values, kind):
    frame = pl.DataFrame({"v": values})
    return frame.select(typed_column(None, "v", kind, frame.schema["v"]))["v"].to_list()


def test_text_numbers_become_numbers_and_bad_cells_become_null():
    assert _cast([" 3 ", "2.0", "1.5", "abc", None], "int") == [3, 2, None, None, None]
    assert _cast(["1.25", "x"], "float") == [1.25, None]


def test_text_timestamps_are_utc_and_naive_datetimes_are_taken_as_utc():
    assert _cast(["2024-03-01 10:00:00"], "datetime") == [datetime(2024, 3, 1, 10, tzinfo=UTC)]
    assert _cast([datetime(2024, 3, 1, 10)], "datetime") == [datetime(2024, 3, 1, 10, tzinfo=UTC)]


def test_zoned_datetimes_are_converted_to_utc():
    frame = pl.DataFrame({"v": [datetime(2024, 7, 1, 12)]}).with_columns(
        pl.col("v").dt.replace_time_zone("Europe/Berlin")
    )
    out = frame.select(typed_column(None, "v", "datetime", frame.schema["v"]))["v"].to_list()
    assert out == [datetime(2024, 7, 1, 10, tzinfo=UTC)]


def test_split_rows_puts_every_row_in_exactly_one_output_with_first_reason():
    lf = pl.LazyFrame({"quantity": ["1", "abc", "-2", "", "7"]}).with_row_index(s.SOURCE_ROW)
    typed, checks = canonical_checks(None, lf, {s.QUANTITY: "int"})
    checks += [Check("non_positive_quantity", staged(s.QUANTITY) <= 0), Check("too_many", staged(s.QUANTITY) > 5)]
    accepted, rejected = (x.collect() for x in split_rows(lf, typed, checks))

    assert accepted[s.QUANTITY].to_list() == [1]
    assert rejected.columns == [s.SOURCE_ROW, "quantity", s.REASON]
    assert rejected.rows() == [
        (1, "abc", "invalid_quantity"),
        (2, "-2", "non_positive_quantity"),
        (3, "", "missing_quantity"),
        (4, "7", "too_many"),
    ]


def test_nullable_column_may_be_empty_but_not_invalid():
    lf = pl.LazyFrame({s.STOCK: ["", "5", "lots"]}).with_row_index(s.SOURCE_ROW)
    typed, checks = canonical_checks(None, lf, {s.STOCK: "int"})
    accepted, rejected = (x.collect() for x in split_rows(lf, typed, checks))
    assert accepted[s.STOCK].to_list() == [None, 5]
    assert rejected[s.REASON].to_list() == ["invalid_stock"]


@pytest.mark.parametrize("name", ["sale [2024].csv", "sale [2024].parquet"])
def test_brackets_in_a_file_name_are_not_a_glob(tmp_path, name):
    path = tmp_path / name
    frame = pl.DataFrame({"a": ["1", "2"]})
    frame.write_csv(path) if name.endswith(".csv") else frame.write_parquet(path)
    assert scan_table(path).collect()["a"].to_list() == ["1", "2"]
