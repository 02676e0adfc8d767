"""Features for one request, read straight from the Feast online store.

The Feast SDK's `get_online_features` spends most of its time building its
response (docs/benchmarks.md), so this reads with the provider's `online_read`
and computes the seasonal context in process, with the same function as the
on-demand view. Static item attributes sit in a bounded cache with a TTL. If the
online store fails, `StoreUnavailable` tells the caller to fall back to the
seasonal pools, which are kept from the offline table.

An event rewrites the user's history (read, append, write back) under the user's
lock (`serving/writes.py`), so concurrent events of one user are never lost.

Title embeddings are the one large item feature (384 floats an item). They are
static, and only the model reads them, so `TitleEmbeddings` keeps them in the
Scorer's process: requests carry item ids between replicas, never the vectors.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from seasonrec import schema as s
from seasonrec.candidates.sources import (
    CandidateSet,
    Neighbours,
    merge_pools,
    pool_scopes,
    propose,
    recent_items,
)
from seasonrec.config import Settings
from seasonrec.data.calendar import hemisphere
from seasonrec.errors import SeasonrecError
from seasonrec.features.context import item_age_days, seasonal_context
from seasonrec.serving.contracts import Fetched
from seasonrec.serving.rules import RuleBook, pinned_items
from seasonrec.serving.writes import NewUserLimit, StoreUnavailable, TokenBucket, UnknownItem, UserLocks

log = logging.getLogger(__name__)

# What a request's candidates carry on to the Scorer, one list per column in candidate order
# (lists pickle about 3 times faster than one dict per item): the model's item inputs, and
# what the re-ranker's rules and the fallback read.
ITEM_COLUMNS = (
    s.ITEM_ID,
    s.CATEGORY,
    s.PRICE,
    s.STOCK,
    s.LAUNCH_TS,
    s.TOTAL_DEMAND,
    s.SALES_7D,
    s.SALES_28D,
    s.TREND_RATIO,
    s.ITEM_WEEK_DEMAND,
    s.WEEK_UNITS,
    s.ITEM_AGE_DAYS,
    s.DEMAND_LEVEL,
    "pool_score",
    *s.USER_ITEM_FEATURES,
    *s.ITEM_REBUY_FEATURES,
)


# Of ITEM_COLUMNS, those each request works out for itself: the item's age at its moment, the pool's score
# (the fallback's seasonal popularity) and the user's own purchases of the item.
PER_REQUEST_COLUMNS = (s.ITEM_ID, s.ITEM_AGE_DAYS, "pool_score", *s.USER_ITEM_FEATURES)
# The rest are fixed by the item, the region and the ISO week, and change only when materialized: one cached row.
ITEM_WEEK_COLUMNS = tuple(c for c in ITEM_COLUMNS if c not in PER_REQUEST_COLUMNS)
# The views an item's week row is read from, and the entity besides the item each is keyed by.
ITEM_WEEK_VIEWS = (
    (s.ITEM_PROFILE, None),
    (s.ITEM_DEMAND, None),
    (s.REGION_ITEM_TRENDS, s.REGION),
    (s.REGION_ITEM_DEMAND, s.REGION),
    (s.HEMISPHERE_ITEM_DEMAND, s.HEMISPHERE),
    (s.TITLE_ITEM_DEMAND, s.HEMISPHERE),
)

# What an item's seasonal demand index reads, and what it gives (`context.week_demand`, `week_units`).
WEEK_DEMAND_INPUTS = (
    *s.ITEM_DEMAND_FEATURES,
    *s.REGION_ITEM_DEMAND_FEATURES,
    *s.HEMISPHERE_ITEM_DEMAND_FEATURES,
    *s.TITLE_ITEM_DEMAND_FEATURES,
)
WEEK_DEMAND_OUTPUTS = (s.ITEM_WEEK_DEMAND, s.WEEK_UNITS, s.DEMAND_LEVEL)
# Every (region, week) a year of a few hundred regions asks about, and no more.
POOL_CACHE_SIZE = 20_000


class TTLCache:
    """A bounded mapping whose entries expire; the oldest entry goes first when full."""

    def __init__(self, maxsize: int, ttl_s: float):
        self.maxsize, self.ttl_s = maxsize, ttl_s
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key):
        return self.get_many([key])[0]

    def get_many(self, keys: list) -> list:
        """`get` of each key with one clock read: a request asks for hundreds at once."""
        now, data, out = time.monotonic(), self._data, []
        for key in keys:
            hit = data.get(key)
            if hit is not None and now - hit[0] <= self.ttl_s:
                out.append(hit[1])
            else:
                data.pop(key, None)
                out.append(None)
        return out

    def put(self, key, value) -> None:
        self._data[key] = (time.monotonic(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def _python(value) -> Any:
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(value)


def _fail_fast(store, provider) -> None:
    """Redis errors reach the caller at once, so a request falls back instead of hanging.

    redis-py retries a failed command 3 times with a backoff of up to 10 s: while Redis is down
    every read would wait seconds (the chaos run saw 8 s answers) before the seasonal fallback.
    One immediate retry still rides over a dropped connection.
    """
    config = store.config.online_store
    if config.type != "redis":
        return
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    provider.online_store._get_client(config).set_retry(Retry(NoBackoff(), 1))


class OnlineReader:
    """Rows of some feature views from the online store, by entity key."""

    def __init__(self, settings: Settings, views: tuple[str, ...]):
        from seasonrec.features.store import open_store

        self.settings = settings
        self.store = open_store(settings)
        self.provider = self.store._get_provider()
        _fail_fast(self.store, self.provider)
        try:
            self.views = {name: self.store.get_feature_view(name) for name in views}
        except Exception as exc:  # FeatureViewNotFoundException and registry errors
            raise SeasonrecError(
                f"Feast project {settings.feast.project!r}: {str(exc).splitlines()[0]};"
                " run `seasonrec features apply` and `features materialize` first"
            ) from exc

    def _read(self, view: str, rows: list[dict[str, str | int]]) -> list[dict[str, Any]]:
        return [row for _, row in self._read_stamped(view, rows)]

    def _read_stamped(
        self, view: str, rows: list[dict[str, str | int]]
    ) -> list[tuple[datetime | None, dict[str, Any]]]:
        """Each row's values with the time the store holds it at ({} and None where it holds none)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        fv = self.views[view]
        keys = [c.name for c in fv.entity_columns]
        entity_keys = [
            EntityKey(
                join_keys=keys,
                entity_values=[
                    Value(int64_val=r[k]) if isinstance(r[k], int) else Value(string_val=r[k]) for k in keys
                ],
            )
            for r in rows
        ]
        try:
            found = self.provider.online_read(self.store.config, fv, entity_keys)
        except Exception as exc:  # Redis or SQLite errors: each client library has its own types
            raise StoreUnavailable(f"online store: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
        out = []
        for stamp, values in found:
            row = {k: _python(v) for k, v in (values or {}).items()}
            # Redis answers a key it does not hold with every feature null, SQLite with no row: both are {} here.
            held = any(v is not None for v in row.values())
            out.append((_utc(stamp) if held else None, row if held else {}))
        return out


class TitleEmbeddings(OnlineReader):
    """Each item's title embedding, [C, dim] float32, zeros for an item the store lacks."""

    def __init__(self, settings: Settings):
        super().__init__(settings, (s.ITEM_PROFILE,))
        self.dim = settings.features.embedding_dim
        self.cache = TTLCache(settings.serving.item_cache_size, settings.serving.item_cache_ttl_s)

    def lookup(self, item_ids: list[str]) -> np.ndarray:
        found = {i: self.cache.get(i) for i in dict.fromkeys(item_ids)}
        missing = [i for i, vector in found.items() if vector is None]
        if missing:
            for item, row in zip(missing, self._read(s.ITEM_PROFILE, [{s.ITEM_ID: i} for i in missing]), strict=True):
                found[item] = title_vector(row.get(s.TITLE_EMBEDDING), self.dim)
                self.cache.put(item, found[item])
        if not item_ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[i] for i in item_ids])


def title_vector(value, dim: int) -> np.ndarray:
    """A stored embedding, or zeros for none: what training gives an item without a title."""
    return np.zeros(dim, dtype=np.float32) if value is None else np.asarray(value, dtype=np.float32)


class FeatureReader(OnlineReader):
    def __init__(self, settings: Settings):
        super().__init__(
            settings,
            (
                s.USER_STATS,
                s.USER_HISTORY,
                s.USER_REPEATS,
                s.USER_ITEM_STATS,
                s.ITEM_PROFILE,
                s.ITEM_DEMAND,
                s.REGION_ITEM_DEMAND,
                s.HEMISPHERE_ITEM_DEMAND,
                s.TITLE_ITEM_DEMAND,
                s.REGION_ITEM_TRENDS,
                s.SEASONAL_POOLS,
                s.ITEM_NEIGHBOURS,
                s.NEW_ARRIVALS,
            ),
        )
        cfg = settings.serving
        self.items = TTLCache(cfg.item_cache_size, cfg.item_cache_ttl_s)
        self.neighbours = TTLCache(cfg.item_cache_size, cfg.item_cache_ttl_s)
        self.item_weeks = TTLCache(cfg.item_cache_size, cfg.item_cache_ttl_s)  # (item, region, week) -> row
        # (region, week) -> the merged pool: materialized like the item rows. The Ingress only lets known regions in.
        self.pools = TTLCache(POOL_CACHE_SIZE, cfg.item_cache_ttl_s)
        self.fallback_pools = _offline_pools(settings)
        # The same live rules file as the ReRanker's, for its pins only.
        self.rules = RuleBook(settings.paths.resolve(settings.serving.rules_path))
        self.arrivals = TTLCache(4, cfg.item_cache_ttl_s)
        self.locks = UserLocks(self.store, self.provider)
        self.new_users = TokenBucket(cfg.new_user_events_per_minute)

    def user(self, user_id: str) -> dict[str, Any]:
        views = (s.USER_STATS, s.USER_HISTORY, s.USER_REPEATS)
        stats, history, repeats = (self._read(v, [{s.USER_ID: user_id}])[0] for v in views)
        return {**stats, **history, **repeats}

    def pool(self, region: str, at: datetime) -> list[tuple[str, float]]:
        """(item, seasonal score) for the region and ISO week of `at`, topped up as `pool_scopes` says; cached."""
        week = at.isocalendar().week
        found = self.pools.get((region, week))
        if found is None:
            keys = [{s.REGION: r, s.WEEK_OF_YEAR: week} for r in pool_scopes(region)]
            found = merge_pools(self._read(s.SEASONAL_POOLS, keys))
            self.pools.put((region, week), found)
        return found

    def fallback_pool(self, region: str, at: datetime) -> list[tuple[str, float]]:
        week = at.isocalendar().week
        pools = self.fallback_pools
        return next((pools[(r, week)] for r in pool_scopes(region) if (r, week) in pools), [])

    def candidates(self, user: dict, pool: list[str], region: str) -> CandidateSet:
        """The user's own purchases, the seasonal pool, neighbours of the recent items, and new arrivals."""
        history = user.get(s.HISTORY_ITEM_IDS) or []
        cfg = self.settings.serving
        repeats = user.get(s.REPEAT_ITEM_IDS) or []
        neighbours = self.neighbours_of(recent_items(history))
        arrivals = self.new_arrivals(region)
        return propose(pool, history, neighbours, arrivals, cfg.candidates, repeats, cfg.repeat_candidates)

    def new_arrivals(self, region: str) -> list[str]:
        """The hemisphere's new arrivals, the most in season first (`new_arrivals`), cached like the items."""
        half = hemisphere(region)
        found = self.arrivals.get(half)
        if found is None:
            found = self._read(s.NEW_ARRIVALS, [{s.HEMISPHERE: half}])[0].get(s.NEW_ARRIVAL_IDS) or []
            self.arrivals.put(half, found)
        return found

    def neighbours_of(self, item_ids: list[str]) -> Neighbours:
        """The `item_neighbours` rows of these items, cached: they change only when materialized."""
        return Neighbours.from_rows(item_ids, self._cached(self.neighbours, {}, (s.ITEM_NEIGHBOURS,), item_ids))

    def bought(self, user: dict[str, Any], user_id: str, item_ids: list[str]) -> list[dict[str, Any]]:
        """The user's own purchases of each item (`user_item_stats`), in order; {} for never bought.

        `user_repeats` lists every item the user bought unless the list is full (`features.repeat_size`);
        both views change only when materialized. So when it is not full, only the items on it can have a
        row, and only those are read: a store read per candidate was most of a request's fetch.
        """
        repeats = user.get(s.REPEAT_ITEM_IDS) or []
        wanted = item_ids
        if len(repeats) < self.settings.features.repeat_size:
            own = set(repeats)
            wanted = [i for i in item_ids if i in own]
        rows = self._read(s.USER_ITEM_STATS, [{s.USER_ID: user_id, s.ITEM_ID: i} for i in wanted]) if wanted else []
        found = dict(zip(wanted, rows, strict=True))
        return [found.get(i, {}) for i in item_ids]

    def with_pins(self, proposed: CandidateSet, region: str, at: datetime) -> CandidateSet:
        """The rules' pinned items join the candidates: scored, and with their stock and category, so the
        re-ranker's filters apply to a pin too. A pin the catalogue lacks is dropped like any unknown id."""
        have = set(proposed.item_ids)
        wanted = [i for i in pinned_items(self.rules.current(), at, region) if i not in have]
        extra = self.known_items(wanted) if wanted else []
        return CandidateSet([*proposed.item_ids, *extra], [*proposed.sources, *[(s.SOURCE_PINNED,)] * len(extra)])

    def known_items(self, item_ids: list[str]) -> list[str]:
        """Those of `item_ids` that the catalogue holds (an `item_profile` row), in order."""
        return [i for i, row in zip(item_ids, self._items(item_ids), strict=True) if row]

    def _items(self, item_ids: list[str]) -> list[dict[str, Any]]:
        # The Scorer keeps its own title embeddings (TitleEmbeddings): 384 floats an item need not sit here too.
        views = (s.ITEM_PROFILE, s.ITEM_DEMAND)
        return self._cached(self.items, {}, views, item_ids, drop=(s.TITLE_EMBEDDING,), known_only=True)

    def week_columns(self, item_ids: list[str], region: str, ts: int) -> dict[str, list]:
        """`ITEM_WEEK_COLUMNS` of each item, in order, for the region and the ISO week of `ts`.

        Each (item, region, week) row is worked out once from the store, demand index included, and cached:
        a warm request costs one cache read an item. The TTL bounds how stale a row can be, as for every
        item row; the views change when materialized (daily).
        """
        week = _iso_week(ts)
        rows = self.item_weeks.get_many([(i, region, week) for i in item_ids])
        missing = list(dict.fromkeys(i for i, row in zip(item_ids, rows, strict=True) if row is None))
        if missing:
            fresh = self._item_week_rows(missing, region, ts)
            for item, row in fresh.items():
                self.item_weeks.put((item, region, week), row)
            rows = [fresh[i] if row is None else row for i, row in zip(item_ids, rows, strict=True)]
        if not rows:
            return {c: [] for c in ITEM_WEEK_COLUMNS}
        return {c: list(values) for c, values in zip(ITEM_WEEK_COLUMNS, zip(*rows, strict=True), strict=True)}

    def _item_week_rows(self, item_ids: list[str], region: str, ts: int) -> dict[str, tuple]:
        """Each item's `ITEM_WEEK_COLUMNS` from the store, as a tuple in that order."""
        scope = {s.REGION: region, s.HEMISPHERE: hemisphere(region)}
        reads = [
            self._read(view, [{s.ITEM_ID: i, **({key: scope[key]} if key else {})} for i in item_ids])
            for view, key in ITEM_WEEK_VIEWS
        ]
        rows = [{k: v for row in parts for k, v in row.items()} for parts in zip(*reads, strict=True)]
        n = len(rows)
        context = seasonal_context(
            {
                s.REQUEST_TS: [ts] * n,
                s.REGION: [region] * n,
                **{c: [row.get(c) for row in rows] for c in WEEK_DEMAND_INPUTS},
            }
        )
        for i, row in enumerate(rows):
            row.update({c: context[c][i] for c in WEEK_DEMAND_OUTPUTS})
        return {item: tuple(row.get(c) for c in ITEM_WEEK_COLUMNS) for item, row in zip(item_ids, rows, strict=True)}

    def _cached(
        self,
        cache: TTLCache,
        keys: dict[str, str],
        views: tuple[str, ...],
        item_ids: list[str],
        drop: tuple = (),
        known_only: bool = False,
    ) -> list[dict]:
        """The rows of `views` for each item (and the other entity `keys`), merged per item, through `cache`.

        With `known_only`, an item without a row in the first view is {} and is not cached: made-up
        ids must not push real items out of the cache.
        """
        scope = tuple(keys.values())
        unique = list(dict.fromkeys(item_ids))
        held = dict(zip(unique, cache.get_many([(i, *scope) for i in unique]), strict=True))
        stale = [i for i, row in held.items() if row is None]
        if stale:
            reads = [self._read(view, [{s.ITEM_ID: i, **keys} for i in stale]) for view in views]
            for item, *rows in zip(stale, *reads, strict=True):
                held[item] = {k: v for row in rows for k, v in row.items() if k not in drop}
                if rows[0] or not known_only:
                    cache.put((item, *scope), held[item])
        return [held[i] for i in item_ids]

    def request(self, user_id: str, region: str | None, at: datetime, candidates: list[str] | None) -> Fetched:
        """Everything the scorer and the re-ranker need for one request."""
        started = time.perf_counter()
        user = self.user(user_id)
        region = region or user.get(s.HOME_REGION) or s.POOL_ALL_REGIONS
        pool = dict(self.pool(region, at))
        # Candidates the caller names were proposed by no source of ours; those the catalogue lacks are dropped.
        known = self.known_items(candidates) if candidates else []
        proposed = CandidateSet(known, [()] * len(known)) if candidates else self.candidates(user, list(pool), region)
        proposed = self.with_pins(proposed, region, at)
        ids, ts = proposed.item_ids, int(at.timestamp())
        # Column by column: a request's few hundred items cost a list each, not a dict each.
        items = {s.ITEM_ID: ids, **self.week_columns(ids, region, ts)}
        items[s.ITEM_AGE_DAYS] = [item_age_days(ts, launch) for launch in items[s.LAUNCH_TS]]
        items["pool_score"] = [pool.get(i, 0.0) for i in ids]
        own = self.bought(user, user_id, ids) if ids else []
        items.update({c: [row.get(c) for row in own] for c in s.USER_ITEM_FEATURES})
        context = seasonal_context({s.REQUEST_TS: [ts], s.REGION: [region], s.HISTORY_TS: [user.get(s.HISTORY_TS)]})
        user.update(
            {
                s.REGION: region,
                s.REQUEST_TS: ts,
                **{c: context[c][0] for c in (s.HISTORY_AGE_HOURS, s.WEEK_SIN, s.WEEK_COS, s.DAYS_TO_HOLIDAY)},
            }
        )
        return Fetched(
            user=user,
            items={**{column: items[column] for column in ITEM_COLUMNS}, s.CANDIDATE_SOURCES_COLUMN: proposed.sources},
            region=region,
            unknown_candidates=len(candidates or ()) - len(known),
            elapsed_ms={"fetch": (time.perf_counter() - started) * 1000},
        )

    def forget(self, user_ids: list[str]) -> dict[str, int]:
        """Erase these stored ids' online rows (privacy/erasure.py), under each one's event lock.

        This reader caches item rows only (profiles, trends, neighbours: none names a user), so the
        store is the one place to clear; an event written meanwhile waits on the lock, then starts afresh.
        Raises StoreUnavailable when the store fails.
        """
        from seasonrec.privacy.erasure import forget_user_online

        try:
            return forget_user_online(self.store, user_ids, self.locks)
        except StoreUnavailable:
            raise
        except Exception as exc:  # Redis or SQLite errors: each client library has its own types
            raise StoreUnavailable(f"online store: erasure failed: {type(exc).__name__}") from exc

    def push_event(self, user_id: str, item_id: str, event_type: str, at: datetime) -> None:
        """Append an event to the user's online history at once (Feast push, online only).

        Raises UnknownItem, NewUserLimit (a user the store has never seen, over the rate), or
        StoreUnavailable (the store is down, or the user's lock stayed busy).
        """
        import pandas as pd
        from feast.data_source import PushMode

        if not self.known_items([item_id]):
            raise UnknownItem("unknown item")
        with self.locks.hold(user_id) as confirm:
            stored_at, current = self._read_stamped(s.USER_HISTORY, [{s.USER_ID: user_id}])[0]
            # A user the store has never seen (no history, no stats) counts against the new-user rate.
            if not current and not self.user(user_id) and not self.new_users.take():
                raise NewUserLimit("too many events for new users this minute")
            n = self.settings.features.history_length
            ids = ([*(current.get(s.HISTORY_ITEM_IDS) or []), item_id])[-n:]
            times = ([*(current.get(s.HISTORY_TS) or []), int(at.timestamp())])[-n:]
            types = ([*(current.get(s.HISTORY_EVENT_TYPES) or [None] * (len(ids) - 1)), event_type])[-n:]
            row = {
                s.USER_ID: [user_id],
                # Stamped by the server, never with the event's `at`: an online store keeps the newest row,
                # so a replayed event must still replace the materialized snapshot, and one dated 2200 would
                # make the store (Redis) skip every later write of this user until 2200.
                s.FEATURE_TS: [pd.Timestamp(row_stamp(stored_at, utc_now()))],
                s.HISTORY_ITEM_IDS: [ids],
                s.HISTORY_TS: [times],
                s.HISTORY_EVENT_TYPES: [types],
            }
            confirm()  # still this user's only writer (a Redis lock expires), for another LOCK_HOLD_S
            try:
                self.store.push(s.USER_EVENTS_PUSH, pd.DataFrame(row), to=PushMode.ONLINE)
            except Exception as exc:
                raise StoreUnavailable(f"online store: push failed: {type(exc).__name__}") from exc


def utc_now() -> datetime:
    """The server's clock, by name, so that a test can make it step back."""
    return datetime.now(UTC)


def row_stamp(stored: datetime | None, now: datetime) -> datetime:
    """The time to write a user's history row at: now, or just after the row the store holds.

    The Redis store skips a write older than the row it holds, silently. Replicas' clocks differ,
    and a clock can step back: a row stamped by a clock ahead would make the next event vanish."""
    return now if stored is None or stored < now else stored + timedelta(microseconds=1)


def _iso_week(ts: int) -> int:
    return datetime.fromtimestamp(ts, tz=UTC).isocalendar().week


def _utc(stamp: datetime | None) -> datetime | None:
    """Stores hand back naive UTC times (SQLite) or aware ones (Redis): aware UTC either way."""
    if stamp is None:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _offline_pools(settings: Settings) -> dict[tuple[str, int], list[tuple[str, float]]]:
    """The newest pool per (region, week) from the offline table: the fallback when the store is down."""
    import polars as pl

    path = settings.paths.features / f"{s.SEASONAL_POOLS}.parquet"
    if not path.is_file():
        return {}
    latest = pl.read_parquet(path).sort(s.FEATURE_TS).unique([s.REGION, s.WEEK_OF_YEAR], keep="last")
    return {
        (r, w): list(zip(items, scores, strict=True))
        for r, w, items, scores in latest.select(s.REGION, s.WEEK_OF_YEAR, s.POOL_ITEM_IDS, s.POOL_SCORES).rows()
    }
