"""Stage: build every offline feature table from canonical events and items.

Reads `<data>/events.parquet` (or `events/` parts) and `items.parquet`, writes one
Parquet file per feature view into the features folder. Polars plans each table
lazily and runs it on the streaming engine, so the event log need not fit in memory.
"""

from __future__ import annotations

import json
import logging
import time
from functools import cache
from pathlib import Path

import polars as pl

from seasonrec import schema as s
from seasonrec.candidates import neighbours
from seasonrec.candidates.sources import NEIGHBOURS_PER_ITEM, NEW_ARRIVAL_DAYS, NEW_ARRIVALS
from seasonrec.config import FeaturesConfig, PrivacyConfig
from seasonrec.data.validate import find_table, require_columns, scan_table
from seasonrec.features import tables, title_season
from seasonrec.features.embed import embed_titles
from seasonrec.privacy import retention
from seasonrec.progress import task

log = logging.getLogger(__name__)


def _embeddings(items: pl.DataFrame, cfg: FeaturesConfig) -> tuple[pl.DataFrame, str]:
    vectors, made_by = embed_titles(items[s.TITLE].to_list(), cfg.title_encoder, cfg.embedding_dim)
    frame = pl.DataFrame(
        {s.ITEM_ID: items[s.ITEM_ID], s.TITLE_EMBEDDING: pl.Series(vectors.tolist(), dtype=pl.List(pl.Float32))}
    )
    return frame, made_by


def build_features(
    data_dir: Path | str, out_dir: Path | str, cfg: FeaturesConfig, privacy: PrivacyConfig | None = None
) -> dict:
    """Write the offline tables into `out_dir`; return rows per table and seconds taken.

    Events past `privacy.retention_days` are left out here too (canonical tables ingested before the
    limit was set, or grown old since), and counted in the manifest.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    events_path = find_table(data_dir, s.EVENTS_TABLE)
    items_path = find_table(data_dir, s.ITEMS_TABLE)
    events = scan_table(events_path)
    require_columns(events, events_path, list(s.EVENTS_COLUMNS))
    events, too_old = retention.retained(events, privacy or PrivacyConfig())
    items = scan_table(items_path)
    require_columns(items, items_path, list(s.ITEMS_COLUMNS))
    out_dir.mkdir(parents=True, exist_ok=True)

    items_df = items.collect()
    started = time.perf_counter()
    embeddings, made_by = _embeddings(items_df, cfg)
    timings = {"title_embeddings": round(time.perf_counter() - started, 2)}

    seasons = cache(
        lambda: title_season.title_seasons(events, items_df, cfg.neighbours_every_weeks, cfg.demand_weights)
    )
    plans = {
        s.USER_STATS: lambda: tables.user_stats(events),
        s.USER_HISTORY: lambda: tables.user_history(events, cfg.history_length),
        s.ITEM_PROFILE: lambda: tables.item_profile(items_df.lazy(), embeddings),
        s.ITEM_DEMAND: lambda: tables.item_demand(events, cfg.demand_weights),
        s.REGION_ITEM_DEMAND: lambda: tables.region_item_demand(events, cfg.demand_weights),
        s.HEMISPHERE_ITEM_DEMAND: lambda: tables.hemisphere_item_demand(events, cfg.demand_weights),
        s.REGION_ITEM_TRENDS: lambda: tables.region_item_trends(events),
        s.SEASONAL_POOLS: lambda: tables.seasonal_pools(
            events, cfg.pool_size, cfg.pool_seasonal_weight, cfg.pool_recent_weight, cfg.demand_weights
        ),
        s.USER_ITEM_STATS: lambda: tables.user_item_stats(events),
        s.USER_REPEATS: lambda: tables.user_repeats(events, cfg.repeat_size, cfg.repeat_half_life_days),
        # After ITEM_PROFILE: its titles' neighbours are searched among the items launched by each cut.
        s.ITEM_NEIGHBOURS: lambda: neighbours.item_neighbours(
            events,
            pl.read_parquet(out_dir / f"{s.ITEM_PROFILE}.parquet"),
            cfg.neighbours_every_weeks,
            NEIGHBOURS_PER_ITEM,
        ).lazy(),
        # Both from the same title seasons, worked out once.
        s.TITLE_ITEM_DEMAND: lambda: title_season.title_item_demand(seasons()).lazy(),
        s.NEW_ARRIVALS: lambda: title_season.new_arrivals(seasons(), NEW_ARRIVAL_DAYS, NEW_ARRIVALS).lazy(),
    }
    rows = {}
    with task("feature tables", total=len(plans)) as bar:
        for name, plan in plans.items():
            bar.note(name)
            started = time.perf_counter()
            path = out_dir / f"{name}.parquet"
            plan().sink_parquet(path, engine="streaming")
            rows[name] = pl.scan_parquet(path).select(pl.len()).collect().item()
            timings[name] = round(time.perf_counter() - started, 2)
            bar.advance()
        bar.note(f"{sum(rows.values()):,} rows")
    manifest = {"source": str(data_dir), "title_encoder": made_by, "rows": rows, "seconds": timings}
    if too_old:
        manifest["events_left_out"] = {retention.REASON: too_old}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.debug("built %d feature tables in %s", len(rows), out_dir)
    return manifest
