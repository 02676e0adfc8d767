"""Seasonality is regional: the week-of-year demand profiles per region and per hemisphere, and the seasonal
pools per hemisphere, on hand-made sales where the southern summer falls in January."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.config import DemandWeights
from seasonrec.data.calendar import hemisphere as calendar_hemisphere
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


def buy(user: str, item: str, ts: datetime, quantity: int, region: str) -> tuple:
    return (user, item, ts, "purchase", quantity, 1.0, region)


# SUN sells in the southern summer (January) in Australia and New Zealand, and in July in Britain, where most
# of its units go. ISO weeks: 10 Jan 2024 is week 2, 17 Jan week 3, 10 Jul week 28.
SUN = [
    buy("U1", "SUN", utc(2024, 1, 10, 10), 4, "AU"),
    buy("U2", "SUN", utc(2024, 1, 17, 10), 2, "NZ"),
    buy("U3", "SUN", utc(2024, 7, 10, 10), 10, "GB"),
    ("U3", "SUN", utc(2024, 7, 11, 10), "view", 50, 1.0, "GB"),  # a view is one unit of demand, whatever its quantity
]


def latest(frame: pl.LazyFrame, **keys: str) -> dict:
    out = frame.collect().filter(*(pl.col(k) == v for k, v in keys.items())).sort(s.FEATURE_TS)
    return out.to_dicts()[-1]


def week_of_peak(profile: list[float]) -> int:
    return max(range(len(profile)), key=profile.__getitem__) + 1


def test_hemisphere_expression_agrees_with_the_calendar():
    regions = ["AU", "GB", "NZ", "US", "BR", "ZA", "DE"]
    frame = pl.DataFrame({s.REGION: regions})
    got = frame.select(tables.hemisphere(pl.col(s.REGION)).alias(s.HEMISPHERE))[s.HEMISPHERE].to_list()
    assert got == ["south", "north", "south", "north", "south", "south", "north"]
    assert got == [calendar_hemisphere(r) for r in regions]


def test_region_profile_is_keyed_by_region_and_item_and_sums_to_one():
    out = tables.region_item_demand(events(SUN)).collect()
    assert set(out.columns) == {s.REGION, s.ITEM_ID, s.FEATURE_TS, s.REGION_DEMAND_BY_WEEK, s.REGION_DEMAND}
    assert sorted(out.select(s.REGION, s.ITEM_ID).unique().rows()) == [("AU", "SUN"), ("GB", "SUN"), ("NZ", "SUN")]
    au = latest(tables.region_item_demand(events(SUN)), region="AU")
    assert au[s.REGION_DEMAND] == 4
    assert len(au[s.REGION_DEMAND_BY_WEEK]) == s.WEEKS_PER_YEAR
    assert au[s.REGION_DEMAND_BY_WEEK][1] == pytest.approx(1.0)  # week 2 holds all of Australia's units
    assert sum(au[s.REGION_DEMAND_BY_WEEK]) == pytest.approx(1.0)
    # Known at the end of the week of sale (the week of 8 Jan ends on 15 Jan).
    assert au[s.FEATURE_TS] == utc(2024, 1, 15)


def test_hemisphere_profile_pools_its_regions_sales():
    """South: AU's 4 units in week 2 and NZ's 2 in week 3; north: GB's 10 and a view in week 28."""
    frame = tables.hemisphere_item_demand(events(SUN))
    assert sorted(frame.collect()[s.HEMISPHERE].unique().to_list()) == ["north", "south"]
    south = latest(frame, hemisphere="south")
    assert south[s.HEMISPHERE_DEMAND] == 6
    assert south[s.HEMISPHERE_DEMAND_BY_WEEK][1] == pytest.approx(4 / 6)
    assert south[s.HEMISPHERE_DEMAND_BY_WEEK][2] == pytest.approx(2 / 6)
    assert sum(south[s.HEMISPHERE_DEMAND_BY_WEEK]) == pytest.approx(1.0)
    assert south[s.FEATURE_TS] == utc(2024, 1, 22)
    north = latest(frame, hemisphere="north")
    assert north[s.HEMISPHERE_DEMAND] == 11
    assert north[s.HEMISPHERE_DEMAND_BY_WEEK][27] == pytest.approx(1.0)


def test_a_southern_summer_item_peaks_in_january_in_the_south_but_in_july_globally():
    south = latest(tables.hemisphere_item_demand(events(SUN)), hemisphere="south")
    every = latest(tables.item_demand(events(SUN)), item_id="SUN")
    assert week_of_peak(south[s.HEMISPHERE_DEMAND_BY_WEEK]) == 2
    assert week_of_peak(every[s.DEMAND_BY_WEEK]) == 28
    assert every[s.TOTAL_DEMAND] == 17
    assert every[s.DEMAND_BY_WEEK][1] == pytest.approx(4 / 17)
    assert every[s.DEMAND_BY_WEEK][27] == pytest.approx(11 / 17)
    assert sum(every[s.DEMAND_BY_WEEK]) == pytest.approx(1.0)


def test_a_hemisphere_profile_in_january_does_not_know_july():
    """Point in time: the south's and the world's rows stamped before July hold only January's sales."""
    world = tables.item_demand(events(SUN)).collect().filter(pl.col(s.FEATURE_TS) < utc(2024, 7, 1)).sort(s.FEATURE_TS)
    assert world[s.TOTAL_DEMAND].to_list() == [4, 6]
    assert all(p[27] == 0 for p in world[s.DEMAND_BY_WEEK].to_list())


def test_demand_counts_units_sold_and_views_and_carts_at_their_weights():
    """A view or cart counts its weight once, whatever its quantity field; a purchase counts its units times
    its weight; a weight of 0 leaves that kind out (views 0: the purchase-only profile)."""
    log = [*SUN, ("U3", "SUN", utc(2024, 7, 11, 11), "cart", 3, 1.0, "GB")]
    got = lambda **w: tables.demand(events(log), DemandWeights(**w)).collect()[s.QUANTITY].sum()  # noqa: E731
    assert got() == 16 + 1 + 1
    assert got(view=0, cart=0) == 16
    assert got(view=3, cart=0, purchase=2) == 32 + 3
    north = latest(tables.hemisphere_item_demand(events(log), DemandWeights(view=0, cart=0)), hemisphere="north")
    assert north[s.HEMISPHERE_DEMAND] == 10


# Pools: AU and NZ buy SUN in January, GB buys WOOL the same weeks.
POOL_LOG = [
    buy("U1", "SUN", utc(2024, 1, 10, 10), 4, "AU"),
    buy("U2", "SUN", utc(2024, 1, 17, 10), 2, "NZ"),
    buy("U3", "WOOL", utc(2024, 1, 10, 10), 5, "GB"),
]


def pool(out: pl.DataFrame, region: str, week: int) -> dict:
    (row,) = out.filter((pl.col(s.REGION) == region) & (pl.col(s.WEEK_OF_YEAR) == week)).to_dicts()
    return row


def test_pools_are_written_per_region_per_hemisphere_and_for_all_regions():
    out = tables.seasonal_pools(events(POOL_LOG), size=5, seasonal_weight=2.0, recent_weight=1.0).collect()
    assert set(out[s.REGION].unique().to_list()) == {"AU", "NZ", "GB", "north", "south", s.POOL_ALL_REGIONS}


def test_hemisphere_pools_hold_their_own_season_only():
    """Week 4 (22 Jan): AU's 4 units two weeks before and NZ's 2 one week before give the south SUN 6;
    the north has only GB's WOOL (5); all regions rank both."""
    out = tables.seasonal_pools(events(POOL_LOG), size=5, seasonal_weight=2.0, recent_weight=1.0).collect()
    south, north, every = pool(out, "south", 4), pool(out, "north", 4), pool(out, s.POOL_ALL_REGIONS, 4)
    assert south[s.FEATURE_TS] == north[s.FEATURE_TS] == utc(2024, 1, 22)
    assert south[s.POOL_ITEM_IDS] == ["SUN"] and south[s.POOL_SCORES] == pytest.approx([6.0])
    assert north[s.POOL_ITEM_IDS] == ["WOOL"] and north[s.POOL_SCORES] == pytest.approx([5.0])
    assert every[s.POOL_ITEM_IDS] == ["SUN", "WOOL"] and every[s.POOL_SCORES] == pytest.approx([6.0, 5.0])
    assert pool(out, "AU", 4)[s.POOL_SCORES] == pytest.approx([4.0])
