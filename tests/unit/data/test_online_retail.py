import json
from datetime import UTC, datetime

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.config import IngestConfig
from seasonrec.data.ingest import ingest
from seasonrec.errors import InputError

CFG = IngestConfig()
SUMMER_NOON = datetime(2010, 7, 1, 12, 0)

# Online Retail II layout; every row but the first two fails exactly one rule.
ROWS = [
    # Invoice, StockCode, Description, Quantity, InvoiceDate, Price, Customer ID, Country
    ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, SUMMER_NOON, 2.55, 17850.0, "United Kingdom"),
    ("536366", "22633", "HAND WARMER UNION JACK", 2, SUMMER_NOON, 1.85, 13047.0, "EIRE"),
    ("C536379", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", -1, SUMMER_NOON, 2.55, 17850.0, "United Kingdom"),
    ("536380", "22633", "HAND WARMER UNION JACK", 0, SUMMER_NOON, 1.85, 13047.0, "EIRE"),
    ("536381", "84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", 3, SUMMER_NOON, 3.39, None, "France"),
    ("536382", "POST", "POSTAGE", 1, SUMMER_NOON, 18.0, 12583.0, "France"),
    ("536383", "22111", "SCOTTIE DOG HOT WATER BOTTLE", 1, SUMMER_NOON, 0.0, 12583.0, "France"),
]
EXPECTED_REASONS = {
    "cancellation": 1,
    "non_positive_quantity": 1,
    "missing_customer_id": 1,
    "non_product_code": 1,
    "non_positive_price": 1,
}
COLUMNS = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]


def _frame(rows=ROWS, columns=COLUMNS):
    return pl.DataFrame(rows, schema=columns, orient="row")


def _ingest(tmp_path, frame, name="online_retail.parquet"):
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    summary = ingest("online-retail", path, tmp_path / "out", CFG)
    out = tmp_path / "out"
    return (
        summary,
        pl.read_parquet(out / "events.parquet"),
        pl.read_parquet(out / "events_rejected.parquet"),
        pl.read_parquet(out / "items.parquet"),
    )


def test_rows_are_accepted_or_rejected_with_reasons(tmp_path):
    summary, events, rejected, _ = _ingest(tmp_path, _frame())

    assert summary["rows_in"] == len(ROWS)
    assert summary["rows_accepted"] == 2 == events.height
    assert summary["rows_rejected"] == EXPECTED_REASONS
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert dict(zip(rejected[s.REASON], rejected[s.SOURCE_ROW], strict=True)) == {
        "cancellation": 2,
        "non_positive_quantity": 3,
        "missing_customer_id": 4,
        "non_product_code": 5,
        "non_positive_price": 6,
    }


def test_rejected_rows_keep_the_source_values(tmp_path):
    _, _, rejected, _ = _ingest(tmp_path, _frame())
    cancelled = rejected.filter(pl.col(s.REASON) == "cancellation").row(0, named=True)
    assert cancelled["Invoice"] == "C536379"
    assert cancelled["Quantity"] == "-1"
    assert cancelled["Country"] == "United Kingdom"


def test_events_are_canonical_purchases_in_utc(tmp_path):
    _, events, _, _ = _ingest(tmp_path, _frame())
    assert events.columns == list(s.EVENTS_COLUMNS)
    first = events.filter(pl.col(s.USER_ID) == "17850").row(0, named=True)
    assert first == {
        s.USER_ID: "17850",
        s.ITEM_ID: "85123A",
        # 12:00 in London during British Summer Time is 11:00 UTC.
        s.EVENT_TS: datetime(2010, 7, 1, 11, 0, tzinfo=UTC),
        s.EVENT_TYPE: "purchase",
        s.QUANTITY: 6,
        s.PRICE: 2.55,
        s.REGION: "GB",
    }


def test_winter_london_time_equals_utc(tmp_path):
    rows = [ROWS[0][:4] + (datetime(2010, 12, 1, 8, 26),) + ROWS[0][5:]]
    _, events, _, _ = _ingest(tmp_path, _frame(rows))
    assert events[s.EVENT_TS].to_list() == [datetime(2010, 12, 1, 8, 26, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("country", "region"),
    [("United Kingdom", "GB"), ("EIRE", "IE"), ("Germany", "DE"), ("Australia", "AU"), ("Atlantis", "ZZ")],
)
def test_region_comes_from_country(tmp_path, country, region):
    rows = [ROWS[0][:7] + (country,)]
    _, events, _, _ = _ingest(tmp_path, _frame(rows))
    assert events[s.REGION].to_list() == [region]


def test_items_take_title_from_most_common_description_ignoring_nan(tmp_path):
    base = ROWS[0]
    rows = [
        base,
        base[:2] + ("nan",) + base[3:],
        base[:2] + ("nan",) + base[3:],
        base[:2] + ("nan",) + base[3:],
        # A stock code that only ever has the literal "nan" description.
        ("536400", "90210", "nan", 1, SUMMER_NOON, 5.0, 12000.0, "Germany"),
        ("536401", "90211", "WHITE METAL LANTERN", 1, SUMMER_NOON, 4.0, 12000.0, "Germany"),
        ("536402", "90211", "white metal lantern, boxed", 1, SUMMER_NOON, 6.0, 12000.0, "Germany"),
        ("536403", "90211", "WHITE METAL LANTERN", 1, SUMMER_NOON, 8.0, 12000.0, "Germany"),
    ]
    summary, events, _, items = _ingest(tmp_path, _frame(rows))
    assert summary["rows_accepted"] == len(rows)
    titles = dict(zip(items[s.ITEM_ID], items[s.TITLE], strict=True))
    assert titles["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert titles["90211"] == "WHITE METAL LANTERN"
    assert titles["90210"] != "nan"
    assert items.columns == list(s.ITEMS_COLUMNS)
    assert items.filter(pl.col(s.ITEM_ID) == "90211")[s.PRICE].item() == 6.0
    assert items.filter(pl.col(s.ITEM_ID) == "85123A")[s.CATEGORY].item() == "lighting"
    assert items[s.STOCK].null_count() == items.height
    # Every accepted event refers to an item of the items table.
    assert set(events[s.ITEM_ID]) == set(items[s.ITEM_ID])


def test_item_launch_is_its_first_sale(tmp_path):
    rows = [
        ROWS[0][:4] + (datetime(2010, 12, 1, 9, 0),) + ROWS[0][5:],
        ROWS[0][:4] + (datetime(2010, 3, 1, 9, 0),) + ROWS[0][5:],
    ]
    _, _, _, items = _ingest(tmp_path, _frame(rows))
    assert items[s.LAUNCH_TS].to_list() == [datetime(2010, 3, 1, 9, 0, tzinfo=UTC)]


def test_stock_codes_are_case_insensitive(tmp_path):
    rows = [ROWS[0], ROWS[0][:1] + ("85123a",) + ROWS[0][2:]]
    _, events, _, items = _ingest(tmp_path, _frame(rows))
    assert set(events[s.ITEM_ID]) == {"85123A"}
    assert items.height == 1


def test_older_layout_column_names_from_csv(tmp_path):
    old_columns = [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ]
    rows = [
        (
            "536365",
            "85123A",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "6",
            "2010-07-01 12:00:00",
            "2.55",
            "17850",
            "United Kingdom",
        ),
        (
            "C536379",
            "85123A",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "-1",
            "2010-07-01 12:00:00",
            "2.55",
            "17850",
            "United Kingdom",
        ),
        ("536366", "22633", "HAND WARMER UNION JACK", "2", "2010-07-02 12:00:00", "1.85", "", "EIRE"),
        ("536367", "22633", "HAND WARMER UNION JACK", "2", "not a date", "1.85", "13047", "EIRE"),
        ("536368", "22633", "HAND WARMER UNION JACK", "2", "2010-07-03 09:30:00", "1.85", "13047.0", "EIRE"),
    ]
    summary, events, rejected, items = _ingest(tmp_path, _frame(rows, old_columns), name="retail.csv")

    assert summary["rows_in"] == 5
    assert summary["rows_rejected"] == {"cancellation": 1, "missing_customer_id": 1, "invalid_date": 1}
    assert summary["rows_in"] == summary["rows_accepted"] + sum(summary["rows_rejected"].values())
    assert sorted(events[s.USER_ID].to_list()) == ["13047", "17850"]
    assert sorted(events[s.EVENT_TS].to_list()) == [
        datetime(2010, 7, 1, 11, 0, tzinfo=UTC),
        datetime(2010, 7, 3, 8, 30, tzinfo=UTC),
    ]
    assert set(events[s.REGION]) == {"GB", "IE"}
    assert rejected.filter(pl.col(s.REASON) == "invalid_date")["InvoiceDate"].to_list() == ["not a date"]
    assert sorted(items[s.ITEM_ID].to_list()) == ["22633", "85123A"]


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "retail.parquet"
    _frame().drop("Country").write_parquet(path)
    with pytest.raises(InputError) as excinfo:
        ingest("online-retail", path, tmp_path / "out", CFG)
    assert "retail.parquet" in str(excinfo.value)
    assert "'Country'" in str(excinfo.value)


def test_invoice_date_of_wrong_type_is_a_file_level_error(tmp_path):
    path = tmp_path / "retail.parquet"
    _frame().with_columns(pl.lit(20100701).alias("InvoiceDate")).write_parquet(path)
    with pytest.raises(InputError) as excinfo:
        ingest("online-retail", path, tmp_path / "out", CFG)
    assert excinfo.value.column == "InvoiceDate"


def test_empty_csv_is_an_input_error(tmp_path):
    path = tmp_path / "retail.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(InputError, match="no rows"):
        ingest("online-retail", path, tmp_path / "out", CFG)


def test_impossible_prices_quantities_and_stock_codes_are_rejected_with_their_own_reasons(tmp_path):
    good = ROWS[0]
    rows = [
        good,
        good[:5] + (float("nan"),) + good[6:],
        good[:5] + (float("inf"),) + good[6:],
        good[:5] + (1e308,) + good[6:],
        good[:3] + (250_000,) + good[4:],
        (good[0], "85123A\x1b[2J") + good[2:],
        (good[0], "9" * 129) + good[2:],
    ]
    summary, events, _, _ = _ingest(tmp_path, _frame(rows))

    assert summary["rows_accepted"] == 1 == events.height
    assert summary["rows_rejected"] == {
        "non_finite_price": 2,
        "price_above_max": 1,
        "quantity_above_max": 1,
        "item_id_control_character": 1,
        "item_id_too_long": 1,
    }
