"""The one source of truth for names: columns, entity keys, feature names, tables.

Everything else (ingest, feature builders, `feature_repo/`, later the Triton
configs) imports these constants, and tests check that they agree.
"""

from __future__ import annotations

# --- canonical columns ------------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
# The longest user or item id: ingest rejects longer ones, so the API refuses them too.
MAX_ID_LENGTH = 128
EVENT_TS = "event_ts"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
PRICE = "price"
REGION = "region"
TITLE = "title"
CATEGORY = "category"
LAUNCH_TS = "launch_ts"
STOCK = "stock"
REASON = "reason"
SOURCE_ROW = "source_row"

EVENT_TYPES = ("view", "cart", "purchase")

# Column name -> polars dtype name. Kept as strings so this module imports nothing heavy.
EVENTS_COLUMNS: dict[str, str] = {
    USER_ID: "str",
    ITEM_ID: "str",
    EVENT_TS: "datetime",
    EVENT_TYPE: "str",
    QUANTITY: "int",
    PRICE: "float",
    REGION: "str",
}
ITEMS_COLUMNS: dict[str, str] = {
    ITEM_ID: "str",
    TITLE: "str",
    CATEGORY: "str",
    PRICE: "float",
    LAUNCH_TS: "datetime",
    STOCK: "int",
}
# Columns that may be null; every other canonical column is required per row.
NULLABLE_COLUMNS = frozenset({STOCK})

# --- files on disk ----------------------------------------------------------
EVENTS_TABLE = "events"
ITEMS_TABLE = "items"
REJECTED_SUFFIX = "_rejected"
# The synthetic shop's hidden item themes (item_id, theme): the ground truth of seasonality.
THEMES_FILE = "item_themes.parquet"
THEME = "theme"

# --- Feast: entities and their join keys -------------------------------------
WEEK_OF_YEAR = "week_of_year"
HEMISPHERE = "hemisphere"  # "north" or "south" (data.calendar.hemisphere): where weather seasons flip
FEATURE_TS = "event_timestamp"
POOL_ALL_REGIONS = "ALL"

# --- Feast: offline tables written by `features build`, one per feature view --
USER_STATS = "user_stats"
USER_HISTORY = "user_history"
ITEM_PROFILE = "item_profile"
ITEM_DEMAND = "item_demand"
REGION_ITEM_TRENDS = "region_item_trends"
SEASONAL_POOLS = "seasonal_pools"
SEASONAL_CONTEXT = "seasonal_context"
USER_EVENTS_PUSH = "user_events_push"
USER_ITEM_STATS = "user_item_stats"
USER_REPEATS = "user_repeats"
ITEM_NEIGHBOURS = "item_neighbours"
REGION_ITEM_DEMAND = "region_item_demand"
HEMISPHERE_ITEM_DEMAND = "hemisphere_item_demand"
TITLE_ITEM_DEMAND = "title_item_demand"
NEW_ARRIVALS = "new_arrivals"
OFFLINE_TABLES = (
    USER_STATS,
    USER_HISTORY,
    ITEM_PROFILE,
    ITEM_DEMAND,
    REGION_ITEM_TRENDS,
    SEASONAL_POOLS,
    USER_ITEM_STATS,
    USER_REPEATS,
    ITEM_NEIGHBOURS,
    REGION_ITEM_DEMAND,
    HEMISPHERE_ITEM_DEMAND,
    TITLE_ITEM_DEMAND,
    NEW_ARRIVALS,
)

# --- Feast: feature names per view -------------------------------------------
N_VIEWS, N_CARTS, N_PURCHASES = "n_views", "n_carts", "n_purchases"
PURCHASE_DAYS = "purchase_days"  # distinct days with a purchase
MONETARY = "monetary"  # what the user has spent
LAST_PURCHASE_TS = "last_purchase_ts"
HOME_REGION = "home_region"
USER_STATS_FEATURES = (N_VIEWS, N_CARTS, N_PURCHASES, PURCHASE_DAYS, MONETARY, LAST_PURCHASE_TS, HOME_REGION)
HISTORY_ITEM_IDS = "history_item_ids"
HISTORY_TS = "history_ts"
HISTORY_EVENT_TYPES = "history_event_types"
USER_HISTORY_FEATURES = (HISTORY_ITEM_IDS, HISTORY_TS, HISTORY_EVENT_TYPES)
TITLE_EMBEDDING = "title_embedding"
ITEM_PROFILE_FEATURES = (CATEGORY, PRICE, LAUNCH_TS, STOCK, TITLE_EMBEDDING)
DEMAND_BY_WEEK = "demand_by_week"
TOTAL_DEMAND = "total_demand"
ITEM_DEMAND_FEATURES = (DEMAND_BY_WEEK, TOTAL_DEMAND)
# How much an item is bought again by the same people: of the (user, day) purchases of it so far, how many were
# not the user's first. The recently_bought rule keeps a staple visible where its shop's data says so.
BUY_DAYS = "buy_days"
REBUY_DAYS = "rebuy_days"
ITEM_REBUY_FEATURES = (BUY_DAYS, REBUY_DAYS)
REBUY_SHARE = "rebuy_share"  # derived from both: `serving.rules.rebuy_share`
# The same week-of-year profile per region and per hemisphere: seasonality is regional (features.context
# shrinks the region's towards its hemisphere's and the hemisphere's towards the global one).
REGION_DEMAND_BY_WEEK = "region_demand_by_week"
REGION_DEMAND = "region_demand"
HEMISPHERE_DEMAND_BY_WEEK = "hemisphere_demand_by_week"
HEMISPHERE_DEMAND = "hemisphere_demand"
REGION_ITEM_DEMAND_FEATURES = (REGION_DEMAND_BY_WEEK, REGION_DEMAND)
HEMISPHERE_ITEM_DEMAND_FEATURES = (HEMISPHERE_DEMAND_BY_WEEK, HEMISPHERE_DEMAND)
# The same profile from the units of the item's nearest titles in the hemisphere: a "Christmas" or "Beach" line
# that has sold a few units, or none yet, takes its season from the lines named like it.
TITLE_DEMAND_BY_WEEK = "title_demand_by_week"
TITLE_DEMAND = "title_demand"
TITLE_ITEM_DEMAND_FEATURES = (TITLE_DEMAND_BY_WEEK, TITLE_DEMAND)
# Which profile an item's weekly demand rests on: the region's own, its hemisphere's, its title neighbours' in
# the hemisphere, or its own in all regions.
DEMAND_LEVEL = "demand_level"
DEMAND_LEVELS = ("region", "hemisphere", "title", "global")
SALES_7D, SALES_28D = "sales_7d", "sales_28d"
TREND_RATIO = "trend_ratio"  # the last 7 days' daily sales over the last 28 days'
REGION_ITEM_FEATURES = (SALES_7D, SALES_28D, TREND_RATIO)
POOL_ITEM_IDS = "pool_item_ids"
POOL_SCORES = "pool_scores"
SEASONAL_POOL_FEATURES = (POOL_ITEM_IDS, POOL_SCORES)

# A user's purchases of one item, over their whole history: how often, since when, how recently.
ITEM_BUY_DAYS = "item_buy_days"  # distinct days with a purchase of the item
ITEM_FIRST_BUY_TS = "item_first_buy_ts"
ITEM_LAST_BUY_TS = "item_last_buy_ts"
USER_ITEM_FEATURES = (ITEM_BUY_DAYS, ITEM_FIRST_BUY_TS, ITEM_LAST_BUY_TS)
# Everything a user has bought, most bought (decayed by age) first: the repeat candidates.
REPEAT_ITEM_IDS = "repeat_item_ids"
REPEAT_WEIGHTS = "repeat_weights"
USER_REPEATS_FEATURES = (REPEAT_ITEM_IDS, REPEAT_WEIGHTS)
# Per item: the items bought by the same users, and the nearest titles (an ANN index over the embeddings).
CO_PURCHASE_IDS = "co_purchase_ids"
SIMILAR_IDS = "similar_ids"
ITEM_NEIGHBOURS_FEATURES = (CO_PURCHASE_IDS, SIMILAR_IDS)
# Per hemisphere: the items launched in the last weeks, the most in season by their title first.
NEW_ARRIVAL_IDS = "new_arrival_ids"
NEW_ARRIVALS_FEATURES = (NEW_ARRIVAL_IDS,)

# Request-time inputs of the on-demand view, and what it derives.
REQUEST_TS = "request_ts"
# The region's units of demand of the item in the weeks around this one in earlier years: how much this season
# sold there last year, where the demand index says only when in its year an item sells.
WEEK_UNITS = "item_week_units"
WEEK_SIN, WEEK_COS = "week_sin", "week_cos"
DAYS_TO_HOLIDAY = "days_to_holiday"
ITEM_WEEK_DEMAND = "item_week_demand"  # the demand index of this week in the region: 1.0 is an average week
ITEM_AGE_DAYS = "item_age_days"
SEASONAL_CONTEXT_FEATURES = (
    WEEK_SIN,
    WEEK_COS,
    DAYS_TO_HOLIDAY,
    ITEM_WEEK_DEMAND,
    WEEK_UNITS,
    ITEM_AGE_DAYS,
    DEMAND_LEVEL,
)
HISTORY_AGE_HOURS = "history_age_hours"

# 53 ISO weeks: index w-1 holds ISO week w.
WEEKS_PER_YEAR = 53

# --- candidate sources: where a served item came from ----------------------
SOURCE_REPEAT = "repeat"  # the user's own purchase history, by decayed frequency
SOURCE_SEASONAL_POOL = "seasonal_pool"  # the region's pool for the ISO week, topped up from all regions
SOURCE_CO_PURCHASE = "co_purchase"  # bought by the same users as the user's recent items
SOURCE_NEW_ARRIVAL = "new_arrival"  # launched in the last weeks
SOURCE_SIMILAR = "similar_title"  # nearest titles to the user's recent items: new launches have one
SOURCE_PINNED = "pinned"  # put on top by the rules (a campaign's pin or `pinned`)
CANDIDATE_SOURCES = (SOURCE_REPEAT, SOURCE_SEASONAL_POOL, SOURCE_CO_PURCHASE, SOURCE_SIMILAR, SOURCE_NEW_ARRIVAL)
CANDIDATE_SOURCES_COLUMN = "sources"

# --- Feast: feature services -------------------------------------------------
RANKER_SERVICE = "ranker_v1"
CANDIDATES_SERVICE = "candidates_v1"

# --- the ranker's tensors: ONNX graph, Triton configs and the scorer client ---
# name -> (Triton data type, shape after the batch axis). Every axis is dynamic (-1):
# history length and title width come from the checkpoint, so one committed
# config.pbtxt serves every exported version.
RANKER_MODEL = "ranker"
RANKER_INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "history_ids": ("TYPE_INT64", (-1,)),  # item indices, padded on the left
    "history_age_hours": ("TYPE_FP32", (-1,)),
    "context": ("TYPE_FP32", (-1,)),  # season, holiday distance, user totals
    "region": ("TYPE_INT64", ()),
    # Indices into the version's own item tables (titles, categories); index n_items + j is
    # row j of NEW_ITEM_INPUTS, an item the version has never seen.
    "cand_ids": ("TYPE_INT64", (-1,)),
    "cand_dense": ("TYPE_FP32", (-1, -1)),
    "cand_personal": ("TYPE_FP32", (-1, -1)),  # the user's own purchases of each candidate (batch.personal)
    # The request's items that the version has never seen (new launches): [batch, N, ...], at
    # least one row (a zero row when there is none, so no tensor is ever empty).
    "new_titles": ("TYPE_FP32", (-1, -1)),
    "new_categories": ("TYPE_INT64", (-1,)),
}
NEW_ITEM_INPUTS = ("new_titles", "new_categories")
RANKER_OUTPUT = "scores"  # [batch, candidates], higher is better
