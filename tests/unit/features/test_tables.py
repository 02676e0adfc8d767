"""Feature builders on hand-made events: values and the timestamps that make them point-in-time safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.features import tables


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def events(rows) -> pl.LazyFrame:
    cols = [s.USER_ID, s.ITEM_ID, s.EVENT_TS, s.EVENT_TYPE, s.QUANTITY, s.PRICE, s.REGION]
    return (
        pl.DataFrame(rows, schema=cols, orient="row")
        .with_columns(pl.col(s.EVENT_TS).cast(pl.Datetime("us", "UTC")))
        .lazy()
    )


BASE = [
    ("U1", "A", utc(2024, 3, 1, 9), "view", 1, 5.0, "GB"),
    ("U1", "A", utc(2024, 3, 1, 10), "purchase", 2, 5.0, "GB"),
    ("U1", "B", utc(2024, 3, 3, 10), "purchase", 1, 7.0, "DE"),
    ("U2", "A", utc(2024, 3, 2, 12), "cart", 1, 5.0, "AU"),
]


def test_user_stats_are_running_totals_stamped_at_the_days_last_event():
    out = tables.user_stats(events(BASE)).collect().sort(s.USER_ID, s.FEATURE_TS)
    u1 = out.filter(pl.col(s.USER_ID) == "U1")
    assert u1[s.FEATURE_TS].to_list() == [utc(2024, 3, 1, 10), utc(2024, 3, 3, 10)]
    assert u1["n_purchases"].to_list() == [1, 2]
    assert u1["n_views"].to_list() == [1, 1]
    assert u1["monetary"].to_list() == pytest.approx([10.0, 17.0])
    assert u1["last_purchase_ts"].to_list() == [
        int(utc(2024, 3, 1, 10).timestamp()),
        int(utc(2024, 3, 3, 10).timestamp()),
    ]
    assert u1[s.HOME_REGION].to_list() == ["GB", "DE"]
    u2 = out.filter(pl.col(s.USER_ID) == "U2").to_dicts()[0]
    assert u2["last_purchase_ts"] == -1 and u2["n_carts"] == 1


def test_history_keeps_the_last_n_events_oldest_first():
    rows = [("U1", f"I{k}", utc(2024, 1, 1) + timedelta(hours=k), "view", 1, 1.0, "GB") for k in range(30)]
    out = tables.user_history(events(rows), length=5).collect().sort(s.FEATURE_TS)
    # 30 events over two days (0-23h and the next day): one snapshot per day.
    assert out.height == 2
    first, last = out.to_dicts()
    assert first[s.HISTORY_ITEM_IDS] == ["I19", "I20", "I21", "I22", "I23"]
    assert last[s.HISTORY_ITEM_IDS] == ["I25", "I26", "I27", "I28", "I29"]
    assert last[s.FEATURE_TS] == utc(2024, 1, 2, 5)
    assert last[s.HISTORY_TS] == sorted(last[s.HISTORY_TS])


def test_history_never_holds_an_event_after_its_timestamp():
    rows = [
        (f"U{k % 7}", f"I{k % 11}", utc(2024, 1, 1) + timedelta(hours=5 * k), "view", 1, 1.0, "GB") for k in range(300)
    ]
    out = tables.user_history(events(rows), length=8).collect()
    latest = out.select(pl.col(s.HISTORY_TS).list.max(), pl.col(s.FEATURE_TS).dt.epoch("s"))
    assert (latest[s.HISTORY_TS] == latest[s.FEATURE_TS]).all()
    assert out[s.HISTORY_ITEM_IDS].list.len().max() == 8


def test_item_demand_is_a_share_per_iso_week_known_at_week_end():
    rows = [
        ("U1", "A", utc(2024, 12, 2, 10), "purchase", 3, 1.0, "GB"),  # ISO week 49
        ("U1", "A", utc(2024, 12, 9, 10), "purchase", 1, 1.0, "GB"),  # ISO week 50
    ]
    out = tables.item_demand(events(rows)).collect().sort(s.FEATURE_TS)
    assert out[s.FEATURE_TS].to_list() == [utc(2024, 12, 9), utc(2024, 12, 16)]
    latest = out.to_dicts()[-1]
    assert latest["total_demand"] == 4
    assert latest[s.DEMAND_BY_WEEK][48] == pytest.approx(0.75)
    assert latest[s.DEMAND_BY_WEEK][49] == pytest.approx(0.25)
    assert sum(latest[s.DEMAND_BY_WEEK]) == pytest.approx(1.0)


def test_trend_windows_expire_instead_of_lingering():
    rows = [("U1", "A", utc(2024, 5, 1, 10), "purchase", 4, 1.0, "GB")]
    out = tables.region_item_trends(events(rows)).collect().sort(s.FEATURE_TS)
    by_day = {r[s.FEATURE_TS]: r for r in out.to_dicts()}
    assert by_day[utc(2024, 5, 2)]["sales_7d"] == 4 and by_day[utc(2024, 5, 2)]["sales_28d"] == 4
    assert by_day[utc(2024, 5, 9)]["sales_7d"] == 0 and by_day[utc(2024, 5, 9)]["sales_28d"] == 4
    assert by_day[utc(2024, 5, 30)]["sales_28d"] == 0


def test_pools_rank_last_years_season_and_only_use_earlier_weeks():
    rows = [
        ("U1", "XMAS", utc(2023, 12, 12, 10), "purchase", 10, 1.0, "GB"),  # ISO week 50, 2023
        ("U1", "TEA", utc(2024, 11, 26, 10), "purchase", 3, 1.0, "GB"),  # ISO week 48, 2024
        ("U2", "SUN", utc(2024, 11, 27, 10), "purchase", 1, 1.0, "AU"),
    ]
    out = tables.seasonal_pools(events(rows), size=5, seasonal_weight=2.0, recent_weight=1.0).collect()
    # The data ends in the week of 2024-11-25, so next year's pools are known from 2024-12-02.
    gb = out.filter((pl.col(s.REGION) == "GB") & (pl.col(s.WEEK_OF_YEAR) == 50)).sort(s.FEATURE_TS).to_dicts()[-1]
    assert gb[s.FEATURE_TS] == utc(2024, 12, 2)
    # Last year's Christmas seller outranks this year's recent seller for the same week.
    assert gb[s.POOL_ITEM_IDS] == ["XMAS", "TEA"]
    every = out.filter(pl.col(s.REGION) == s.POOL_ALL_REGIONS)
    assert "SUN" in every.explode(s.POOL_ITEM_IDS)[s.POOL_ITEM_IDS].to_list()
    # A pool never contains sales from its own week or later.
    first_xmas = out.filter(pl.col(s.POOL_ITEM_IDS).list.contains("XMAS"))[s.FEATURE_TS].min()
    assert first_xmas > utc(2023, 12, 12)
