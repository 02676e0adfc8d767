"""Feature views: what is known about users, items, regions and seasons."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Float32, Float64, Int64, String

from entities import hemisphere, item, region, user, week
from seasonrec import schema as s
from sources import (
    hemisphere_item_demand_source,
    item_demand_source,
    item_neighbours_source,
    item_profile_source,
    new_arrivals_source,
    region_item_demand_source,
    region_item_trends_source,
    seasonal_pools_source,
    title_item_demand_source,
    user_events_push,
    user_item_stats_source,
    user_repeats_source,
    user_stats_source,
)

# Long enough that last year's season is still served; stale rows are replaced, not expired.
TTL = timedelta(days=400)

# Recency, frequency and monetary value of each shopper so far.
user_stats = FeatureView(
    name=s.USER_STATS,
    entities=[user],
    ttl=TTL,
    schema=[
        Field(name=s.N_VIEWS, dtype=Int64, description="Views so far."),
        Field(name=s.N_CARTS, dtype=Int64, description="Add-to-carts so far."),
        Field(name=s.N_PURCHASES, dtype=Int64, description="Purchases so far."),
        Field(name=s.PURCHASE_DAYS, dtype=Int64, description="Distinct days with a purchase."),
        Field(name=s.MONETARY, dtype=Float64, description="Total spend so far."),
        Field(name=s.LAST_PURCHASE_TS, dtype=Int64, description="Unix time of the last purchase, -1 if none."),
        Field(name=s.HOME_REGION, dtype=String, description="Region of the user's latest active day."),
    ],
    source=user_stats_source,
)

# The shopper's recent behaviour sequence, newest last; updated live through the push source.
user_history = FeatureView(
    name=s.USER_HISTORY,
    entities=[user],
    ttl=TTL,
    schema=[
        Field(name=s.HISTORY_ITEM_IDS, dtype=Array(String), description="Last N item ids, oldest first."),
        Field(name=s.HISTORY_TS, dtype=Array(Int64), description="Unix time of each of those events."),
        Field(name=s.HISTORY_EVENT_TYPES, dtype=Array(String), description="view, cart or purchase, for each."),
    ],
    source=user_events_push,
)

# What the catalogue says about a product, and its title's sentence embedding.
item_profile = FeatureView(
    name=s.ITEM_PROFILE,
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(name=s.CATEGORY, dtype=String, description="Catalogue category."),
        Field(name=s.PRICE, dtype=Float64, description="List price."),
        Field(name=s.LAUNCH_TS, dtype=Int64, description="Unix time of launch."),
        Field(name=s.STOCK, dtype=Int64, description="Units in stock; null when unknown."),
        Field(name=s.TITLE_EMBEDDING, dtype=Array(Float32), description="Sentence embedding of the title."),
    ],
    source=item_profile_source,
)

# When in the year a product sells: its share of units per ISO week.
item_demand = FeatureView(
    name=s.ITEM_DEMAND,
    entities=[item],
    ttl=TTL,
    schema=[
        Field(name=s.DEMAND_BY_WEEK, dtype=Array(Float32), description="Share of units in ISO week w at index w-1."),
        Field(
            name=s.TOTAL_DEMAND,
            dtype=Int64,
            description="Units of demand so far: units sold, views, carts (features.demand_weights).",
        ),
        Field(name=s.BUY_DAYS, dtype=Int64, description="(user, day) purchases of it so far."),
        Field(name=s.REBUY_DAYS, dtype=Int64, description="Of those, the ones by a user who had bought it before."),
    ],
    source=item_demand_source,
)

# The same, from one region's sales: seasons are regional (the on-demand view shrinks it to the hemisphere's).
region_item_demand = FeatureView(
    name=s.REGION_ITEM_DEMAND,
    entities=[region, item],
    ttl=TTL,
    schema=[
        Field(name=s.REGION_DEMAND_BY_WEEK, dtype=Array(Float32), description="Share of the region's units by week."),
        Field(name=s.REGION_DEMAND, dtype=Int64, description="Units of demand in the region so far."),
    ],
    source=region_item_demand_source,
)

# The same, from one hemisphere's sales: the prior of its regions, and what a region new to an item gets.
hemisphere_item_demand = FeatureView(
    name=s.HEMISPHERE_ITEM_DEMAND,
    entities=[hemisphere, item],
    ttl=TTL,
    schema=[
        Field(name=s.HEMISPHERE_DEMAND_BY_WEEK, dtype=Array(Float32), description="Share of its units by week."),
        Field(name=s.HEMISPHERE_DEMAND, dtype=Int64, description="Units of demand in the hemisphere so far."),
    ],
    source=hemisphere_item_demand_source,
)

# The same, from the units of the item's nearest titles in the hemisphere: the season of an item with few sales.
title_item_demand = FeatureView(
    name=s.TITLE_ITEM_DEMAND,
    entities=[hemisphere, item],
    ttl=TTL,
    schema=[
        Field(name=s.TITLE_DEMAND_BY_WEEK, dtype=Array(Float32), description="Share of their units by week."),
        Field(name=s.TITLE_DEMAND, dtype=Int64, description="Mean units of demand of its title words there so far."),
    ],
    source=title_item_demand_source,
)

# Spatio-temporal popularity: is this product rising in this region right now?
region_item_trends = FeatureView(
    name=s.REGION_ITEM_TRENDS,
    entities=[region, item],
    ttl=timedelta(days=60),
    schema=[
        Field(name=s.SALES_7D, dtype=Float64, description="Units sold in the region in the last 7 days."),
        Field(name=s.SALES_28D, dtype=Float64, description="Units sold in the region in the last 28 days."),
        Field(name=s.TREND_RATIO, dtype=Float64, description="7-day daily rate over the 28-day daily rate."),
    ],
    source=region_item_trends_source,
)

# Candidate generation: the top in-season products for a region and ISO week.
seasonal_pools = FeatureView(
    name=s.SEASONAL_POOLS,
    entities=[region, week],
    ttl=TTL,
    schema=[
        Field(name=s.POOL_ITEM_IDS, dtype=Array(String), description="Item ids, best first."),
        Field(name=s.POOL_SCORES, dtype=Array(Float32), description="Seasonal score of each item."),
    ],
    source=seasonal_pools_source,
)

# How this shopper buys this product: the repeat-purchase signal, for every candidate.
user_item_stats = FeatureView(
    name=s.USER_ITEM_STATS,
    entities=[user, item],
    ttl=TTL,
    schema=[
        Field(name=s.ITEM_BUY_DAYS, dtype=Int64, description="Distinct days the user bought the item so far."),
        Field(name=s.ITEM_FIRST_BUY_TS, dtype=Int64, description="Unix time of the user's first purchase of it."),
        Field(name=s.ITEM_LAST_BUY_TS, dtype=Int64, description="Unix time of the user's latest purchase of it."),
    ],
    source=user_item_stats_source,
)

# Candidate generation: everything the shopper has bought, most bought lately first.
user_repeats = FeatureView(
    name=s.USER_REPEATS,
    entities=[user],
    ttl=TTL,
    schema=[
        Field(name=s.REPEAT_ITEM_IDS, dtype=Array(String), description="Item ids, highest weight first."),
        Field(name=s.REPEAT_WEIGHTS, dtype=Array(Float32), description="Purchase days, halved per half-life."),
    ],
    source=user_repeats_source,
)

# Candidate generation: items bought by the same users, and the nearest titles, of each item.
item_neighbours = FeatureView(
    name=s.ITEM_NEIGHBOURS,
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(name=s.CO_PURCHASE_IDS, dtype=Array(String), description="Bought by the most of its buyers, first."),
        Field(name=s.SIMILAR_IDS, dtype=Array(String), description="Nearest titles (cosine), nearest first."),
    ],
    source=item_neighbours_source,
)

# Candidate generation: the hemisphere's new arrivals, the most in season by their title first.
new_arrivals = FeatureView(
    name=s.NEW_ARRIVALS,
    entities=[hemisphere],
    ttl=TTL,
    schema=[Field(name=s.NEW_ARRIVAL_IDS, dtype=Array(String), description="Item ids, most in season first.")],
    source=new_arrivals_source,
)
