import json
from datetime import UTC, date, datetime

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.config import GenerateConfig, IngestConfig
from seasonrec.data.generate import generate
from seasonrec.data.ingest import ingest
from seasonrec.errors import InputError, SeasonrecError

CFG = IngestConfig()

ITEMS_CSV = """item_id,title,category,price,launch_ts,stock
I1,Beach Towel,outdoor,10.0,2023-01-01,5
I2,Mug,kitchen,3.5,2023-01-01 00:00:00,
"""
EVENTS_HEADER = "user_id,item_id,event_ts,event_type,quantity,price,region\n"
GOOD_EVENT = "U1,I1,2024-01-01 10:00:00,view,1,10.0,GB\n"

# One row per rejection reason, each failing only that reason.
BAD_EVENTS = {
    "invalid_quantity": "U1,I1,2024-01-01 10:00:00,purchase,abc,10.0,GB\n",
    "future_timestamp": "U1,I1,2099-01-01 10:00:00,view,1,10.0,GB\n",
    "ancient_timestamp": "U1,I1,1990-01-01 10:00:00,view,1,10.0,GB\n",
    "invalid_event_type": "U1,I1,2024-01-01 10:00:00,click,1,10.0,GB\n",
    "unknown_item": "U1,I9,2024-01-01 10:00:00,view,1,10.0,GB\n",
    "missing_user_id": ",I2,2024-01-01 10:00:00,view,1,3.5,GB\n",
    "invalid_event_ts": "U1,I2,yesterday,view,1,3.5,GB\n",
    "non_positive_quantity": "U2,I2,2024-01-02 10:00:00,purchase,0,3.5,DE\n",
    "negative_price": "U2,I2,2024-01-02 10:00:00,purchase,1,-3.5,DE\n",
    "non_finite_price": "U1,I1,2024-01-01 10:00:00,view,1,nan,GB\n",
    "price_above_max": "U1,I1,2024-01-01 10:00:00,view,1,1e308,GB\n",
    "non_finite_quantity": "U1,I1,2024-01-01 10:00:00,purchase,inf,10.0,GB\n",
    "quantity_above_max": "U1,I1,2024-01-01 10:00:00,purchase,200000,10.0,GB\n",
    "user_id_too_long": f"{'U' * 129},I1,2024-01-01 10:00:00,view,1,10.0,GB\n",
    "item_id_control_character": "U1,I\x1b[2J1,2024-01-01 10:00:00,view,1,10.0,GB\n",
}


def _write_canonical(folder, events_rows, items_csv=ITEMS_CSV):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(items_csv)
    (folder / "events.csv").write_text(EVENTS_HEADER + "".join(events_rows))
    return folder


def _read_outputs(out):
    return (
        pl.read_parquet(out / "events.parquet"),
        pl.read_parquet(out / "events_rejected.parquet"),
        json.loads((out / "summary.json").read_text()),
    )


def _balanced(summary):
    return summary["rows_in"] == summary["rows_accepted"] + sum(summary["rows_rejected"].values())


def test_each_bad_row_is_rejected_with_its_reason(tmp_path):
    rows = [GOOD_EVENT, *BAD_EVENTS.values(), GOOD_EVENT]
    folder = _write_canonical(tmp_path / "in", rows)
    summary = ingest("canonical", folder, tmp_path / "out", CFG)

    events, rejected, on_disk = _read_outputs(tmp_path / "out")
    assert on_disk == summary
    assert summary["rows_in"] == len(rows)
    assert summary["rows_accepted"] == 2 == events.height
    assert summary["rows_rejected"] == dict.fromkeys(BAD_EVENTS, 1)
    assert _balanced(summary)
    by_reason = dict(zip(rejected[s.REASON], rejected[s.SOURCE_ROW], strict=True))
    assert by_reason == {reason: i + 1 for i, reason in enumerate(BAD_EVENTS)}


@pytest.mark.parametrize("price", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_and_infinite_prices_are_rejected(tmp_path, price):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, f"U1,I1,2024-01-01 10:00:00,view,1,{price},GB\n"])
    summary = ingest("canonical", folder, tmp_path / "out", CFG)
    assert summary["rows_rejected"] == {"non_finite_price": 1}


def test_price_and_quantity_bounds_come_from_config(tmp_path):
    items_csv = ITEMS_CSV + "I3,Sofa,home,60.0,2023-01-01,1\nI4,Lamp,home,nan,2023-01-01,1\n"
    rows = [GOOD_EVENT, "U1,I1,2024-01-01 10:00:00,view,1,60.0,GB\n", "U1,I1,2024-01-01 10:00:00,view,11,10.0,GB\n"]
    folder = _write_canonical(tmp_path / "in", rows, items_csv)
    summary = ingest("canonical", folder, tmp_path / "out", IngestConfig(max_price=50, max_quantity=10))
    assert summary["rows_rejected"] == {"price_above_max": 1, "quantity_above_max": 1}
    assert summary["items"]["rows_rejected"] == {"price_above_max": 1, "non_finite_price": 1}

    assert ingest("canonical", folder, tmp_path / "out", CFG)["rows_rejected"] == {}


def test_an_id_the_api_would_refuse_is_rejected(tmp_path):
    long_item = "I" * 129
    items_csv = ITEMS_CSV + f"{long_item},Kite,toys,1.0,2023-01-01,1\n" + "I\x073,Bell,toys,1.0,2023-01-01,1\n"
    rows = [
        GOOD_EVENT,
        f"{'U' * 128},I1,2024-01-01 10:00:00,view,1,10.0,GB\n",
        "U\x1b]0;x\x07,I1,2024-01-01,view,1,1,GB\n",
    ]
    folder = _write_canonical(tmp_path / "in", rows, items_csv)
    summary = ingest("canonical", folder, tmp_path / "out", CFG)
    assert summary["rows_accepted"] == 2
    assert summary["rows_rejected"] == {"user_id_control_character": 1}
    assert summary["items"]["rows_rejected"] == {"item_id_too_long": 1, "item_id_control_character": 1}


def test_duplicate_item_rows_are_rejected_and_the_first_row_defines_the_item(tmp_path):
    items_csv = ITEMS_CSV + "I1,Beach Towel XL,outdoor,99.0,2023-01-01,5\n I2 ,Mug,kitchen,3.5,2023-01-01,\n"
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT], items_csv)
    summary = ingest("canonical", folder, tmp_path / "out", CFG)

    assert summary["items"]["rows_in"] == 4
    assert summary["items"]["rows_accepted"] == 2
    assert summary["items"]["rows_rejected"] == {"duplicate_item_id": 2}
    items = pl.read_parquet(tmp_path / "out" / "items.parquet").sort(s.ITEM_ID)
    assert items[s.PRICE].to_list() == [10.0, 3.5]
    rejected = pl.read_parquet(tmp_path / "out" / "items_rejected.parquet")
    assert rejected[s.SOURCE_ROW].to_list() == [2, 3]


def test_identical_event_lines_are_kept_as_separate_events(tmp_path):
    # Two scans of one product in one basket are two identical lines; see docs/architecture.md.
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, GOOD_EVENT, GOOD_EVENT])
    summary = ingest("canonical", folder, tmp_path / "out", CFG)
    assert summary["rows_accepted"] == 3
    assert pl.read_parquet(tmp_path / "out" / "events.parquet").height == 3


def test_rejected_rows_keep_their_original_values(tmp_path):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, BAD_EVENTS["invalid_quantity"], BAD_EVENTS["unknown_item"]])
    ingest("canonical", folder, tmp_path / "out", CFG)
    _, rejected, _ = _read_outputs(tmp_path / "out")

    assert {s.REASON, s.SOURCE_ROW, *s.EVENTS_COLUMNS} == set(rejected.columns)
    bad_quantity = rejected.filter(pl.col(s.REASON) == "invalid_quantity").row(0, named=True)
    assert bad_quantity[s.QUANTITY] == "abc"
    assert bad_quantity[s.SOURCE_ROW] == 1
    assert bad_quantity[s.EVENT_TS] == "2024-01-01 10:00:00"
    assert rejected.filter(pl.col(s.REASON) == "unknown_item")[s.ITEM_ID].to_list() == ["I9"]


def test_accepted_events_are_typed_canonical_rows(tmp_path):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, "U2,I2,2024-01-03T08:30:00,purchase,2,3.5,DE\n"])
    ingest("canonical", folder, tmp_path / "out", CFG)
    events, rejected, _ = _read_outputs(tmp_path / "out")

    assert rejected.height == 0
    assert events.columns == list(s.EVENTS_COLUMNS)
    assert events.schema[s.EVENT_TS] == pl.Datetime("us", "UTC")
    assert events.schema[s.QUANTITY] == pl.Int64
    assert events.row(1, named=True) == {
        s.USER_ID: "U2",
        s.ITEM_ID: "I2",
        s.EVENT_TS: datetime(2024, 1, 3, 8, 30, tzinfo=UTC),
        s.EVENT_TYPE: "purchase",
        s.QUANTITY: 2,
        s.PRICE: 3.5,
        s.REGION: "DE",
    }
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    assert items.sort(s.ITEM_ID)[s.STOCK].to_list() == [5, None]


def test_accepts_an_events_file_as_input(tmp_path):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, BAD_EVENTS["unknown_item"]])
    summary = ingest("canonical", folder / "events.csv", tmp_path / "out", CFG)
    assert summary["rows_accepted"] == 1
    assert summary["rows_rejected"] == {"unknown_item": 1}


def test_oldest_timestamp_comes_from_config(tmp_path):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, "U1,I1,2019-06-01 10:00:00,view,1,10.0,GB\n"])
    summary = ingest("canonical", folder, tmp_path / "out", IngestConfig(oldest=date(2020, 1, 1)))
    assert summary["rows_rejected"] == {"ancient_timestamp": 1}


def test_items_failing_validation_are_rejected_and_their_events_become_unknown(tmp_path):
    items_csv = ITEMS_CSV + "I3,Kite,toys,-1.0,2023-01-01,1\nI4,Hat,apparel,4.0,2023-01-01,-3\n"
    rows = [GOOD_EVENT, "U1,I3,2024-01-01 10:00:00,view,1,1.0,GB\n"]
    folder = _write_canonical(tmp_path / "in", rows, items_csv)
    summary = ingest("canonical", folder, tmp_path / "out", CFG)

    assert summary["items"]["rows_rejected"] == {"negative_price": 1, "negative_stock": 1}
    assert _balanced(summary["items"])
    assert summary["rows_rejected"] == {"unknown_item": 1}
    items_rejected = pl.read_parquet(tmp_path / "out" / "items_rejected.parquet")
    assert sorted(items_rejected[s.ITEM_ID].to_list()) == ["I3", "I4"]
    assert sorted(pl.read_parquet(tmp_path / "out" / "items.parquet")[s.ITEM_ID].to_list()) == ["I1", "I2"]


@pytest.mark.parametrize("missing", [s.REGION, s.EVENT_TS])
def test_missing_column_is_a_file_level_error_naming_file_and_column(tmp_path, missing):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT])
    frame = pl.read_csv(folder / "events.csv", infer_schema=False).drop(missing)
    frame.write_csv(folder / "events.csv")
    with pytest.raises(InputError) as excinfo:
        ingest("canonical", folder, tmp_path / "out", CFG)
    message = str(excinfo.value)
    assert "events.csv" in message
    assert f"'{missing}'" in message
    assert not (tmp_path / "out").exists()


def test_missing_items_column_names_items_file(tmp_path):
    folder = _write_canonical(
        tmp_path / "in",
        [GOOD_EVENT],
        ITEMS_CSV.replace("category,", "").replace("outdoor,", "").replace("kitchen,", ""),
    )
    with pytest.raises(InputError) as excinfo:
        ingest("canonical", folder, tmp_path / "out", CFG)
    assert "items.csv" in str(excinfo.value)
    assert "'category'" in str(excinfo.value)


@pytest.mark.parametrize(("content", "words"), [("", "empty"), (EVENTS_HEADER, "no rows")])
def test_empty_events_file_is_an_input_error(tmp_path, content, words):
    folder = _write_canonical(tmp_path / "in", [])
    (folder / "events.csv").write_text(content)
    with pytest.raises(InputError) as excinfo:
        ingest("canonical", folder, tmp_path / "out", CFG)
    assert "events.csv" in str(excinfo.value)
    assert words in str(excinfo.value)


def _events_frame(**overrides):
    frame = pl.DataFrame(
        {
            s.USER_ID: ["U1", "U2"],
            s.ITEM_ID: ["I1", "I2"],
            s.EVENT_TS: [datetime(2024, 7, 1, 12), datetime(2024, 7, 2, 12)],
            s.EVENT_TYPE: ["view", "purchase"],
            s.QUANTITY: [1, 2],
            s.PRICE: [10.0, 3.5],
            s.REGION: ["GB", "DE"],
        }
    )
    return frame.with_columns(**overrides)


def _write_parquet_input(folder, events):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(ITEMS_CSV)
    events.write_parquet(folder / "events.parquet")
    return folder


def test_parquet_column_of_wrong_type_is_a_file_level_error(tmp_path):
    folder = _write_parquet_input(tmp_path / "in", _events_frame(quantity=pl.Series([True, False])))
    with pytest.raises(InputError) as excinfo:
        ingest("canonical", folder, tmp_path / "out", CFG)
    assert excinfo.value.column == s.QUANTITY
    assert "events.parquet" in str(excinfo.value)
    assert "'quantity'" in str(excinfo.value)


def test_parquet_zoned_timestamps_are_stored_in_utc(tmp_path):
    events = _events_frame().with_columns(pl.col(s.EVENT_TS).dt.replace_time_zone("Europe/Berlin"))
    folder = _write_parquet_input(tmp_path / "in", events)
    ingest("canonical", folder, tmp_path / "out", CFG)
    out = pl.read_parquet(tmp_path / "out" / "events.parquet").sort(s.EVENT_TS)
    assert out[s.EVENT_TS].to_list() == [
        datetime(2024, 7, 1, 10, tzinfo=UTC),
        datetime(2024, 7, 2, 10, tzinfo=UTC),
    ]


def test_parquet_numeric_ids_are_accepted_as_text(tmp_path):
    items = pl.DataFrame(
        {
            s.ITEM_ID: [1],
            s.TITLE: ["Mug"],
            s.CATEGORY: ["kitchen"],
            s.PRICE: [2.0],
            s.LAUNCH_TS: [datetime(2023, 1, 1)],
            s.STOCK: [None],
        },
        schema_overrides={s.STOCK: pl.Int64},
    )
    folder = tmp_path / "in"
    folder.mkdir()
    items.write_parquet(folder / "items.parquet")
    _events_frame(item_id=pl.lit(1), user_id=pl.Series([10, 11])).write_parquet(folder / "events.parquet")
    summary = ingest("canonical", folder, tmp_path / "out", CFG)
    assert summary["rows_accepted"] == 2
    events = pl.read_parquet(tmp_path / "out" / "events.parquet")
    assert sorted(events[s.USER_ID].to_list()) == ["10", "11"]
    assert set(events[s.ITEM_ID]) == {"1"}


def test_no_row_passing_is_an_error_and_writes_nothing(tmp_path):
    folder = _write_canonical(tmp_path / "in", [BAD_EVENTS["unknown_item"], BAD_EVENTS["future_timestamp"]])
    with pytest.raises(SeasonrecError, match="no row passed"):
        ingest("canonical", folder, tmp_path / "out", CFG)
    assert not (tmp_path / "out").exists()


def test_unknown_source_is_rejected(tmp_path):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT])
    with pytest.raises(SeasonrecError, match="unknown source"):
        ingest("kaggle", folder, tmp_path / "out", CFG)


def test_generated_shop_ingests_without_rejects(tmp_path):
    cfg = GenerateConfig(users=60, items=25, chunk_users=25, start=date(2024, 1, 1), end=date(2024, 6, 30), seed=5)
    generated = generate(tmp_path / "raw", cfg)
    summary = ingest("canonical", tmp_path / "raw", tmp_path / "out", CFG)
    assert summary["rows_in"] == generated["events"] == summary["rows_accepted"]
    assert summary["rows_rejected"] == {}
    assert summary["items"]["rows_accepted"] == 25
    events = pl.read_parquet(tmp_path / "out" / "events.parquet")
    assert events[s.EVENT_TS].is_sorted()


def test_reingesting_overwrites_previous_outputs(tmp_path):
    folder = _write_canonical(tmp_path / "in", [GOOD_EVENT, GOOD_EVENT, BAD_EVENTS["unknown_item"]])
    ingest("canonical", folder, tmp_path / "out", CFG)
    _write_canonical(folder, [GOOD_EVENT])
    ingest("canonical", folder, tmp_path / "out", CFG)
    events, rejected, summary = _read_outputs(tmp_path / "out")
    assert (events.height, rejected.height, summary["rows_in"]) == (1, 0, 1)
