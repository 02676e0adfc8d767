"""Sources: the Parquet tables `seasonrec features build` writes, plus live pushes."""

import os
from pathlib import Path

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Int64, String

from seasonrec import schema as s

# Where the offline tables live; `seasonrec features ...` sets it from the config.
FEATURES_DIR = Path(os.environ.get("SEASONREC_FEATURES_DIR", Path(__file__).resolve().parents[1] / "data" / "features"))


def _parquet(name: str) -> FileSource:
    return FileSource(name=name, path=str(FEATURES_DIR / f"{name}.parquet"), timestamp_field=s.FEATURE_TS)


# Running RFM counts per user, one row per active day.
user_stats_source = _parquet(s.USER_STATS)
# The last N items each user touched, one row per active day.
user_history_source = _parquet(s.USER_HISTORY)
# Catalogue attributes and the title embedding.
item_profile_source = _parquet(s.ITEM_PROFILE)
# Weekly snapshots of each item's week-of-year demand shares.
item_demand_source = _parquet(s.ITEM_DEMAND)
# Week-of-year demand shares per region and item, and per hemisphere and item.
region_item_demand_source = _parquet(s.REGION_ITEM_DEMAND)
hemisphere_item_demand_source = _parquet(s.HEMISPHERE_ITEM_DEMAND)
# Per hemisphere and item: the week-of-year demand of the item's nearest titles.
title_item_demand_source = _parquet(s.TITLE_ITEM_DEMAND)
# Per hemisphere: the items launched in the last weeks, the most in season first.
new_arrivals_source = _parquet(s.NEW_ARRIVALS)
# 7- and 28-day sales per region and item.
region_item_trends_source = _parquet(s.REGION_ITEM_TRENDS)
# Top in-season items per region and ISO week.
seasonal_pools_source = _parquet(s.SEASONAL_POOLS)
# Per user and item, on each day they bought it: days bought so far, first and last purchase.
user_item_stats_source = _parquet(s.USER_ITEM_STATS)
# Each user's bought items by decayed frequency, one row per purchase day.
user_repeats_source = _parquet(s.USER_REPEATS)
# Co-purchase and nearest-title neighbours per item, a row whenever they change.
item_neighbours_source = _parquet(s.ITEM_NEIGHBOURS)

# Live user events: the API pushes the updated history here so it is online at once.
user_events_push = PushSource(name=s.USER_EVENTS_PUSH, batch_source=user_history_source)

# When (Unix seconds) and where the request is made; drives the seasonal context.
request_context = RequestSource(
    name="request_context",
    schema=[Field(name=s.REQUEST_TS, dtype=Int64), Field(name=s.REGION, dtype=String)],
)
