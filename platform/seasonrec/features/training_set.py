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
from seasonrec.progress import progress

log = logging.getLogger(__name__)
LABEL = "label"
GROUP = "group"
JUST_BEFORE = timedelta(microseconds=1)
GROUPS_PER_CHUNK = 25_000


def label_rows(
    events: pl.LazyFrame,
    items: pl.DataFrame,
    start: datetime | None,
    end: datetime | None,
    negatives: int,
    seed: int,
    limit: int | None = None,
) -> pl.DataFrame:
    """Entity rows: (group, user, item, region, timestamp, request_ts, label) for purchases in [start, end)."""
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
        positives = positives.sample(limit, seed=seed).sort(s.EVENT_TS)
    rng = np.random.default_rng(seed)
    catalogue = items.sort(s.LAUNCH_TS)
    launched = catalogue[s.LAUNCH_TS].to_numpy()
    ts = positives[s.EVENT_TS].to_numpy()
    available = np.searchsorted(launched, ts, side="right").clip(min=1)
    picks = (rng.random((len(ts), negatives)) * available[:, None]).astype(np.int64)
    positives = positives.with_row_index(GROUP)
    negative = positives.select(pl.all().repeat_by(negatives).explode()).with_columns(
        pl.Series(s.ITEM_ID, catalogue[s.ITEM_ID].to_numpy()[picks.ravel()])
    )
    # A group is one purchase and the negatives sampled for it: the ranker's unit of comparison.
    rows = pl.concat([positives.with_columns(pl.lit(1).alias(LABEL)), negative.with_columns(pl.lit(0).alias(LABEL))])
    return (
        rows.with_columns(
            (pl.col(s.EVENT_TS) - JUST_BEFORE).alias(s.FEATURE_TS),
            pl.col(s.EVENT_TS).dt.epoch("s").alias(s.REQUEST_TS),
        )
        .drop(s.EVENT_TS)
        .sort(s.FEATURE_TS, s.USER_ID, pl.col(LABEL), descending=[False, False, True])
    )


def build_training_set(
    settings: Settings,
    out: Path | str,
    start: datetime | None = None,
    end: datetime | None = None,
    negatives: int = 4,
    seed: int = 0,
    limit: int | None = None,
) -> dict:
    """Write the training table to `out` (Parquet) and return its shape."""
    data = settings.paths.canonical
    events = scan_table(find_table(data, s.EVENTS_TABLE))
    items = scan_table(find_table(data, s.ITEMS_TABLE)).select(s.ITEM_ID, s.LAUNCH_TS).collect()
    entity_rows = label_rows(events, items, start, end, negatives, seed, limit)
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
    table = pl.concat(parts, how="vertical_relaxed").sort(GROUP, LABEL, descending=[False, True])
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
    log.info("training set: %s", summary)
    return summary
