"""Stage: the point-in-time-correct training table, from Feast's `get_historical_features`.

Each purchase is a positive row; `negatives` items that had launched by then are
sampled for it as label 0. Rows are looked up one microsecond before the
purchase, so neither that purchase nor anything bought in the same basket can
leak into its own features. Rows carry no title embedding: the ranker takes
titles from its catalogue buffer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.data.validate import find_table, scan_table
from seasonrec.errors import SeasonrecError
from seasonrec.features.store import open_store
from seasonrec.features.tables import hemisphere
from seasonrec.progress import progress

log = logging.getLogger(__name__)
LABEL = "label"
GROUP = "group"
# log of each row's expected count among its group's sampled negatives: the sampled softmax subtracts it from the
# ranker's score in training (Bengio and Senecal 2008; Yi et al., RecSys 2019), so oversampling a buyer's own items
# as negatives teaches which of them comes next without teaching that bought items are unlikely.
LOG_Q = "log_q"
DRAWS_SCHEMA = {GROUP: pl.UInt32, "slot": pl.Int64, s.ITEM_ID: pl.String, "pool": pl.Int64}  # history_negatives
JUST_BEFORE = timedelta(microseconds=1)
GROUPS_PER_CHUNK = 25_000


def history_negatives(
    positives: pl.DataFrame, purchases: pl.DataFrame, per_group: int, rng: np.random.Generator, min_pool: int = 1
) -> pl.DataFrame:
    """(group, slot, item, pool) negatives drawn from what each user had bought before the purchase; `pool` is
    how many distinct items they had bought by then, and a user with fewer than `min_pool` gets none.

    Random catalogue items teach the ranker what sells; these teach it which of a customer's usual items come
    next, which is most of what a repeat buyer buys. An item bought in the same basket is never a negative.
    """
    if per_group == 0 or positives.is_empty():
        return pl.DataFrame(schema=DRAWS_SCHEMA)
    firsts = purchases.group_by(s.USER_ID, s.ITEM_ID).agg(pl.col(s.EVENT_TS).min().dt.epoch("s").alias("first"))
    users = {u: i for i, u in enumerate(firsts[s.USER_ID].unique().sort().to_list())}
    # One sorted key per (user, first purchase): a user's items bought before t are one contiguous run.
    span = 1 << 34  # seconds: past the year 2500
    firsts = firsts.with_columns(
        (pl.col(s.USER_ID).replace_strict(users, return_dtype=pl.Int64) * span + pl.col("first")).alias("key")
    ).sort("key", s.ITEM_ID)  # items first bought in one basket share a key: the id makes the order, and a seed, hold
    keys, items = firsts["key"].to_numpy(), firsts[s.ITEM_ID].to_numpy()
    user = positives[s.USER_ID].replace_strict(users, default=-1, return_dtype=pl.Int64).to_numpy()
    ts = positives[s.EVENT_TS].dt.epoch("s").to_numpy()
    lo = np.searchsorted(keys, user * span)
    available = np.where(user >= 0, np.searchsorted(keys, user * span + ts) - lo, 0)
    draws = 2 * per_group  # spares for draws that hit the purchase or its basket
    picks = lo[:, None] + (rng.random((len(ts), draws)) * available[:, None]).astype(np.int64)
    valid = np.repeat(available[:, None] >= max(min_pool, 1), draws, axis=1)
    if not valid.any():  # nobody had bought enough yet (an empty numpy column would not join on its type)
        return pl.DataFrame(schema=DRAWS_SCHEMA)
    drawn = pl.DataFrame(
        {
            GROUP: np.repeat(positives[GROUP].to_numpy(), draws)[valid.ravel()],
            s.USER_ID: np.repeat(positives[s.USER_ID].to_numpy(), draws)[valid.ravel()],
            s.EVENT_TS: np.repeat(positives[s.EVENT_TS].to_numpy(), draws)[valid.ravel()],
            s.ITEM_ID: items[picks.clip(max=len(items) - 1)][valid],
            "pool": np.repeat(available, draws)[valid.ravel()],
        }
    ).with_columns(pl.col(s.EVENT_TS).dt.replace_time_zone(positives[s.EVENT_TS].dtype.time_zone))
    basket = purchases.select(s.USER_ID, s.ITEM_ID, s.EVENT_TS).unique()
    return (
        drawn.join(basket, on=[s.USER_ID, s.ITEM_ID, s.EVENT_TS], how="anti", maintain_order="left")
        .unique([GROUP, s.ITEM_ID], maintain_order=True)
        .with_columns(pl.int_range(pl.len()).over(GROUP).alias("slot"))
        .filter(pl.col("slot") < per_group)
        .select(GROUP, "slot", s.ITEM_ID, "pool")
    )


def label_rows(
    events: pl.LazyFrame,
    items: pl.DataFrame,
    start: datetime | None,
    end: datetime | None,
    negatives: int,
    seed: int,
    limit: int | None = None,
    from_history: int = 0,
    min_pool: int = 1,
) -> pl.DataFrame:
    """Entity rows: (group, user, item, region, timestamp, request_ts, label) for purchases in [start, end).

    Of each group's `negatives`, up to `from_history` are items the user bought before (`history_negatives`), for a
    user who had bought at least `min_pool` distinct items; the rest, and any the user's history cannot fill, are
    items launched by then, drawn uniformly.
    """
    window = pl.col(s.EVENT_TYPE) == "purchase"
    if start:
        window &= pl.col(s.EVENT_TS) >= start
    if end:
        window &= pl.col(s.EVENT_TS) < end
    positives = (
        events.filter(window).select(s.USER_ID, s.ITEM_ID, s.REGION, s.EVENT_TS).unique(maintain_order=True).collect()
    )
    if positives.is_empty():
        raise SeasonrecError(
            f"no purchases between {start or 'the start'} and {end or 'the end'}: empty training window"
        )
    if limit and positives.height > limit:
        positives = positives.sample(limit, seed=seed).sort(s.EVENT_TS, maintain_order=True)
    rng = np.random.default_rng(seed)
    catalogue = items.sort(s.LAUNCH_TS, s.ITEM_ID)
    launched = catalogue[s.LAUNCH_TS].to_numpy()
    ts = positives[s.EVENT_TS].to_numpy()
    available = np.searchsorted(launched, ts, side="right").clip(min=1)
    picks = (rng.random((len(ts), negatives)) * available[:, None]).astype(np.int64)
    chosen = catalogue[s.ITEM_ID].to_numpy()[picks]
    positives = positives.with_row_index(GROUP)
    from_history = min(from_history, negatives)
    drawn = pl.DataFrame(schema=DRAWS_SCHEMA)
    if from_history:
        bought = events.filter(pl.col(s.EVENT_TYPE) == "purchase").select(s.USER_ID, s.ITEM_ID, s.EVENT_TS)
        if end:
            bought = bought.filter(pl.col(s.EVENT_TS) < end)
        bought = bought.collect()
        drawn = history_negatives(positives, bought, from_history, rng, min_pool)
        chosen[drawn[GROUP].to_numpy(), drawn["slot"].to_numpy()] = drawn[s.ITEM_ID].to_numpy()
    negative = positives.select(pl.all().repeat_by(negatives).explode()).with_columns(
        pl.Series(s.ITEM_ID, chosen.ravel())
    )
    # A group is one purchase and the negatives sampled for it: the ranker's unit of comparison.
    rows = pl.concat([positives.with_columns(pl.lit(1).alias(LABEL)), negative.with_columns(pl.lit(0).alias(LABEL))])
    # Each row's expected count among its group's negatives: h of them drawn from the A items the buyer had
    # bought by then, the rest from the N items launched by then.
    sampling = pl.DataFrame({GROUP: positives[GROUP], "launched": available}).join(
        drawn.group_by(GROUP).agg(pl.len().alias("h"), pl.col("pool").first()), on=GROUP, how="left"
    )
    rows = rows.join(sampling, on=GROUP, how="left").with_columns(pl.col("h", "pool").fill_null(0))
    owned = pl.lit(False)
    if from_history:
        firsts = bought.group_by(s.USER_ID, s.ITEM_ID).agg(pl.col(s.EVENT_TS).min().alias("first"))
        rows = rows.join(firsts, on=[s.USER_ID, s.ITEM_ID], how="left", maintain_order="left")
        owned = (pl.col("first") < pl.col(s.EVENT_TS)).fill_null(False)
    from_own = pl.when(owned).then(pl.col("h") / pl.col("pool").clip(lower_bound=1)).otherwise(0.0)
    expected = from_own + (negatives - pl.col("h")) / pl.col("launched")
    rows = rows.with_columns(expected.log().alias(LOG_Q)).drop("h", "pool", "launched", "first", strict=False)
    return (
        rows.with_columns(
            (pl.col(s.EVENT_TS) - JUST_BEFORE).alias(s.FEATURE_TS),
            pl.col(s.EVENT_TS).dt.epoch("s").alias(s.REQUEST_TS),
            hemisphere(pl.col(s.REGION)).alias(s.HEMISPHERE),  # the key of the hemisphere's demand profile
        )
        .drop(s.EVENT_TS)
        # The group (the purchase's place in time order) breaks ties, never the user id: see ingest.
        .sort(s.FEATURE_TS, GROUP, pl.col(LABEL), descending=[False, False, True])
    )


def build_training_set(
    settings: Settings,
    out: Path | str,
    start: datetime | None = None,
    end: datetime | None = None,
    negatives: int = 4,
    seed: int = 0,
    limit: int | None = None,
    from_history: int = 0,
) -> dict:
    """Write the training table to `out` (Parquet) and return its shape; history negatives only for buyers of at
    least `train.history_min_pool` distinct items."""
    data = settings.paths.canonical
    events = scan_table(find_table(data, s.EVENTS_TABLE))
    items = scan_table(find_table(data, s.ITEMS_TABLE)).select(s.ITEM_ID, s.LAUNCH_TS).collect()
    entity_rows = label_rows(
        events, items, start, end, negatives, seed, limit, from_history, min_pool=settings.train.history_min_pool
    )
    store = open_store(settings)
    service = store.get_feature_service(s.RANKER_SERVICE)
    # The model holds every catalogue item's title: on each row it would be 384 floats that only repeat it.
    features = [
        f"{view.name_to_use()}:{feature.name}"
        for view in service.feature_view_projections
        for feature in view.features
        if feature.name != s.TITLE_EMBEDDING
    ]
    # Feast's point-in-time join holds several copies of its entity rows: in one call, every purchase of the
    # Online Retail II log (1.9 million rows) ran out of 24 GiB. Each row joins on its own, so chunks of
    # groups give the same table in bounded memory.
    groups = entity_rows[GROUP].max() + 1
    chunks = [
        entity_rows.filter(pl.col(GROUP).is_between(first, first + GROUPS_PER_CHUNK - 1))
        for first in range(0, groups, GROUPS_PER_CHUNK)
    ]
    parts = [
        pl.from_pandas(store.get_historical_features(entity_df=chunk.to_pandas(), features=features).to_df())
        for chunk in progress(chunks, description="training set (Feast point-in-time joins)", total=len(chunks))
    ]
    # The item breaks ties inside a group: the join's output order may follow the user keys.
    table = stack(parts).sort(GROUP, LABEL, s.ITEM_ID, descending=[False, True, False])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(out)
    summary = {
        "rows": table.height,
        "positives": int(table[LABEL].sum()),
        "columns": table.width,
        "start": str(table[s.FEATURE_TS].min()),
        "end": str(table[s.FEATURE_TS].max()),
        "out": str(out),
    }
    log.debug("training set: %s", summary)
    return summary


def stack(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The chunks' joins as one table. A feature that no row of a chunk has comes out of pandas as strings (its
    None objects), which no list or number of another chunk casts to: the purchases of Online Retail II's first
    weeks have no title season yet. Such a column says nothing of its type, so it takes the others'."""
    typeless = [
        part.with_columns(pl.lit(None).alias(c) for c in part.columns if part[c].null_count() == part.height)
        for part in parts
    ]
    return pl.concat(typeless, how="vertical_relaxed")
