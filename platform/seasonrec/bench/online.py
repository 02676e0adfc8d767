"""Feast online reads for one request: through the SDK, and the store round trips alone."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from seasonrec import schema as s
from seasonrec.bench import percentiles
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress


def _entity_keys(view, items: list[str], region: str) -> list:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = [c.name for c in view.entity_columns]
    values = {s.ITEM_ID: lambda i: Value(string_val=i), s.REGION: lambda _: Value(string_val=region)}
    return [EntityKey(join_keys=keys, entity_values=[values[k](i) for k in keys]) for i in items]


ITEM_REFS = [
    f"{view}:{name}"
    for view, names in (
        (s.ITEM_PROFILE, s.ITEM_PROFILE_FEATURES),
        (s.ITEM_DEMAND, s.ITEM_DEMAND_FEATURES),
        (s.REGION_ITEM_TRENDS, s.REGION_ITEM_FEATURES),
    )
    for name in names
]


def _online_calls(fs, user: str, items: list[str], region: str) -> dict:
    """The ways to fetch ranker inputs for one request, each a no-argument callable."""
    from seasonrec.features.context import seasonal_context
    from seasonrec.features.store import USER_FEATURES

    ts = int(datetime.now(UTC).timestamp())
    from seasonrec.data.calendar import hemisphere

    half = hemisphere(region)
    full = [{s.USER_ID: user, s.ITEM_ID: i, s.REGION: region, s.HEMISPHERE: half, s.REQUEST_TS: ts} for i in items]
    item_rows = [{s.ITEM_ID: i, s.REGION: region} for i in items]
    service = fs.get_feature_service(s.RANKER_SERVICE)
    provider = fs._get_provider()
    item_views = [fs.get_feature_view(v) for v in (s.ITEM_PROFILE, s.ITEM_DEMAND, s.REGION_ITEM_TRENDS)]
    keys = {v.name: _entity_keys(v, items, region) for v in item_views}

    def user_only():
        return fs.get_online_features(features=USER_FEATURES, entity_rows=[{s.USER_ID: user}]).to_dict()

    def items_only():
        return fs.get_online_features(features=ITEM_REFS, entity_rows=item_rows).to_dict()

    def split_fetch():
        # One user lookup, one item lookup, and the seasonal context computed in-process.
        u, it = user_only(), items_only()
        n = len(items)
        seasonal_context(
            {
                s.REQUEST_TS: [ts] * n,
                s.REGION: [region] * n,
                s.DEMAND_BY_WEEK: it[s.DEMAND_BY_WEEK],
                s.LAUNCH_TS: it[s.LAUNCH_TS],
                s.HISTORY_TS: u[s.HISTORY_TS] * n,
            }
        )

    def raw_reads(views=item_views):
        # The store round trips alone: what remains once Feast's response building is gone.
        for view in views:
            provider.online_read(fs.config, view, keys[view.name])

    n = len(items)
    return {
        f"ranker_v1 service, 1 user + {n} items (Feast SDK)": lambda: fs.get_online_features(
            features=service, entity_rows=full
        ).to_dict(),
        "user views only (1 row)": user_only,
        f"item + region views, {n} rows, no on-demand view": items_only,
        f"split fetch: user once + items once + context in-process ({n} items)": split_fetch,
        f"store reads only (provider.online_read, 3 item views, {n} keys)": raw_reads,
        # Titles, embeddings and prices change only when materialized, so a server can keep them in memory.
        f"store reads only, item profile cached in process (2 views, {n} keys)": lambda: raw_reads(item_views[1:]),
    }


def bench_online(settings: Settings, n_items: int, requests: int) -> tuple[str, list[dict]]:
    import polars as pl

    from seasonrec.features import store as feast_store

    profile_table = settings.paths.features / f"{s.ITEM_PROFILE}.parquet"
    if not profile_table.is_file():
        raise SeasonrecError(
            f"{profile_table}: no feature tables; run `make demo` (or `seasonrec features build`) first"
        )
    items = pl.read_parquet(profile_table)[s.ITEM_ID].to_list()[:n_items]
    user = feast_store.sample_users(settings, 1)[0]
    rows = []
    for profile in progress(["embedded", "redis"], description="online fetch per store"):
        bench = settings.model_copy(
            update={
                "feast": settings.feast.model_copy(update={"profile": profile, "project": f"bench_{profile}"}),
                "paths": settings.paths.model_copy(
                    update={"data_dir": settings.paths.root / f"bench-online-{profile}"}
                ),
            }
        )
        bench.paths.root.mkdir(parents=True, exist_ok=True)
        # The bench store reads the same offline tables through a link.
        if not bench.paths.features.exists():
            bench.paths.features.symlink_to(settings.paths.features.resolve())
        feast_store.apply(bench)
        feast_store.materialize(bench)
        fs = feast_store.open_store(bench)
        calls = _online_calls(fs, user, items, region="GB")
        # As a server does after start-up: keep the warm heap out of the cyclic GC, whose
        # full collections otherwise add 200 ms pauses to about 1% of requests here.
        gc.collect()
        gc.freeze()
        store_name = "SQLite" if profile == "embedded" else "Redis"
        rows += [{"store": store_name, "call": name, **percentiles(fn, requests)} for name, fn in calls.items()]
        if profile == "redis":
            fs.teardown()
    return f"Feast online fetch, 1 user + {n_items} items, {requests} timed requests per line", rows
