"""Polars builders for the offline tables that `feature_repo/` declares.

Each builder takes lazy canonical frames and returns a lazy table with the
entity keys, `event_timestamp` (when the values became known) and the features.
Timestamps are chosen so that a point-in-time join never sees the future:

- per-user rows are daily snapshots stamped with the day's last event, so a
  label strictly after that event sees it, and one before it sees the day before;
- weekly rows are stamped at the end of their week;
- item attributes are stamped at launch. Where a source has no launch dates
  (Online Retail), launch is the first sale, so nothing about an item is
  known before it has sold once.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from seasonrec import schema as s
from seasonrec.config import DemandWeights
from seasonrec.data.calendar import SOUTHERN

PURCHASE = pl.col(s.EVENT_TYPE) == "purchase"
DEMAND_WEIGHTS = DemandWeights()  # the config's defaults, for callers without a config


def _day(ts: pl.Expr) -> pl.Expr:
    return ts.dt.truncate("1d")


def _week_start(ts: pl.Expr) -> pl.Expr:
    return ts.dt.truncate("1w")


def user_stats(events: pl.LazyFrame) -> pl.LazyFrame:
    """RFM-style running counts per user, one row per active day."""
    daily = events.group_by(s.USER_ID, _day(pl.col(s.EVENT_TS)).alias("day")).agg(
        (pl.col(s.EVENT_TYPE) == "view").sum().alias("views"),
        (pl.col(s.EVENT_TYPE) == "cart").sum().alias("carts"),
        PURCHASE.sum().alias("purchases"),
        (pl.col(s.QUANTITY) * pl.col(s.PRICE)).filter(PURCHASE).sum().alias("spend"),
        pl.col(s.EVENT_TS).filter(PURCHASE).max().alias("last_purchase"),
        pl.col(s.EVENT_TS).max().alias(s.FEATURE_TS),
        pl.col(s.REGION).mode().sort().first().alias("day_region"),
    )
    running = dict(partition_by=s.USER_ID, order_by="day")

    def cum(col: str) -> pl.Expr:
        return pl.col(col).cum_sum().over(**running)

    return daily.select(
        s.USER_ID,
        s.FEATURE_TS,
        cum("views").cast(pl.Int64).alias(s.N_VIEWS),
        cum("carts").cast(pl.Int64).alias(s.N_CARTS),
        cum("purchases").cast(pl.Int64).alias(s.N_PURCHASES),
        (pl.col("purchases") > 0).cum_sum().over(**running).cast(pl.Int64).alias(s.PURCHASE_DAYS),
        cum("spend").cast(pl.Float64).alias(s.MONETARY),
        # Unix seconds; -1 until the first purchase. Recency is derived at request time.
        pl.col("last_purchase").forward_fill().over(**running).dt.epoch("s").fill_null(-1).alias(s.LAST_PURCHASE_TS),
        # Where the user shopped from most on their latest active day; shoppers rarely move.
        pl.col("day_region").alias(s.HOME_REGION),
    )


def user_history(events: pl.LazyFrame, length: int) -> pl.LazyFrame:
    """The last `length` item ids a user touched, with their Unix times, per active day.

    Each event is assigned to the snapshots of the days among its next `length`
    events, so memory grows with events x distinct days, not events x history.
    """
    ev = (
        events.select(s.USER_ID, s.ITEM_ID, s.EVENT_TS, s.EVENT_TYPE)
        .with_columns(pl.int_range(pl.len()).over(s.USER_ID, order_by=[s.EVENT_TS, s.ITEM_ID]).alias("idx"))
        .with_columns(_day(pl.col(s.EVENT_TS)).alias("day"))
    )
    ahead = (
        pl.concat_list([pl.col("day").shift(-k).over(s.USER_ID, order_by="idx") for k in range(length)])
        .list.drop_nulls()
        .list.unique()
    )
    pairs = ev.with_columns(ahead.alias("snap_day")).explode("snap_day").filter(pl.col("snap_day") >= pl.col("day"))
    return (
        pairs.group_by(s.USER_ID, "snap_day")
        .agg(
            pl.col(s.ITEM_ID).sort_by("idx").tail(length).alias(s.HISTORY_ITEM_IDS),
            pl.col(s.EVENT_TS).sort_by("idx").tail(length).dt.epoch("s").alias(s.HISTORY_TS),
            pl.col(s.EVENT_TYPE).sort_by("idx").tail(length).alias(s.HISTORY_EVENT_TYPES),
            pl.col(s.EVENT_TS).filter(pl.col("day") == pl.col("snap_day")).max().alias(s.FEATURE_TS),
        )
        .select(s.USER_ID, s.FEATURE_TS, s.HISTORY_ITEM_IDS, s.HISTORY_TS, s.HISTORY_EVENT_TYPES)
    )


def item_profile(items: pl.LazyFrame, embeddings: pl.DataFrame) -> pl.LazyFrame:
    """Static item attributes plus the title embedding (joined by item id)."""
    return items.join(embeddings.lazy(), on=s.ITEM_ID, how="left").select(
        s.ITEM_ID,
        pl.col(s.LAUNCH_TS).alias(s.FEATURE_TS),
        s.CATEGORY,
        pl.col(s.PRICE).cast(pl.Float64),
        pl.col(s.LAUNCH_TS).dt.epoch("s").alias(s.LAUNCH_TS),
        pl.col(s.STOCK).cast(pl.Int64),
        s.TITLE_EMBEDDING,
    )


def _purchases(events: pl.LazyFrame) -> pl.LazyFrame:
    return events.filter(PURCHASE).select(s.USER_ID, s.ITEM_ID, s.REGION, s.EVENT_TS, s.QUANTITY)


def demand(events: pl.LazyFrame, weights: DemandWeights) -> pl.LazyFrame:
    """The events a seasonal profile counts, as `_purchases` rows whose quantity is their units of demand: a
    purchase's units times `weights.purchase`, a view or cart `weights.view` or `weights.cart`."""
    units = (
        pl.when(PURCHASE)
        .then(pl.col(s.QUANTITY) * weights.purchase)
        .when(pl.col(s.EVENT_TYPE) == "view")
        .then(pl.lit(weights.view))
        .when(pl.col(s.EVENT_TYPE) == "cart")
        .then(pl.lit(weights.cart))
        .otherwise(pl.lit(0))
    )
    return events.select(s.USER_ID, s.ITEM_ID, s.REGION, s.EVENT_TS, units.cast(pl.Int64).alias(s.QUANTITY)).filter(
        pl.col(s.QUANTITY) > 0
    )


def _demand(wanted: pl.LazyFrame, keys: list[str], profile: str, total: str) -> pl.LazyFrame:
    """Per `keys`, one row per week with demand: the share of its units in each ISO week of the year so far."""
    weekly = (
        wanted.group_by(*keys, _week_start(pl.col(s.EVENT_TS)).alias("week"))
        .agg(pl.col(s.QUANTITY).sum().alias("units"))
        .with_columns(pl.col("week").dt.week().alias("woy"))
    )
    by_week = [
        pl.when(pl.col("woy") == w).then(pl.col("units")).otherwise(0).cum_sum().over(keys, order_by="week")
        for w in range(1, s.WEEKS_PER_YEAR + 1)
    ]
    units = pl.col("units").cum_sum().over(keys, order_by="week")
    return weekly.select(
        *keys,
        (pl.col("week") + timedelta(weeks=1)).alias(s.FEATURE_TS),
        (pl.concat_list(by_week).cast(pl.List(pl.Float32)) / units.cast(pl.Float32)).alias(profile),
        units.cast(pl.Int64).alias(total),
    )


def item_demand(events: pl.LazyFrame, weights: DemandWeights = DEMAND_WEIGHTS) -> pl.LazyFrame:
    """Share of an item's demand (`demand`) in each ISO week of the year, over all regions, from all weeks so far;
    and its (user, day) purchases so far, and how many of them were re-buys."""
    days = _buy_days(events).with_columns(
        (pl.col("day").rank("ordinal").over([s.USER_ID, s.ITEM_ID]) > 1).alias("again"),
        _week_start(pl.col("day")).alias("week"),
    )
    weekly = days.group_by(s.ITEM_ID, "week").agg(pl.len().alias("buys"), pl.col("again").sum().alias("rebuys"))
    running = dict(partition_by=s.ITEM_ID, order_by="week")
    counts = weekly.select(
        s.ITEM_ID,
        (pl.col("week") + timedelta(weeks=1)).alias(s.FEATURE_TS),
        pl.col("buys").cum_sum().over(**running).cast(pl.Int64).alias(s.BUY_DAYS),
        pl.col("rebuys").cum_sum().over(**running).cast(pl.Int64).alias(s.REBUY_DAYS),
    )
    profile = _demand(demand(events, weights), [s.ITEM_ID], s.DEMAND_BY_WEEK, s.TOTAL_DEMAND)
    return profile.join(counts, on=[s.ITEM_ID, s.FEATURE_TS], how="left", maintain_order="left")


def region_item_demand(events: pl.LazyFrame, weights: DemandWeights = DEMAND_WEIGHTS) -> pl.LazyFrame:
    """The same profile from one region's demand: in Australia, summer lines sell in January."""
    return _demand(demand(events, weights), [s.REGION, s.ITEM_ID], s.REGION_DEMAND_BY_WEEK, s.REGION_DEMAND)


def hemisphere_item_demand(events: pl.LazyFrame, weights: DemandWeights = DEMAND_WEIGHTS) -> pl.LazyFrame:
    """The same profile from one hemisphere's demand: the prior of its regions, and a new region's profile."""
    wanted = demand(events, weights).with_columns(hemisphere(pl.col(s.REGION)).alias(s.HEMISPHERE))
    return _demand(wanted, [s.HEMISPHERE, s.ITEM_ID], s.HEMISPHERE_DEMAND_BY_WEEK, s.HEMISPHERE_DEMAND)


def hemisphere(region: pl.Expr) -> pl.Expr:
    """`data.calendar.hemisphere` as a polars expression."""
    return pl.when(region.is_in(sorted(SOUTHERN))).then(pl.lit("south")).otherwise(pl.lit("north"))


def region_item_trends(events: pl.LazyFrame) -> pl.LazyFrame:
    """Units sold in the last 7 and 28 days per region and item, and their ratio.

    A row is written on each day a window sum changes: a sale day, and the days
    a past sale leaves the 7- and 28-day windows, so stale values never linger.
    """
    daily = (
        _purchases(events)
        .group_by(s.REGION, s.ITEM_ID, _day(pl.col(s.EVENT_TS)).alias("day"))
        .agg(pl.col(s.QUANTITY).sum().cast(pl.Float64).alias("units"))
    )
    exits = [
        daily.select(s.REGION, s.ITEM_ID, (pl.col("day") + timedelta(days=d)).alias("day"), pl.lit(0.0).alias("units"))
        for d in (7, 28)
    ]
    keys = [s.REGION, s.ITEM_ID]
    grid = pl.concat([daily, *exits]).group_by(*keys, "day").agg(pl.col("units").sum()).sort(*keys, "day")

    def window(days: int) -> pl.Expr:
        return pl.col("units").rolling_sum_by("day", window_size=f"{days}d").over(keys)

    return grid.select(
        s.REGION,
        s.ITEM_ID,
        # A day's sales are known once the day is over.
        (pl.col("day") + timedelta(days=1)).alias(s.FEATURE_TS),
        window(7).alias(s.SALES_7D),
        window(28).alias(s.SALES_28D),
    ).with_columns(((pl.col(s.SALES_7D) / 7.0) / (pl.col(s.SALES_28D) / 28.0 + 1e-3)).alias(s.TREND_RATIO))


def seasonal_pools(
    events: pl.LazyFrame,
    size: int,
    seasonal_weight: float,
    recent_weight: float,
    weights: DemandWeights = DEMAND_WEIGHTS,
) -> pl.LazyFrame:
    """Top in-season items per region and target week, plus a pool per hemisphere and one for all regions.

    An item's score for week W is its units of demand (`demand`) in the same weeks a year earlier
    (W-53..W-51) times `seasonal_weight`, plus its units in the four weeks before
    W times `recent_weight`: last year's season, blended with what sells now.
    Pools are written for every week of the data and for the 52 weeks after it.
    """
    weekly = (
        demand(events, weights)
        .with_columns(_week_start(pl.col(s.EVENT_TS)).alias("week"))
        .group_by(s.REGION, s.ITEM_ID, "week")
        .agg(pl.col(s.QUANTITY).sum().cast(pl.Float64).alias("units"))
    )
    # Pools for each region, each hemisphere (keyed "north" and "south"), and all regions: the service tops up a
    # region's pool from its hemisphere's, then from all, so a new region still gets its own season.
    weekly = (
        pl.concat(
            [
                weekly,
                weekly.with_columns(hemisphere(pl.col(s.REGION)).alias(s.REGION)),
                weekly.with_columns(pl.lit(s.POOL_ALL_REGIONS).alias(s.REGION)),
            ]
        )
        .group_by(s.REGION, s.ITEM_ID, "week")
        .agg(pl.col("units").sum())
    )
    offsets = [(k, recent_weight) for k in range(1, 5)] + [(k, seasonal_weight) for k in (51, 52, 53)]
    contributions = pl.concat(
        [
            weekly.select(
                s.REGION,
                s.ITEM_ID,
                (pl.col("week") + timedelta(weeks=k)).alias("target"),
                (pl.col("units") * w).alias("score"),
            )
            for k, w in offsets
        ]
    )
    scored = contributions.group_by(s.REGION, "target", s.ITEM_ID).agg(pl.col("score").sum())
    # Pools for the coming year are known as soon as the data ends: they rest on last year's season.
    known_from = weekly.select(pl.col("week").max()).collect().item() + timedelta(weeks=1)
    top = (
        scored.filter(pl.col("target") < known_from + timedelta(weeks=52))
        .sort([s.REGION, "target", "score", s.ITEM_ID], descending=[False, False, True, False])
        .group_by(s.REGION, "target", maintain_order=True)
        .agg(
            pl.col(s.ITEM_ID).head(size).alias(s.POOL_ITEM_IDS),
            pl.col("score").head(size).cast(pl.Float32).alias(s.POOL_SCORES),
        )
    )
    return top.select(
        s.REGION,
        pl.col("target").dt.week().cast(pl.Int64).alias(s.WEEK_OF_YEAR),
        # A week's pool uses only earlier weeks, so it is known at the week's start, or when the data ends.
        pl.min_horizontal(pl.col("target"), pl.lit(known_from)).alias(s.FEATURE_TS),
        s.POOL_ITEM_IDS,
        s.POOL_SCORES,
    )


def _buy_days(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (user, item, day) with a purchase, stamped with that day's last purchase of the item.

    Days, not lines or units: a wholesaler's invoice holds many lines of one item, and how often a customer
    comes back for it is what predicts the next time.
    """
    return (
        _purchases(events)
        .group_by(s.USER_ID, s.ITEM_ID, _day(pl.col(s.EVENT_TS)).alias("day"))
        .agg(pl.col(s.EVENT_TS).max().alias(s.FEATURE_TS), pl.col(s.EVENT_TS).min().alias("first"))
    )


def user_item_stats(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per user and item, on each day they bought it: days bought so far, the first and the latest purchase.

    A label looked up before a purchase sees the item's earlier days only, so the ranker learns "bought 5 times,
    every 3 weeks, last 20 days ago" without the purchase it is asked to predict.
    """
    pair = [s.USER_ID, s.ITEM_ID]
    return _buy_days(events).select(
        s.USER_ID,
        s.ITEM_ID,
        s.FEATURE_TS,
        # One row per day bought, so a day's rank among the pair's days is the days bought so far.
        pl.col("day").rank("ordinal").over(pair).cast(pl.Int64).alias(s.ITEM_BUY_DAYS),
        pl.col("first").min().over(pair).dt.epoch("s").alias(s.ITEM_FIRST_BUY_TS),
        pl.col(s.FEATURE_TS).dt.epoch("s").alias(s.ITEM_LAST_BUY_TS),
    )


def user_repeats(events: pl.LazyFrame, size: int, half_life_days: float) -> pl.LazyFrame:
    """Each user's bought items ranked by decayed frequency, one snapshot per purchase day.

    An item's weight is the sum over the days it was bought of 0.5 ** (age in days / `half_life_days`),
    counted at the snapshot, as TIFU-KNN and P-TopFreq weigh a user's past baskets: often and lately beat once,
    long ago. Weights are relative to the snapshot, which does not change their order at any later moment.
    Only the first `size` items are kept: the candidate stage reads no more.
    """
    days = _buy_days(events).select(s.USER_ID, s.ITEM_ID, "day")
    snaps = (
        _purchases(events)
        .group_by(s.USER_ID, _day(pl.col(s.EVENT_TS)).alias("snap"))
        .agg(pl.col(s.EVENT_TS).max().alias(s.FEATURE_TS))
    )
    age = (pl.col("snap") - pl.col("day")).dt.total_days().cast(pl.Float64)
    ranked = (
        snaps.join(days, on=s.USER_ID)
        .filter(pl.col("day") <= pl.col("snap"))
        .group_by(s.USER_ID, "snap", s.ITEM_ID)
        # Rounded: a parallel sum adds its terms in no fixed order, and two items bought on the same days must tie
        # exactly, so that the item id decides between them in every run.
        .agg(pl.lit(0.5).pow(age / half_life_days).sum().round(9).alias("weight"), pl.col(s.FEATURE_TS).first())
        .sort([s.USER_ID, "snap", "weight", s.ITEM_ID], descending=[False, False, True, False])
        .group_by(s.USER_ID, "snap", maintain_order=True)
        .agg(
            pl.col(s.FEATURE_TS).first(),
            pl.col(s.ITEM_ID).head(size).alias(s.REPEAT_ITEM_IDS),
            pl.col("weight").head(size).cast(pl.Float32).alias(s.REPEAT_WEIGHTS),
        )
    )
    return ranked.select(s.USER_ID, s.FEATURE_TS, s.REPEAT_ITEM_IDS, s.REPEAT_WEIGHTS)
