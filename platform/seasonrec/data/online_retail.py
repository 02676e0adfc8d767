"""Adapter for the UCI Online Retail I/II layout.

Columns: Invoice (or InvoiceNo), StockCode, Description, Quantity, InvoiceDate,
Price (or UnitPrice), Customer ID (or CustomerID), Country. Every line is a purchase.

Cancellations (invoices starting with "C") are rejected with reason
`cancellation` rather than kept as negative events: a return says little about
what a shopper wants next season, the canonical event types have no "return",
and a ranker fed negative quantities learns noise. They stay in the rejected
table, row for row, for anyone who wants a return signal later.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from seasonrec import schema as s
from seasonrec.data.validate import (
    Check,
    id_checks,
    non_finite,
    parse_timestamp_text,
    require_columns,
    staged,
    typed_column,
)
from seasonrec.errors import InputError

# Both published layouts, mapped to one set of names.
ALIASES = {
    "InvoiceNo": "Invoice",
    "UnitPrice": "Price",
    "CustomerID": "Customer ID",
}
USER_COLUMN = "Customer ID"  # the customer: what pseudonyms replace and erasure looks for
REQUIRED = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", USER_COLUMN, "Country"]

# Postage, fees and manual adjustments are not products a shopper could be recommended.
NON_PRODUCT_CODES = {
    "POST",
    "DOT",
    "M",
    "D",
    "C2",
    "CRUK",
    "PADS",
    "BANK CHARGES",
    "AMAZONFEE",
    "S",
    "B",
    "ADJUST",
    "TEST001",
    "TEST002",
}

# The shop traded from the UK, so its clock is London's; canonical time is UTC.
SHOP_TIME_ZONE = "Europe/London"

COUNTRY_TO_REGION = {
    "United Kingdom": "GB",
    "EIRE": "IE",
    "Ireland": "IE",
    "France": "FR",
    "Germany": "DE",
    "Netherlands": "NL",
    "Belgium": "BE",
    "Spain": "ES",
    "Portugal": "PT",
    "Italy": "IT",
    "Switzerland": "CH",
    "Austria": "AT",
    "Denmark": "DK",
    "Norway": "NO",
    "Sweden": "SE",
    "Finland": "FI",
    "Iceland": "IS",
    "Poland": "PL",
    "Lithuania": "LT",
    "Czech Republic": "CZ",
    "Greece": "GR",
    "Cyprus": "CY",
    "Malta": "MT",
    "Channel Islands": "JE",
    "USA": "US",
    "Canada": "CA",
    "Brazil": "BR",
    "Australia": "AU",
    "Japan": "JP",
    "Korea": "KR",
    "Hong Kong": "HK",
    "Singapore": "SG",
    "Thailand": "TH",
    "Israel": "IL",
    "Lebanon": "LB",
    "United Arab Emirates": "AE",
    "Saudi Arabia": "SA",
    "Bahrain": "BH",
    "Nigeria": "NG",
    "RSA": "ZA",
    "Bermuda": "BM",
    "West Indies": "JM",
    "European Community": "EU",
    "Unspecified": "ZZ",
}
UNKNOWN_REGION = "ZZ"

# The data carries no category, so one is read off the title; first match wins.
CATEGORY_KEYWORDS: list[tuple[str, tuple[str, ...]]] = [
    ("christmas", ("CHRISTMAS", "XMAS", "SANTA", "REINDEER", "ADVENT", "SNOWFLAKE", "NATIVITY", "BAUBLE")),
    ("easter", ("EASTER", "BUNNY", "CHICK")),
    ("bags", ("BAG", "PURSE", "TOTE")),
    ("lighting", ("CANDLE", "LIGHT", "LANTERN", "T-LIGHT", "LAMP")),
    ("kitchen", ("MUG", "CUP", "PLATE", "BOWL", "TEA", "CAKE", "JAR", "BOTTLE", "LUNCH", "NAPKIN", "SPOON")),
    ("stationery", ("CARD", "PAPER", "WRAP", "NOTEBOOK", "PEN", "PENCIL", "STICKER", "TAPE", "BOOK")),
    ("toys", ("TOY", "GAME", "DOLL", "PLAYHOUSE", "SPACEBOY", "JIGSAW", "PARTY")),
    ("garden", ("GARDEN", "PLANT", "FLOWER", "WATERING", "BIRD")),
    ("jewellery", ("NECKLACE", "EARRING", "BRACELET", "RING", "BROOCH")),
    ("decor", ("HANGING", "ORNAMENT", "DECORATION", "GARLAND", "BUNTING", "HEART", "SIGN", "FRAME", "CLOCK")),
    ("home", ("CUSHION", "DOORMAT", "BOX", "STORAGE", "MIRROR", "HOOK", "DRAWER", "BLANKET")),
]


def category_of(title: pl.Expr) -> pl.Expr:
    upper = title.str.to_uppercase()
    expr = pl.lit("other")
    for category, words in reversed(CATEGORY_KEYWORDS):
        # Whole words (plural allowed): RING must not match STRING or FRINGE.
        pattern = r"\b(?:" + "|".join(words) + r")S?\b"
        expr = pl.when(upper.str.contains(pattern)).then(pl.lit(category)).otherwise(expr)
    return expr


def events_frame(path: Path, lf: pl.LazyFrame) -> tuple[pl.LazyFrame, dict[str, pl.Expr], list[Check]]:
    """Map the raw rows to canonical event columns, with the adapter's own checks first."""
    present = lf.collect_schema().names()
    lf = lf.rename({old: new for old, new in ALIASES.items() if old in present})
    schema = require_columns(lf, path, REQUIRED)
    date_dtype = schema["InvoiceDate"]
    if date_dtype == pl.String:
        event_ts = parse_timestamp_text(pl.col("InvoiceDate"), naive_zone=SHOP_TIME_ZONE)
    elif isinstance(date_dtype, pl.Datetime):
        event_ts = (
            pl.col("InvoiceDate")
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone(SHOP_TIME_ZONE, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
    else:
        raise InputError(path, f"expected a timestamp, found {date_dtype}", column="InvoiceDate")

    typed = {
        s.USER_ID: typed_column(path, USER_COLUMN, "int", schema[USER_COLUMN]).cast(pl.String),
        s.ITEM_ID: typed_column(path, "StockCode", "str", schema["StockCode"]).str.to_uppercase(),
        s.EVENT_TS: event_ts,
        s.EVENT_TYPE: pl.lit("purchase"),
        s.QUANTITY: typed_column(path, "Quantity", "int", schema["Quantity"]),
        s.PRICE: typed_column(path, "Price", "float", schema["Price"]),
        s.REGION: typed_column(path, "Country", "str", schema["Country"]).replace_strict(
            COUNTRY_TO_REGION, default=UNKNOWN_REGION, return_dtype=pl.String
        ),
        # Carried to build the items table; dropped from the events.
        s.TITLE: typed_column(path, "Description", "str", schema["Description"]),
    }
    checks = [
        Check("invalid_date", staged(s.EVENT_TS).is_null()),
        Check("cancellation", pl.col("Invoice").cast(pl.String).str.starts_with("C")),
        Check("non_finite_quantity", non_finite("Quantity", schema["Quantity"])),
        Check("non_positive_quantity", staged(s.QUANTITY).is_null() | (staged(s.QUANTITY) <= 0)),
        Check("missing_customer_id", staged(s.USER_ID).is_null()),
        Check("missing_stock_code", staged(s.ITEM_ID).is_null() | (staged(s.ITEM_ID) == "")),
        *id_checks(s.ITEM_ID),
        Check("non_product_code", staged(s.ITEM_ID).is_in(sorted(NON_PRODUCT_CODES))),
        Check("non_finite_price", non_finite("Price", schema["Price"])),
        Check("non_positive_price", staged(s.PRICE).is_null() | (staged(s.PRICE) <= 0)),
    ]
    return lf, typed, checks


def items_from_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per stock code: its most common real description, median price, first sale."""
    real_title = pl.col(s.TITLE).is_not_null() & (pl.col(s.TITLE) != "") & (pl.col(s.TITLE).str.to_lowercase() != "nan")
    titles = (
        events.filter(real_title)
        .group_by(s.ITEM_ID, s.TITLE)
        .agg(pl.len().alias("n"))
        .sort([s.ITEM_ID, "n", s.TITLE], descending=[False, True, False])
        .group_by(s.ITEM_ID, maintain_order=True)
        .agg(pl.col(s.TITLE).first())
    )
    stats = events.group_by(s.ITEM_ID).agg(
        pl.col(s.PRICE).median().alias(s.PRICE),
        pl.col(s.EVENT_TS).min().alias(s.LAUNCH_TS),
    )
    return (
        stats.join(titles, on=s.ITEM_ID, how="left")
        .with_columns(pl.col(s.TITLE).fill_null(pl.col(s.ITEM_ID)))
        .with_columns(
            category_of(pl.col(s.TITLE)).alias(s.CATEGORY),
            # The shop publishes no stock levels; null means unknown, not zero.
            pl.lit(None, dtype=pl.Int64).alias(s.STOCK),
        )
        .select(list(s.ITEMS_COLUMNS))
        .sort(s.ITEM_ID)
    )
