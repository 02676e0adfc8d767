"""The season of a title's words: `features.title_season`."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.config import DemandWeights
from seasonrec.features.context import week_demand
from seasonrec.features.title_season import (
    new_arrivals,
    title_item_demand,
    title_profiles,
    title_seasons,
    title_words,
)

EARLY = datetime(2023, 6, 1, tzinfo=UTC)


def _items(rows: list[tuple[str, str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={s.ITEM_ID: pl.String, s.TITLE: pl.String, s.LAUNCH_TS: pl.Datetime("us", "UTC")}, orient="row"
    )


def _sales(rows: list[tuple[str, str, datetime, int]]) -> pl.LazyFrame:
    """Purchase events (item, region, time, quantity), as `features build` reads them."""
    return pl.LazyFrame(
        [("u", item, region, at, quantity, "purchase") for item, region, at, quantity in rows],
        schema={
            s.USER_ID: pl.String,
            s.ITEM_ID: pl.String,
            s.REGION: pl.String,
            s.EVENT_TS: pl.Datetime("us", "UTC"),
            s.QUANTITY: pl.Int64,
            s.EVENT_TYPE: pl.String,
        },
        orient="row",
    )


def _as_of(table: pl.DataFrame, half: str, item: str, at: datetime) -> tuple[list[float], int] | None:
    rows = table.filter(
        (pl.col(s.HEMISPHERE) == half) & (pl.col(s.ITEM_ID) == item) & (pl.col(s.FEATURE_TS) <= at)
    ).sort(s.FEATURE_TS)
    return None if rows.is_empty() else rows.select(s.TITLE_DEMAND_BY_WEEK, s.TITLE_DEMAND).row(-1)


def test_title_words_are_distinct_lower_case_words_of_three_letters_or_more():
    assert title_words("SET OF 3 Christmas christmas Baubles, 11.11 Deal") == ["set", "christmas", "baubles", "deal"]
    assert title_words(None) == []


def test_a_word_that_sells_as_the_shop_does_leaves_the_season_to_one_that_does_not():
    weeks = s.WEEKS_PER_YEAR
    units = np.zeros((4, weeks))  # the fourth, a new line, has sold nothing
    units[0, 27] = 30  # "Summer Towel" sells in week 28
    units[1] = 2.0  # "Bath Towel" sells all year
    units[2] = 2.0  # "Wool Scarf" too
    incidence = np.array(
        [[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=float
    )  # summer towel bath wool scarf
    new = np.array([[1, 0, 0, 0, 1]], dtype=float)  # a new "Summer Scarf"
    shares, evidence = title_profiles(units, np.vstack([incidence, new]))
    summer_scarf = shares[3]
    assert summer_scarf.argmax() == 27 and summer_scarf[27] > 10 * np.median(summer_scarf)
    assert shares[2].max() < 2 * np.median(shares[2])  # "Wool Scarf": no season
    assert evidence[3] == pytest.approx((30 + weeks * 2) / 2)  # the mean of "summer" and "scarf"'s units


def test_a_new_line_takes_its_words_season_in_each_hemisphere_from_earlier_sales_only():
    items = _items(
        [
            ("A", "Christmas Bauble", EARLY),
            ("B", "Garden Chair", EARLY),
            ("N", "Christmas Mug", datetime(2024, 1, 10, tzinfo=UTC)),  # launched between the first two cuts
        ]
    )
    december, january = datetime(2023, 12, 20, tzinfo=UTC), datetime(2024, 2, 10, tzinfo=UTC)
    sold = _sales(
        [("A", "GB", december, 40), ("B", "GB", december, 5), ("B", "GB", datetime(2023, 7, 5, tzinfo=UTC), 5)]
        + [("A", "AU", december, 8), ("B", "GB", january, 30)]
    )
    table = title_item_demand(title_seasons(sold, items, every_weeks=4))
    assert _as_of(table, "north", "N", datetime(2024, 1, 9, tzinfo=UTC)) is None  # not launched yet
    later = datetime(2024, 2, 5, tzinfo=UTC)  # after the first cut since the launch, before the January units count
    shares, units = _as_of(table, "north", "N", later)
    week = december.isocalendar().week
    assert np.argmax(shares) == week - 1 and units == 20  # "christmas" sold 40 units, "mug" none: the mean is 20
    index, level = week_demand(week, (None, None), (None, None), (None, None), (shares, units))
    july, _ = week_demand(27, (None, None), (None, None), (None, None), (shares, units))
    assert level == "title" and index > 5 > 1 > july
    south, south_units = _as_of(table, "south", "N", later)
    assert np.argmax(south) == week - 1 and south_units == 4
    # The garden chair's 30 units of February count from the cut after them, and only then.
    before = _as_of(table, "north", "B", january)[1]
    assert _as_of(table, "north", "B", datetime(2024, 4, 1, tzinfo=UTC))[1] == before + 30


def test_views_teach_a_word_its_season_as_sales_do_unless_their_weight_is_zero():
    """A shop that shows a line far more often than it sells it: the views count at `features.demand_weights`."""
    items = _items([("A", "Christmas Bauble", EARLY), ("N", "Christmas Mug", datetime(2024, 1, 10, tzinfo=UTC))])
    december = datetime(2023, 12, 20, tzinfo=UTC)
    bought = _sales([("A", "GB", december, 2), ("A", "GB", datetime(2024, 3, 1, tzinfo=UTC), 1)])
    seen = bought.with_columns(pl.lit("view").alias(s.EVENT_TYPE), pl.lit(1, pl.Int64).alias(s.QUANTITY))
    shown = pl.concat([bought, *[seen.filter(pl.col(s.EVENT_TS) == december)] * 30])
    later = datetime(2024, 2, 5, tzinfo=UTC)
    with_views = _as_of(title_item_demand(title_seasons(shown, items, every_weeks=4)), "north", "N", later)
    without = title_seasons(shown, items, every_weeks=4, weights=DemandWeights(view=0))
    assert with_views[1] == 16  # (2 units + 30 views) for "christmas", none for "mug": the mean is 16
    assert _as_of(title_item_demand(without), "north", "N", later)[1] == 1


def _arrivals(table: pl.DataFrame, half: str, at: datetime) -> list[str]:
    rows = table.filter((pl.col(s.HEMISPHERE) == half) & (pl.col(s.FEATURE_TS) <= at)).sort(s.FEATURE_TS)
    return [] if rows.is_empty() else rows[s.NEW_ARRIVAL_IDS][-1].to_list()


def test_new_arrivals_are_the_recent_launches_most_in_season_first_in_each_hemisphere():
    beach = [("b1", "Beach Towel", EARLY), ("b2", "Beach Ball", EARLY)]
    wool = [("w1", "Wool Hat", EARLY), ("w2", "Wool Socks", EARLY)]
    new = [
        ("n_wool", "Wool Scarf", datetime(2024, 6, 20, tzinfo=UTC)),
        ("n_beach", "Beach Bag", datetime(2024, 6, 10, tzinfo=UTC)),
        ("n_plain", "Garden Chair", datetime(2024, 6, 25, tzinfo=UTC)),
    ]
    july, january = datetime(2023, 7, 10, tzinfo=UTC), datetime(2024, 1, 10, tzinfo=UTC)
    # Britain buys beach lines in July and wool in January; Australia the other way round.
    sold = _sales(
        [(i, "GB", july, 20) for i, *_ in beach]
        + [(i, "GB", january, 20) for i, *_ in wool]
        + [(i, "AU", january, 20) for i, *_ in beach]
        + [(i, "AU", july, 20) for i, *_ in wool]
        + [("w1", "DE", datetime(2024, 10, 1, tzinfo=UTC), 1)]  # the log runs into October
    )
    table = new_arrivals(title_seasons(sold, _items(beach + wool + new), every_weeks=4), days=45, size=10)
    assert table.columns == [s.HEMISPHERE, s.FEATURE_TS, s.NEW_ARRIVAL_IDS]
    assert _arrivals(table, "north", datetime(2024, 6, 1, tzinfo=UTC)) == []  # none launched yet
    assert _arrivals(table, "north", datetime(2024, 6, 15, tzinfo=UTC)) == ["n_beach"]  # n_wool is not out yet
    july_2024 = datetime(2024, 7, 8, tzinfo=UTC)
    assert _arrivals(table, "north", july_2024) == ["n_beach", "n_plain", "n_wool"]
    assert _arrivals(table, "south", july_2024) == ["n_wool", "n_plain", "n_beach"]
    # Forty-five days after its launch an item is no longer new.
    assert _arrivals(table, "north", datetime(2024, 7, 30, tzinfo=UTC)) == ["n_plain", "n_wool"]
    assert _arrivals(table, "north", datetime(2024, 9, 1, tzinfo=UTC)) == []
    # Past the log's last cut nothing is written: the list stays what it was when the data ended.
    assert table[s.FEATURE_TS].max() <= datetime(2024, 10, 7, tzinfo=UTC)
